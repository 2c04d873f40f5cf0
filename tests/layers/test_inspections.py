"""Inspections (评): the score sheet comes from inspection.toml (a changed weight in a city's own
copy changes the total), the 奖惩台账 follows its rules, 迎检线路 lists the zones along a route,
and the phone's POST /api/inspections."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from layers import inspections as insp
from layers.errors import Forbidden, InputError
from layers.store import open_store
from layers.users import User, add_user, issue_token
from tests.conftest import run_cli
from tests.layers.test_patrols import lonlat

RULES = Path(insp.__file__).parent / "rules" / "inspection.toml"
INSPECTOR = User("insp1", "inspector")
# clean 40, order 30, facade 20, greening 10 → (4000 + 1500 + 2000 + 0) / 100 = 75: below the pass mark 80
SCORES = {"clean": 100, "order": 50, "facade": 100, "greening": 0}


def square(x, y, size=40):
    return shapely.Polygon([lonlat(x + dx, y + dy) for dx, dy in ((0, 0), (size, 0), (size, size), (0, size))])


def city(url):
    """Zones Z1, Z2, Z3 in a row 100 m apart (x = 0, 100, 200; 40 m squares), Z4 200 m north of Z2."""
    s = open_store(url)
    zones = gpd.GeoDataFrame({"code": ["Z1", "Z2", "Z3", "Z4"], "kind": "frontage",
                              "primary_unit": ["U1", "U2", "U3", "U2"], "valid_from": pd.Timestamp("2026-01-01").date(),
                              "version": 1}, geometry=[square(0, 0), square(100, 0), square(200, 0), square(100, 200)],
                             crs="EPSG:4326")
    units = gpd.GeoDataFrame({"unit_id": ["U1", "U2", "U3"], "name": ["一号店", "二号店", "三号店"]},
                             geometry=gpd.GeoSeries([None] * 3), crs="EPSG:4326")
    with s.transaction() as tx:
        tx.append("zones", zones)
        tx.append("units", units)
    return s


def own_rules(tmp_path, edit) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "inspection.toml").write_text(edit(RULES.read_text("utf-8")), "utf-8")
    return d


def test_the_score_sheet_comes_from_configuration(tmp_path):
    db = str(tmp_path / "s.gpkg")
    city(db).close()
    with open_store(db) as s:
        add_user(s, "insp1", "inspector", "correct horse 42")
    args = ["inspections", "add", "--zone", "Z1", "--as", "insp1", "--at", "2026-11-05 10:00", "--json",
            *(a for k, v in SCORES.items() for a in ("--score", f"{k}={v}"))]
    first = json.loads(run_cli(*args, db=db, check=True).stdout)
    assert first["total"] == 75 and first["passed"] is False and first["unit_id"] == "U1"
    assert first["sheet_version"] == "sheet-2026-1"
    # a city's own sheet: order weighs 10 instead of 30 → (4000 + 500 + 2000) / 80 = 81.25, passed
    rules = own_rules(tmp_path, lambda t: t.replace("weight = 30", "weight = 10").replace(
        'version = "sheet-2026-1"', 'version = "city-sheet-2"'))
    second = json.loads(run_cli(*args, db=db, check=True, env={"ZONEMAP_RULES": str(rules)}).stdout)
    assert second["total"] == 81.25 and second["passed"] is True and second["sheet_version"] == "city-sheet-2"
    listed = json.loads(run_cli("inspections", "list", "--period", "2026-11", "--json", db=db, check=True).stdout)
    assert sorted(r["total"] for r in listed) == [75, 81.25]
    assert {r["inspection_id"] for r in listed} == {"JC2026110500001", "JC2026110500002"}
    assert listed[0]["scores"] == SCORES
    missing = run_cli("inspections", "add", "--zone", "Z1", "--as", "insp1", "--score", "clean=100", db=db)
    assert missing.returncode == 1 and "'order'" in missing.stderr and "0–100" in missing.stderr


def test_an_inspection_file_is_all_or_nothing(tmp_path):
    db = str(tmp_path / "s.gpkg")
    city(db).close()
    f = tmp_path / "检查.csv"
    f.write_text("责任区编号,检查日期,检查人,环境卫生 (无暴露垃圾、无积存污水),order,facade,greening,备注\n"
                 "Z1,2026-11-02,张三,100,100,100,100,好\n"
                 "Z9,2026-11-02,张三,100,100,100,100,\n", "utf-8")
    bad = run_cli("inspections", "import", f, "--json", db=db)
    assert bad.returncode == 1
    rep = json.loads(bad.stdout)
    assert rep["written"] == 0 and rep["errors"] == ["row 3: no zone 'Z9' in force"]
    f.write_text(f.read_text("utf-8").replace("Z9", "Z2"), "utf-8")
    ok = json.loads(run_cli("inspections", "import", f, "--json", db=db, check=True).stdout)
    assert ok["written"] == 2
    with open_store(db) as s:
        got = s.read("inspections").set_index("zone_code")
    assert got.loc["Z1", "total"] == 100 and bool(got.loc["Z1", "passed"]) and got.loc["Z1", "remarks"] == "好"
    assert pd.Timestamp(got.loc["Z2", "inspected_at"]) == pd.Timestamp("2026-11-01T16:00Z")  # city midnight


def test_sanctions_follow_the_rules_and_keep_their_version(store_url, tmp_path, monkeypatch):
    with city(store_url) as s:
        at = "2026-11-{:02d} 10:00"
        failing = {**SCORES}                   # 75: fails
        passing = {k: 100 for k in SCORES}     # 100: passes
        for unit, day, scores in [("U1", 3, failing), ("U2", 4, failing), ("U2", 6, failing), ("U3", 5, passing)]:
            insp.add(s, {"unit_id": unit, "scores": scores, "inspected_at": at.format(day)}, INSPECTOR)
        # U3 also closes a case on time in November: the top of the unit ranking
        s.append("problems", gpd.GeoDataFrame([{
            "problem_id": "P1", "unit_id": "U3", "status": "closed", "category": "06010",
            "reported_at": pd.Timestamp("2026-11-02T01:00Z"), "target_at": pd.Timestamp("2026-11-04T01:00Z"),
            "closed_at": pd.Timestamp("2026-11-03T01:00Z")}], geometry=[shapely.Point(lonlat(0, 0))], crs="EPSG:4326"))
        res = insp.sanctions(s, "2026-11")
        got = {(r["unit_id"], r["rule"]): (r["kind"], r["amount"]) for r in res["rows"]}
        assert got == {("U1", "failed-once"): ("fine", 200), ("U2", "failed-twice"): ("fine", 500),
                       ("U3", "top-of-ranking"): ("reward", 500)}
        assert (res["fines"], res["rewards"]) == (700, 500)
        stored = s.read("sanctions")
        assert len(stored) == 3 and set(stored["rules_version"]) == {"sheet-2026-1"}
        assert set(stored["period"]) == {"2026-11"}
        insp.sanctions(s, "2026-11")  # computed again: replaces the period, does not add to it
        assert s.count("sanctions") == 3
        assert insp.sanctions(s, "2026-10")["rows"] == []
    too_much = own_rules(tmp_path, lambda t: t.replace('kind = "fine"\namount = 500', 'kind = "fine"\namount = 5000'))
    monkeypatch.setenv("ZONEMAP_RULES", str(too_much))
    with pytest.raises(InputError, match=r"failed-twice.*5000 yuan is outside \[limits\] 200–500"):
        insp.load_sheet()


def test_route_check_lists_the_zones_along_the_route_in_order(store_url, tmp_path):
    with city(store_url) as s:
        insp.add(s, {"zone_code": "Z3", "scores": {k: 100 for k in SCORES}, "inspected_at": "2026-11-05"}, INSPECTOR)
        s.append("problems", gpd.GeoDataFrame([
            {"problem_id": "P1", "zone_code": "Z2", "status": "processing"},
            {"problem_id": "P2", "zone_code": "Z2", "status": "closed"},
            {"problem_id": "P3", "zone_code": "Z2", "status": "dispatched"}],
            geometry=[shapely.Point(lonlat(120, 20))] * 3, crs="EPSG:4326"))
    # a route from east to west along y = 60 m: 20 m north of Z1–Z3 (they end at y = 40), 140 m from Z4
    route = tmp_path / "迎检.geojson"
    line = {"type": "LineString", "coordinates": [list(lonlat(260, 60)), list(lonlat(-20, 60))]}
    route.write_text(json.dumps({"type": "FeatureCollection",
                                 "features": [{"type": "Feature", "properties": {}, "geometry": line}]}), "utf-8")
    res = json.loads(run_cli("route-check", route, "--json", db=store_url, check=True).stdout)
    assert [z["code"] for z in res["zones"]] == ["Z3", "Z2", "Z1"]  # in the order the route meets them
    z3, z2, _ = res["zones"]
    assert z2["open_problems"] == 2 and z2["unit"] == "二号店" and z2["distance_m"] == pytest.approx(20, abs=0.1)
    assert z3["last_inspection"]["total"] == 100 and z3["last_inspection"]["passed"] is True
    assert res["zones"][2]["last_inspection"] is None
    narrow = json.loads(run_cli("route-check", route, "--within", "10", "--json", db=store_url, check=True).stdout)
    assert narrow["zones"] == []
    wide = json.loads(run_cli("route-check", route, "--within", "150", "--json", db=store_url, check=True).stdout)
    assert {z["code"] for z in wide["zones"]} == {"Z1", "Z2", "Z3", "Z4"}
    text = run_cli("route-check", route, db=store_url, check=True).stdout
    assert "二号店" in text and "never inspected" in text


def test_only_inspectors_record_and_the_phone_posts_an_inspection(tmp_path):
    from webmap.app import create_app

    db = str(tmp_path / "s.gpkg")
    city(db).close()
    with open_store(db) as s:
        with pytest.raises(Forbidden):
            insp.add(s, {"zone_code": "Z1", "scores": SCORES}, User("shop", "unit", "U1"))
        add_user(s, "insp1", "inspector", "correct horse 42")
        add_user(s, "plan1", "planner", "correct horse 42")
        token, planner = issue_token(s, "insp1"), issue_token(s, "plan1")
    c = create_app({"db": db, "photos": str(tmp_path / "ph"), "access_log": False, "TESTING": True}).test_client()
    body = {"zone_code": "Z2", "scores": SCORES, "inspected_at": "2026-11-05T10:00:00+08:00",
            "photos": ["a.jpg"], "remarks": "门前有堆物"}
    assert c.post("/api/inspections", json=body, headers={"Authorization": f"Bearer {planner}"}).status_code == 403
    got = c.post("/api/inspections", json=body, headers={"Authorization": f"Bearer {token}"})
    assert got.status_code == 201, got.json
    assert got.json["total"] == 75 and got.json["passed"] is False and got.json["unit_id"] == "U2"
    assert got.json["inspected_at"] == "2026-11-05T10:00:00+08:00" and got.json["photos"] == ["a.jpg"]
    bad = c.post("/api/inspections", json={**body, "scores": {**SCORES, "smell": 3}},
                 headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 400 and "'smell'" in bad.json["error"]
    gone = c.post("/api/inspections", json={**body, "zone_code": "Z9"}, headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 404


def test_the_shipped_sheet_loads():
    sheet = insp.load_sheet()
    assert [i.weight for i in sheet.items] == [40, 30, 20, 10] and sheet.pass_mark == 80
    assert sheet.total(SCORES) == 75
