"""The notice sender inside `zonemap serve`: dispatching a case through the real server (gunicorn,
two workers) e-mails its unit within seconds, once, though both workers run a sender thread."""

import json
import os
import subprocess
import sys
import time
import urllib.request

from layers.store import open_store
from layers.users import add_user, issue_token
from tests.conftest import ROOT
from tests.layers.test_cases import IN_F1
from tests.layers.test_notify import city, free_port, smtp  # noqa: F401 - the SMTP fixture


def test_serve_mails_the_unit_a_case_was_dispatched_to_once(tmp_path, smtp):  # noqa: F811
    box, smtp_port = smtp
    db = str(tmp_path / "n.gpkg")
    city(db).close()
    with open_store(db) as s:
        add_user(s, "disp", "dispatcher", "correct horse 42")
        token = issue_token(s, "disp")
    port = free_port()
    env = {**os.environ, "ZONEMAP_SMTP_HOST": "127.0.0.1", "ZONEMAP_SMTP_PORT": str(smtp_port),
           "ZONEMAP_SMTP_TLS": "none", "ZONEMAP_SMTP_FROM": "zonemap@example.cn", "ZONEMAP_ACCESS_LOG": "0",
           "ZONEMAP_NOTIFY_EVERY_S": "2"}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "cli.py"), "--db", db, "serve",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"

    def call(path, body=None):
        req = urllib.request.Request(base + path, method="GET" if body is None else "POST",
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        return json.loads(urllib.request.urlopen(req, timeout=30).read())

    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        pid = call("/api/problems", {"lon": IN_F1[0], "lat": IN_F1[1], "category": "06010"})["problem_id"]
        call(f"/api/cases/{pid}/transition", {"action": "file"})
        call(f"/api/cases/{pid}/transition", {"action": "dispatch"})
        deadline = time.monotonic() + 60
        while not box.messages and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(5)  # two more rounds of both workers' senders (every 2 s): nothing may come twice
    finally:
        server.terminate()
        server.wait(20)
        log.close()
    assert len(box.messages) == 1, (tmp_path / "serve.log").read_text()
    mail = box.messages[0]
    assert mail["To"] == "shop@example.cn" and pid in mail.get_content()
