"""Files larger than memory (`--engine dask`): routed and counted partition by partition on a
Dask cluster, they give the answers of the in-memory path. Reports over the real Nanjing zones
(inside zones of every kind, at random over the area so that the nearest, building and fallback
rules answer too, one row without coordinates), in a folder of GeoParquet parts and in CSV
parts; the cluster is a small in-process LocalCluster, except for one run of the command line
that starts its own local cluster of worker processes, as a user's run does."""

from __future__ import annotations

import glob
import json
import shutil

import dask_geopandas
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from distributed import LocalCluster

from geo.crs import wgs84_to_gcj02
from layers import hotspots as hs
from layers.errors import InputError
from layers.route_file import route_file
from layers.store import open_store
from tests.conftest import NANJING_BBOX_F, run_cli
from tests.layers.test_routing import sample, zoned  # noqa: F401 - the zones generated on the Nanjing extract

pytestmark = pytest.mark.slow  # a Dask LocalCluster per test

PARTS = 4


@pytest.fixture(scope="module")
def scheduler():
    """A LocalCluster in this process (one worker, two threads) on 127.0.0.1: starts in a
    second; a command run in another process reaches it over TCP like any cluster."""
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def reports(zoned, tmp_path_factory):  # noqa: F811 - the imported fixture
    """3,000 reports with an id, a category and a time: 1,200 inside zones, 1,799 at random over
    the extract, one without coordinates. Written as one CSV (the in-memory input), as CSV parts
    and as a GeoParquet folder of PARTS parts (the dask inputs)."""
    _, z = zoned
    rng = np.random.default_rng(12)
    lon, lat = [], []
    for kind, n in (("frontage", 600), ("unit", 300), ("public", 300)):
        _, x, y = sample(z, kind, min(n, int((z["kind"] == kind).sum())), seed=5)
        lon.append(x)
        lat.append(y)
    w, s, e, n = NANJING_BBOX_F
    rest = 3000 - sum(map(len, lon)) - 1
    lon = np.r_[np.concatenate(lon), rng.uniform(w, e, rest)].round(7)
    lat = np.r_[np.concatenate(lat), rng.uniform(s, n, rest)].round(7)
    order = rng.permutation(len(lon))
    frame = pd.DataFrame({"编号": np.arange(1, len(lon) + 2), "lon": np.r_[lon[order], np.nan],
                          "lat": np.r_[lat[order], np.nan],
                          "category": rng.choice(["06010", "06011", "09006"], len(lon) + 1, p=[0.6, 0.3, 0.1]),
                          "reported_at": (pd.Timestamp("2026-11-01T00:00+08:00")
                                          + pd.to_timedelta(rng.integers(0, 30 * 24 * 60, len(lon) + 1), unit="min")
                                          ).strftime("%Y-%m-%dT%H:%M:%S+08:00")})
    folder = tmp_path_factory.mktemp("reports")
    frame.to_csv(folder / "all.csv", index=False)
    _write_parts(frame, folder / "reports-*.csv")
    points = gpd.GeoDataFrame(frame.drop(columns=["lon", "lat"]), crs="EPSG:4326",
                              geometry=gpd.points_from_xy(frame["lon"], frame["lat"]))
    points.loc[frame["lon"].isna().to_numpy(), "geometry"] = None
    dask_geopandas.from_geopandas(points, npartitions=PARTS).to_parquet(folder / "reports.parquet",
                                                                        write_index=False)
    return folder


def _write_parts(frame: pd.DataFrame, pattern) -> None:
    """`frame` in PARTS CSV files of consecutive rows (the * of `pattern` their number)."""
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), PARTS)):
        frame.iloc[rows].to_csv(str(pattern).replace("*", str(i)), index=False)


ANSWER = ["编号", "zone_code", "zone_version", "unit_id", "unit_name", "method", "distance_m"]


def _csv_parts(pattern: str) -> pd.DataFrame:
    return pd.concat([pd.read_csv(f, encoding="utf-8-sig") for f in sorted(glob.glob(pattern))], ignore_index=True)


def test_every_point_gets_the_in_memory_zone_unit_and_method(zoned, reports, scheduler, tmp_path):  # noqa: F811
    db, _ = zoned
    with open_store(db) as store:
        memory = route_file(store, reports / "all.csv", tmp_path / "memory.csv")
        from_parquet = route_file(store, reports / "reports.parquet", tmp_path / "routed.parquet", engine="dask",
                                  scheduler=scheduler)
        from_csv = route_file(store, str(reports / "reports-*.csv"), tmp_path / "parts" / "routed-*.csv",
                              engine="dask", scheduler=scheduler)
    expected = pd.read_csv(tmp_path / "memory.csv", encoding="utf-8-sig")
    # every rule answered for some points: the comparison covers each path of the router
    assert set(memory["methods"]) == {"zone", "nearest", "building", "fallback", "no coordinates"}
    assert from_parquet["methods"] == memory["methods"] == from_csv["methods"]
    assert from_parquet["partitions"] == PARTS and from_parquet["parts"] == PARTS and from_csv["parts"] == PARTS

    parquet = gpd.read_parquet(tmp_path / "routed.parquet")  # a GeoParquet folder, rows in file order
    assert sorted(p.name for p in (tmp_path / "routed.parquet").iterdir()) == [
        f"part.{i:05d}.parquet" for i in range(PARTS)]
    assert parquet.crs == "EPSG:4326"
    assert parquet.geometry.iloc[0].equals(shapely.Point(expected.loc[0, ["lon", "lat"]]))
    pd.testing.assert_frame_equal(pd.DataFrame(parquet[ANSWER]).astype(object).where(parquet[ANSWER].notna(), None),
                                  expected[ANSWER].astype(object).where(expected[ANSWER].notna(), None),
                                  check_dtype=False)
    parts = _csv_parts(str(tmp_path / "parts" / "routed-*.csv"))
    pd.testing.assert_frame_equal(parts[ANSWER], expected[ANSWER])
    assert list(parts.columns) == list(expected.columns)  # the file's own columns, then the routed ones


def test_phone_coordinates_and_bad_rows_on_the_cluster(zoned, reports, scheduler, tmp_path):  # noqa: F811
    db, _ = zoned
    frame = pd.read_csv(reports / "all.csv").iloc[:-1]
    glon, glat = wgs84_to_gcj02(frame["lon"].to_numpy(), frame["lat"].to_numpy())
    frame.assign(lon=glon, lat=glat).to_csv(tmp_path / "gcj.csv", index=False)
    with open_store(db) as store:
        memory = route_file(store, tmp_path / "gcj.csv", tmp_path / "m.csv", system="gcj02")
        dask = route_file(store, tmp_path / "gcj.csv", tmp_path / "d-*.csv", system="gcj02", engine="dask",
                          scheduler=scheduler)
        assert dask["methods"] == memory["methods"]
        pd.testing.assert_frame_equal(_csv_parts(str(tmp_path / "d-*.csv"))[ANSWER],
                                      pd.read_csv(tmp_path / "m.csv", encoding="utf-8-sig")[ANSWER])

        # a swapped row in the third part: refused, naming the part, and nothing is written
        rows = pd.read_csv(reports / "all.csv")
        rows.loc[2 * len(rows) // PARTS + 3, ["lon", "lat"]] = [32.04, 118.78]
        _write_parts(rows, tmp_path / "bad-*.csv")
        with pytest.raises(InputError, match=r"partition 3 .*swap"):
            route_file(store, str(tmp_path / "bad-*.csv"), tmp_path / "bad.parquet", engine="dask",
                       scheduler=scheduler)
        assert not (tmp_path / "bad.parquet").exists()
        assert not list(tmp_path.glob(".bad.parquet.partial-*"))
        with pytest.raises(InputError, match=r"part number \(routed/part-\*\.csv\)"):
            route_file(store, tmp_path / "gcj.csv", tmp_path / "one.csv", engine="dask", scheduler=scheduler)
        with pytest.raises(InputError, match="no Dask scheduler answers there"):
            route_file(store, tmp_path / "gcj.csv", tmp_path / "x.parquet", engine="dask", scheduler="tcp://127.0.0.1:1")
        with pytest.raises(InputError, match=r"reads GeoParquet .* or CSV"):
            route_file(store, tmp_path / "m.xlsx", tmp_path / "x.parquet", engine="dask", scheduler=scheduler)


def test_the_command_routes_on_a_local_cluster_of_its_own(zoned, reports, tmp_path):  # noqa: F811
    """No --scheduler: the command starts a LocalCluster (here one worker process) that imports
    zonemap by itself, and writes the same answers over an earlier output folder."""
    db, _ = zoned
    with open_store(db) as store:
        memory = route_file(store, reports / "reports.parquet", tmp_path / "memory.parquet")
    out = tmp_path / "routed.parquet"
    out.mkdir()
    shutil.copy(tmp_path / "memory.parquet", out / "part.00009.parquet")  # a part of an earlier, longer run
    done = run_cli("route", reports / "reports.parquet", "--out", out, "--engine", "dask", "--workers", 1,
                   "--json", db=db, check=True, process=True)  # its own LocalCluster, as a user's run starts
    summary = json.loads(done.stdout)
    assert summary["workers"] == 1 and summary["rows"] == 3000 and summary["parts"] == PARTS
    assert summary["methods"] == memory["methods"]
    routed, expected = gpd.read_parquet(out), gpd.read_parquet(tmp_path / "memory.parquet")
    assert len(routed) == 3000 and (routed["method"] == expected["method"]).all()
    assert routed["zone_code"].fillna("").equals(expected["zone_code"].fillna(""))
    refused = run_cli("route", reports / "all.csv", "--out", tmp_path / "o.csv", "--workers", 2, db=db)
    assert refused.returncode == 1 and "--engine dask" in refused.stderr
    both = run_cli("route", reports / "all.csv", "--out", tmp_path / "o-*.csv", "--engine", "dask",
                   "--scheduler", "tcp://127.0.0.1:1", "--workers", 2, db=db)
    assert both.returncode == 1 and "has its own workers" in both.stderr


# ---- hotspots ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def routed_reports(zoned, reports, scheduler, tmp_path_factory):  # noqa: F811
    """The reports routed (their zone_code and unit_id, as `route` writes them) as a GeoParquet
    folder, and a store with a 单元网格 of 3 × 3 cells over the extract."""
    db, _ = zoned
    folder = tmp_path_factory.mktemp("hot")
    with open_store(db) as store:
        route_file(store, reports / "reports.parquet", folder / "routed.parquet", engine="dask", scheduler=scheduler)
    gridded = str(folder / "grid.gpkg")
    shutil.copy(db, gridded)
    w, s, e, n = NANJING_BBOX_F
    xs, ys = np.linspace(w, e, 4), np.linspace(s, n, 4)
    cells = [shapely.box(xs[i], ys[j], xs[i + 1], ys[j + 1]) for i in range(3) for j in range(3)]
    with open_store(gridded) as store:
        store.append("grid", gpd.GeoDataFrame({"code": [f"32010200100{k}" for k in range(9)]}, geometry=cells,
                                              crs="EPSG:4326"))
    return folder / "routed.parquet", gridded


@pytest.mark.parametrize("method,cells", [("gi", "square"), ("gi", "grid"), ("counts", "square"), ("kde", "square"),
                                          ("peaks", "square")])
def test_hotspots_of_a_file_in_parts_equal_the_in_memory_ones(routed_reports, scheduler, method, cells):
    path, db = routed_reports
    ask = {"since": "2026-11-04", "until": "2026-11-27", "category": "06010,06011", "cell_m": 200, "cells": cells,
           "file": path}
    with open_store(db) as store:
        memory = hs.hotspots(store, method, **ask)
        dask = hs.hotspots(store, method, engine="dask", scheduler=scheduler, **ask)
    assert dask.params["partitions"] == PARTS
    assert 1500 < memory.summary["problems"] == dask.summary["problems"] < 2999  # the filters kept some
    if method == "peaks":
        assert dask.summary == memory.summary and memory.summary["total"] == memory.summary["problems"]
        return
    if method == "kde":
        assert dask.layer["cell_id"].equals(memory.layer["cell_id"])
        np.testing.assert_allclose(dask.layer["density"], memory.layer["density"], rtol=1e-12)
        return
    if method == "gi" and cells == "square":
        assert memory.layer["spot"].str.startswith("hot").any()  # a map with something to find
    if cells == "grid":
        assert len(memory.layer) == 9
    columns = [c for c in ("cell_id", "count", "gi_z", "gi_p", "spot") if c in memory.layer]
    pd.testing.assert_frame_equal(dask.layer[columns], memory.layer[columns])
    assert dask.summary == memory.summary  # counts: with the tables per zone and per unit
    if method == "counts":
        assert memory.summary["zones"] and memory.summary["units"]


def test_what_does_not_scale_out_says_so(routed_reports, scheduler):
    path, db = routed_reports
    with open_store(db) as store:
        with pytest.raises(InputError, match="repeats do not scale out"):
            hs.hotspots(store, "repeats", file=path, engine="dask", scheduler=scheduler)
        with pytest.raises(InputError, match="--file"):
            hs.hotspots(store, "gi", engine="dask", scheduler=scheduler)
        late = hs.hotspots(store, "gi", file=path, engine="dask", scheduler=scheduler, since="2027-01-01")
    assert late.summary["problems"] == 0 and late.layer is None
