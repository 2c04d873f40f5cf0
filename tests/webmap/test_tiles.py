"""Vector tiles (GET /tiles/{layer}/{z}/{x}/{y}.pbf) through the real app on both stores,
decoded with mapbox_vector_tile as a map client would: a zone is in the tile of its place with
its few map columns and who answers by name, and the popup reads the rest by the feature's key;
far and zoomed-out tiles are empty; roads and cases are thinned by class at low zoom; a zone or
unit edit shows in the next tile while tiles elsewhere are kept, not made again; no private
column reaches any tile."""

import datetime as dt
import re
import subprocess
import sys

import geopandas as gpd
import mapbox_vector_tile
import numpy as np
import psycopg
import pytest
import shapely
from shapely.geometry import mapping

from geo.crs import wgs84_to_gcj02
from layers import tiles, units_edit, zone_edit
from layers.store import gpkg, open_store
from layers.store.base import (
    CLEARANCE_COLUMN,
    CLEARANCE_LAYERS,
    MERCATOR_COLUMN,
    MERCATOR_LAYERS,
    OPEN_CASES,
    OPEN_RTREE,
    UNIT_NAME_COLUMN,
)
from layers.users import add_user, issue_token
from tests.conftest import _drop_schema, _pg_schema_url
from tests.layers.test_zone_edit import CODES, X0, XSS, Y0, D, box, grid_city
from webmap.app import create_app

PHONE = "13912345678"
PERSON = "张秘密"
UTC = dt.UTC
ROAD_Y = Y0 - 0.00005  # two roads along the grid's south edge


def _roads_and_cases(s) -> None:
    roads = gpd.GeoDataFrame(
        {"osm_id": ["way/1", "way/2"], "name": ["中山路", "小巷"], "highway": ["primary", "residential"]},
        geometry=[shapely.LineString([(X0, ROAD_Y), (X0 + 0.0006, ROAD_Y)]),
                  shapely.LineString([(X0, ROAD_Y - 0.00002), (X0 + 0.0006, ROAD_Y - 0.00002)])], crs=4326)
    at = dt.datetime(2026, 11, 30, 1, 30, tzinfo=UTC)
    problems = gpd.GeoDataFrame(
        {"problem_id": ["ZM-OPEN", "ZM-DONE"], "category": ["06010", "06010"], "status": ["dispatched", "closed"],
         "unit_id": ["U-B", "U-A"], "zone_code": ["F000002", "F000004"], "reported_at": [at, at],
         "stage_started_at": [at, None], "stage_deadline": [at + dt.timedelta(hours=2), None],
         "light_yellow_at": [at + dt.timedelta(minutes=96), None],
         "light_red_after": [at + dt.timedelta(hours=2), None],
         "closed_at": [None, at], "reporter": ["secret-reporter", "secret-reporter"], "contact": [PHONE, PHONE]},
        geometry=[middle(1.5, 0.5), middle(0.5, 1.5)], crs=4326)
    with s.transaction() as tx:
        tx.append("roads", roads)
        tx.append("problems", problems)


@pytest.fixture
def app(store_url, tmp_path):
    with grid_city(store_url) as s:
        add_user(s, "insp", "inspector", "correct horse 42")
        token = issue_token(s, "insp")
        units_edit.edit(s, "U-A", {"phone": PHONE, "person": PERSON})
        _roads_and_cases(s)
    app = create_app({"db": store_url, "secret_key": "k" * 40, "photos": str(tmp_path / "photos")})
    return app.test_client(), store_url, token


def middle(x, y):
    return box(x, y, x, y).centroid


def fetch(client, layer, z, x, y, token=None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(f"/tiles/{layer}/{z}/{x}/{y}.pbf", headers=headers)


def features_at(client, layer, point, z=16, token=None) -> list[dict]:
    x, y = tiles.tile_of(point.x, point.y, z)
    r = fetch(client, layer, z, x, y, token)
    assert r.status_code == 200 and r.mimetype == "application/vnd.mapbox-vector-tile"
    return mapbox_vector_tile.decode(r.data).get(layer, {}).get("features", [])


def on_tile(shape, z, x, y):
    """`shape` (lon/lat) in the units of tile z/x/y, y up as the decoder gives them."""
    minx, miny, maxx, _ = tiles.tile_bounds(z, x, y)
    k = tiles.EXTENT / (maxx - minx)

    def to_tile(lonlat):
        mx, my = tiles.to_mercator(lonlat[:, 0], lonlat[:, 1])
        return np.column_stack([(mx - minx) * k, (my - miny) * k])

    return shapely.transform(shape, to_tile)


def drawn_as(feature, shape, z, x, y) -> bool:
    """Whether a decoded tile feature is `shape` (lon/lat) where the tile math puts it: in tile
    units, y up as the decoder gives them, clipped to the tile and its buffer; within 2 %."""
    edge = tiles.BUFFER
    want = on_tile(shape, z, x, y).intersection(
        shapely.box(-edge, -edge, tiles.EXTENT + edge, tiles.EXTENT + edge))
    got = shapely.geometry.shape(feature["geometry"])
    return got.is_valid and got.symmetric_difference(want).area < 0.02 * want.area


def by(features, key="code") -> dict:
    return {f["properties"][key]: f for f in features}


def cache(client) -> tiles.TileCache:
    return client.application.extensions["zonemap.tiles"]


def test_a_zone_is_in_the_tile_of_its_place_with_its_map_columns(app):
    client, url, _ = app
    p = middle(0.5, 0.5)
    zone = by(features_at(client, "zones", p))["F000001"]
    assert zone["properties"] == {"code": "F000001", "kind": "frontage", "primary_unit": "U-A", "unit_name": "甲商店"}
    with open_store(url) as s:
        assert zone["id"] == int(s.read("zones", where={"code": "F000001"})["fid"].iloc[0])
    # its corners land where the tile math puts them
    assert drawn_as(zone, box(0, 0, 1, 1), 16, *tiles.tile_of(p.x, p.y, 16))


def test_the_popup_reads_the_rest_by_the_feature_s_key_with_the_role_s_columns(app):
    client, url, token = app
    with open_store(url) as s:
        zone_edit.assign(s, "F000002", "U-A", note=f"联系 {PHONE}")  # a planner's note: staff only
    zone = by(features_at(client, "zones", middle(1.5, 0.5)))["F000002"]
    public = client.get(f"/api/layers/zones/{zone['properties']['code']}.geojson")
    props = public.json["properties"]
    assert public.status_code == 200 and props["unit_name"] == "甲商店" and props["version"] == 2
    assert "change_note" not in props and public.json["geometry"]["type"] == "MultiPolygon"
    staff = client.get("/api/layers/zones/F000002.geojson", headers={"Authorization": f"Bearer {token}"})
    assert staff.json["properties"]["change_note"] == f"联系 {PHONE}"
    case = by(features_at(client, "problems", middle(1.5, 0.5)), "problem_id")["ZM-OPEN"]
    panel = client.get(f"/api/layers/problems/{case['properties']['problem_id']}.geojson").json["properties"]
    assert panel["category_name"] and "reporter" not in panel and "contact" not in panel


def test_on_a_gcj02_basemap_a_zone_is_shifted_as_geo_crs_shifts_it(app):
    client, _, _ = app
    z = 18  # tiles of ~130 m: the ~500 m shift moves the zone to other tiles
    glon, glat = wgs84_to_gcj02(*box(0, 0, 1, 1).exterior.xy)
    gx, gy = tiles.tile_of(float(glon.mean()), float(glat.mean()), z)
    r = client.get(f"/tiles/zones/{z}/{gx}/{gy}.pbf?crs=gcj02")
    zone = by(mapbox_vector_tile.decode(r.data)["zones"]["features"])["F000001"]
    minx, miny, maxx, _ = tiles.tile_bounds(z, gx, gy)
    mx, my = tiles.to_mercator(glon, glat)
    k = tiles.EXTENT / (maxx - minx)
    want = shapely.Polygon(np.column_stack([(mx - minx) * k, (my - miny) * k])).intersection(
        shapely.box(-tiles.BUFFER, -tiles.BUFFER, tiles.EXTENT + tiles.BUFFER, tiles.EXTENT + tiles.BUFFER))
    got = shapely.geometry.shape(zone["geometry"])
    assert got.symmetric_difference(want).area < 0.02 * want.area  # within a tile unit (~3 cm here)
    plain = mapbox_vector_tile.decode(fetch(client, "zones", z, gx, gy).data)
    assert "F000001" not in by(plain.get("zones", {}).get("features", []))  # unshifted it is elsewhere
    assert client.get(f"/tiles/zones/{z}/{gx}/{gy}.pbf?crs=bd09").status_code == 400


def test_tiles_without_zones_are_empty_and_small(app):
    client, _, _ = app
    far = fetch(client, "zones", 16, 100, 100)  # the Pacific off Alaska
    assert far.status_code == 200 and len(far.data) < 50
    assert mapbox_vector_tile.decode(far.data) == {}


def test_a_zone_whose_outline_rounding_would_close_on_itself_is_drawn_valid(app):
    """A zone with a slit 1 mm wide (a cut a planner's redraw can leave): on the tile's grid its
    two sides fall on one line, which a map must not get as a ring crossing itself. Repaired on
    both stores, while a plain zone beside it is drawn as it is."""
    client, url, _ = app
    slit = 1e-8  # degrees, ~1 mm: far under a z16 tile unit (~0.13 m here)
    cut = shapely.box(X0 + 5 * D, Y0 + 0.5 * D, X0 + 5.7 * D, Y0 + 0.5 * D + slit)
    slitted = box(5, 0, 6, 1).difference(cut)
    with open_store(url) as s, s.transaction() as tx:
        tx.append("zones", gpd.GeoDataFrame(
            {"code": ["F000010", "F000011"], "kind": ["frontage"] * 2, "primary_unit": ["U-A"] * 2,
             "valid_from": [dt.date(2026, 1, 1)] * 2, "version": [1] * 2, "source": ["generated"] * 2},
            geometry=[slitted, box(7, 0, 8, 1)], crs=4326))
    p = middle(5.5, 0.5)
    z, (x, y) = 16, tiles.tile_of(p.x, p.y, 16)
    on_grid = shapely.set_precision(on_tile(slitted, z, x, y), 1.0, mode="pointwise")
    assert slitted.is_valid and not on_grid.is_valid  # the case
    got = by(features_at(client, "zones", p))
    assert drawn_as(got["F000010"], slitted, z, x, y)  # valid, and the zone's shape
    assert drawn_as(got["F000011"], box(7, 0, 8, 1), z, x, y)


def zone_zoom_on_the_page(client) -> int:
    """The first zoom of the zones layer as the map page hands it to zonemap-map.js."""
    html = client.get("/").get_data(as_text=True)
    return int(re.search(r'"tiles/zones/\{z\}/\{x\}/\{y\}\.pbf", "min_zoom": (\d+)', html).group(1))


def test_a_sparse_city_s_zones_are_drawn_from_a_district_s_zoom_a_dense_one_s_close_up(app, monkeypatch, tmp_path):
    client, url, _ = app
    p = middle(1.5, 1.5)
    early = tiles.SPARSE_ZOOM["zones"]
    assert early < tiles.MIN_ZOOM["zones"]
    # nine zones: the first view of the district (z13) shows them, and the page asks from there
    assert zone_zoom_on_the_page(client) == early
    assert by(features_at(client, "zones", p, z=early)).keys() == set(CODES)
    r = fetch(client, "zones", early - 1, *tiles.tile_of(p.x, p.y, early - 1))
    assert r.status_code == 200 and r.data == b""  # below it, nothing
    # a city where a z13..z15 tile would hold more than TILE_FEATURES_MAX zones: from z16 only
    monkeypatch.setattr(tiles, "TILE_FEATURES_MAX", 8)
    dense = create_app({"db": url, "secret_key": "k" * 40, "photos": str(tmp_path / "photos")}).test_client()
    assert zone_zoom_on_the_page(dense) == tiles.MIN_ZOOM["zones"]
    for z in (early, tiles.MIN_ZOOM["zones"] - 1):
        assert fetch(dense, "zones", z, *tiles.tile_of(p.x, p.y, z)).data == b""
    assert by(features_at(dense, "zones", p, z=tiles.MIN_ZOOM["zones"])).keys() == set(CODES)


def test_roads_and_cases_are_thinned_by_class_at_low_zoom(app):
    client, _, _ = app
    road = shapely.Point(X0 + 0.0003, ROAD_Y)
    assert set(by(features_at(client, "roads", road, z=12), "name")) == {"中山路"}  # a main road from z12
    assert set(by(features_at(client, "roads", road, z=14), "name")) == {"中山路"}
    assert set(by(features_at(client, "roads", road, z=15), "name")) == {"中山路", "小巷"}
    open_case = by(features_at(client, "problems", middle(1.5, 0.5)), "problem_id")["ZM-OPEN"]["properties"]
    assert open_case == {"problem_id": "ZM-OPEN", "category": "06010", "status": "dispatched",  # city time
                         "light_yellow_at": "2026-11-30T11:06:00+08:00", "light_red_after": "2026-11-30T11:30:00+08:00",
                         "unit_name": XSS}
    done = middle(0.5, 1.5)
    assert "ZM-DONE" not in by(features_at(client, "problems", done, z=17), "problem_id")
    assert by(features_at(client, "problems", done, z=18), "problem_id")["ZM-DONE"]["properties"]["status"] == "closed"


def test_a_zone_edit_shows_in_the_next_tile_and_tiles_elsewhere_are_kept(app):
    client, url, _ = app
    here, far = middle(0.5, 0.5), middle(2.5, 2.5)  # F000001 and F000009, 60 m apart
    z = 21  # tiles of ~16 m: the two zones' tiles share nothing
    assert by(features_at(client, "zones", here, z))["F000001"]["properties"]["unit_name"] == "甲商店"
    assert "F000001" not in by(features_at(client, "zones", far, z))
    made = cache(client).made
    with open_store(url) as s:
        zone_edit.assign(s, "F000001", "U-B", note="换人")
    after = by(features_at(client, "zones", here, z))["F000001"]["properties"]
    assert after["unit_name"] == XSS and after["primary_unit"] == "U-B"
    assert cache(client).made == made + 1  # the edited zone's tile was made again…
    kept = cache(client).kept
    features_at(client, "zones", far, z)
    assert cache(client).made == made + 1 and cache(client).kept == kept + 1  # …the far one kept
    with open_store(url) as s:  # a unit's new name reaches every tile of its zones
        units_edit.edit(s, "U-B", {"name": "乙商店"})
    assert by(features_at(client, "zones", here, z))["F000001"]["properties"]["unit_name"] == "乙商店"


def test_a_zone_tile_names_the_unit_as_a_re_imported_units_list_has_it(app):
    """A units list imported anew (its rows deleted and written again in one transaction, as a
    replace does), then withdrawn: a zone's tile names its unit as the units table has it now,
    then by its id. (PostGIS keeps the name beside the zone, which its triggers keep in step;
    the tile cache is emptied: what the store names is asked, not when the cache notices.)"""
    client, url, _ = app
    z = 21
    here = middle(0.5, 0.5)  # F000001

    def name():
        client.application.extensions.pop("zonemap.tiles", None)
        return by(features_at(client, "zones", here, z))["F000001"]["properties"]["unit_name"]

    def units(name):
        return gpd.GeoDataFrame({"unit_id": ["U-N"], "name": [name], "source": ["units.csv"]},
                                geometry=[None], crs=4326)

    with open_store(url) as s:
        with s.transaction() as tx:
            tx.append("units", units("丙商店"))
        zone_edit.assign(s, "F000001", "U-N", note="换人")
        assert name() == "丙商店"
        with s.transaction() as tx:
            tx.delete_source("units", "units.csv")
            tx.append("units", units("丙商店(新)"))
        assert name() == "丙商店(新)"
        with s.transaction() as tx:
            tx.delete_source("units", "units.csv")
        assert name() == "U-N"


def test_a_redrawn_zone_and_its_undo_are_drawn_anew_in_the_next_tile(app):
    """PostGIS cuts tiles from its EPSG:3857 copy of the zones: it follows a redraw, the
    neighbour it trims and the undo (new versions written, old ones closed)."""
    client, url, _ = app
    z = 18
    x, y = tiles.tile_of(middle(1, 0.5).x, middle(1, 0.5).y, z)

    def drawn():
        return by(mapbox_vector_tile.decode(fetch(client, "zones", z, x, y).data)["zones"]["features"])

    assert drawn_as(drawn()["F000001"], box(0, 0, 1, 1), z, x, y)
    with open_store(url) as s:  # F000001 takes the west half of F000002, which is trimmed
        zone_edit.reshape(s, "F000001", mapping(box(0, 0, 1.5, 1)), note="扩大")
    now = drawn()
    assert drawn_as(now["F000001"], box(0, 0, 1.5, 1), z, x, y)
    assert drawn_as(now["F000002"], box(1.5, 0, 2, 1), z, x, y)
    with open_store(url) as s:
        zone_edit.restore(s, "F000001", 1, note="撤销")
    assert drawn_as(drawn()["F000001"], box(0, 0, 1, 1), z, x, y)


def test_a_postgis_store_made_before_the_tiles_columns_indexes_and_triggers_gets_them_when_opened(pg_url):
    schema, url = _pg_schema_url(pg_url)
    try:
        grid_city(url).close()
        with psycopg.connect(url, autocommit=True) as con:  # the tables as the code before it made them
            for name in MERCATOR_LAYERS:
                con.execute(f'ALTER TABLE "{name}" DROP COLUMN {MERCATOR_COLUMN}')  # and its indexes
            for name in CLEARANCE_LAYERS:
                con.execute(f'ALTER TABLE "{name}" DROP COLUMN {CLEARANCE_COLUMN}')
            con.execute("DROP INDEX units_unit_id_hash")
            con.execute("DROP INDEX zones_primary_unit_hash")
            con.execute(f"ALTER TABLE zones DROP COLUMN {UNIT_NAME_COLUMN}")
            for trigger, table in (("zones_unit_name", "zones"), *((f"units_named_{op}", "units")
                                                                   for op in ("insert", "update", "delete"))):
                con.execute(f"DROP TRIGGER {trigger} ON {table}")
        client = create_app({"db": url, "secret_key": "k" * 40}).test_client()
        p = middle(0.5, 0.5)
        zone = by(features_at(client, "zones", p))["F000001"]
        assert drawn_as(zone, box(0, 0, 1, 1), 16, *tiles.tile_of(p.x, p.y, 16))
        assert zone["properties"]["unit_name"] == "甲商店"  # the names filled in for the zones there
        with open_store(url) as s:  # and kept in step since
            units_edit.edit(s, "U-A", {"name": "甲商店(新)"})
        assert by(features_at(client, "zones", p))["F000001"]["properties"]["unit_name"] == "甲商店(新)"
        with psycopg.connect(url) as con:
            indexes = {r[0] for r in con.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,))}
            clearance = con.execute(f"SELECT {CLEARANCE_COLUMN} FROM zones WHERE code = 'F000001'").fetchone()[0]
        assert clearance == pytest.approx(22, rel=0.2)  # metres (a cell's side, in EPSG:3857)
        assert {f"{n}_{MERCATOR_COLUMN}_gist" for n in MERCATOR_LAYERS} | {"problems_open_geom_3857_gist",
                                                                         "units_unit_id_hash",
                                                                         "zones_primary_unit_hash"} <= indexes
    finally:
        _drop_schema(pg_url, schema)


def test_no_private_column_reaches_a_tile(app):
    client, url, token = app
    with open_store(url) as s:
        zone_edit.assign(s, "F000002", "U-A", note=f"联系 {PHONE}")
    p = middle(1.5, 1.5)
    for layer in ("zones", "buildings", "roads", "problems"):
        for z in range(12, 19):
            x, y = tiles.tile_of(p.x, p.y, z)
            for who in (None, token):
                body = fetch(client, layer, z, x, y, who).data
                assert PHONE.encode() not in body and PERSON.encode() not in body
                assert b"secret-reporter" not in body
    staff = by(features_at(client, "zones", p, token=token))
    assert set(staff["F000002"]["properties"]) == {"code", "kind", "primary_unit", "unit_name"}


def test_an_unknown_layer_or_tile_is_404(app):
    client, _, _ = app
    assert fetch(client, "users", 16, 1, 1).status_code == 404
    assert fetch(client, "zones", 3, 8, 1).status_code == 404


def _open_cases_at(client, point, z=16) -> set[str]:
    """The case numbers of the problems tile at `point`, made anew (what the store holds now,
    whatever the tile cache has noticed: some writes below are no case's move)."""
    client.application.extensions.pop("zonemap.tiles", None)
    return set(by(features_at(client, "problems", point, z), "problem_id"))


def _cases(ids, status, point) -> gpd.GeoDataFrame:
    at = dt.datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    return gpd.GeoDataFrame({"problem_id": list(ids), "category": ["06010"] * len(ids), "status": status,
                             "reported_at": [at] * len(ids)}, geometry=[point] * len(ids), crs=4326)


def test_a_case_closed_leaves_the_open_cases_tiles_and_comes_back_reopened(app):
    """Below z18 the problems tiles read the open cases alone (PostGIS: a partial index; the
    GeoPackage: an R-tree of their boxes kept by triggers): a case's status decides at once."""
    client, url, _ = app
    here = middle(1.5, 0.5)
    assert "ZM-OPEN" in _open_cases_at(client, here)
    with open_store(url) as s:
        with s.transaction() as tx:
            tx.update_where("problems", {"problem_id": "ZM-OPEN"}, {"status": "closed"})
        assert "ZM-OPEN" not in _open_cases_at(client, here)
        assert "ZM-OPEN" in _open_cases_at(client, here, z=18)  # finished cases close up
        with s.transaction() as tx:
            tx.update_where("problems", {"problem_id": "ZM-OPEN"}, {"status": "dispatched"})
        assert "ZM-OPEN" in _open_cases_at(client, here)
        with s.transaction() as tx:  # a bulk append (its own path past the triggers): the open ones
            tx.append("problems", _cases([f"ZM-B{i:04d}" for i in range(1200)],
                                         ["reported", "closed"] * 600, middle(2.5, 2.5)))
    got = _open_cases_at(client, middle(2.5, 2.5))
    assert {c for c in got if c.startswith("ZM-B")} == {f"ZM-B{i:04d}" for i in range(0, 1200, 2)}


def test_a_geopackage_s_open_cases_tiles_follow_other_programs_and_an_older_file(tmp_path):
    """The GeoPackage's R-tree of open cases is kept by triggers, so a case that another program
    writes (GDAL, as QGIS does; plain SQL, as a database tool does) is drawn where it is now; a
    file made before the R-tree gets it, filled, when it is opened."""
    path = tmp_path / "city.gpkg"
    grid_city(str(path)).close()
    client = create_app({"db": str(path), "secret_key": "k" * 40}).test_client()
    here, far = middle(1.5, 0.5), shapely.Point(X0 + 0.02, Y0 + 0.02)  # 2 km apart
    frame = _cases(["ZM-GDAL"], ["reported"], here)
    frame["reported_at"] = frame["reported_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    frame.to_file(tmp_path / "case.geojson")  # GDAL appends it in a process of its own
    subprocess.run([sys.executable, "-c", "import sys, pyogrio; pyogrio.write_dataframe("
                    "pyogrio.read_dataframe(sys.argv[1]), sys.argv[2], layer='problems', append=True)",
                    str(tmp_path / "case.geojson"), str(path)], check=True, timeout=120)
    assert "ZM-GDAL" in _open_cases_at(client, here)
    con = gpkg._open(path, 5)
    try:
        blob = gpkg.gpkg_blobs(np.array([far]))[0]
        con.execute("UPDATE problems SET geom = ? WHERE problem_id = 'ZM-GDAL'", (blob,))
        con.commit()
        assert "ZM-GDAL" not in _open_cases_at(client, here) and "ZM-GDAL" in _open_cases_at(client, far)
        con.execute("UPDATE problems SET status = 'closed' WHERE problem_id = 'ZM-GDAL'")
        con.commit()
        assert "ZM-GDAL" not in _open_cases_at(client, far) and "ZM-GDAL" in _open_cases_at(client, far, z=18)
        assert con.execute(f'SELECT count(*) FROM "{OPEN_RTREE}"').fetchone()[0] == 0  # it holds open ones alone
        con.execute("UPDATE problems SET status = 'reported' WHERE problem_id = 'ZM-GDAL'")
        con.execute("DELETE FROM problems WHERE problem_id = 'ZM-GDAL'")
        con.commit()
        assert "ZM-GDAL" not in _open_cases_at(client, far, z=18)
        assert con.execute(f'SELECT count(*) FROM "{OPEN_RTREE}"').fetchone()[0] == 0
        # then the file as the code before the R-tree left it
        with open_store(str(path)) as s, s.transaction() as tx:
            tx.append("problems", _cases(["ZM-OLD"], ["reported"], here))
        con.execute(f'DROP TABLE "{OPEN_RTREE}"')
        for name in gpkg.OPEN_TRIGGERS:
            con.execute(f'DROP TRIGGER "{name}"')
        con.execute(f'CREATE INDEX problems_open_fid ON problems (fid) WHERE {OPEN_CASES}')
        con.commit()
    finally:
        con.close()
    again = create_app({"db": str(path), "secret_key": "k" * 40}).test_client()
    assert "ZM-OLD" in _open_cases_at(again, here)
    with open_store(str(path)) as s:
        assert s.query("SELECT count(*) FROM sqlite_master WHERE name = 'problems_open_fid'", ())[0][0] == 0
