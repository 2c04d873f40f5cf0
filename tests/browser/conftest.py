"""What every browser test needs: Debian's Chromium driven by Playwright, the real server
(`zonemap serve`, gunicorn, in its own process) on a test's store, a place for screenshots, and
`watch`, which collects a page's script and console errors."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = os.environ.get("ZONEMAP_CHROMIUM", "/usr/bin/chromium")
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "locale": "zh-CN"}


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required under CI but {CHROMIUM} is missing")
        pytest.skip(f"Chromium not available at {CHROMIUM} (scripts/test installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    """`serve(db)` starts `zonemap serve` on a free port over the store `db` and answers its
    base URL once /health answers; every server it started is stopped after the module. Its
    output (the access log: a line a request, dozens a map page) goes to a file, never to a
    pipe nobody reads, where a full pipe would stall every worker at its next log line."""
    started = []

    def start(db: str) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = tmp_path_factory.mktemp("serve") / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "cli.py"), "--db", db, "serve",
                                     "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
        started.append(proc)
        url = f"http://127.0.0.1:{port}/"
        for _ in range(300):
            if proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(url + "health", timeout=1)
                return url
            except OSError:
                time.sleep(0.1)
        proc.kill()
        pytest.fail(f"zonemap serve did not start: {log.read_text(errors='replace')[-4000:]}")

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> Path:
    """Where screenshots go: $ZONEMAP_ARTIFACTS (CI keeps it), else the test's tmp dir."""
    where = os.environ.get("ZONEMAP_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screens")
    path.mkdir(parents=True, exist_ok=True)
    return path


def watch(page) -> list:
    """Script errors and console errors (a Content-Security-Policy violation among them); a 4xx
    answer the page handles itself (a wrong token) is no error of the page."""
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not re.search(
        r"Failed to load resource: the server responded with a status of 4\d\d", m.text) else None)
    return errors
