"""What the inspector's map asks of the cases, on both stores: the cases of a view as points
or as counts per cell with their lights (the same cases and lights either way, and the same
lights the case itself shows), the light filter, today's list by distance, and the photos of
a case for those who may see them."""

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from layers import case_map, cases
from layers.cases import Rules
from layers.store import open_store
from layers.users import User

SH = dt.timezone(dt.timedelta(hours=8))
MON = dt.datetime(2026, 11, 30, 9, 0, tzinfo=SH)  # a Monday, 09:00 in Shanghai
INSPECTOR = User("insp1", "inspector")
DISPATCHER = User("disp1", "dispatcher")
SHOP = User("shop1", "unit", "U-A")
OTHER_SHOP = User("shop2", "unit", "U-B")
PUBLIC = User("citizen1", "public")
BOX = (118.770, 32.030, 118.790, 32.050)
WEST = shapely.box(118.770, 32.030, 118.780, 32.050)  # unit A answers for the west half
EAST = shapely.box(118.780, 32.030, 118.790, 32.050)


def _city(store_url):
    """Zones of two units and 60 cases spread over them, reported over two days and moved to
    several states, so that at MON + 1 day their lights differ."""
    s = open_store(store_url)
    with s.transaction() as tx:
        tx.append("zones", gpd.GeoDataFrame(
            {"code": ["W", "E"], "kind": ["frontage", "frontage"], "primary_unit": ["U-A", "U-B"],
             "valid_from": [dt.date(2026, 1, 1)] * 2, "version": [1, 1]}, geometry=[WEST, EAST], crs=4326))
        tx.append("units", gpd.GeoDataFrame({"unit_id": ["U-A", "U-B"], "name": ["甲商店", "乙公司"]},
                                            geometry=gpd.GeoSeries([None, None]), crs=4326))
    rng = np.random.default_rng(5)
    n = 60
    lon, lat = rng.uniform(118.7705, 118.7895, n), rng.uniform(32.0305, 32.0495, n)
    at = [MON + dt.timedelta(hours=float(h)) for h in rng.uniform(0, 30, n)]
    got = cases.intake(s, pd.DataFrame({"lon": lon, "lat": lat, "category": rng.choice(["06010", "06012"], n),
                                        "reported_at": [t.astimezone(dt.UTC) for t in at]}),
                       INSPECTOR, "api", now=MON.astimezone(dt.UTC), dedupe=False)
    ids = got["problem_id"].tolist()
    for i, pid in enumerate(ids):
        when = at[i].astimezone(dt.UTC)
        if i % 3 == 0:
            cases.transition(s, pid, "file", DISPATCHER, now=when)
            cases.transition(s, pid, "dispatch", DISPATCHER, now=when)
        elif i % 7 == 0:
            cases.transition(s, pid, "void", DISPATCHER, now=when)
    yield s, ids
    s.close()


@pytest.fixture(scope="module")
def city(module_store_url):
    """The city, made once per store kind for the tests that only read it."""
    yield from _city(module_store_url)


@pytest.fixture
def own_city(store_url):
    """The city for a test that moves its cases."""
    yield from _city(store_url)


def lights_of(s, ids, now):
    rules = Rules()
    frame, _ = cases.find(s, INSPECTOR, ids=ids, order=None)
    return {r["problem_id"]: rules.case_light(r, now) for r in cases.case_rows(frame)}


def test_a_view_is_points_when_few_and_counted_cells_when_many_with_the_same_lights(city):
    s, ids = city
    now = (MON + dt.timedelta(days=1, hours=2)).astimezone(dt.UTC)
    points = case_map.view(s, INSPECTOR, BOX, 15, now=now)
    assert points["mode"] == "points" and points["total"] == len(points["points"]) == 60
    want = lights_of(s, ids, now)
    assert {p[0]: p[3] for p in points["points"]} == want
    assert {"red", "green"} <= set(want.values()) and None in want.values()  # voided: no light
    counted = case_map.view(s, INSPECTOR, BOX, 15, points_max=10, now=now)
    assert counted["mode"] == "cells" and counted["total"] == 60
    assert sum(c["n"] for c in counted["cells"]) == 60
    by_light = {k: sum(c[k] for c in counted["cells"]) for k in ("green", "yellow", "red", "none")}
    assert by_light == {k: sum(1 for v in want.values() if (v or "none") == k) for k in by_light}
    # every cell's point is the mean of its cases, inside the view; cells are ~80 px at zoom 15
    assert all(BOX[0] <= c["lon"] <= BOX[2] and BOX[1] <= c["lat"] <= BOX[3] for c in counted["cells"])
    assert counted["size"] == pytest.approx(80 * 360 / (256 * 2 ** 15))
    assert len(case_map.view(s, INSPECTOR, BOX, 12, points_max=10, now=now)["cells"]) < len(counted["cells"])


def test_the_light_filter_finds_the_cases_of_those_lights(city):
    s, ids = city
    now = (MON + dt.timedelta(days=1, hours=2)).astimezone(dt.UTC)
    want = lights_of(s, ids, now)
    for asked in ("red", "yellow", "green", "yellow,red", "green,red", "green,yellow,red"):
        frame, total = cases.find(s, INSPECTOR, light=asked, now=now, order="newest", limit=500)
        got = set(frame["problem_id"])
        assert got == {p for p, v in want.items() if v in asked.split(",")}, asked
        assert total == len(got)
    page1, total = cases.find(s, INSPECTOR, light="green,red", now=now, limit=7, offset=0)
    page2, _ = cases.find(s, INSPECTOR, light="green,red", now=now, limit=7, offset=7)
    assert len(page1) == 7 and not set(page1["problem_id"]) & set(page2["problem_id"])
    with pytest.raises(cases.InputError, match="is not one of green, yellow, red"):
        cases.find(s, INSPECTOR, light="blue")
    # a unit sees its own cases' lights only, on the map too
    mine = case_map.view(s, SHOP, BOX, 15, now=now)
    assert mine["total"] == sum(1 for p in mine["points"]) > 0
    assert all(p[1] < 118.780 for p in mine["points"])  # the west half is unit A's


def test_todays_list_is_the_red_and_yellow_cases_nearest_first(city):
    s, ids = city
    now = (MON + dt.timedelta(days=1, hours=2)).astimezone(dt.UTC)
    here = (118.7800, 32.0400)
    due = case_map.due_near(s, INSPECTOR, *here, per_page=100, now=now)
    want = {p for p, v in lights_of(s, ids, now).items() if v in ("red", "yellow")}
    assert {c["problem_id"] for c in due["cases"]} == want and due["total"] == len(want) > 3
    metres = [c["distance_m"] for c in due["cases"]]
    assert metres == sorted(metres)
    first = due["cases"][0]
    # the distance is the real one, and the direction and the geo: link lead there
    dx = (first["lon"] - here[0]) * 111_320 * np.cos(np.radians(32.04))
    dy = (first["lat"] - here[1]) * 110_574
    assert first["distance_m"] == pytest.approx(np.hypot(dx, dy), rel=0.01)
    assert first["geo"] == f"geo:{first['lat']:.6f},{first['lon']:.6f}"
    assert first["direction"] in case_map.COMPASS_ZH
    pages = [case_map.due_near(s, INSPECTOR, *here, page=p, per_page=3, now=now)["cases"] for p in (1, 2)]
    assert [c["problem_id"] for c in pages[0] + pages[1]] == [c["problem_id"] for c in due["cases"][:6]]
    with pytest.raises(cases.InputError, match="near must be lon,lat"):
        case_map.due_near(s, INSPECTOR, 500.0, 32.0)


def test_a_steps_photos_go_to_staff_and_the_cases_unit_only(own_city, tmp_path):
    s, ids = own_city
    west = next(p for p in ids if cases.get_case(s, p, INSPECTOR)["unit_id"] == "U-A"
                and cases.get_case(s, p, INSPECTOR)["status"] == "dispatched")
    cases.transition(s, west, "accept", SHOP)
    done = cases.transition(s, west, "feed_back", SHOP, note="已清理",
                            photos=[{"name": "before-1.jpg", "kind": "before"},
                                    {"name": "after-1.jpg", "kind": "after"}])
    assert [(p["kind"], p["by"]) for p in done["photos"]] == [("before", "shop1"), ("after", "shop1")]
    assert [p["name"] for p in cases.get_case(s, west, INSPECTOR)["photos"]] == ["before-1.jpg", "after-1.jpg"]
    with pytest.raises(cases.NotFound):  # another unit does not even see the case
        cases.get_case(s, west, OTHER_SHOP)
    assert cases.may_see_photos(SHOP, {"unit_id": "U-A"}) and not cases.may_see_photos(OTHER_SHOP, {"unit_id": "U-A"})
    assert not cases.may_see_photos(PUBLIC, {"unit_id": "U-A"})
    with pytest.raises(cases.InputError, match="with kind before, after, photo"):
        cases.transition(s, west, "check", INSPECTOR, photos=[{"name": "x.jpg", "kind": "selfie"}])


def test_cases_are_found_by_their_grid_cell(city):
    s, ids = city
    frame, _ = cases.find(s, INSPECTOR, ids=ids[:3], order=None)
    cell = "320102001001007"  # a 单元网格 code: county, street, community, cell
    with s.transaction() as tx:
        for fid in frame["fid"]:
            tx.update("problems", int(fid), {"grid_code": cell})
    got, total = cases.find(s, INSPECTOR, grid=cell)
    assert set(got["problem_id"]) == set(frame["problem_id"]) == set(ids[:3])
    assert total == len(got) and cases.find(s, INSPECTOR, grid="320102001001008")[1] == 0
