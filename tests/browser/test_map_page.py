"""The map page in real headless Chromium (Debian's), against `zonemap serve` in its own
process: the layers draw, the attribution shows, and untrusted names stay text."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import geopandas as gpd
import pytest
import shapely
from playwright.sync_api import expect

from layers.store import open_store
from tests.conftest import ROOT

CHROMIUM = os.environ.get("ZONEMAP_CHROMIUM", "/usr/bin/chromium")
EVIL = '<img src=x onerror="window.__zm_xss=1">恶意商户'


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
def server(nanjing_gpkg):
    db = nanjing_gpkg
    with open_store(db) as s:
        s.append("buildings", gpd.GeoDataFrame(
            {"name": [EVIL]}, geometry=[shapely.box(118.7790, 32.0410, 118.7792, 32.0412)], crs=4326))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "cli.py"), "--db", db, "serve",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"zonemap serve did not start: {proc.stdout.read().decode()}")
    yield url
    proc.terminate()
    proc.wait(10)


def watch(page) -> list:
    """Script errors and console errors (a Content-Security-Policy violation among them); a 4xx
    answer the page handles itself (a wrong token) is no error of the page."""
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not re.search(
        r"Failed to load resource: the server responded with a status of 4\d\d", m.text) else None)
    return errors


def open_map(browser, url):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors = watch(page)
    page.goto(url)
    page.wait_for_selector("body[data-zm-loaded='1']", timeout=30000)
    return page, errors


def test_layers_draw_with_attribution_and_no_errors(browser, server):
    page, errors = open_map(browser, server)
    assert page.locator("path.leaflet-interactive").count() > 1000  # buildings, roads, areas, pois
    assert "© OpenStreetMap contributors" in page.locator(".leaflet-control-attribution").inner_text()
    assert "建筑物" in page.locator(".leaflet-control-layers").inner_text()
    assert errors == []
    page.close()


def test_untrusted_names_are_shown_as_text_in_popups(browser, server):
    page, errors = open_map(browser, server)
    page.evaluate("""(name) => {
        const map = Object.values(window).find(v => v && v._container && v.getZoom);
        map.eachLayer(l => { if (l.feature && l.feature.properties.name === name) l.openPopup(); });
    }""", EVIL)
    popup = page.locator(".zm-popup")
    popup.wait_for(timeout=5000)
    assert EVIL in popup.inner_text()
    assert popup.locator("img").count() == 0
    assert page.evaluate("window.__zm_xss") is None
    assert errors == []
    page.close()


def test_a_reported_problem_shows_on_the_map_with_its_unit_and_its_text_kept_as_text(browser, server):
    import json

    body = json.dumps({"lon": 118.77985, "lat": 32.04065, "category": "06010", "description": EVIL,
                       "contact": "13900000000"}).encode()
    req = urllib.request.Request(server + "api/problems", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
    assert answer["unit_id"] and answer["status"] == "verifying"
    page, errors = open_map(browser, server)
    page.evaluate("""(pid) => {
        const map = Object.values(window).find(v => v && v._container && v.getZoom);
        map.eachLayer(l => { if (l.feature && l.feature.properties.problem_id === pid) l.openPopup(); });
    }""", answer["problem_id"])
    popup = page.locator(".zm-popup")
    popup.wait_for(timeout=5000)
    text = popup.inner_text()
    assert answer["problem_id"] in text and answer["unit_id"] in text
    # the public map shows the case and who answers, never what a reporter wrote or their phone
    assert EVIL not in text and "13900000000" not in text and popup.locator("img").count() == 0
    assert page.evaluate("window.__zm_xss") is None
    assert errors == []
    page.close()


def test_language_switch(browser, server):
    page, _ = open_map(browser, server)
    page.click("#zm-lang")
    page.wait_for_selector("body[data-zm-loaded='1']")
    assert "Buildings" in page.locator(".leaflet-control-layers").inner_text()
    assert page.locator("html").get_attribute("lang") == "en"
    page.close()


def test_a_phone_reports_from_the_report_page_and_sees_who_answers(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, geolocation={"longitude": 118.77985,
                                  "latitude": 32.04065}, permissions=["geolocation"], locale="zh-CN")
    page = context.new_page()
    errors = watch(page)
    page.goto(server + "report")
    assert page.locator("h1").inner_text() == "上报城市管理问题"
    page.click("#zm-locate")
    expect(page.locator("#zm-lon")).not_to_have_value("")
    assert abs(float(page.input_value("#zm-lon")) - 118.77985) < 1e-6
    page.select_option("#zm-category", "06036")
    page.fill("#zm-description", EVIL)
    page.fill("#zm-contact", "13700000000")
    page.set_input_files("#zm-photo", files=[{"name": "p.jpg", "mimeType": "image/jpeg",
                                              "buffer": b"\xff\xd8\xff\xe0" + b"\x00" * 512}])
    page.click("#zm-send")
    result = page.locator("#zm-result.ok")
    result.wait_for(timeout=15000)
    text = result.inner_text()
    assert "责任单位" in text and "案卷号" in text and "待核实" in text and EVIL not in text
    pid = result.get_attribute("data-problem-id")
    assert pid in text and page.evaluate("window.__zm_xss") is None and errors == []
    page.click("#zm-send")  # the same report again: linked to the open case, and said so
    expect(page.locator("#zm-result")).to_contain_text("重复")
    expect(page.locator("#zm-result")).to_contain_text(pid)
    bad = context.new_page()
    bad.goto(server + "report?lang=en")
    bad.fill("#zm-lon", "1000")
    bad.fill("#zm-lat", "32")
    bad.click("#zm-send")
    bad.locator("#zm-result.err").wait_for(timeout=15000)
    assert "longitude" in bad.locator("#zm-result").inner_text()
    context.close()


def test_a_dispatcher_files_and_dispatches_from_the_case_desk(browser, server, nanjing_gpkg):
    import json

    from layers.users import add_user, issue_token

    with open_store(nanjing_gpkg) as s:
        add_user(s, "desk-disp", "dispatcher", "desk-dispatcher-1")
        add_user(s, "desk-insp", "inspector", "desk-inspector-1")
        disp, insp = issue_token(s, "desk-disp"), issue_token(s, "desk-insp")
    body = json.dumps({"lon": 118.7825, "lat": 32.0425, "category": "09006", "description": EVIL}).encode()
    req = urllib.request.Request(server + "api/problems", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {insp}"})
    pid = json.loads(urllib.request.urlopen(req, timeout=30).read())["problem_id"]
    page = browser.new_page()
    errors = watch(page)
    page.goto(server + "cases")
    page.fill("#zm-token", disp)
    page.click("#zm-load")
    row = page.locator(f"tr[data-id='{pid}']")
    row.wait_for(timeout=10000)
    assert "已上报" in row.inner_text()
    row.click()
    page.locator("#zm-actions button[data-action='file']").click()
    page.locator("#zm-actions button[data-action='dispatch']").wait_for(timeout=10000)
    page.fill("#zm-note", "请当日处理")
    page.locator("#zm-actions button[data-action='dispatch']").click()
    expect(page.locator("#zm-steps tr")).to_have_count(3)
    steps = page.locator("#zm-steps").inner_text()
    assert "立案" in steps and "派遣" in steps and "请当日处理" in steps and "desk-disp" in steps
    assert EVIL in page.locator("#zm-head").inner_text() and page.evaluate("window.__zm_xss") is None
    assert page.locator("#zm-actions button").count() == 0  # a dispatcher has no move on a dispatched case
    page.fill("#zm-token", "zm_wrong")
    page.click("#zm-load")
    expect(page.locator("#zm-error")).to_contain_text("token")
    assert errors == []
    page.close()
