"""The inspector's phone page /field in real headless Chromium against the real server, on a
390×844 phone: an inspector signs in, records a short patrol track from a mocked GPS (the
browser context's geolocation, moved between samples) and sends it, and the track is in the
store; fills an inspection of the zone nearest to them and it is stored with the sheet's
total; a unit user is refused, the signed-out are sent to sign in; no console errors."""

import datetime as dt
import re
import tomllib
from urllib.parse import quote

import pytest
import shapely
from playwright.sync_api import expect

from layers import zones
from layers.store import open_store
from layers.users import add_user
from tests.browser.conftest import PHONE, watch
from tests.conftest import ROOT

BBOX = (118.778, 32.040, 118.782, 32.043)  # a few blocks around Xinjiekou
PASSWORD = "field-pass-42"
WALK = [(118.7795, 32.0412), (118.7799, 32.0413), (118.7803, 32.0414), (118.7806, 32.0416)]  # ~110 m
SCORES = (90, 85, 70, 60)  # in the sheet's item order


@pytest.fixture(scope="module")
def city(nanjing_gpkg):
    """The real Nanjing extract with zones generated on a few blocks, an inspector and a unit user."""
    with open_store(nanjing_gpkg) as s:
        zones.generate(s, "beijing-2022", bbox=BBOX, valid_from=dt.date(2026, 1, 1))
        frontage = zones.current(s.read("zones")).query("kind == 'frontage'").sort_values("code").iloc[0]
        add_user(s, "insp1", "inspector", PASSWORD)
        add_user(s, "shop1", "unit", PASSWORD, unit_id=frontage["primary_unit"])
    spot = frontage.geometry.representative_point()
    return {"db": nanjing_gpkg, "zone": frontage["code"], "spot": (spot.x, spot.y)}


@pytest.fixture(scope="module")
def server(city, serve):
    return serve(city["db"])


def _phone(browser, lon, lat):
    """A phone context that lets the page locate it at lon/lat."""
    context = browser.new_context(**PHONE, geolocation={"longitude": lon, "latitude": lat},
                                  permissions=["geolocation"])
    page = context.new_page()
    return context, page, watch(page)


def _sign_in(page, server, name):
    page.goto(server + "login?next=" + quote("/field"))
    page.fill("#zm-name", name)
    page.fill("#zm-password", PASSWORD)
    page.click("#zm-submit")
    page.wait_for_load_state()


def _sheet() -> dict:
    return tomllib.loads((ROOT / "layers" / "rules" / "inspection.toml").read_text("utf-8"))


def test_an_inspector_records_a_track_and_an_inspection_of_the_nearest_zone(browser, server, city, artefacts):
    context, page, errors = _phone(browser, *WALK[0])
    _sign_in(page, server, "insp1")
    expect(page).to_have_url(server + "field")
    expect(page.locator("h1")).to_have_text("巡查与检查")
    sheet = _sheet()
    for item in sheet["items"]:  # the form is the configured sheet
        expect(page.locator(f'.zm-score[data-item="{item["id"]}"]')).to_have_count(1)
        assert item["name"] in page.locator("#zm-inspection").inner_text()

    page.click("#zm-track-start")
    count = page.locator("#zm-track-count")
    expect(count).to_have_attribute("data-points", "1")
    for n, (lon, lat) in enumerate(WALK[1:], start=2):  # walk: the phone reports each new position
        context.set_geolocation({"longitude": lon, "latitude": lat})
        expect(count).to_have_attribute("data-points", str(n))
    page.click("#zm-track-stop")
    expect(page.locator("#zm-track-msg")).to_have_attribute("data-sent", str(len(WALK)))
    expect(page.locator("#zm-track-msg")).to_contain_text("轨迹已上传")
    expect(page.locator("#zm-track-retry")).to_be_hidden()  # nothing left to send again
    with open_store(city["db"]) as s:
        tracks = s.read("patrols")
    assert len(tracks) == 1 and tracks["worker"].iloc[0] == "insp1" and tracks["points"].iloc[0] == len(WALK)
    coords = shapely.get_coordinates(tracks.geometry.iloc[0])  # stored as a (multi)line
    assert [tuple(round(float(v), 6) for v in c) for c in coords] == WALK
    assert 90 < tracks["length_m"].iloc[0] < 130
    assert tracks["started_at"].iloc[0] <= tracks["ended_at"].iloc[0]

    # the inspection: stand inside a zone, ask for the nearest zone, score every item
    context.set_geolocation({"longitude": city["spot"][0], "latitude": city["spot"][1]})
    page.click("#zm-nearest")
    expect(page.locator("#zm-zone")).to_have_value(city["zone"])
    expect(page.locator("#zm-zone-info")).to_contain_text(city["zone"])
    for item, score in zip(sheet["items"], SCORES):
        page.fill(f'.zm-score[data-item="{item["id"]}"]', str(score))
    page.fill("#zm-remarks", "门前有<b>杂物</b>")
    want = sum(i["weight"] * v for i, v in zip(sheet["items"], SCORES)) / sum(i["weight"] for i in sheet["items"])
    passed = want >= sheet["pass_mark"]
    expect(page.locator("#zm-total")).to_contain_text(f"总分 {want:g}")
    page.screenshot(path=str(artefacts / "field-phone.png"), full_page=True)
    page.click("#zm-inspect-send")
    msg = page.locator("#zm-inspect-msg")
    expect(msg).to_have_attribute("data-inspection", re.compile(r"\w+"))
    expect(msg).to_contain_text(f"总分 {want:g}，{'合格' if passed else '不合格'}")
    with open_store(city["db"]) as s:
        rows = s.read("inspections")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["zone_code"] == city["zone"] and row["inspector"] == "insp1"
    assert row["total"] == pytest.approx(want) and bool(row["passed"]) == passed
    assert row["remarks"] == "门前有<b>杂物</b>" and row["inspection_id"] == msg.get_attribute("data-inspection")
    assert errors == []
    context.close()


def test_the_page_speaks_english_and_fits_a_phone(browser, server, artefacts):
    context, page, errors = _phone(browser, *WALK[0])
    _sign_in(page, server, "insp1")
    page.goto(server + "field?lang=en")
    expect(page.locator("h1")).to_have_text("Patrols and inspections")
    expect(page.locator("#zm-track-start")).to_have_text("Start patrol")
    expect(page.locator("#zm-field")).to_have_attribute("aria-current", "page")  # the header leads here
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone
    for button in page.locator("main button").all():
        if button.is_visible():
            assert button.bounding_box()["height"] >= 44
    page.screenshot(path=str(artefacts / "field-phone-en.png"), full_page=True)
    assert errors == []
    context.close()


def test_a_unit_user_is_refused_and_the_signed_out_are_sent_to_sign_in(browser, server):
    context, page, errors = _phone(browser, *WALK[0])
    answer = page.goto(server + "field")
    assert "/login" in page.url and "next=%2Ffield" in page.url and answer.status == 200
    _sign_in(page, server, "shop1")
    answer = page.goto(server + "field")
    assert answer.status == 403
    expect(page.locator("#zm-error")).to_contain_text("inspectors")
    assert page.locator("#zm-track-start").count() == 0
    assert errors == []
    context.close()

