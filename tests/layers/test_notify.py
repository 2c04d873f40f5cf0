"""Notices through the outbox against a real SMTP server (aiosmtpd on 127.0.0.1) and a real
local HTTP gateway: dispatch mails the unit once with the deadline in city time, yellow is
sent once, a gateway outage ends in one delivery with its attempts kept, a killed sender sends
nothing twice, and an edit of notify.toml changes who is told without code changes."""

import asyncio
import datetime as dt
import hashlib
import hmac
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import typing
from email import message_from_bytes, policy

import geopandas as gpd
import pytest
import shapely
from aiosmtpd.controller import Controller

from layers import cases, notify
from layers.settings import Settings
from layers.store import open_store
from layers.users import User
from tests.conftest import ROOT

SH = dt.timezone(dt.timedelta(hours=8))
MON = dt.datetime(2026, 11, 30, 10, 0, tzinfo=SH)
F1 = shapely.box(118.7800, 32.0400, 118.7805, 32.0405)
IN_F1 = (118.78045, 32.04025)
ADMIN = User("admin1", "admin")
INSPECTOR = User("insp1", "inspector")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """What the SMTP server accepted; `hold` makes the n-th message wait for `release`."""

    def __init__(self):
        self.messages, self.hold = [], None
        self.arrived, self.release = threading.Event(), threading.Event()

    async def handle_DATA(self, server, session, envelope):
        if self.hold is not None and len(self.messages) + 1 == self.hold:
            self.arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 120)
            if server.transport is None or server.transport.is_closing():
                return "451 the client went away"  # never taken: the sender must try again
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp():
    box = Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield box, ctl.port
    box.release.set()
    ctl.stop()


def city(url, **unit_cols):
    s = open_store(url)
    zones = gpd.GeoDataFrame({"code": ["F1"], "kind": ["frontage"], "primary_unit": ["U-SHOP"],
                              "valid_from": [dt.date(2026, 1, 1)], "version": [1],
                              "bounds_text": ["东至中山路,西至甲巷"]}, geometry=[F1], crs="EPSG:4326")
    units = gpd.GeoDataFrame({"unit_id": ["U-SHOP", "U-SITE"], "name": ["甲商店", "乙公司"],
                              "email": ["shop@example.cn", None], "gateway_id": [None, "13900000000"]}
                             | unit_cols, geometry=gpd.GeoSeries([None, None]), crs="EPSG:4326")
    with s.transaction() as tx:
        tx.append("zones", zones)
        tx.append("units", units)
    return s


@pytest.fixture
def store(store_url):
    s = city(store_url)
    yield s
    s.close()


def settings(port=None, gateway=None, secret=None):
    return Settings.load({"smtp_host": "127.0.0.1" if port else None, "smtp_port": port, "smtp_tls": "none",
                          "gateway_url": gateway, "gateway_secret": secret}, environ={})


def dispatched(s, at=MON, unit_id=None, where=IN_F1, **kw):
    now = at.astimezone(dt.UTC)
    pid = cases.report_one(s, {"lon": where[0], "lat": where[1], "category": "06010", **kw}, INSPECTOR,
                           "api", now=now)["problem_id"]
    cases.transition(s, pid, "file", ADMIN, now=now)
    return cases.transition(s, pid, "dispatch", ADMIN, now=now, unit_id=unit_id)


def test_dispatch_mails_the_unit_once_with_the_deadline_in_city_time(store, smtp):
    box, port = smtp
    case = dispatched(store)
    assert notify.listing(store)[0]["status"] == "queued"
    got = notify.run_once(store, settings(port), now=MON.astimezone(dt.UTC))
    notify.run_once(store, settings(port), now=MON.astimezone(dt.UTC) + dt.timedelta(minutes=1))
    assert got["delivered"] == 1 and len(box.messages) == 1
    mail = box.messages[0]
    assert mail["To"] == "shop@example.cn" and case["problem_id"] in mail["Subject"]
    body = mail.get_content()
    deadline = dt.datetime.fromisoformat(case["stage_deadline"]).astimezone(SH)
    assert deadline.isoformat(timespec="minutes") in body and "+08:00" in body
    assert "东至中山路" in body and "派遣" in mail["Subject"]
    assert notify.listing(store, status="delivered", unit="U-SHOP")[0]["attempts"] == 1


def test_yellow_is_sent_once_and_a_unit_never_sees_the_reporters_contact(store, smtp, tmp_path, monkeypatch):
    box, port = smtp
    own = tmp_path / "rules"
    own.mkdir()
    text = notify.rules_path().read_text("utf-8").replace(
        '[staff.dispatcher]\nemail = ""', '[staff.dispatcher]\nemail = "desk@example.cn"')
    (own / "notify.toml").write_text(text, "utf-8")
    monkeypatch.setenv("ZONEMAP_RULES", str(own))
    case = dispatched(store, contact="13812345678")
    rules = cases.Rules()
    start, deadline = (dt.datetime.fromisoformat(case[k]) for k in ("stage_started_at", "stage_deadline"))
    t = start
    while rules.light("dispatched", "06010", start, deadline, t) != "yellow":
        t += dt.timedelta(minutes=10)
    for k in range(3):  # three rounds while yellow: one yellow notice
        notify.run_once(store, settings(port), now=t + dt.timedelta(minutes=k))
    subjects = [m["Subject"] for m in box.messages]
    assert sum("即将超期" in s for s in subjects) == 1, subjects
    notify.run_once(store, settings(port), now=deadline + dt.timedelta(days=1))
    red = {m["To"]: m.get_content() for m in box.messages if "已超期" in m["Subject"]}
    assert set(red) == {"shop@example.cn", "desk@example.cn"}
    assert "13812345678" in red["desk@example.cn"] and "13812345678" not in red["shop@example.cn"]


class Gateway(http.server.BaseHTTPRequestHandler):
    """Answers POSTs with the codes of `answers` (then 200); keeps what it was sent in `seen`."""

    answers: typing.ClassVar[list[int]] = []
    seen: typing.ClassVar[list[tuple[int, dict, bytes]]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        code = self.answers.pop(0) if self.answers else 200
        self.seen.append((code, dict(self.headers), body))
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_gateway_outage_ends_in_one_delivery_with_its_attempts(store):
    Gateway.answers, Gateway.seen = [500, 500, 500], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dispatched(store, unit_id="U-SITE")
        conf = settings(gateway=f"http://127.0.0.1:{server.server_port}/send", secret="s" * 32)
        now = MON.astimezone(dt.UTC)
        for _ in range(8):
            notify.run_once(store, conf, now=now)
            now += dt.timedelta(hours=3)  # past any backoff step
    finally:
        server.shutdown()
    mine = [(c, h, b) for c, h, b in Gateway.seen if json.loads(b)["event"] == "dispatched"]
    assert [c for c, _, _ in mine] == [500, 500, 500, 200]  # later rounds bring its yellow/red notices
    _, headers, body = mine[-1]
    assert json.loads(body)["to"] == "13900000000"
    expect = "sha256=" + hmac.new(b"s" * 32, headers["X-Zonemap-Timestamp"].encode() + b"." + body,
                                  hashlib.sha256).hexdigest()
    assert headers["X-Zonemap-Signature"] == expect
    [row] = [r for r in notify.listing(store, unit="U-SITE") if r["event"] == "dispatched"]
    assert row["status"] == "delivered" and row["attempts"] == 4 and "500" in row["last_error"]


def test_a_killed_sender_sends_nothing_twice(tmp_path, smtp):
    box, port = smtp
    db = str(tmp_path / "k.gpkg")
    s = city(db, email=["shop@example.cn", "site@example.cn"], gateway_id=[None, None])
    now = dt.datetime.now(dt.UTC)
    for k, unit in enumerate(["U-SHOP", "U-SITE", "U-SHOP"]):
        dispatched(s, at=now + dt.timedelta(seconds=k - 60), unit_id=unit,
                   where=(IN_F1[0] + 0.001 * k, IN_F1[1]))  # 100 m apart: no duplicates
    box.hold = 2  # the second mail hangs in DATA until the sender is killed
    env = {**os.environ, "ZONEMAP_SMTP_HOST": "127.0.0.1", "ZONEMAP_SMTP_PORT": str(port),
           "ZONEMAP_SMTP_TLS": "none"}
    env.pop("ZONEMAP_RULES", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "cli.py"), "--db", db, "notify", "run", "--once"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert box.arrived.wait(120), proc.communicate(timeout=5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    box.release.set()
    states = sorted(r["status"] for r in notify.listing(s))
    assert states == ["delivered", "queued", "sending"]
    conf = Settings.load({"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_tls": "none"}, environ={})
    notify.run_once(s, conf)  # restarted at once: the claimed notice's lease still holds
    assert sorted(r["status"] for r in notify.listing(s)) == ["delivered", "delivered", "sending"]
    notify.run_once(s, conf, now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))  # lease over
    assert [r["status"] for r in notify.listing(s)] == ["delivered"] * 3
    ids = [m["Message-ID"] for m in box.messages]
    assert len(ids) == 3 and len(set(ids)) == 3
    s.close()


def test_a_rule_change_takes_effect_without_code_changes(store, smtp, tmp_path, monkeypatch):
    box, port = smtp
    case = dispatched(store)
    cases.transition(store, case["problem_id"], "return", User("shop1", "unit", "U-SHOP"),
                     now=MON.astimezone(dt.UTC), note="不属于本单位")
    assert [r["event"] for r in notify.listing(store)] == ["dispatched"]  # return: the desk, no address
    own = tmp_path / "rules"
    own.mkdir()
    (own / "notify.toml").write_text(notify.rules_path().read_text("utf-8").replace(
        '[events.dispatched]\nrecipients = ["unit"]', '[events.dispatched]\nrecipients = ["unit", "dispatcher"]'
    ).replace('[staff.dispatcher]\nemail = ""', '[staff.dispatcher]\nemail = "desk@example.cn"'), "utf-8")
    monkeypatch.setenv("ZONEMAP_RULES", str(own))
    cases.transition(store, case["problem_id"], "dispatch", ADMIN, now=MON.astimezone(dt.UTC), unit_id="U-SHOP")
    notify.run_once(store, settings(port), now=MON.astimezone(dt.UTC))
    assert sorted(m["To"] for m in box.messages) == ["desk@example.cn", "shop@example.cn", "shop@example.cn"]


def test_a_turned_off_channel_is_respected(tmp_path):
    s = city(str(tmp_path / "o.gpkg"), notify_off=["email", None])
    dispatched(s)
    assert notify.listing(s) == []
    s.close()
