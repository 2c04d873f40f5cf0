"""Zone generation tile by tile: a synthetic grid city over several tiles, drawn serially and
on a Dask LocalCluster of two workers, must give the same zones, with no gap and no overlap
along the seams between tiles."""

import datetime as dt
import json
import shutil
import sqlite3
import threading
import time

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from layers import cases, zone_tiles, zones
from layers.routing import Router
from layers.rules import load_profile
from layers.store import open_store
from layers.store.gpkg import GeoPackageStore
from layers.users import ANONYMOUS
from scripts.bench.zones import synthetic_city
from tests.conftest import run_cli

DAY = dt.date(2026, 3, 1)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """About 1.3 × 1.3 km of 160 m blocks with 8 buildings each: 2 × 2 tiles."""
    db = str(tmp_path_factory.mktemp("tiles") / "city.gpkg")
    with open_store(db) as s:
        synthetic_city(s, 512, pitch=160.0, per_block=8)
        box = s.extent(["buildings"])
    assert len(zone_tiles.plan(box)) >= 4
    return db


@pytest.fixture(scope="module")
def zoned_city(city, tmp_path_factory):
    """The city with its zones drawn once at DAY (the default profile): (store path, report).
    Tests that start from drawn zones copy it rather than each drawing them again."""
    db = str(tmp_path_factory.mktemp("zoned") / "zoned.gpkg")
    shutil.copy(city, db)
    with open_store(db) as s:
        return db, zones.generate(s, valid_from=DAY)


def _copy(zoned, tmp_path, name):
    db = str(tmp_path / name)
    shutil.copy(zoned[0], db)
    return db


def _zones(db):
    with open_store(db) as s:
        z = zones.current(s.read("zones"))
    return z.sort_values("code").reset_index(drop=True)


@pytest.mark.slow  # a Dask LocalCluster of 2 workers
def test_dask_gives_the_same_zones_as_the_serial_run(city, zoned_city, tmp_path):
    (serial, a), parallel = zoned_city, str(tmp_path / "dask.gpkg")
    shutil.copy(city, parallel)
    with open_store(parallel) as s:
        b = zones.generate(s, valid_from=DAY, workers=2)
    assert a.counts == b.counts and a.counts["frontage"] > 400
    za, zb = _zones(serial), _zones(parallel)
    assert list(za["code"]) == list(zb["code"])
    assert list(za["primary_unit"]) == list(zb["primary_unit"])
    ga, gb = za.to_crs(a.crs).geometry.to_numpy(), zb.to_crs(a.crs).geometry.to_numpy()
    assert shapely.hausdorff_distance(ga, gb).max() < 0.001  # metres
    # the seams: every tile's zones meet their neighbours' without gap or overlap
    out = run_cli("zones", "check", "--json", db=parallel)
    res = json.loads(out.stdout)
    assert out.returncode == 0 and res["overlaps"] == 0 and res["gaps"] == 0, res


def test_zones_cross_tile_seams_and_keep_their_codes_when_drawn_again(zoned_city, tmp_path):
    db, first = _copy(zoned_city, tmp_path, "again.gpkg"), zoned_city[1]
    with open_store(db) as s:
        box = zones.study_box(s, load_profile("beijing-2022"))
        again = zones.generate(s, valid_from=DAY + dt.timedelta(days=1))
        rows = s.count("zones")
    assert again.unchanged == sum(first.counts.values()) and again.new_versions == 0 and again.retired == 0
    assert rows == sum(first.counts.values())
    # some zones lie across a seam between tiles, each written once, by the tile of its owner
    z = _zones(db)
    seams = [t.box[0] for t in zone_tiles.plan(box) if t.i > 0]
    lines = gpd.GeoSeries([shapely.LineString([(x, box[1]), (x, box[3])]) for x in set(seams)], crs=4326)
    crossing = z[(z["kind"] == "frontage") & z.intersects(lines.union_all())]
    assert len(crossing) > 5 and z["code"].is_unique


def test_the_facade_report_does_not_depend_on_where_the_tiles_cut(city, zoned_city, tmp_path, monkeypatch):
    """The city drawn in tiles of one public cell (250 m, 6 × 6 of them) reports the same
    zones and the same street-facing and covered facade as drawn in its 2 × 2 tiles of 1 km:
    a building of the next tile hides the wall behind it from the street as much as one of
    the tile's own. (The report used to count such walls as facing and uncovered: 34,336 m
    facing here against 33,610 m, and 99.15 % against 99.80 % covered on the 10k synthetic
    city in 1 km tiles against one.)"""
    db = str(tmp_path / "small.gpkg")
    shutil.copy(city, db)
    plan = zone_tiles.plan
    monkeypatch.setattr(zone_tiles, "plan", lambda bbox: plan(bbox, cells=1))
    with open_store(db) as s:
        assert len(zone_tiles.plan(s.extent(["buildings"]))) >= 25
        small = zones.generate(s, valid_from=DAY)
    tiled = zoned_city[1]
    assert small.counts == tiled.counts
    assert small.facade["facing_m"] == pytest.approx(tiled.facade["facing_m"], rel=1e-9)
    assert small.facade["covered_m"] == pytest.approx(tiled.facade["covered_m"], rel=1e-9)


def test_a_tile_far_from_any_road_is_still_covered_by_public_zones(city, tmp_path):
    """A study area reaching 600 m past the city's last road (fields, a lake): the tile out
    there has no road to read, and its cells are public ground all the same (the second pass
    used to skip such a tile, which left Guixi with 0.36 km² of gaps)."""
    db = str(tmp_path / "far.gpkg")
    shutil.copy(city, db)
    with open_store(db) as s:
        w, south, e, _ = s.extent(["buildings"])
        bbox = (w, south, e + 0.011, south + 0.004)  # one row of tiles, the last one past every road
        tiles = zone_tiles.plan(bbox)
        assert not s.read("roads", bbox=zone_tiles.grow_deg(tiles[-1].box, 100.0)).shape[0]
        report = zones.generate(s, bbox=bbox, valid_from=DAY)
        z = zones.current(s.read("zones"))
    out_there = shapely.intersection(shapely.box(*tiles[-1].box), shapely.box(*bbox))
    far = z[z.representative_point().within(out_there)]
    assert (far["kind"] == "public").all()
    # no building out there: its public zones cover it all
    area = shapely.area(zone_tiles.boxes_in_metres([out_there.bounds], bbox[:2], report.crs)[0])
    assert far["area_m2"].sum() == pytest.approx(area, rel=1e-4)


def test_a_failed_generation_leaves_the_store_as_it_was(zoned_city, tmp_path, monkeypatch):
    db = _copy(zoned_city, tmp_path, "fail.gpkg")
    with open_store(db) as s:
        before = s.read("zones")
    calls = {"n": 0}
    real = zone_tiles.finish_tile

    def third_tile_fails(data, ctx):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker lost")
        return real(data, ctx)

    monkeypatch.setattr(zone_tiles, "finish_tile", third_tile_fails)
    with open_store(db) as s, pytest.raises(RuntimeError):
        zones.generate(s, "beijing-1999", valid_from=DAY + dt.timedelta(days=1))
    with open_store(db) as s:
        after = s.read("zones")
    assert len(after) == len(before) and after["valid_to"].isna().all()
    assert np.array_equal(after["fid"].to_numpy(), before["fid"].to_numpy())


def test_a_failure_while_the_zones_move_in_leaves_the_store_as_it_was(zoned_city, tmp_path, monkeypatch):
    db = _copy(zoned_city, tmp_path, "move.gpkg")
    with open_store(db) as s:
        before, units = s.read("zones"), s.count("units")
    calls = {"n": 0}
    real = zones._new_units

    def store_lost_on_the_fifth_page(store, tx, page):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk full")
        return real(store, tx, page)

    monkeypatch.setattr(zones, "MOVE_ROWS", 200)  # several pages of zones are in when it fails
    monkeypatch.setattr(zones, "_new_units", store_lost_on_the_fifth_page)
    with open_store(db) as s, pytest.raises(RuntimeError):
        zones.generate(s, "beijing-1999", valid_from=DAY + dt.timedelta(days=1))
    with open_store(db) as s:
        after = s.read("zones")
        assert s.count("units") == units
    assert calls["n"] == 5 and len(after) == len(before) and after["valid_to"].isna().all()
    assert np.array_equal(after["fid"].to_numpy(), before["fid"].to_numpy())
    with open_store(db) as s:  # nothing hidden is left behind either: the pages in were deleted
        assert s.query("SELECT count(*) FROM zones", ())[0][0] == len(before)
        assert s.query("SELECT count(*) FROM zonemap_runs", ())[0][0] == 0


def _routed(store, points) -> list:
    router = Router(store)
    return [router.route_one(x, y)["zone_code"] for x, y in points]


def test_no_reader_sees_a_generation_s_zones_until_all_are_in(zoned_city, tmp_path, monkeypatch):
    """The zones move in over many transactions, and the last one shows them all at once
    without writing them again: between two pages, the map, the router and `zones check` see
    the old zones only, whole. A run killed outright a day before left hidden rows: the new run
    deletes them."""
    db = _copy(zoned_city, tmp_path, "readers.gpkg")
    with open_store(db) as s:
        before = zones.current(s.read("zones"))
        pts = [(p.x, p.y) for p in before.sample(40, random_state=3).representative_point()]
        routed = _routed(s, pts)
        killed = before.head(3).drop(columns="fid").assign(run="generate:killed", code=["K1", "K2", "K3"])
        # a run of the old scheme, killed: its rows in force on no day, marked by their source
        old_scheme = before.iloc[3:5].drop(columns="fid").assign(
            source="generating:0ld", valid_to=DAY, code=["G1", "G2"], primary_unit="U-GONE")
        used_unit = before["primary_unit"].dropna().iloc[0]  # a killed run's unit a later run used
        with s.transaction() as tx:
            tx.start_run("generate:killed", dt.datetime.now(dt.UTC) - dt.timedelta(hours=25))
            tx.append("zones", killed)
            tx.append("zones", old_scheme)
            tx.append("units", gpd.GeoDataFrame({"unit_id": ["U-KILLED", "U-GONE"], "name": ["甲", "乙"],
                                                 "source": ["generate:killed", "generating:0ld"]},
                                                geometry=[None, None], crs=4326))
            tx.update_where("units", {"unit_id": used_unit}, {"source": "generate:killed"})
        assert s.count("zones") == len(before) + 2 and len(zones.current(s.read("zones"))) == len(before)
    seen, in_force, real = [], [], zones._new_units

    def look_between_pages(store, tx, page):
        with open_store(db) as other:  # another connection: what a reader sees at this moment
            z = other.read("zones")
            # and what QGIS opens (the view; read through SQLite: GDAL in this process would
            # close a descriptor of the file and drop the writer's locks)
            with sqlite3.connect(db) as con:
                in_force.append(con.execute('SELECT count(*), count(DISTINCT "profile") FROM "zones_in_force"')
                                .fetchone())
            # `zones check` (seconds on this city) between every third pair of pages, the rest each time
            seen.append((len(z), set(z["profile"]), _routed(other, pts),
                         zones.check(other) if len(seen) % 3 == 0 else None))
        return real(store, tx, page)

    monkeypatch.setattr(zones, "MOVE_ROWS", 300)
    monkeypatch.setattr(zones, "_new_units", look_between_pages)
    with open_store(db) as s:
        report = zones.generate(s, "beijing-1999", valid_from=DAY + dt.timedelta(days=1))
        after = zones.current(s.read("zones"))
        assert s.query("SELECT count(*) FROM zonemap_runs", ())[0][0] == 0
        assert s.count("zones", where={"code": ["K1", "K2", "K3"]}) == 0
        assert s.query("SELECT count(*) FROM zones WHERE run = 'generate:killed'", ())[0][0] == 0
        assert s.count("zones", where={"code": ["G1", "G2"]}) == 0
        units = s.read("units").set_index("unit_id")
        assert "U-KILLED" not in units.index and "U-GONE" not in units.index
        assert units.loc[used_unit, "source"] == "derived"  # the zones that name it keep their unit
    assert len(seen) > 5 and report.new_versions > 1000  # many pages were in while readers looked
    for n, profiles, got, check in seen:
        assert n == len(before) and profiles == {"beijing-2022"} and got == routed
        assert check is None or (check["overlaps"] == 0 and check["gaps"] == 0)
    assert set(after["profile"]) == {"beijing-1999"} and len(after) == sum(report.counts.values())
    assert in_force == [(len(before), 1)] * len(seen)
    # the view is a layer of the GeoPackage as GDAL (and so QGIS) reads it
    view = pyogrio.read_dataframe(db, layer="zones_in_force")
    assert len(view) == len(after) and set(view["profile"]) == {"beijing-1999"} and "run" not in view
    assert sorted(view["code"]) == sorted(after["code"])


def test_a_report_sent_while_zones_are_generated_is_stored(zoned_city, tmp_path):
    """Generation holds the GeoPackage's write lock only for short moves at the end, so a
    report made meanwhile is stored, not refused with 503 when its wait runs out."""
    db = _copy(zoned_city, tmp_path, "busy.gpkg")
    with open_store(db) as s:
        w, s_, e, n = s.extent(["buildings"])
    done, failed = threading.Event(), []

    def regenerate():
        try:
            with open_store(db) as s:
                zones.generate(s, "beijing-1999", valid_from=DAY + dt.timedelta(days=1))
        except BaseException as exc:  # handed to the test's thread
            failed.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=regenerate)
    reporter = GeoPackageStore(db, busy_timeout_s=2.0)  # gives up (503) after 2 s without the lock
    sent = []
    worker.start()
    try:
        while not done.is_set():
            got = cases.report_one(reporter, {"lon": (w + e) / 2, "lat": (s_ + n) / 2, "category": "06010",
                                              "description": f"report {len(sent)}"}, ANONYMOUS, "api")
            sent.append(got["problem_id"])
            time.sleep(0.1)
    finally:
        worker.join()
        reporter.close()
    assert not failed, failed
    assert len(sent) >= 5  # reports went on the whole time the zones were drawn and moved in
    with open_store(db) as s:
        stored = s.read("problems")
        assert set(sent) <= set(stored["problem_id"])
        assert zones.current(s.read("zones"))["profile"].eq("beijing-1999").all()


def test_generating_into_postgis_gives_the_geopackage_s_zones(city, zoned_city, pg_url):
    """The same base data drawn in either store gives the same zones: the study area is the
    buildings' exact extent on both (the GeoPackage's R-tree rounds it outward by ~1 m, which
    moved the tile grid) grown by a zone's reach (at the exact extent, the outermost buildings'
    outward zones were cut off on PostGIS only)."""
    from layers.schema import LAYERS
    from tests.conftest import _drop_schema, _pg_schema_url

    schema, url = _pg_schema_url(pg_url)
    try:
        with open_store(city) as src, open_store(url) as pg:
            for name in LAYERS:
                if name != "zones" and src.count(name):
                    pg.append(name, src.read(name).drop(columns="fid"))
            assert pg.extent(["buildings"]) == src.extent(["buildings"], exact=True) != src.extent(["buildings"])
            report = zones.generate(pg, valid_from=DAY)
            got = zones.current(pg.read("zones")).sort_values("code").reset_index(drop=True)
            # what QGIS or a SQL client opens: the zones in force, not a running run's rows
            with pg.transaction() as tx:
                tx.start_run("generate:running", dt.datetime.now(dt.UTC))
                tx.append("zones", got.head(3).drop(columns="fid").assign(run="generate:running"))
            assert pg.query('SELECT count(*) FROM "zones_in_force"', ())[0][0] == len(got)
            assert pg.query('SELECT count(*) FROM "zones"', ())[0][0] == len(got) + 3
        want = _zones(zoned_city[0])
        assert report.counts == zoned_city[1].counts and report.counts["frontage"] == 512
        assert list(got["code"]) == list(want["code"])
        assert list(got["primary_unit"]) == list(want["primary_unit"])
        ga, gb = got.to_crs(report.crs).geometry.to_numpy(), want.to_crs(report.crs).geometry.to_numpy()
        assert shapely.hausdorff_distance(ga, gb).max() < 0.001  # metres
    finally:
        _drop_schema(pg_url, schema)
