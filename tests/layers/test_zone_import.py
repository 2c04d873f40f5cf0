"""`import FILE --as zones` goes through zone versioning, on both stores: a planner exports
zones, edits one (shape and unit), and imports the file; no code is ever in force twice.

The store holds a small piece of the real Nanjing extract (../shared/data), with zones drawn
by `zones generate`."""

import datetime as dt
import json

import geopandas as gpd
import pytest
import shapely

from geo.crs import metric_crs
from layers import zones
from layers.importer import import_file
from layers.routing import Router
from layers.store import open_store
from tests.conftest import run_cli

BBOX = (118.778, 32.040, 118.782, 32.043)
FIRST = dt.date(2026, 1, 1)


@pytest.fixture
def zoned(store_url, shared_data, tmp_path):
    """A store with buildings and roads of a few Nanjing blocks and zones drawn from them."""
    src = shared_data / "nanjing_xinjiekou_osm" / "nanjing_xinjiekou_osm.gpkg"
    with open_store(store_url) as s:
        for layer in ("buildings", "roads"):
            path = tmp_path / f"{layer}.gpkg"
            gpd.read_file(src, layer=layer, bbox=BBOX).to_file(path, layer=layer)
            import_file(s, path, layer)
        zones.generate(s, "beijing-2022", bbox=BBOX, valid_from=FIRST)
    return store_url


def in_force(url):
    with open_store(url) as s:
        return zones.current(s.read("zones"))


def metric_buffer(geom, metres):
    """`geom` (lon/lat) grown or shrunk by `metres`, measured in metres."""
    crs = metric_crs(geom.centroid.x, geom.centroid.y)
    return gpd.GeoSeries([geom], crs=4326).to_crs(crs).buffer(metres).to_crs(4326).iloc[0]


def edited_file(url, path, grow_m=-1.0):
    """Two frontage zones and one public zone as exported from the store, the first with a
    shape moved by `grow_m` and another unit, plus a new zone just east of everything."""
    z = in_force(url)
    frontage = z[z["kind"] == "frontage"].sort_values("area_m2", ascending=False)
    picked = gpd.GeoDataFrame(
        gpd.pd.concat([frontage.iloc[:2], z[z["kind"] == "public"].iloc[:1]]), crs=4326).copy()
    edited = picked.iloc[0]
    new_unit = next(u for u in z["primary_unit"] if u != edited["primary_unit"])
    picked.loc[edited.name, "primary_unit"] = new_unit
    picked.loc[edited.name, "geometry"] = metric_buffer(edited.geometry, grow_m)
    east = z.total_bounds[2] + 0.001
    extra = gpd.GeoDataFrame({"code": ["F900001"], "kind": ["frontage"], "primary_unit": [new_unit]},
                             geometry=[shapely.box(east, 32.041, east + 0.0002, 32.0412)], crs=4326)
    out = gpd.GeoDataFrame(gpd.pd.concat([picked, extra], ignore_index=True), crs=4326)
    out.to_file(path, driver="GeoJSON")
    return edited, new_unit


def test_an_edited_zone_becomes_a_new_version_and_nothing_is_in_force_twice(zoned, tmp_path):
    path = tmp_path / "edited.geojson"
    edited, new_unit = edited_file(zoned, path)
    before = in_force(zoned)
    out = run_cli("import", path, "--as", "zones", "--json", db=zoned, check=True)
    rep = json.loads(out.stdout)
    today = rep["zones"]["valid_from"]
    assert rep["zones"] == {"new_zones": 1, "new_versions": 1, "unchanged": 2, "valid_from": today}
    assert rep["written"] == 2 and rep["rejected"] == []
    now = in_force(zoned)
    assert now["code"].is_unique and len(now) == len(before) + 1
    hist = json.loads(run_cli("zones", "history", edited["code"], "--json", db=zoned, check=True).stdout)
    assert [h["version"] for h in hist] == [1, 2]
    assert hist[0]["valid_to"] == today == hist[1]["valid_from"] and hist[1]["valid_to"] is None
    assert hist[1]["primary_unit"] == new_unit
    assert json.loads(run_cli("zones", "history", "F900001", "--json", db=zoned, check=True).stdout)[0]["version"] == 1
    # the same file again writes nothing
    again = json.loads(run_cli("import", path, "--as", "zones", "--json", db=zoned, check=True).stdout)
    assert again["written"] == 0 and again["zones"]["unchanged"] == 4
    with open_store(zoned) as s:
        assert s.count("zones") == len(before) + 2  # one new version, one new zone, no more
    check = run_cli("zones", "check", "--json", db=zoned)
    assert check.returncode == 0 and json.loads(check.stdout)["overlaps"] == 0
    # a report inside the edited zone goes to its new unit
    with open_store(zoned) as s:
        router = Router(s)
    inside = shapely.point_on_surface(metric_buffer(edited.geometry, -2.0))
    hit = router.route_one(inside.x, inside.y)
    assert (hit["zone_code"], hit["zone_version"], hit["unit_id"]) == (edited["code"], 2, new_unit)


def test_a_zone_that_would_overlap_its_neighbours_is_refused(zoned, tmp_path):
    path = tmp_path / "grown.geojson"
    edited, _ = edited_file(zoned, path, grow_m=3.0)
    with open_store(zoned) as s:
        rows = s.count("zones")
    out = run_cli("import", path, "--as", "zones", db=zoned)
    assert out.returncode == 1, out.stdout
    assert f"zone {edited['code']} would overlap zone" in out.stdout and "nothing was written" in out.stdout
    with open_store(zoned) as s:
        assert s.count("zones") == rows


def test_a_code_twice_in_the_file_or_a_changed_kind_is_refused(zoned, tmp_path):
    z = in_force(zoned)
    one = z[z["kind"] == "frontage"].iloc[:1]
    twice = tmp_path / "twice.geojson"
    gpd.GeoDataFrame(gpd.pd.concat([one, one]), crs=4326).to_file(twice, driver="GeoJSON")
    out = run_cli("import", twice, "--as", "zones", db=zoned)
    assert out.returncode == 1 and "feature 1" in out.stdout and "is in 2 rows of the file" in out.stdout
    kind = tmp_path / "kind.geojson"
    one.assign(kind="unit").to_file(kind, driver="GeoJSON")
    out = run_cli("import", kind, "--as", "zones", db=zoned)
    assert out.returncode == 1 and "in force is a frontage zone, the file says unit" in out.stdout, out.stdout


def test_validity_dates_are_the_citys_date(zoned, tmp_path):
    # 17:00 UTC on 29 November is 01:00 on 30 November in Shanghai
    now = dt.datetime(2026, 11, 29, 17, 0, tzinfo=dt.UTC)
    assert zones.city_today(now) == dt.date(2026, 11, 30)
    with open_store(zoned) as s:
        report = zones.generate(s, "beijing-1999", bbox=BBOX, now=now)
        assert report.new_versions > 0
        drawn = zones.current(s.read("zones"))
    assert set(drawn["valid_from"].astype(str).str[:10]) >= {"2026-11-30"}
    with open_store(zoned) as s:
        closed = s.read("zones")["valid_to"].dropna().astype(str).str[:10]
    assert set(closed) == {"2026-11-30"}
    path = tmp_path / "edited.geojson"
    edited, _ = edited_file(zoned, path)
    with open_store(zoned) as s:
        rep = import_file(s, path, "zones", now=now + dt.timedelta(days=1))
        assert rep.zones["valid_from"] == "2026-12-01" and rep.written == 2
        hist = zones.history(s, edited["code"])
    assert (hist[-2]["valid_to"], hist[-1]["valid_from"]) == ("2026-12-01", "2026-12-01")
