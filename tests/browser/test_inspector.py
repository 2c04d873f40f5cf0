"""The inspector's and the unit's pages in real headless Chromium against the real server
(gunicorn), on real Nanjing blocks with generated zones and cases in every light: an inspector
filters by date and category name, opens today's list from a located phone, opens a case,
sees its photo and moves it; a unit user sees only its own zones and cases and feeds back
from a phone with photos; no page asks any host but the server; the demo city's first view
stays under its byte budget; and the page's GCJ-02 shift is geo/crs.py's to the millimetre."""

import datetime as dt
import io
import json
import shutil
import urllib.request
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from geo.crs import gcj02_to_wgs84, wgs84_to_gcj02
from layers import cases, zones
from layers.cases import Rules
from layers.store import open_store
from layers.users import User, add_user
from tests.browser.conftest import PHONE, watch

BBOX = (118.778, 32.040, 118.782, 32.043)  # a few blocks around Xinjiekou
PASSWORD = "inspect-pass-42"
INSP, DISP = User("insp1", "inspector"), User("disp1", "dispatcher")
CITY = dt.timezone(dt.timedelta(hours=8))
FIRST_VIEW_BUDGET = 1_500_000  # bytes, as transferred: the budget for a city of 100k zones


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (40, 160, 60)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def city(nanjing_gpkg):
    """Zones on BBOX; users; cases: two of shop1's (red, overdue for weeks; yellow, at 90 % of
    its two clock hours), one of another unit (red), an old one, and a public report with a
    photo (verifying)."""
    now = dt.datetime.now(dt.UTC)
    rules = Rules()
    with open_store(nanjing_gpkg) as s:
        zones.generate(s, "beijing-2022", bbox=BBOX, valid_from=dt.date(2026, 1, 1))
        fr = zones.current(s.read("zones")).query("kind == 'frontage'").sort_values("code")
        units = list(dict.fromkeys(fr["primary_unit"]))
        mine, other = units[0], units[1]
        for name, role, unit in [("insp1", "inspector", None), ("disp1", "dispatcher", None),
                                 ("shop1", "unit", mine), ("shop2", "unit", other), ("plan1", "planner", None)]:
            add_user(s, name, role, PASSWORD, unit_id=unit)

        def spot(unit, k=0):  # a point in the unit's k-th frontage zone (round the ones it has)
            own = fr[fr["primary_unit"] == unit].geometry
            p = own.iloc[k % len(own)].representative_point()
            return p.x, p.y

        def case(where, category, at, dispatch=True):
            pid = cases.report_one(s, {"lon": where[0], "lat": where[1], "category": category}, INSP, "api",
                                   now=at, rules=rules)["problem_id"]
            if dispatch:
                cases.transition(s, pid, "file", DISP, now=at, rules=rules)
                cases.transition(s, pid, "dispatch", DISP, now=at, rules=rules)
            return pid

        hours = rules.disposal("06029")  # 露天烧烤: two clock hours
        assert hours.unit == "hours"
        red = case(spot(mine), "06012", now - dt.timedelta(days=20))
        yellow = case(spot(mine, -1), "06029", now - dt.timedelta(hours=0.9 * hours.amount))
        theirs = case(spot(other), "06012", now - dt.timedelta(days=21))  # a day apart: no duplicate
        old = case(spot(other, -1), "06010", now - dt.timedelta(days=40), dispatch=False)
    return {"db": nanjing_gpkg, "mine": mine, "other": other, "red": red, "yellow": yellow, "theirs": theirs,
            "old": old, "spot": spot}


@pytest.fixture(scope="module")
def server(city, serve):
    url = serve(city["db"])
    # a public report with a photo, through the real server, as the phone page sends it
    lon, lat = city["spot"](city["other"], 1)
    boundary = "zmtest"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in (("lon", lon), ("lat", lat), ("category", "06010"), ("description", "路口垃圾"))]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="p.jpg"\r\n'
                 "Content-Type: image/jpeg\r\n\r\n".encode() + _jpeg() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "api/problems", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    city["public"] = json.loads(urllib.request.urlopen(req, timeout=30).read())["problem_id"]
    return url


def sign_in(page, server, name, next_=None):
    page.goto(server + "login" + (f"?next={quote(next_)}" if next_ else ""))
    page.fill("#zm-name", name)
    page.fill("#zm-password", PASSWORD)
    page.click("#zm-submit")
    page.wait_for_load_state()


def loads(page) -> int:
    return int(page.locator("body").get_attribute("data-zm-loads") or 0)


def wait_load(page, before: int):
    expect(page.locator("body")).not_to_have_attribute("data-zm-loads", str(before), timeout=30000)


def city_day(days_ago: int) -> str:
    return (dt.datetime.now(CITY) - dt.timedelta(days=days_ago)).date().isoformat()


def test_an_inspector_filters_opens_todays_list_sees_a_photo_and_moves_a_case(browser, server, city, artefacts):
    red_at = city["spot"](city["mine"])
    context = browser.new_context(viewport={"width": 1366, "height": 800}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", permissions=["geolocation"],
                                  geolocation={"longitude": red_at[0] + 0.00005, "latitude": red_at[1]})  # ~5 m
    page = context.new_page()
    errors = watch(page)
    sign_in(page, server, "insp1")
    expect(page).to_have_url(server + "inspector")  # an inspector's page after signing in
    expect(page.locator("body")).to_have_attribute("data-zm-loads", "1", timeout=30000)
    rows = page.locator("#zm-rows tr")
    expect(rows).to_have_count(5)
    # the last week's 暴露垃圾 (by a part of its name): the public report, not the 40-day-old one
    before = loads(page)
    page.fill("#zm-since", city_day(7))
    page.fill("#zm-until", city_day(0))
    page.fill("#zm-category", "暴露")
    page.click("#zm-apply")
    wait_load(page, before)
    expect(rows).to_have_count(1)
    expect(page.locator(f"#zm-rows tr[data-id='{city['public']}']")).to_be_visible()
    page.fill("#zm-category", "不存在的类别")
    page.click("#zm-apply")
    expect(page.locator("#zm-msg")).to_contain_text("不存在的类别")
    before = loads(page)
    for box in ("#zm-since", "#zm-until", "#zm-category"):
        page.fill(box, "")
    page.click("#zm-apply")
    wait_load(page, before)
    # today's list: the red and yellow cases, nearest the phone first
    with open_store(city["db"]) as s:  # every red or yellow case, as the store tells them now
        due = set(cases.find(s, INSP, light="yellow,red")[0]["problem_id"])
    assert {city["red"], city["yellow"], city["theirs"]} <= due and city["public"] not in due
    page.click("#zm-today-open")
    items = page.locator("#zm-today-list li[data-id]")
    expect(items).to_have_count(len(due), timeout=15000)
    ids = [items.nth(i).get_attribute("data-id") for i in range(len(due))]
    assert set(ids) == due and ids[0] == city["red"]
    metres = [int(items.nth(i).get_attribute("data-m")) for i in range(len(due))]
    assert metres == sorted(metres) and metres[0] < 10
    expect(items.first).to_contain_text("m，")
    assert items.first.locator("a").get_attribute("href").startswith("geo:")
    expect(page.locator("#zm-today-from")).to_contain_text("当前位置")
    page.screenshot(path=str(artefacts / "inspector-today.png"))
    # the public report: its photo, then the inspector's move (核实立案)
    page.locator(f"#zm-rows tr[data-id='{city['public']}']").click()
    panel = page.locator("#zm-case")
    expect(panel).to_have_attribute("data-id", city["public"])
    thumb = panel.locator("#zm-case-photos img")
    expect(thumb).to_have_count(1)
    expect(thumb).to_have_js_property("complete", True)
    assert thumb.evaluate("img => img.naturalWidth") == 320
    page.fill("#zm-note", "现场核实属实")
    panel.locator("button[data-action='verify']").click()
    expect(panel).to_have_attribute("data-status", "filed")
    expect(panel.locator("#zm-case-steps")).to_contain_text("现场核实属实")
    # who did each step, in words: the anonymous reporter and the system are named, not ids
    expect(panel.locator("#zm-case-steps tr").first.locator("td").nth(2)).to_have_text("公众（匿名）")
    expect(panel.locator("#zm-case-steps")).not_to_contain_text("anonymous")
    page.screenshot(path=str(artefacts / "inspector-case.png"))
    assert errors == []
    context.close()


def test_on_a_city_sized_view_the_cases_are_counted_per_cell(browser, serve, city, monkeypatch):
    """Past ZONEMAP_MAP_POINTS_MAX cases in view the page draws counts per cell, with their
    worst light, and a tap on a cell zooms in."""
    monkeypatch.setenv("ZONEMAP_MAP_POINTS_MAX", "2")  # as if this were a city's million reports
    url = serve(city["db"])
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    page = context.new_page()
    errors = watch(page)
    sign_in(page, url, "insp1")
    expect(page.locator("body")).to_have_attribute("data-zm-mode", "cells", timeout=30000)
    counted = page.locator(".leaflet-marker-pane .zm-cluster, #zm-map .zm-cluster")
    expect(counted.first).to_be_visible()
    total = page.evaluate("""() => { const m = window.zmInspector.map;
        return fetch('api/cases?per_page=1&bbox=' + ZMMap.bbox(m)).then(r => r.json()).then(b => b.total); }""")
    numbers = [int(t) for t in counted.all_inner_texts()]
    assert sum(numbers) == total >= 4 and len(numbers) < total  # every case of the view, in fewer cells
    assert "red" in " ".join(c.get_attribute("class") for c in counted.all())
    zoom = page.evaluate("window.zmInspector.map.getZoom()")
    counted.first.click()
    page.wait_for_function(f"() => window.zmInspector.map.getZoom() > {zoom}")
    assert errors == []
    context.close()


def test_a_unit_sees_only_its_own_zones_and_cases_and_feeds_back_with_photos(browser, server, city, artefacts,
                                                                             tmp_path):
    with open_store(city["db"]) as s:
        z = zones.current(s.read("zones"))
        own = set(z.loc[(z["primary_unit"] == city["mine"]) | (z["co_unit"] == city["mine"]), "code"])
    context = browser.new_context(**PHONE, timezone_id="Asia/Shanghai")
    page = context.new_page()
    errors = watch(page)
    sign_in(page, server, "shop1")
    expect(page).to_have_url(server + "unit")
    expect(page.locator("body")).to_have_attribute("data-zm-loaded", "1", timeout=30000)
    shown = {li.get_attribute("data-code") for li in page.locator("#zm-zones li[data-code]").all()}
    assert shown == own and len(own) >= 1
    assert page.evaluate("() => { let n = 0; window.zmUnit.map.eachLayer(l => { if (l.feature) n++; }); return n; }") \
        >= len(own)
    expect(page.locator("#zm-zones")).to_contain_text("四至")
    rows = page.locator("#zm-rows tr")
    expect(rows).to_have_count(2)
    assert {rows.nth(i).get_attribute("data-id") for i in range(2)} == {city["red"], city["yellow"]}
    page.locator(f"#zm-rows tr[data-id='{city['red']}']").click()
    panel = page.locator("#zm-case")
    panel.locator("button[data-action='accept']").click()
    expect(panel).to_have_attribute("data-status", "processing")
    before, after = tmp_path / "before.jpg", tmp_path / "after.jpg"
    before.write_bytes(_jpeg())
    after.write_bytes(_jpeg())
    page.set_input_files("#zm-photo-before", str(before))
    page.set_input_files("#zm-photo-after", str(after))
    page.fill("#zm-note", "已清扫干净")
    panel.locator("button[data-action='feed_back']").click()
    expect(panel).to_have_attribute("data-status", "fed_back")
    pics = panel.locator("#zm-case-photos a")
    expect(pics).to_have_count(2)
    assert [pics.nth(i).get_attribute("data-kind") for i in range(2)] == ["before", "after"]
    expect(pics.first.locator("img")).to_have_js_property("complete", True)
    assert pics.first.locator("img").evaluate("img => img.naturalWidth") > 0
    panel.scroll_into_view_if_needed()
    page.screenshot(path=str(artefacts / "unit-phone.png"), full_page=True)
    # another unit's case is nowhere for it, not even by its address
    answer = context.request.get(server + f"api/cases/{city['theirs']}")
    assert answer.status == 404
    assert errors == []
    context.close()


PAGES = {"insp1": ["", "report", "inspector", "cases", "field"], "shop1": ["unit", "cases"],
         "plan1": ["planner", "units"], None: ["", "report", "login"]}


def test_no_page_asks_any_host_but_the_server(browser, server):
    for who, paths in PAGES.items():
        context = browser.new_context(viewport={"width": 1366, "height": 800})
        page = context.new_page()
        errors, hosts = watch(page), set()
        page.on("request", lambda r, seen=hosts: seen.add(r.url.split("/")[2]) if r.url.startswith("http") else None)
        if who:
            sign_in(page, server, who)
        for path in paths:
            page.goto(server + path)
            page.wait_for_load_state("networkidle")
        assert hosts == {server.split("/")[2]}, (who, hosts)
        assert errors == [], (who, errors)
        context.close()


def test_the_pages_gcj02_shift_is_geo_crs(browser, server):
    """On an AMap basemap the page shifts our points with its own copy of the formula: it must
    be geo/crs.py's, both ways, over the whole country."""
    page = browser.new_page()
    page.goto(server)
    page.wait_for_function("() => window.ZMMap !== undefined")
    rng = np.random.default_rng(11)
    lon, lat = rng.uniform(73.5, 134.5, 300), rng.uniform(18.5, 53.0, 300)
    got = np.array(page.evaluate("(pts) => pts.map(p => ZMMap.wgsToGcj(p[0], p[1]))",
                                 np.column_stack([lon, lat]).tolist()))
    assert np.abs(got - np.column_stack(wgs84_to_gcj02(lon, lat))).max() < 1e-9  # degrees: ~0.1 mm
    assert np.abs(got - np.column_stack([lon, lat])).max() > 1e-3  # it does shift: by hundreds of metres
    back = np.array(page.evaluate("(pts) => pts.map(p => ZMMap.gcjToWgs(p[0], p[1]))", got.tolist()))
    assert np.abs(back - np.column_stack(gcj02_to_wgs84(got[:, 0], got[:, 1]))).max() < 1e-9
    page.close()


def test_the_demo_citys_first_view_stays_under_its_budget(browser, serve, demo_city, tmp_path, artefacts):
    """What scripts/run serves: the map page and everything it loads before anyone moves,
    counted as transferred (gzipped), at a laptop's size."""
    db = str(tmp_path / "demo.gpkg")
    shutil.copy(demo_city[0], db)
    url = serve(db)
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    page = context.new_page()
    errors, sent = watch(page), []
    page.on("requestfinished", lambda r: sent.append((r.url, r.sizes()["responseBodySize"],
                                                      r.sizes()["responseHeadersSize"])))
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-zm-loaded", "1", timeout=30000)
    page.wait_for_load_state("networkidle")
    total = sum(b + h for _, b, h in sent)
    tiles = [u for u, _, _ in sent if "/tiles/" in u]
    page.screenshot(path=str(artefacts / "demo-first-view.png"))
    assert tiles and not any("/api/layers/zones" in u or "/api/layers/buildings" in u for u, _, _ in sent)
    assert total <= FIRST_VIEW_BUDGET, (total, sorted(sent, key=lambda x: -x[1])[:5])
    assert errors == []
    context.close()
