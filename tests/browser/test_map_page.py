"""The older pages in real headless Chromium (Debian's), against `zonemap serve` in its own
process: the map's layers draw, the attribution shows, untrusted names stay text; the report
page and the case desk; and all three on a 390×844 phone under the shared header."""

import datetime as dt
import json
import urllib.request
from zoneinfo import ZoneInfo

import geopandas as gpd
import pytest
import shapely
from playwright.sync_api import expect

from layers.store import open_store
from layers.users import add_user, issue_token
from tests.browser.conftest import PHONE, watch

EVIL = '<img src=x onerror="window.__zm_xss=1">恶意商户'
PASSWORD = "desk-password-1"
CITY = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def server(nanjing_gpkg, serve):
    with open_store(nanjing_gpkg) as s:
        s.append("buildings", gpd.GeoDataFrame(
            {"name": [EVIL]}, geometry=[shapely.box(118.7790, 32.0410, 118.7792, 32.0412)], crs=4326))
        add_user(s, "desk-disp", "dispatcher", PASSWORD)
        add_user(s, "desk-insp", "inspector", PASSWORD)
    return serve(nanjing_gpkg)


def open_map(browser, url, viewport=(1200, 800), at=None, init_script=None):
    """The map page, waited for until every tile of the view is drawn; `at` = (lon, lat, zoom);
    `init_script` runs in the page before its own scripts."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    errors = watch(page)
    if init_script:
        page.add_init_script(init_script)
    page.goto(url)
    page.wait_for_selector("body[data-zm-loaded='1']", timeout=30000)
    if at:
        move(page, *at)
    return page, errors


def move(page, lon, lat, zoom):
    page.evaluate("""([lon, lat, z]) => {
        document.body.removeAttribute("data-zm-loaded");
        window.zmMap.map.setView(ZMMap.toMap(lat, lon), z, {animate: false});
    }""", [lon, lat, zoom])
    page.wait_for_selector("body[data-zm-loaded='1']", timeout=30000)


def click_at(page, lon, lat):
    """A real click (the mouse, on the tile canvas) where (lon, lat) is drawn."""
    x, y = page.evaluate("""([lon, lat]) => {
        const m = window.zmMap.map, p = m.latLngToContainerPoint(ZMMap.toMap(lat, lon));
        const r = m.getContainer().getBoundingClientRect();
        return [r.left + p.x, r.top + p.y];
    }""", [lon, lat])
    page.mouse.click(x, y)


EVIL_AT = (118.7791, 32.0411)  # the middle of the building with the hostile name


def test_layers_draw_as_tiles_with_attribution_and_no_errors(browser, server):
    tiles = []
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors = watch(page)
    page.on("response", lambda r: tiles.append(r.url) if "/tiles/" in r.url else None)
    page.goto(server)
    page.wait_for_selector("body[data-zm-loaded='1']", timeout=30000)
    move(page, *EVIL_AT, 16)
    # roads, buildings, zones and problems come as vector tiles of the view, drawn as SVG (clickable)
    assert {u.split("/tiles/")[1].split("/")[0] for u in tiles} >= {"roads", "buildings", "zones", "problems"}
    assert page.locator(".leaflet-tile-container svg path.leaflet-interactive").count() > 100  # clickable features
    assert not any("/api/layers/zones" in u or "/api/layers/buildings" in u for u in tiles)
    assert "© OpenStreetMap contributors" in page.locator(".leaflet-control-attribution").inner_text()
    assert "建筑物" in page.locator(".leaflet-control-layers").inner_text()
    assert errors == []
    page.close()


def test_untrusted_names_are_shown_as_text_in_popups(browser, server):
    page, errors = open_map(browser, server, at=(*EVIL_AT, 18))
    click_at(page, *EVIL_AT)
    popup = page.locator(".zm-popup")
    popup.wait_for(timeout=5000)
    assert EVIL in popup.inner_text()
    assert popup.locator("img").count() == 0
    assert page.evaluate("window.__zm_xss") is None
    assert errors == []
    page.close()


def test_the_page_says_it_is_drawn_only_once_its_buildings_are(browser, server):
    """A click right after the page says it is drawn reaches the building, even when the
    buildings' tiles come last, well after the rest (a dense block's tile is the slowest to make): the page used to
    wait for zones and problems only, and a tap then landed on an empty map."""
    page, errors = open_map(browser, server, at=(*EVIL_AT, 18), init_script="""(() => {
        const real = window.fetch;  // the buildings' tiles answer 3 s late
        window.fetch = (url, opts) => String(url).includes("tiles/buildings/")
            ? new Promise(done => setTimeout(done, 3000)).then(() => real(url, opts)) : real(url, opts);
    })()""")
    click_at(page, *EVIL_AT)
    popup = page.locator(".zm-popup")
    popup.wait_for(timeout=5000)
    assert EVIL in popup.inner_text()
    assert errors == []
    page.close()


def test_a_reported_problem_shows_on_the_map_with_its_unit_and_its_text_kept_as_text(browser, server):
    import json

    at = (118.77985, 32.04065)
    body = json.dumps({"lon": at[0], "lat": at[1], "category": "06010", "description": EVIL,
                       "contact": "13900000000"}).encode()
    req = urllib.request.Request(server + "api/problems", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
    assert answer["unit_id"] and answer["status"] == "verifying"
    page, errors = open_map(browser, server, at=(*at, 19))
    click_at(page, *at)  # the problem's dot, drawn above the zones: the click opens the case, not the zone
    popup = page.locator(".zm-popup")
    expect(popup).to_contain_text(answer["unit_name"], timeout=5000)  # fetched by the case's id
    text = popup.inner_text()
    assert answer["problem_id"] in text and answer["unit_name"] in text and "待核实" in text
    assert "verifying" not in text and answer["unit_id"] not in text  # words, never codes or ids
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


def in_city_time(iso: str) -> str:
    """How the report page should show a deadline: the instant in the city's time, for people."""
    t = dt.datetime.fromisoformat(iso).astimezone(CITY)
    day = f"{t.month}月{t.day}日 {t:%H:%M}"
    return day if t.year == dt.date.today().year else f"{t.year}年{day}"


def sign_in(page, server, name, next_):
    page.goto(server + "login?next=" + next_)
    page.fill("#zm-name", name)
    page.fill("#zm-password", PASSWORD)
    page.click("#zm-submit")


def test_a_phone_reports_from_the_report_page_and_sees_who_answers(browser, server, artefacts):
    # a phone set to another time zone: the deadline must still be the city's
    context = browser.new_context(**PHONE, timezone_id="Europe/London", permissions=["geolocation"],
                                  geolocation={"longitude": 118.77985, "latitude": 32.04065})
    page = context.new_page()
    errors = watch(page)
    page.goto(server + "report")
    assert page.locator("h1").inner_text() == "上报城市管理问题"
    expect(page.locator("#zm-login")).to_be_visible()  # the public reports signed out
    page.click("#zm-locate")
    expect(page.locator("#zm-lon")).not_to_have_value("")
    assert abs(float(page.input_value("#zm-lon")) - 118.77985) < 1e-6
    page.select_option("#zm-category", "06036")
    page.fill("#zm-description", EVIL)
    page.fill("#zm-contact", "13700000000")
    page.set_input_files("#zm-photo", files=[{"name": "p.jpg", "mimeType": "image/jpeg",
                                              "buffer": b"\xff\xd8\xff\xe0" + b"\x00" * 512}])
    with page.expect_response("**/api/problems") as sent:
        page.click("#zm-send")  # the button is at the foot of the form, below the fold
    answer = sent.value.json()
    result = page.locator("#zm-result.ok")
    expect(result).to_be_in_viewport(ratio=1)  # the answer is on screen without scrolling
    text = result.inner_text()
    assert "责任单位" in text and "案卷号" in text and "待核实" in text and EVIL not in text
    pid = result.get_attribute("data-problem-id")
    assert pid == answer["problem_id"] and pid in text and page.evaluate("window.__zm_xss") is None
    assert answer["stage_deadline"].endswith("+08:00")
    expect(page.locator("#zm-deadline")).to_have_text(in_city_time(answer["stage_deadline"]))
    page.screenshot(path=str(artefacts / "report-phone.png"))
    page.click("#zm-send")  # the same report again: linked to the open case, and said so
    expect(page.locator("#zm-result")).to_contain_text("重复")
    expect(page.locator("#zm-result")).to_contain_text(pid)
    assert errors == []
    for lang, words in (("zh", "经纬度"), ("en", "longitude")):  # a refusal in the page's language
        bad = context.new_page()
        bad.goto(server + f"report?lang={lang}")
        bad.fill("#zm-lon", "1000")
        bad.fill("#zm-lat", "32")
        bad.click("#zm-send")
        expect(bad.locator("#zm-result.err .zm-headline")).to_contain_text(words)
        expect(bad.locator("#zm-result")).to_be_in_viewport()
    context.close()


def test_a_signed_in_grid_worker_reports_with_the_session(browser, server):
    context = browser.new_context(**PHONE)
    page = context.new_page()
    errors = watch(page)
    sign_in(page, server, "desk-insp", "/report")
    expect(page.locator("#zm-user")).to_have_text("desk-insp")
    expect(page.locator("#zm-as")).to_contain_text("desk-insp")
    page.fill("#zm-lon", "118.7870")  # far from the case desk test's report: not its duplicate
    page.fill("#zm-lat", "32.0470")
    page.select_option("#zm-category", "09006")
    page.click("#zm-send")
    expect(page.locator("#zm-result.ok")).to_be_in_viewport()
    # the session's user reported it: an inspector's report needs no verifying (the public's does)
    expect(page.locator("#zm-result")).to_contain_text("已上报")
    assert errors == []
    context.close()


def test_a_dispatcher_signs_in_and_files_and_dispatches_from_the_case_desk(browser, server, nanjing_gpkg,
                                                                          artefacts):
    with open_store(nanjing_gpkg) as s:
        insp = issue_token(s, "desk-insp")
    body = json.dumps({"lon": 118.7825, "lat": 32.0425, "category": "09006", "description": EVIL}).encode()
    req = urllib.request.Request(server + "api/problems", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {insp}"})
    pid = json.loads(urllib.request.urlopen(req, timeout=30).read())["problem_id"]
    context = browser.new_context(**PHONE)
    page = context.new_page()
    errors = watch(page)
    page.goto(server + "cases")  # signed out: to the sign-in form, and back here after it
    assert page.url.split("?")[0].endswith("/login") and "next=%2Fcases" in page.url
    page.fill("#zm-name", "desk-disp")
    page.fill("#zm-password", PASSWORD)
    page.click("#zm-submit")
    expect(page).to_have_url(server + "cases")
    expect(page.locator("#zm-role")).to_have_text("派遣员")
    row = page.locator(f"tr[data-id='{pid}']")
    expect(row).to_contain_text("已上报", timeout=10000)
    assert page.evaluate("Object.keys(localStorage)") == []  # nothing kept in the phone's browser
    row.click()
    page.locator("#zm-case-actions button[data-action='file']").click()
    page.locator("#zm-case-actions button[data-action='dispatch']").wait_for(timeout=10000)
    page.fill("#zm-note", "请当日处理")
    page.locator("#zm-case-actions button[data-action='dispatch']").click()
    expect(page.locator("#zm-case-steps tr")).to_have_count(3)
    page.screenshot(path=str(artefacts / "cases-phone.png"), full_page=True)
    steps = page.locator("#zm-case-steps").inner_text()
    assert "立案" in steps and "派遣" in steps and "请当日处理" in steps and "desk-disp" in steps
    assert EVIL in page.locator("#zm-case-fields").inner_text() and page.evaluate("window.__zm_xss") is None
    assert page.locator("#zm-case-actions button").count() == 0  # a dispatcher has no move on a dispatched case
    page.click("#zm-logout")
    page.goto(server + "cases")
    assert page.url.split("?")[0].endswith("/login")
    assert errors == []
    context.close()


def test_on_a_phone_the_map_has_the_header_a_folded_layer_list_a_legend_and_a_metric_scale(
        browser, server, artefacts):
    context = browser.new_context(**PHONE)
    page = context.new_page()
    errors = watch(page)
    page.goto(server)
    expect(page.locator("body")).to_have_attribute("data-zm-loaded", "1", timeout=30000)
    assert "leaflet-control-layers-expanded" not in page.locator(".leaflet-control-layers").get_attribute("class")
    expect(page.locator("#zm-legend")).to_contain_text("门前三包")
    expect(page.locator(".leaflet-control-scale-line")).to_have_count(1)  # metres, no feet line
    assert "ft" not in page.locator(".leaflet-control-scale").inner_text()
    targets = page.locator(".zm-header a, .zm-header button, .leaflet-control-layers-toggle, "
                           ".leaflet-control-zoom a, #zm-legend summary")
    assert targets.count() >= 7
    for i in range(targets.count()):
        t = targets.nth(i)
        expect(t).to_be_in_viewport()
        box = t.bounding_box()
        assert box["width"] >= 44 and box["height"] >= 44, (t.inner_text(), box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (t.inner_text(), box)
        # nothing covers it: what a tap at its centre reaches is the target itself
        assert page.evaluate("([el, x, y]) => el.contains(document.elementFromPoint(x, y))",
                             [t.element_handle(), box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
    # a popup opens inside the map, clear of the header and of the layer button
    # (a popup stays open while the map pans it into view: the layers reload after it closes)
    page.evaluate("""() => {
        document.body.removeAttribute("data-zm-loaded");
        window.zmMap.map.setView(ZMMap.toMap(32.0411, 118.7791), 17, {animate: false});
    }""")
    expect(page.locator("body")).to_have_attribute("data-zm-loaded", "1", timeout=30000)
    click_at(page, *EVIL_AT)
    popup = page.locator(".leaflet-popup")
    expect(popup).to_have_css("opacity", "1")  # faded in
    p, header = popup.bounding_box(), page.locator(".zm-header").bounding_box()
    toggle = page.locator(".leaflet-control-layers-toggle").bounding_box()
    assert p["y"] >= header["y"] + header["height"]
    assert p["y"] >= toggle["y"] + toggle["height"] or p["x"] + p["width"] <= toggle["x"]
    page.screenshot(path=str(artefacts / "map-phone.png"))
    page.click("#zm-lang")
    expect(page.locator("#zm-legend")).to_contain_text("Frontage")
    assert errors == []
    context.close()
