"""Routing points to the zones generated on real Nanjing data: the same answer whatever the
phone's coordinate system, public space to the fallback parties, and the file and API doors."""

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geo.crs import wgs84_to_bd09, wgs84_to_gcj02
from layers import zones
from layers.routing import Router
from layers.store import open_store
from tests.conftest import run_cli
from webmap.app import create_app


@pytest.fixture(scope="module")
def zoned(nanjing_zoned):
    db = nanjing_zoned[0]
    with open_store(db) as s:
        z = zones.current(s.read("zones"))
    return db, z


def sample(z, kind, n, seed=3):
    part = z[z["kind"] == kind].sample(n, random_state=seed)
    pts = gpd.GeoSeries(part.geometry.to_crs(4549).representative_point(), crs=4549).to_crs(4326)
    return part, pts.x.to_numpy(), pts.y.to_numpy()


def test_points_inside_zones_route_to_them_in_any_phone_system(zoned):
    db, z = zoned
    part, lon, lat = sample(z, "frontage", 200)
    with open_store(db) as s:
        router = Router(s)
    for system, convert in (("wgs84", None), ("gcj02", wgs84_to_gcj02), ("bd09", wgs84_to_bd09)):
        x, y = (lon, lat) if convert is None else convert(lon, lat)
        res = router.route(x, y, system)
        assert (res["method"] == "zone").all(), system
        assert list(res["zone_code"]) == list(part["code"]), system
        assert list(res["unit_id"]) == list(part["primary_unit"])


def test_a_point_on_the_carriageway_goes_to_the_cleaning_unit(zoned):
    db, z = zoned
    _, lon, lat = sample(z[z["primary_unit"] == "FALLBACK-HW"], "public", 20)
    with open_store(db) as s:
        res = Router(s).route(lon, lat)
    assert (res["unit_id"] == "FALLBACK-HW").all() and (res["zone_kind"] == "public").all()


def test_points_just_outside_and_far_outside_the_zones(zoned):
    db, z = zoned
    _, y0, x1, y1 = z.total_bounds
    mid = (y0 + y1) / 2
    with open_store(db) as s:
        res = Router(s).route([x1 + 2 / 94_000, x1 + 0.01], [mid, mid])
    assert list(res["method"]) == ["nearest", "fallback"]
    assert res["distance_m"].iloc[0] == pytest.approx(2, abs=0.3)
    assert res["unit_id"].iloc[1] == "FALLBACK-JD"


def test_a_report_inside_a_building_goes_to_that_buildings_unit(zoned):
    db, _ = zoned
    with open_store(db) as s:
        res = Router(s).route([118.7798], [32.0406])  # the 中央商场 shop point, inside its building
    assert res["method"].iloc[0] == "building" and res["unit_name"].iloc[0] == "中央商场"


def test_route_command_writes_the_file_back_with_its_columns(zoned, tmp_path):
    db, z = zoned
    part, lon, lat = sample(z, "frontage", 5)
    glon, glat = wgs84_to_gcj02(lon, lat)
    src = tmp_path / "上报.csv"
    pd.DataFrame({"编号": range(1, 6), "经度": glon, "纬度": glat, "描述": ["暴露垃圾"] * 5}).to_csv(src, index=False)
    out = tmp_path / "routed.xlsx"
    res = run_cli("route", src, "--out", out, "--crs", "gcj02", "--json", db=db, check=True)
    assert json.loads(res.stdout)["methods"] == {"zone": 5}
    back = pd.read_excel(out)
    assert list(back["编号"]) == [1, 2, 3, 4, 5] and list(back["zone_code"]) == list(part["code"])
    assert set(back.columns) >= {"unit_id", "unit_name", "method", "zone_version"}
    gj = tmp_path / "routed.geojson"
    run_cli("route", src, "--out", gj, "--crs", "gcj02", db=db, check=True)
    assert len(gpd.read_file(gj)) == 5


def test_route_command_bad_input(zoned, tmp_path):
    db, _ = zoned
    bad = tmp_path / "no_xy.csv"
    bad.write_text("名称,描述\nA,B\n", "utf-8")
    out = run_cli("route", bad, "--out", tmp_path / "o.csv", db=db)
    assert out.returncode == 1 and "--x" in out.stderr
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("lon,lat\n32.04,118.78\n", "utf-8")
    out = run_cli("route", swapped, "--out", tmp_path / "o.csv", db=db)
    assert out.returncode == 1 and "swap" in out.stderr
    out = run_cli("route", swapped, "--out", tmp_path / "o.txt", db=db)
    assert out.returncode == 1 and ".xlsx" in out.stderr


def test_route_api(zoned):
    db, z = zoned
    part, lon, lat = sample(z, "frontage", 1)
    c = create_app({"DB": db}).test_client()
    bx, by = wgs84_to_bd09(lon, lat)
    r = c.get(f"/api/route?lon={float(bx[0])}&lat={float(by[0])}&crs=bd09").get_json()
    assert r["zone_code"] == part["code"].iloc[0] and r["method"] == "zone" and r["unit_name"]
    assert c.get("/api/route?lon=1").status_code == 400
    assert c.get("/api/route?lon=1&lat=2&crs=mars").status_code == 400
    assert np.isfinite(r["lon_wgs84"])
    assert shapely.Point(r["lon_wgs84"], r["lat_wgs84"]).distance(shapely.Point(lon[0], lat[0])) < 1e-7


def test_a_point_two_metres_outside_the_zones_goes_to_the_nearest_one(zoned):
    """Points just outside the study area (whose edge lies a zone's reach past the outermost
    buildings, so the zones along it are mostly public ones) go to the zone beside them."""
    db, z = zoned
    m = z.to_crs(4549)
    outline = shapely.union_all(shapely.make_valid(m.geometry.to_numpy()), grid_size=0.01)
    edge = shapely.get_exterior_ring(max(shapely.get_parts(outline), key=lambda g: g.area))
    found = []
    for code, g in zip(m["code"], m.geometry):
        if len(found) >= 5:
            break
        shared = g.boundary.intersection(edge.buffer(0.05))
        if shared.length < 5:
            continue
        on = shared.interpolate(0.5, normalized=True)
        for dx, dy in ((2, 0), (-2, 0), (0, 2), (0, -2), (1.41, 1.41), (-1.41, 1.41), (1.41, -1.41), (-1.41, -1.41)):
            p = shapely.Point(on.x + dx, on.y + dy)
            if not outline.intersects(p.buffer(0.3)) and abs(g.distance(p) - 2) < 0.3 \
                    and m.geometry.distance(p).idxmin() == m.index[m["code"] == code][0]:
                found.append((code, p))
                break
    assert len(found) == 5, "too few zones on the outer edge of the study area"
    pts = gpd.GeoSeries([p for _, p in found], crs=4549).to_crs(4326)
    with open_store(db) as s:
        res = Router(s).route(pts.x.to_numpy(), pts.y.to_numpy())
    assert list(res["method"]) == ["nearest"] * len(found)
    assert list(res["zone_code"]) == [c for c, _ in found]
    assert res["distance_m"].between(1.6, 2.4).all()


def test_an_inspector_reports_in_gcj02_and_sees_at_once_who_answers(zoned):
    from layers.users import add_user, issue_token

    db, z = zoned
    part, lon, lat = sample(z, "frontage", 3, seed=11)
    with open_store(db) as s:
        if s.read("users", where={"name": "grid1"}).empty:
            add_user(s, "grid1", "inspector", "grid-worker-1")
        token = issue_token(s, "grid1")
    c = create_app({"DB": db}).test_client()
    gx, gy = wgs84_to_gcj02(lon, lat)
    for i in range(3):
        r = c.post("/api/problems", headers={"Authorization": f"Bearer {token}"},
                   json={"lon": float(gx[i]), "lat": float(gy[i]), "crs": "gcj02", "category": "06036",
                         "description": "门前堆放杂物"})
        assert r.status_code == 201, r.get_json()
        got = r.get_json()
        assert got["zone_code"] == part["code"].iloc[i] and got["routed_by"] == "zone"
        assert got["unit_id"] == part["primary_unit"].iloc[i] and got["unit_name"]
        assert got["status"] == "reported"
        case = c.get(f"/api/cases/{got['problem_id']}", headers={"Authorization": f"Bearer {token}"}).get_json()
        assert abs(case["lon"] - lon[i]) < 1e-5 and abs(case["lat"] - lat[i]) < 1e-5  # stored in WGS 84
    with open_store(db) as s:
        raw = s.read("problems", where={"problem_id": got["problem_id"]}).iloc[0]
    assert raw["raw_crs"] == "gcj02" and raw["raw_x"] == pytest.approx(float(gx[2]))


def test_one_point_and_many_get_the_same_answers(zoned):
    """The web API's single-point path and the bulk path agree, method by method."""
    db, z = zoned
    x0, y0, x1, y1 = z.total_bounds
    rng = np.random.default_rng(4)
    lon = np.r_[rng.uniform(x0 - 0.0005, x1 + 0.0005, 400), 118.7798, x1 + 2 / 94_000]
    lat = np.r_[rng.uniform(y0 - 0.0005, y1 + 0.0005, 400), 32.0406, (y0 + y1) / 2]
    with open_store(db) as s:
        router = Router(s)
    many = router.route(lon, lat)
    one = pd.DataFrame([router.route_one(a, b) for a, b in zip(lon, lat)])
    assert set(many["method"]) >= {"zone", "nearest", "building", "fallback"}
    for col in ("zone_code", "unit_id", "unit_name", "method"):
        assert list(one[col]) == list(many[col]), col
    assert np.allclose(one["distance_m"].astype(float).fillna(-1), many["distance_m"].astype(float).fillna(-1),
                       atol=0.02)
    gx, gy = wgs84_to_gcj02(lon[:50], lat[:50])
    assert [router.route_one(a, b, "gcj02")["zone_code"] for a, b in zip(gx, gy)] == list(many["zone_code"][:50])
