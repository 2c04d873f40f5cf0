"""Telling the responsible party: notices through a durable outbox (the 结 of 走、记、结、评).

A case step that notifies (dispatch, return, rework, close… as `rules/notify.toml` says) writes
its notices into the `outbox` layer in the SAME transaction as the step (`enqueue`, called by
layers.cases): a rolled-back step leaves no notice, a committed one cannot lose its notice.
Yellow (80 % of a stage's time) and red (overdue) notices are found by `scan`, once per stage
and light: the outbox's unique `dedupe_key` makes "once" hold across scans and senders.

Delivery (`run_once`, looped by `serve` or `zonemap notify run`) claims each due notice in its
own transaction (status sending, attempts + 1, next_at = now + lease) before it talks to the
mail server or the gateway, and records delivered / failed (retried with backoff) / given_up in
another. Why at-least-once and not exactly-once: no transaction spans our store and a remote
SMTP server, so a crash after the server took the message and before we record it cannot be told
apart from a crash before; after the lease the notice is sent again. We keep that window as
small as it can be (the record is written the moment the server says 250; the lease only
re-sends a notice whose sender is gone) and make a repeat harmless: an e-mail carries a
Message-ID made from its dedupe key (mail clients show one message for one id) and a gateway
POST carries the notice id as Idempotency-Key (a gateway that keeps keys delivers it once).
A notice that was delivered is never claimed again: that part is exactly once."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import smtplib
import ssl
import string
import threading
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import pandas as pd

from .errors import InputError, StoreError
from .settings import ROOT, Settings

log = logging.getLogger("zonemap.notify")

EVENT_OF_ACTION = {"dispatch": "dispatched", "return": "returned", "rework": "reworked", "close": "closed",
                   "report": "reported"}
EVENT_ZH = {"dispatched": "派遣", "returned": "退回", "reworked": "返工", "closed": "结案", "reported": "上报",
            "yellow": "即将超期", "red": "已超期", "digest": "每日汇总"}
LIGHT_ZH = {"green": "绿灯", "yellow": "黄灯", "red": "红灯", None: "—"}
CHANNELS = ("email", "gateway")
CLAIMABLE = ("queued", "failed", "sending")  # sending: only once its lease (next_at) has passed
STATUSES = ("queued", "sending", "delivered", "failed", "given_up")
FIELDS = ("problem_id", "event_zh", "category_name", "address", "zone_code", "bounds", "unit_name", "status_zh",
          "deadline", "light_zh", "link", "note", "contact", "cases", "date", "count")


# ---- the rules: notify.toml -----------------------------------------------------------------

@dataclass(frozen=True)
class NotifyRules:
    version: str
    events: dict[str, tuple[str, ...]]
    staff: dict[str, dict[str, str]]
    templates: dict[str, dict[str, str]]
    max_attempts: int
    backoff: tuple[float, ...]
    lease: float

    def template(self, event: str) -> dict[str, str]:
        return self.templates.get(event) or self.templates["default"]

    def delay(self, attempts: int) -> dt.timedelta:
        return dt.timedelta(seconds=self.backoff[min(attempts, len(self.backoff)) - 1])


_cache: dict[Path, tuple[float, NotifyRules]] = {}


def rules_path() -> Path:
    from .deadlines import rule_file

    return rule_file("notify.toml")


def load_rules(path: Path | None = None) -> NotifyRules:
    """notify.toml (a city's own in $ZONEMAP_RULES, else ours), read again when it changes."""
    path = Path(path or rules_path())
    mtime = path.stat().st_mtime_ns
    if path in _cache and _cache[path][0] == mtime:
        return _cache[path][1]
    try:
        d = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    rules = _check(path, d)
    _cache[path] = (mtime, rules)
    return rules


def _check(path: Path, d: dict) -> NotifyRules:
    staff = {k: {c: str(v.get(c) or "") for c in ("email", "gateway_id")} for k, v in d.get("staff", {}).items()}
    known = {"unit", "reporter", *staff}
    events = {}
    for name, ev in d.get("events", {}).items():
        who = tuple(ev.get("recipients", []))
        bad = [r for r in who if r not in known]
        if bad:
            raise InputError(f"{path.name}: [events.{name}] recipient {bad[0]!r} is not unit, reporter or a "
                             f"[staff] desk ({', '.join(staff) or 'none'})")
        events[name] = who
    templates = {k: {"subject": str(v.get("subject", "")), "body": str(v.get("body", ""))}
                 for k, v in d.get("templates", {}).items()}
    if "default" not in templates:
        raise InputError(f"{path.name}: needs a [templates.default] with subject and body")
    for name, t in templates.items():
        for part, text in t.items():
            used = {f for _, f, _, _ in string.Formatter().parse(text) if f}
            if used - set(FIELDS):
                raise InputError(f"{path.name}: [templates.{name}] {part} uses {{{sorted(used - set(FIELDS))[0]}}}"
                                 f"; the fields are {', '.join(FIELDS)}")
    retry = d.get("retry", {})
    backoff = tuple(float(x) for x in retry.get("backoff_seconds", [30])) or (30.0,)
    return NotifyRules(str(d.get("version", "")), events, staff, templates, int(retry.get("max_attempts", 8)),
                       backoff, float(retry.get("lease_seconds", 120)))


# ---- what a notice says -----------------------------------------------------------------------

def _settings() -> Settings:
    try:
        return Settings.load()
    except InputError:  # serve refuses a bad setting at start; a step must not fail on one
        return Settings()


def city_time(value, tz) -> str:
    """An instant as people read it: city time, ISO 8601 to the minute with its offset."""
    if value is None or value is pd.NaT:
        return "—"
    t = pd.Timestamp(value)
    t = t.tz_localize("UTC") if t.tzinfo is None else t
    return t.tz_convert(tz).isoformat(timespec="minutes")


def _zone_bounds(read, case: dict) -> str:
    if not case.get("zone_code"):
        return "—"
    zones = read("zones", {"code": case["zone_code"], "version": case.get("zone_version")}) \
        if case.get("zone_version") is not None else read("zones", {"code": case["zone_code"]})
    return (zones[0].get("bounds_text") if zones else None) or "—"


def case_fields(read, case: dict, crules, base_url: str, *, event: str, note=None, light=None) -> dict:
    """Template fields of one case; `read(layer, where)` gives row dicts (a transaction's or
    the store's). `contact` is filled in later, for staff only."""
    cat = crules.category(case.get("category"))
    units = read("units", {"unit_id": case["unit_id"]}) if case.get("unit_id") else []
    from .workflow import STATE_ZH

    return {"problem_id": case["problem_id"], "event_zh": EVENT_ZH.get(event, event),
            "category_name": cat.name if cat else (case.get("category") or "—"),
            "address": case.get("address") or "—", "zone_code": case.get("zone_code") or "—",
            "bounds": _zone_bounds(read, case),
            "unit_name": units[0]["name"] if units else (case.get("unit_id") or "—"),
            "status_zh": STATE_ZH.get(case.get("status"), case.get("status")),
            "deadline": city_time(case.get("stage_deadline"), crules.tz), "light_zh": LIGHT_ZH.get(light, "—"),
            "link": f"{base_url.rstrip('/')}/cases?case={case['problem_id']}", "note": note or "",
            "contact": "—", "cases": "", "date": "", "count": ""}


def _off(value) -> set[str]:
    return {w for w in re.split(r"[,;\s，；]+", str(value or "").strip().lower()) if w}


def _wants_news(case: dict) -> bool:
    try:
        attrs = json.loads(case.get("attrs") or "{}")
    except (TypeError, ValueError):
        return False
    return isinstance(attrs, dict) and attrs.get("notify_reporter") is True


def addresses(read, who: str, case: dict, rules: NotifyRules) -> list[tuple[str, str]]:
    """(channel, address) of one recipient, without the channels its person turned off."""
    if who == "unit":
        units = read("units", {"unit_id": case.get("unit_id")}) if case.get("unit_id") else []
        if not units:
            return []
        u, off = units[0], _off(units[0].get("notify_off"))
        pairs = [("email", u.get("email")), ("gateway", u.get("gateway_id"))]
        return [(c, a.strip()) for c, a in pairs if a and a.strip() and c not in off and "all" not in off]
    if who == "reporter":
        contact = (case.get("contact") or "").strip()
        if not contact or not _wants_news(case):
            return []
        return [("email" if "@" in contact else "gateway", contact)]
    desk = rules.staff.get(who, {})
    return [(c, desk[k]) for c, k in (("email", "email"), ("gateway", "gateway_id")) if desk.get(k)]


def _render(rules: NotifyRules, event: str, fields: dict) -> tuple[str, str]:
    t = rules.template(event)
    return t["subject"].format_map(fields).strip(), t["body"].format_map(fields).strip() + "\n"


def notices_for(read, case: dict, event: str, key: str, *, now, note=None, light=None, crules=None,
                rules: NotifyRules | None = None) -> list[dict]:
    """The outbox rows for one event of one case: one per recipient and channel."""
    from .cases import Rules

    rules = rules or load_rules()
    who = rules.events.get(event, ())
    if not who:
        return []
    crules = crules or Rules()
    fields = case_fields(read, case, crules, _settings().base_url, event=event, note=note, light=light)
    out = []
    for recipient in who:
        staff = recipient not in ("unit", "reporter")
        contact = (case.get("contact") or "—") if staff else "—"  # a reporter's contact: staff only
        subject, body = _render(rules, event, fields | {"contact": contact})
        for channel, address in addresses(read, recipient, case, rules):
            out.append(_row(event, case.get("problem_id"), case.get("unit_id"), recipient, channel, address,
                            subject, body, now, f"{key}|{event}|{recipient}|{channel}"))
    return out


def _row(event, problem_id, unit_id, recipient, channel, address, subject, body, now, key) -> dict:
    return {"notice_id": "N" + secrets.token_hex(8), "event": event, "problem_id": problem_id,
            "unit_id": unit_id, "recipient": recipient, "channel": channel, "address": address,
            "subject": subject, "body": body, "status": "queued", "attempts": 0, "next_at": now,
            "created_at": now, "dedupe_key": key, "source": "notify"}


def _append(tx, rows: list[dict]) -> int:
    if rows:
        tx.append("outbox", pd.DataFrame(rows))
    return len(rows)


# ---- the hook in the case transaction -----------------------------------------------------------

def enqueue(tx, case: dict, step: dict, *, rules=None) -> int:
    """Write the notices of one case step inside the step's transaction `tx`. `case` is the
    case as the step leaves it; `step` its case_steps row. Imports never notify."""
    event = EVENT_OF_ACTION.get(step.get("action"))
    if event is None or not load_rules().events.get(event):
        return 0
    now = step["at"]
    key = f"{case['problem_id']}|step{step['seq']}"
    return _append(tx, notices_for(tx.rows, case, event, key, now=now, note=step.get("note"), crules=rules))


def enqueue_intake(tx, cases: pd.DataFrame, *, live: bool, rules=None) -> int:
    """`enqueue` for live reports just taken in (their `report` step, seq 1), when notify.toml
    names recipients for `reported`; files of past cases (not live) and duplicates never notify."""
    if not live or not load_rules().events.get("reported"):
        return 0
    frame = pd.DataFrame(cases.drop(columns="geometry", errors="ignore")).astype(object)
    rows = frame.where(frame.notna(), None).to_dict("records")
    return sum(enqueue(tx, r, {"action": "report", "seq": 1, "at": r["reported_at"]}, rules=rules)
               for r in rows if r["status"] != "linked")


# ---- the scan: yellow and red -----------------------------------------------------------------

def _store_reader(store):
    def read(layer, where):
        frame = store.read(layer, where=where)
        frame = pd.DataFrame(frame.drop(columns="geometry", errors="ignore"))
        return frame.astype(object).where(frame.notna(), None).to_dict("records")
    return read


def _new_only(store, rows: list[dict]) -> int:
    """Append the rows whose dedupe key is not in the outbox yet, in one transaction."""
    if not rows:
        return 0
    with store.transaction() as tx:
        seen = {r["dedupe_key"] for r in tx.rows("outbox", {"dedupe_key": [r["dedupe_key"] for r in rows]})}
        return _append(tx, [r for r in rows if r["dedupe_key"] not in seen])


def scan(store, *, now: dt.datetime | None = None, crules=None) -> int:
    """Enqueue a yellow or red notice for each open case whose stage turned yellow or red, once
    per stage and light. Returns how many notices were written."""
    from .cases import Rules, fill_light_times, utc_now
    from .workflow import FINAL, LINKED

    crules, now = crules or Rules(), now or utc_now()
    read = _store_reader(store)
    fill_light_times(store, crules)  # a store from before lights were kept: once
    # the open cases past their yellow time, told by the store from the stored light times (a
    # city's million reports are not read every round), less those already told of this stage
    turned = store.read("problems", exclude={"status": [*FINAL, LINKED, "shelved"]},
                        time=[("light_yellow_at", None, pd.Timestamp(now) + pd.Timedelta(1, "us"))])
    turned = pd.DataFrame(turned.drop(columns="geometry", errors="ignore"))
    cases = turned.astype(object).where(turned.notna(), None).to_dict("records")
    told = set()
    if cases:
        sent = store.read("outbox", where={"problem_id": [c["problem_id"] for c in cases], "event": ["yellow", "red"]})
        told = {k.rsplit("|", 2)[0] for k in sent["dedupe_key"].dropna()}  # "case|stage|light"
    rows = []
    for case in cases:
        light = crules.case_light(case, now)
        key = f"{case['problem_id']}|{pd.Timestamp(case['stage_started_at']).isoformat()}"
        if light in ("yellow", "red") and f"{key}|{light}" not in told:
            rows += notices_for(read, case, light, key, now=now, light=light, crules=crules)
    return _new_only(store, rows)


def digest(store, *, now: dt.datetime | None = None, crules=None) -> int:
    """Enqueue one digest per unit with open cases (its lights and deadlines), once a city day."""
    from .cases import Rules, utc_now
    from .workflow import FINAL, LINKED

    crules, now = crules or Rules(), now or utc_now()
    rules, read = load_rules(), _store_reader(store)
    if not rules.events.get("digest"):
        return 0
    day = now.astimezone(crules.tz).date().isoformat()
    open_by_unit: dict[str, list[dict]] = {}
    for case in read("problems", {}):
        if case["status"] not in (*FINAL, LINKED) and case.get("unit_id"):
            open_by_unit.setdefault(case["unit_id"], []).append(case)
    rows = []
    for unit_id, cases in sorted(open_by_unit.items()):
        lines = []
        for c in sorted(cases, key=lambda c: c["problem_id"]):
            light = crules.case_light(c, now)
            f = case_fields(read, c, crules, "", event="digest", light=light)
            lines.append(f"{c['problem_id']} {f['category_name']} {f['status_zh']} {f['light_zh']} "
                         f"期限 {f['deadline']}")
        fields = case_fields(read, cases[0], crules, _settings().base_url, event="digest") | {
            "cases": "\n".join(lines), "date": day, "count": str(len(cases)),
            "link": f"{_settings().base_url.rstrip('/')}/cases"}
        subject, body = _render(rules, "digest", fields)
        for who in rules.events["digest"]:
            for channel, address in addresses(read, who, {"unit_id": unit_id}, rules):
                rows.append(_row("digest", None, unit_id, who, channel, address, subject, body, now,
                                 f"digest|{day}|{unit_id}|{who}|{channel}"))
    return _new_only(store, rows)


# ---- delivery -------------------------------------------------------------------------------------

class Permanent(Exception):
    """The server refused the notice for good (a 5xx mail reply, a 4xx from the gateway)."""


def configured(settings: Settings) -> list[str]:
    """The channels this sender can deliver; notices of the others wait in the outbox."""
    return [c for c, ok in (("email", settings.smtp_host), ("gateway", settings.gateway_url)) if ok]


def send_email(settings: Settings, notice: dict) -> None:
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = notice["subject"], settings.smtp_from, notice["address"]
    msg["Date"] = formatdate(localtime=False)
    # one id per notice: a copy sent again after a crash is the same message to a mail client
    msg["Message-ID"] = f"<{hashlib.sha256(notice['dedupe_key'].encode()).hexdigest()[:32]}@zonemap>"
    msg.set_content(notice["body"])
    tls = settings.smtp_tls
    port = settings.smtp_port or {"ssl": 465, "starttls": 587}.get(tls, 25)
    smtp = smtplib.SMTP_SSL if tls == "ssl" else smtplib.SMTP
    try:
        with smtp(settings.smtp_host, port, timeout=30) as s:
            if tls == "starttls":
                s.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                s.login(settings.smtp_user, settings.smtp_password or "")
            s.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [c for c, _ in exc.recipients.values()]
        raise (Permanent if all(c >= 500 for c in codes) else OSError)(f"recipient refused: {exc.recipients}") from None
    except smtplib.SMTPResponseException as exc:
        if exc.smtp_code >= 500:
            raise Permanent(f"{exc.smtp_code} {exc.smtp_error!r}") from None
        raise


def sign(secret: str, timestamp: str, payload: bytes) -> str:
    """X-Zonemap-Signature: sha256=HMAC-SHA256(secret, timestamp + "." + body), hex."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + payload, hashlib.sha256).hexdigest()


def send_gateway(settings: Settings, notice: dict) -> None:
    payload = json.dumps({"notice_id": notice["notice_id"], "event": notice["event"], "case": notice["problem_id"],
                          "to": notice["address"], "subject": notice["subject"], "text": notice["body"]},
                         ensure_ascii=False).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": notice["notice_id"],
               "X-Zonemap-Timestamp": stamp}
    if settings.gateway_secret:
        headers["X-Zonemap-Signature"] = sign(settings.gateway_secret, stamp, payload)
    req = urllib.request.Request(settings.gateway_url, data=payload, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise Permanent(f"gateway answered {exc.code} {exc.reason}") from None
        raise OSError(f"gateway answered {exc.code} {exc.reason}") from None


SENDERS = {"email": send_email, "gateway": send_gateway}


def claim(store, fid: int, now: dt.datetime, lease: float) -> dict | None:
    """Take one due notice for this sender in its own transaction (sending, attempts + 1, a
    lease); None when another sender took it or it is not due."""
    with store.transaction() as tx:
        got = tx.rows("outbox", {"fid": fid}, lock=True)
        if not got or got[0]["status"] not in CLAIMABLE or (got[0]["next_at"] and got[0]["next_at"] > now):
            return None
        n = got[0]
        n["attempts"] = (n["attempts"] or 0) + 1
        tx.update("outbox", fid, {"status": "sending", "attempts": n["attempts"],
                                  "next_at": now + dt.timedelta(seconds=lease)})
    return n


def _record(store, fid: int, values: dict) -> None:
    with store.transaction() as tx:
        tx.update("outbox", fid, values)


def deliver(store, settings: Settings, notice: dict, rules: NotifyRules, now: dt.datetime) -> str:
    """Send one claimed notice and record what became of it; returns the new status."""
    try:
        SENDERS[notice["channel"]](settings, notice)
    except Permanent as exc:
        _record(store, notice["fid"], {"status": "given_up", "last_error": str(exc)[:500], "next_at": None})
        return "given_up"
    except (OSError, smtplib.SMTPException) as exc:
        done = notice["attempts"] >= rules.max_attempts
        _record(store, notice["fid"], {"status": "given_up" if done else "failed", "last_error": str(exc)[:500],
                                       "next_at": None if done else now + rules.delay(notice["attempts"])})
        return "given_up" if done else "failed"
    _record(store, notice["fid"], {"status": "delivered", "delivered_at": dt.datetime.now(dt.UTC),
                                   "last_error": notice.get("last_error"), "next_at": None})
    return "delivered"


def run_once(store, settings: Settings, *, now: dt.datetime | None = None, limit: int = 200) -> dict:
    """Scan for yellow/red, then deliver what is due on the configured channels; a count per
    outcome. Notices whose channel is not configured stay queued."""
    now = now or dt.datetime.now(dt.UTC)
    rules = load_rules()
    counts = {"enqueued": scan(store, now=now), "delivered": 0, "failed": 0, "given_up": 0}
    channels = configured(settings)
    if not channels:
        return counts
    due = store.read("outbox", where={"status": list(CLAIMABLE), "channel": channels},
                     time=("next_at", None, now + dt.timedelta(microseconds=1)),
                     order=[("next_at", "asc")], limit=limit)
    for fid in due["fid"]:
        notice = claim(store, int(fid), now, rules.lease)
        if notice is not None:
            counts[deliver(store, settings, notice, rules, now)] += 1
    return counts


def listing(store, status=None, unit=None, limit: int = 500) -> list[dict]:
    """The outbox, newest first (without bodies and addresses' full text kept short)."""
    where = {k: v for k, v in (("status", status), ("unit_id", unit)) if v}
    if status and status not in STATUSES:
        raise InputError(f"--status {status!r}: use one of {', '.join(STATUSES)}")
    frame = store.read("outbox", where=where, order=[("created_at", "desc")], limit=limit)
    cols = ["notice_id", "event", "problem_id", "unit_id", "recipient", "channel", "address", "status",
            "attempts", "next_at", "last_error", "created_at", "delivered_at", "subject"]
    frame = pd.DataFrame(frame)[cols]
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


# ---- the loop inside serve ------------------------------------------------------------------------

def lock_path(settings: Settings) -> Path:
    if "://" in settings.db:
        return ROOT / "var" / "notify.lock"
    return Path(settings.db).with_name(Path(settings.db).name + ".notify.lock")


def _take_lock(path: Path):
    """An exclusive lock held as long as this process lives: only one sender per store and machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def _loop(settings: Settings, interval: float) -> None:
    from .store import open_store

    held = None
    while True:
        held = held or _take_lock(lock_path(settings))
        if held:
            try:
                with open_store(settings.db) as store:
                    counts = run_once(store, settings)
                if any(counts.values()):
                    log.info("notices: %s", counts)
            except (StoreError, InputError, OSError) as exc:
                log.warning("notice sender: %s (tries again in %.0f s)", exc, interval)
        time.sleep(interval)


def start_loop(settings: Settings) -> threading.Thread | None:
    """The sender as a daemon thread of this process (when ZONEMAP_NOTIFY is on), looking for
    notices every ZONEMAP_NOTIFY_EVERY_S. Call it in every server process: a file lock lets
    one run and the others wait to take over."""
    if not settings.notify:
        return None
    t = threading.Thread(target=_loop, args=(settings, settings.notify_every_s), name="zonemap-notify",
                         daemon=True)
    t.start()
    log.info("notice sender started in process %d", os.getpid())
    return t
