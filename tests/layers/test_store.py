"""The same store tests on GeoPackage and PostGIS."""

import datetime as dt
import json

import geopandas as gpd
import pytest
import shapely

from layers.errors import StoreError
from layers.importer import import_file
from layers.schema import LAYERS
from layers.store import open_store


def test_new_store_has_every_layer_empty_with_a_spatial_index(store):
    info = {i["name"]: i for i in store.layer_info()}
    assert set(info) == set(LAYERS)
    spatial = [n for n, spec in LAYERS.items() if spec.geometry_type]
    assert all(info[n]["count"] == 0 and info[n]["crs"] == "EPSG:4326" for n in spatial)
    assert all(store.has_spatial_index(name) for name in spatial)
    assert {"users", "tokens", "case_steps"} <= set(LAYERS) - set(spatial)
    assert all(info[n]["crs"] is None for n in set(LAYERS) - set(spatial))
    assert store.is_empty() and store.extent() is None


def test_tables_without_geometry_and_filtered_reads(store):
    import pandas as pd

    when = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)
    store.append("users", pd.DataFrame([{"name": "李四", "role": "inspector", "created_at": when,
                                         "active": True}, {"name": "o'brien", "role": "unit", "active": False}]))
    back = store.read("users", where={"name": ["o'brien"]})
    assert len(back) == 1 and back.iloc[0]["role"] == "unit" and not back.iloc[0]["active"]
    row = store.read("users", where={"name": "李四"}).iloc[0]
    assert pd.Timestamp(row["created_at"]) == pd.Timestamp(when)
    with store.transaction() as tx:
        got = tx.rows("users", {"role": ["inspector", "unit"]}, lock=True)
    assert [r["name"] for r in got] == ["李四", "o'brien"] and got[0]["created_at"] == when
    with pytest.raises(StoreError, match=r"unique|constraint"):
        store.append("users", pd.DataFrame([{"name": "李四", "role": "admin"}]))
    assert store.count("users") == 2
    pts = gpd.GeoDataFrame({"problem_id": ["a", "b'c"], "category": ["06010", "06010"]},
                           geometry=[shapely.Point(118.78, 32.04), shapely.Point(118.79, 32.05)], crs="EPSG:4326")
    store.append("problems", pts)
    assert store.read("problems", where={"problem_id": "b'c"})["problem_id"].tolist() == ["b'c"]
    assert store.read("problems", bbox=(118.77, 32.03, 118.785, 32.045), where={"category": "06010"}
                      )["problem_id"].tolist() == ["a"]


def test_rows_round_trip_with_chinese_text_types_and_multi_geometry(store):
    zones = gpd.GeoDataFrame(
        {"code": ["XJK-001"], "kind": ["frontage"], "primary_unit": ["中央商场"],
         "bounds_text": ["东至中山路，西至王府大街，南至淮海路，北至中央商场"],
         "area_m2": [412.5], "valid_from": [dt.date(2026, 1, 1)], "version": [1]},
        geometry=[shapely.box(118.780, 32.040, 118.781, 32.041)], crs="EPSG:4326")
    assert store.append("zones", zones) == 1
    back = store.read("zones")
    row = back.iloc[0]
    assert row["primary_unit"] == "中央商场" and row["bounds_text"].startswith("东至中山路")
    assert row["area_m2"] == 412.5 and int(row["version"]) == 1
    assert str(row["valid_from"])[:10] == "2026-01-01"
    assert row.geometry.geom_type == "MultiPolygon"
    assert row.geometry.equals(shapely.multipolygons([zones.geometry[0]]))


def test_input_in_another_crs_is_stored_in_wgs84(store):
    pt = gpd.GeoDataFrame({"name": ["p"]}, geometry=[shapely.Point(118.78, 32.04)], crs=4326)
    store.append("pois", pt.to_crs(4549))
    got = store.read("pois").geometry.iloc[0]
    assert got.x == pytest.approx(118.78, abs=1e-9) and got.y == pytest.approx(32.04, abs=1e-9)


def test_bbox_read_uses_the_index_and_returns_only_what_meets_the_box(store):
    frame = gpd.GeoDataFrame({"name": ["a", "b", "c"]}, crs=4326, geometry=[
        shapely.Point(118.78, 32.04), shapely.Point(118.79, 32.05), shapely.Point(10, 10)])
    store.append("pois", frame)
    assert sorted(store.read("pois", bbox=(118.7, 32.0, 118.8, 32.1))["name"]) == ["a", "b"]
    assert list(store.read("pois", bbox=(9, 9, 11, 11))["name"]) == ["c"]
    assert store.read("pois", bbox=(0, 0, 1, 1)).empty
    w, s, e, n = store.extent()
    assert w <= 10 and s <= 10 and e >= 118.79 and n >= 32.05


def test_a_failure_inside_a_transaction_undoes_every_layer(store):
    store.append("pois", gpd.GeoDataFrame({"name": ["kept"]}, geometry=[shapely.Point(1, 1)], crs=4326))
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.append("pois", gpd.GeoDataFrame({"name": ["x"]}, geometry=[shapely.Point(2, 2)], crs=4326))
        tx.append("roads", gpd.GeoDataFrame(
            {"name": ["长江路"]}, geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=4326))
        raise RuntimeError("power cut")
    assert list(store.read("pois")["name"]) == ["kept"]
    assert store.count("roads") == 0


def test_a_real_import_failing_at_row_n_leaves_the_store_as_it_was(store, tmp_path):
    # rows 1-3 are fine; the 4th repeats a 统一社会信用代码, which the store's unique
    # index refuses while the import is half-way through writing
    (tmp_path / "ok.csv").write_text("名称,统一社会信用代码,责任人\n先来的,91320100MA0000000A,王一\n", "utf-8")
    import_file(store, tmp_path / "ok.csv", "units")
    before = store.read("units")
    csv = ("单位名称,统一社会信用代码,责任人,电话\n"
           "中央商场,91320100134885688X,张三,025-84418888\n"
           "东方商城,91320100134884467L,李四,025-84418889\n"
           "金鹰国际,913201006083311234,王五,025-84418890\n"
           "假冒中央商场,91320100134885688X,赵六,025-84418891\n"
           "南京图书馆,12320000466000148E,钱七,025-84356000\n")
    bad = tmp_path / "units.csv"
    bad.write_text(csv, "utf-8")
    with pytest.raises(StoreError, match="nothing was written"):
        import_file(store, bad, "units")
    after = store.read("units")
    assert len(after) == len(before) == 1
    assert list(after["name"]) == ["先来的"]


def test_store_reopens_with_its_data(store_url):
    s = open_store(store_url)
    s.append("grid", gpd.GeoDataFrame({"code": ["320102003001001"], "street": ["新街口街道"]},
                                      geometry=[shapely.box(0, 0, 1, 1)], crs=4326))
    s.close()
    s2 = open_store(store_url)
    assert list(s2.read("grid")["street"]) == ["新街口街道"]
    s2.close()


def test_unique_codes_are_enforced(store):
    g = gpd.GeoDataFrame({"code": ["320102003001001"] * 2}, geometry=[shapely.box(0, 0, 1, 1)] * 2,
                         crs=4326)
    with pytest.raises(StoreError):
        store.append("grid", g)
    assert store.count("grid") == 0


def test_attrs_keep_other_fields_as_json(store):
    g = gpd.GeoDataFrame({"name": ["x"], "attrs": [json.dumps({"备注": "示范街"}, ensure_ascii=False)]},
                         geometry=[shapely.Point(1, 1)], crs=4326)
    store.append("pois", g)
    assert json.loads(store.read("pois")["attrs"][0]) == {"备注": "示范街"}


def test_a_file_that_is_not_a_geopackage_is_refused(tmp_path):
    bad = tmp_path / "x.gpkg"
    bad.write_text("hello")
    with pytest.raises(StoreError, match="not a GeoPackage"):
        open_store(str(bad))


def test_unreachable_postgis_says_so():
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://nobody@127.0.0.1:1/none")


def _problems_for_paging(n=240, seed=7):
    """Points with times to the millisecond (some equal, some missing), ids in mixed scripts."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2026-11-01T00:00:00Z")
    at = [None if i % 17 == 0 else (base + pd.Timedelta(milliseconds=int(rng.integers(0, 5)) * 3_600_000
                                                         + int(rng.integers(0, 3)) * 1)).to_pydatetime()
          for i in range(n)]
    ids = [("案" if i % 3 == 0 else "Z") + f"{rng.integers(0, 10**6):06d}-{i}" for i in range(n)]
    return gpd.GeoDataFrame(
        {"problem_id": ids, "category": rng.choice(["06010", "09005", None], n).tolist(),
         "status": rng.choice(["filed", "closed", "linked", None], n).tolist(), "reported_at": at},
        geometry=[shapely.Point(118.7 + i * 1e-4, 32.0) for i in range(n)], crs="EPSG:4326")


def test_read_pages_orders_and_time_ranges_like_pandas(store):
    import pandas as pd

    store.append("problems", _problems_for_paging())
    everything = store.read("problems")
    at = pd.to_datetime(everything["reported_at"], utc=True)
    start, end = pd.Timestamp("2026-11-01T01:00:00Z"), pd.Timestamp("2026-11-01T03:00:00.001Z")
    kept = everything[(at >= start) & (at < end) & everything["status"].ne("linked").to_numpy()
                      & everything["category"].isin(["06010", "09005"])]
    # newest first, then id (code point order: Latin before Han), nulls last, then fid
    want = kept.assign(_at=at[kept.index]).sort_values(
        ["_at", "problem_id", "fid"], ascending=[False, True, True], na_position="last")
    filters = {"where": {"category": ["06010", "09005"]}, "exclude": {"status": "linked"},
               "time": ("reported_at", start.to_pydatetime(), end.to_pydatetime())}
    order = [("reported_at", "desc"), ("problem_id", "asc")]
    assert store.count("problems", **filters) == len(want) > 40
    pages = [store.read("problems", **filters, order=order, limit=20, offset=k)["problem_id"].tolist()
             for k in range(0, len(want) + 20, 20)]
    assert [p for page in pages for p in page] == want["problem_id"].tolist()
    assert pages[-1] == [] and all(len(p) == 20 for p in pages[:-2])
    # the bounds: a row exactly at start is in, exactly at end out (end is 03:00:00.001)
    assert (at[kept.index] == start).any() and not (at[kept.index] >= end).any()
    assert ((at >= pd.Timestamp("2026-11-01T03:00:00Z")) & (at < end)).any()
    # nulls last in both directions; open bounds; a bbox with a page
    asc = store.read("problems", order=[("reported_at", "asc")])
    assert asc["reported_at"].isna().tolist() == sorted(at.isna().tolist())
    assert len(store.read("problems", time=("reported_at", None, end.to_pydatetime()))) == (at < end).sum()
    box = (118.7, 31.9, 118.7 + 100.5e-4, 32.1)
    boxed = store.read("problems", bbox=box, order=[("fid", "desc")], limit=5, offset=3)
    assert boxed["fid"].tolist() == sorted(everything["fid"].iloc[:101], reverse=True)[3:8]
    assert store.count("problems", bbox=box) == 101


def test_read_refuses_bad_paging_and_naive_times(store):
    with pytest.raises(StoreError, match="limit must be a whole number"):
        store.read("problems", limit=-1)
    with pytest.raises(StoreError, match="cannot order by 'nope'"):
        store.read("problems", order=[("nope", "asc")])
    with pytest.raises(StoreError, match="not a datetime column"):
        store.read("problems", time=("status", None, None))
    with pytest.raises(StoreError, match="not an aware datetime"):
        store.read("problems", time=("reported_at", dt.datetime(2026, 1, 1), None))


def test_cells_count_points_per_cell_and_flag_like_pandas(store):
    """A map of a city's million reports asks the store for counts per cell (and per light,
    told by whether a time has passed) instead of reading every point."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    n = 500
    lon, lat = 118.70 + rng.uniform(0, 0.05, n), 32.00 + rng.uniform(0, 0.04, n)
    base = pd.Timestamp("2026-11-01T00:00:00Z")
    yellow = [None if i % 5 == 0 else (base + pd.Timedelta(hours=int(h))).to_pydatetime()
              for i, h in enumerate(rng.integers(0, 48, n))]
    frame = gpd.GeoDataFrame({"problem_id": [f"P{i}" for i in range(n)],
                              "status": rng.choice(["filed", "closed"], n).tolist(), "light_yellow_at": yellow},
                             geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    store.append("problems", frame)
    now = (base + pd.Timedelta(hours=24)).to_pydatetime()
    size, box = 0.01, (118.70, 32.00, 118.73, 32.03)
    got = store.cells("problems", size, bbox=box, exclude={"status": ["closed"]},
                      flags={"past": ("light_yellow_at", now)})
    keep = (frame["status"] != "closed") & (lon <= box[2]) & (lat <= box[3])
    want = pd.DataFrame({"ix": np.floor((lon + 180) / size).astype(int), "iy": np.floor((lat + 90) / size).astype(int),
                         "past": [int(t is not None and t <= now) for t in yellow], "x": lon, "y": lat})[keep]
    want = want.groupby(["ix", "iy", "past"]).agg(n=("x", "size"), lon=("x", "mean"), lat=("y", "mean")).reset_index()
    got = got.sort_values(["ix", "iy", "past"]).reset_index(drop=True)
    keys = ["ix", "iy", "past", "n"]
    assert got[keys].astype(int).to_dict("records") == want[keys].to_dict("records")
    assert got["n"].sum() == keep.sum() > 100 and set(got["past"]) == {0, 1}
    assert np.allclose(got["lon"], want["lon"], atol=1e-6) and np.allclose(got["lat"], want["lat"], atol=1e-6)
    with pytest.raises(StoreError, match="cells counts points"):
        store.cells("zones", size)


def test_opening_a_postgis_store_waits_for_no_long_read(pg_url):
    """A store that has everything is opened without DDL: a command or a worker starting while
    an export reads the zones is not held up (an ALTER TABLE would wait for the read to end,
    and every read after it would wait behind the ALTER)."""
    import threading

    import psycopg

    from tests.conftest import _drop_schema, _pg_schema_url

    schema, url = _pg_schema_url(pg_url)
    try:
        open_store(url).close()
        with psycopg.connect(url) as reader:  # a long read: its transaction holds the zones' share lock
            reader.execute("SELECT count(*) FROM zones").fetchone()
            opened = threading.Event()
            t = threading.Thread(target=lambda: (open_store(url).close(), opened.set()), daemon=True)
            t.start()
            assert opened.wait(30), "opening the store waited for a read of the zones to end"
            reader.rollback()
        t.join(10)
    finally:
        _drop_schema(pg_url, schema)


def test_a_run_s_rows_are_seen_by_no_reader_until_the_run_ends(store):
    """A run of `zones generate` moves its zones in over many transactions: until it ends,
    no read, count or in-transaction read sees them, and ending it shows them all at once
    without writing them again; a run given up, or killed and found stale, leaves nothing."""
    from layers.privacy import visible_columns
    from layers.tiles import IN_FORCE, TILED

    assert all("run" not in visible_columns("zones", role) for role in (None, "inspector", "planner", "admin"))

    def zones(codes, run):
        return gpd.GeoDataFrame({"code": codes, "kind": "frontage", "run": run, "version": 1},
                                geometry=[shapely.box(118.78 + i / 1e3, 32.04, 118.7805 + i / 1e3, 32.0405)
                                          for i in range(len(codes))], crs="EPSG:4326")

    store.append("zones", zones(["Z-OLD"], None))
    started = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)
    with store.transaction() as tx:
        tx.start_run("generate:a", started)
        tx.start_run("generate:killed", started - dt.timedelta(days=2))
    for page in (["Z-1", "Z-2"], ["Z-3"]):
        with store.transaction() as tx:
            tx.append("zones", zones(page, "generate:a"))
    store.append("zones", zones(["Z-K"], "generate:killed"))
    box = (118.0, 32.0, 119.0, 33.0)
    tile_sql = f'SELECT count(*) FROM "zones" t WHERE {IN_FORCE}'
    assert TILED["zones"].where(16)[0] == IN_FORCE
    assert store.read("zones")["code"].tolist() == ["Z-OLD"]
    assert store.read("zones", bbox=box)["code"].tolist() == ["Z-OLD"]
    assert store.count("zones") == 1 and store.count("zones", where={"kind": "frontage"}) == 1
    assert store.query(tile_sql, ())[0][0] == 1
    with store.transaction() as tx:
        assert [r["code"] for r in tx.rows("zones", {"kind": "frontage"})] == ["Z-OLD"]
        assert [r["code"] for r in tx.rows("zones", {"run": "generate:a"})] == ["Z-1", "Z-2", "Z-3"]
        assert tx.runs_before(started) == ["generate:killed"]
    with store.transaction() as tx:
        assert tx.end_run("generate:a", "zones", keep=True) == 0
    assert sorted(store.read("zones")["code"]) == ["Z-1", "Z-2", "Z-3", "Z-OLD"]
    assert store.count("zones", bbox=box) == 4 and store.query(tile_sql, ())[0][0] == 4
    with store.transaction() as tx:
        assert tx.end_run("generate:killed", "zones", keep=False) == 1
        assert tx.runs_before(started + dt.timedelta(days=9)) == []
    assert store.count("zones", where={"code": "Z-K"}) == 0
    assert sorted(store.read("zones")["code"]) == ["Z-1", "Z-2", "Z-3", "Z-OLD"]
