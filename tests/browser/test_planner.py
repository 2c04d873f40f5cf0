"""The planner's workspace in real headless Chromium against the real gunicorn server
(`zonemap serve` in its own process) on a few real Nanjing blocks with generated zones:
sign in, reassign, draw, reshape into a neighbour (trimmed, previewed), a stale save refused
with who and when, restore, the units page, a unit user refused, hostile unit names kept as
text everywhere, the phone layout, and Chinese drawn with a real CJK font. Screenshots of
every page go to $ZONEMAP_ARTIFACTS (or the test's tmp dir)."""

import datetime as dt
import json
import re
import urllib.request
from urllib.parse import quote

import geopandas as gpd
import numpy as np
import pytest
import shapely
from playwright.sync_api import expect

from geo.crs import metric_crs
from layers import zones
from layers.importer import import_file
from layers.store import open_store
from layers.users import add_user, issue_token
from tests.browser.conftest import watch

BBOX = (118.778, 32.040, 118.782, 32.043)  # a few blocks around Xinjiekou
PASSWORD = "planner-pass-42"
EVIL = '<img src=x onerror="window.__zm_xss=1;alert(1)">恶意商户'
CITY_TZ = dt.timezone(dt.timedelta(hours=8))  # Asia/Shanghai has no summer time


@pytest.fixture(scope="module")
def city(shared_data, tmp_path_factory):
    """A GeoPackage with the buildings and roads of BBOX, zones generated from them, two
    planners, a unit user and a planner's API token."""
    tmp = tmp_path_factory.mktemp("planner")
    db = str(tmp / "city.gpkg")
    src = shared_data / "nanjing_xinjiekou_osm" / "nanjing_xinjiekou_osm.gpkg"
    with open_store(db) as s:
        for layer in ("buildings", "roads"):
            path = tmp / f"{layer}.gpkg"
            gpd.read_file(src, layer=layer, bbox=BBOX).to_file(path, layer=layer)
            import_file(s, path, layer)
        zones.generate(s, "beijing-2022", bbox=BBOX, valid_from=dt.date(2026, 1, 1))
        some_unit = in_force(s).query("kind == 'frontage'")["primary_unit"].iloc[0]
        add_user(s, "plan1", "planner", PASSWORD)
        add_user(s, "plan2", "planner", PASSWORD)
        add_user(s, "shop1", "unit", PASSWORD, unit_id=some_unit)
        token = issue_token(s, "plan1")
    return {"db": db, "token": token}


def in_force(store):
    return zones.current(store.read("zones"))


def zone(db, code):
    with open_store(db) as s:
        z = in_force(s)
    return z[z["code"] == code].iloc[0]


def unit_name(db, unit_id):
    with open_store(db) as s:
        return s.read("units", where={"unit_id": unit_id})["name"].iloc[0]


@pytest.fixture(scope="module")
def server(city, serve):
    return serve(city["db"])


def api_post(server, token, path, body):
    req = urllib.request.Request(server + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


class Session:
    """One person in their own browser context, signed in; `errors` collects script and
    console errors, `dialogs` any alert a hostile name managed to raise."""

    def __init__(self, chromium, server, name, **context):
        self.server = server
        self.context = chromium.new_context(locale="zh-CN", **{"viewport": {"width": 1280, "height": 860}, **context})
        self.page = self.context.new_page()
        self.errors = watch(self.page)
        self.dialogs = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(server + "login?next=" + quote("/planner"))
        self.page.fill("#zm-name", name)
        self.page.fill("#zm-password", PASSWORD)
        self.page.click("#zm-submit")
        self.page.wait_for_load_state()

    def planner(self, query=""):
        self.page.goto(self.server + "planner" + query)
        expect(self.page.locator("body")).to_have_attribute("data-zm-loaded", "1", timeout=30000)
        return self.page

    def view(self, lon, lat, zoom=19):
        """Centre the map on a point and wait for its zones."""
        page = self.page
        before = page.locator("body").get_attribute("data-zm-loads")
        page.evaluate("([lon, lat, z]) => window.zmPlanner.map.setView([lat, lon], z, {animate: false})",
                      [lon, lat, zoom])
        expect(page.locator("body")).not_to_have_attribute("data-zm-loads", before or "", timeout=30000)

    def xy(self, lon, lat):
        """Where a point is on the screen."""
        return self.page.evaluate("""([lon, lat]) => {
            const m = window.zmPlanner.map, p = m.latLngToContainerPoint([lat, lon]),
                  r = m.getContainer().getBoundingClientRect();
            return [r.left + p.x, r.top + p.y]; }""", [lon, lat])

    def open_zone(self, code, db):
        """Click the zone on the map, as a planner does, and wait for its panel."""
        point = zone(db, code).geometry.representative_point()
        self.view(point.x, point.y)
        self.page.mouse.click(*self.xy(point.x, point.y))
        expect(self.page.locator("#zm-panel")).to_have_attribute("data-code", code, timeout=15000)

    def pick_unit(self, text, unit_id):
        self.page.fill("#zm-unit-q", text)
        self.page.locator(f"#zm-unit-list button[data-unit-id='{unit_id}']").click()

    def shot(self, artefacts, name):
        self.page.screenshot(path=str(artefacts / f"{name}.png"))

    def close(self):
        assert self.errors == [], self.errors
        assert self.dialogs == [] and self.page.evaluate("window.__zm_xss") is None
        self.context.close()


@pytest.fixture
def planner(browser, server):
    sessions = []

    def open_session(name="plan1", **context):
        sessions.append(Session(browser, server, name, **context))
        return sessions[-1]
    yield open_session
    for s in sessions:
        s.close()


def frontages(db):
    with open_store(db) as s:
        return in_force(s).query("kind == 'frontage'").sort_values("code")


def test_the_login_page_signs_a_planner_in_to_the_planner(browser, server, artefacts):
    page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    errors = watch(page)
    page.goto(server + "login?next=/planner")
    page.screenshot(path=str(artefacts / "login.png"))
    page.fill("#zm-name", "plan1")
    page.fill("#zm-password", "wrong password")
    page.click("#zm-submit")
    expect(page.locator("#zm-error")).to_be_visible()
    page.fill("#zm-name", "plan1")
    page.fill("#zm-password", PASSWORD)
    page.click("#zm-submit")
    page.wait_for_url(re.compile(r"/planner"))
    expect(page.locator("#zm-user")).to_have_text("plan1")
    expect(page.locator("#zm-role")).to_have_text("规划编辑")
    page.click("#zm-logout")
    page.wait_for_load_state()
    assert page.locator("#zm-user").count() == 0
    assert page.goto(server + "planner").url.split("?")[0].endswith("/login")  # signed out: sent to sign in
    assert errors == [], errors
    page.close()


def test_a_planner_reassigns_a_zone_and_after_a_reload_the_panel_shows_the_new_unit(planner, city, artefacts):
    db, fr = city["db"], frontages(city["db"])
    code, old_unit = fr["code"].iloc[0], fr["primary_unit"].iloc[0]
    new_unit = next(u for u in fr["primary_unit"] if u != old_unit)
    new_name = unit_name(db, new_unit)
    p = planner()
    page = p.planner()
    assert page.locator(".leaflet-control-scale-line").count() == 1  # metric only: one line, no feet
    assert re.search(r"\d+ k?m$", page.locator(".leaflet-control-scale-line").inner_text())
    expect(page.locator("#zm-legend")).to_contain_text("门前三包")
    p.open_zone(code, db)
    expect(page.locator("#zm-unit")).to_contain_text(unit_name(db, old_unit))
    assert "frontage" not in page.locator("#zm-fields").inner_text()  # labels, never raw codes
    page.click("#zm-reassign")
    p.pick_unit(new_name[:2], new_unit)
    page.fill("#zm-note", "商户变更")
    page.click("#zm-edit-save")
    expect(page.locator("#zm-msg.ok")).to_contain_text(code)
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-zm-loaded", "1", timeout=30000)
    p.open_zone(code, db)
    expect(page.locator("#zm-unit")).to_contain_text(new_name)
    expect(page.locator("#zm-version")).to_have_text("2")
    page.check("#zm-color-unit", force=True)
    expect(page.locator("#zm-legend")).to_contain_text(new_name)
    page.check("#zm-color-kind", force=True)
    p.view((BBOX[0] + BBOX[2]) / 2, (BBOX[1] + BBOX[3]) / 2, zoom=18)
    p.shot(artefacts, "planner")  # the README's picture
    assert zone(db, code)["primary_unit"] == new_unit


def test_a_zone_drawn_in_a_gap_is_saved(planner, city):
    db = city["db"]
    with open_store(db) as s:
        covered = shapely.union_all(in_force(s).geometry.to_numpy())
    # a square of about 20 m just east of the generated blocks, where no zone is
    for step in range(1, 40):
        w, s_ = BBOX[2] + 0.0001 * step, 32.0415
        square = shapely.box(w, s_, w + 0.0002, s_ + 0.0002)
        if not square.buffer(0.00005).intersects(covered):
            break
    else:
        pytest.skip("no empty place east of the test blocks")
    p = planner()
    page = p.planner()
    c = square.centroid
    p.view(c.x, c.y)
    page.click("#zm-draw")
    corners = list(square.exterior.coords)[:4]
    for lon, lat in [*corners, corners[0]]:  # clicking the first corner again closes the polygon
        page.mouse.click(*p.xy(lon, lat))
    page.select_option("#zm-kind", "unit")
    unit_id = frontages(db)["primary_unit"].iloc[1]
    p.pick_unit(unit_name(db, unit_id)[:2], unit_id)
    page.click("#zm-edit-preview")
    expect(page.locator("#zm-preview")).to_contain_text("不影响相邻责任区")
    page.click("#zm-edit-save")
    expect(page.locator("#zm-msg.ok")).to_be_visible()
    code = page.locator("#zm-panel").get_attribute("data-code")
    z = zone(db, code)
    assert z["kind"] == "unit" and z["primary_unit"] == unit_id
    assert z.geometry.contains(c) and abs(z.geometry.area - square.area) / square.area < 0.05


def neighbours(db):
    """A frontage zone, a neighbour, a vertex of the first on the neighbour's edge (at least
    1.5 m from its other vertices, so its handle is the one grabbed) and a point about 6 m
    inside the neighbour, at least 3 m from every edge (out of snapping's reach), such that
    moving the vertex there overlaps that neighbour only, and leaves it more than a sliver."""
    with open_store(db) as s:
        z = in_force(s)
    crs = metric_crs(*z.geometry.union_all().centroid.coords[0])
    m = z.to_crs(crs).set_index("code")
    edges = shapely.union_all(m.geometry.boundary.to_numpy())
    for a in m[m["kind"] == "frontage"].index:
        shape = m.geometry[a]
        corners = shapely.get_coordinates(shape.boundary)
        for b in m.index[m.geometry.touches(shape) & (m.index != a)]:
            for v in corners:
                point = shapely.Point(v)
                if m.geometry[b].boundary.distance(point) > 0.01 or sorted(
                        shapely.Point(c).distance(point) for c in corners)[2] < 1.5:  # itself twice (closing point)
                    continue
                line = shapely.LineString([point, m.geometry[b].representative_point()])
                for d in (6, 8, 10):
                    t = line.interpolate(min(d, line.length - 0.1))
                    moved = shapely.make_valid(shapely.transform(
                        shape, lambda xy, v=v, t=t: np.where((xy == v).all(axis=1)[:, None], [t.x, t.y], xy)))
                    others = m.geometry.drop([a, b]).intersection(moved).area
                    if (m.geometry[b].contains(t) and edges.distance(t) >= 3 and others.max() < 0.01
                            and moved.intersection(m.geometry[b]).area > 1
                            and m.geometry[b].difference(moved).area > 50):
                        to = gpd.GeoSeries([point, t], crs=crs).to_crs(4326)
                        return a, b, to.iloc[0], to.iloc[1]
    pytest.skip("no pair of neighbouring zones fit for the test")


def test_reshaping_a_zone_into_its_neighbour_trims_the_neighbour_after_a_preview(planner, city, artefacts):
    db = city["db"]
    a, b, vertex, target = neighbours(db)
    a_before, b_before = zone(db, a), zone(db, b)
    p = planner()
    page = p.planner()
    p.open_zone(a, db)
    p.view(vertex.x, vertex.y, zoom=20)
    page.click("#zm-reshape")
    x, y = p.xy(vertex.x, vertex.y)
    # the vertex's handle: Geoman's marker nearest to where the vertex is on the screen
    handles = page.locator(".marker-icon:not(.marker-icon-middle)")
    expect(handles.first).to_be_visible()
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(*p.xy(target.x, target.y), steps=8)
    page.mouse.up()
    page.click("#zm-edit-preview")
    expect(page.locator(f"#zm-trimmed li[data-code='{b}']")).to_be_visible(timeout=20000)
    p.shot(artefacts, "planner-preview")
    assert zone(db, b)["version"] == b_before["version"]  # a preview writes nothing
    page.click("#zm-edit-save")
    expect(page.locator("#zm-msg.ok")).to_contain_text(b)
    a_after, b_after = zone(db, a), zone(db, b)
    assert a_after["version"] == a_before["version"] + 1 and b_after["version"] == b_before["version"] + 1
    # A grew into B's old ground, B gave it up, and they do not overlap
    assert a_after.geometry.intersection(b_before.geometry).area > 0 and b_after.geometry.area < b_before.geometry.area
    assert a_after.geometry.distance(target) < 2e-6  # the vertex went where it was dragged (~0.2 m)
    assert a_after.geometry.intersection(b_after.geometry).area < 1e-12  # never overlapping


def test_a_stale_save_from_a_second_browser_is_refused_naming_who_changed_the_zone(planner, city):
    db, fr = city["db"], frontages(city["db"])
    code = fr["code"].iloc[2]
    units = [u for u in fr["primary_unit"].unique() if u != fr["primary_unit"].iloc[2]]
    first, second = planner("plan1"), planner("plan2")
    for who in (first, second):
        who.planner()
        who.open_zone(code, db)
    first.page.click("#zm-reassign")
    first.pick_unit(unit_name(db, units[0])[:2], units[0])
    first.page.click("#zm-edit-save")
    expect(first.page.locator("#zm-msg.ok")).to_be_visible()
    second.page.click("#zm-reassign")
    second.pick_unit(unit_name(db, units[1])[:2], units[1])
    second.page.click("#zm-edit-save")
    refusal = second.page.locator("#zm-msg.err")
    expect(refusal).to_contain_text("plan1")
    expect(refusal).to_contain_text(dt.datetime.now(CITY_TZ).strftime("%Y-%m-%d"))  # when, in city time
    assert zone(db, code)["primary_unit"] == units[0]  # never overwritten silently


def test_restoring_an_old_version_makes_it_the_new_one(planner, city):
    db, fr = city["db"], frontages(city["db"])
    code, unit0 = fr["code"].iloc[3], fr["primary_unit"].iloc[3]
    other = next(u for u in fr["primary_unit"] if u != unit0)
    v1 = int(zone(db, code)["version"])
    p = planner()
    page = p.planner()
    p.open_zone(code, db)
    page.click("#zm-reassign")
    p.pick_unit(unit_name(db, other)[:2], other)
    page.click("#zm-edit-save")
    expect(page.locator("#zm-version")).to_have_text(str(v1 + 1))
    page.click("#zm-history-open")
    page.locator(f"button[data-restore='{v1}']").click()
    expect(page.locator("#zm-version")).to_have_text(str(v1 + 2))
    expect(page.locator("#zm-unit")).to_contain_text(unit_name(db, unit0))
    expect(page.locator("#zm-history-rows")).to_contain_text("恢复")
    assert zone(db, code)["primary_unit"] == unit0 and int(zone(db, code)["version"]) == v1 + 2


def test_a_unit_user_is_refused_the_planner_pages_and_zone_writes(browser, server, city, artefacts):
    s = Session(browser, server, "shop1")
    code = frontages(city["db"])["code"].iloc[4]
    for path in ("planner", "units"):
        answer = s.page.goto(server + path)
        assert answer.status == 403
        expect(s.page.locator("#zm-error")).to_contain_text("shop1")
    s.shot(artefacts, "forbidden")
    token = s.context.request.get(server + "api/session").json()["csrf_token"]
    write = s.context.request.post(server + f"api/planner/zones/{code}/assign", headers={"X-CSRFToken": token},
                                   data={"unit_id": "FALLBACK-JD", "base_version": 1})
    assert write.status == 403
    s.close()


def test_a_hostile_unit_name_is_text_in_the_units_page_panel_search_and_history(planner, city, artefacts):
    db, fr = city["db"], frontages(city["db"])
    code, unit_id = fr["code"].iloc[5], fr["primary_unit"].iloc[5]
    p = planner()
    page = p.page
    # the units page: rename the unit to a hostile name, as a careless or wicked import might
    page.goto(p.server + "units")
    expect(page.locator("body")).to_have_attribute("data-zm-loaded", "1")
    page.fill("#zm-units-q", unit_id)
    page.click("#zm-units-go")
    page.locator(f"tr[data-unit-id='{unit_id}']").click()
    page.fill("#zm-u-name", EVIL)
    page.fill("#zm-u-person", "张三")
    page.fill("#zm-u-phone", "13800000000")
    page.click("#zm-u-save")
    expect(page.locator("#zm-msg.ok")).to_contain_text(EVIL)
    row = page.locator(f"tr[data-unit-id='{unit_id}']")
    expect(row).to_contain_text(EVIL)
    p.shot(artefacts, "units")
    # the panel (with the person and phone staff see), the search and the history
    page = p.planner()
    p.open_zone(code, db)
    expect(page.locator("#zm-unit")).to_contain_text(EVIL)
    expect(page.locator("#zm-unit")).to_contain_text("13800000000")
    page.fill("#zm-q", "恶意商户")
    page.click("#zm-search-go")
    expect(page.locator("#zm-results")).to_contain_text(EVIL)
    page.click("#zm-reassign")
    page.fill("#zm-unit-q", "恶意")
    expect(page.locator("#zm-unit-list")).to_contain_text(EVIL)
    page.click("#zm-edit-cancel")
    api_post(p.server, city["token"], f"api/planner/zones/{code}/assign",
             {"unit_id": "FALLBACK-JD", "note": EVIL, "base_version": int(zone(db, code)["version"])})
    page.click("#zm-history-open")
    expect(page.locator("#zm-history-rows")).to_contain_text(EVIL)
    assert page.locator("#zm-side img, #zm-units-rows img").count() == 0


def test_units_page_merges_a_placeholder_into_a_real_unit(planner, city):
    db = city["db"]
    with open_store(db) as s:
        units = s.read("units")
        z = in_force(s)
    placeholders = units[units["placeholder"].fillna(False).astype(bool) & units["unit_id"].isin(z["primary_unit"])]
    if placeholders.empty:
        pytest.skip("no placeholder unit answers for a zone here")
    ph = placeholders["unit_id"].iloc[0]
    real = units[~units["placeholder"].fillna(False).astype(bool)].iloc[0]
    p = planner()
    page = p.page
    page.goto(p.server + "units")
    page.check("#zm-placeholder-only")
    row = page.locator(f"tr[data-unit-id='{ph}']")
    row.click()
    page.fill("#zm-merge-q", real["name"][:2])
    page.locator(f"#zm-merge-list button[data-unit-id='{real['unit_id']}']").click()
    page.click("#zm-merge-go")
    expect(page.locator("#zm-msg.ok")).to_contain_text(real["name"])
    with open_store(db) as s:
        now = in_force(s)
    assert ph not in set(now["primary_unit"]) and real["unit_id"] in set(now["primary_unit"])


def test_on_a_phone_the_layer_control_is_collapsed_and_links_are_reachable(planner, artefacts):
    p = planner(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = p.planner()
    assert "leaflet-control-layers-expanded" not in page.locator(".leaflet-control-layers").get_attribute("class")
    targets = page.locator(".zm-header a, .zm-header button, .zm-tools button, .zm-seg label, "
                           ".leaflet-control-layers-toggle, .leaflet-control-zoom a")
    assert targets.count() >= 8
    for i in range(targets.count()):
        t = targets.nth(i)
        box = t.bounding_box()
        assert box["width"] >= 44 and box["height"] >= 44, (t.inner_text(), box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (t.inner_text(), box)
        # nothing covers it: what a tap at its centre reaches is the link itself
        assert page.evaluate("""([el, x, y]) => el.contains(document.elementFromPoint(x, y))""",
                             [t.element_handle(), box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
    p.shot(artefacts, "planner-phone")


def test_chinese_is_drawn_with_a_cjk_font_and_english_is_a_switch_away(planner, artefacts):
    p = planner()
    page = p.planner()
    cdp = p.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "#zm-role"})["nodeId"]
    fonts = [f["familyName"] for f in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]]
    assert any(re.search(r"CJK|Hei|Song|WenQuanYi|Source Han|Noto Sans SC", f) for f in fonts), (
        f"Chinese is drawn with {fonts}: install a CJK font "
        "(apt-get install fonts-noto-cjk; scripts/test does as root)")
    page.click("#zm-lang")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("body")).to_have_attribute("data-zm-loaded", "1", timeout=30000)
    expect(page.locator("#zm-legend")).to_contain_text("Frontage")
    expect(page.locator("#zm-role")).to_have_text("planner")
    p.shot(artefacts, "planner-en")


def test_the_units_page_hands_the_office_its_ledger(planner, city, tmp_path):
    """The office's download: the 台账 from the units page, one row per zone in force, in Chinese."""
    from openpyxl import load_workbook

    s = planner()
    page = s.page
    page.goto(s.server + "units")
    with page.expect_download() as got:
        page.locator("#zm-dl-ledger").click()
    path = tmp_path / got.value.suggested_filename
    got.value.save_as(path)
    assert path.suffix == ".xlsx"
    sheet = load_workbook(path, read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "责任区编号" and "责任单位" in rows[0]
    with open_store(city["db"]) as st:
        assert len(rows) - 1 == len(in_force(st))
