#!/usr/bin/env python3
"""GeoPackage store benchmark (run by hand: `.venv/bin/python scripts/bench/gpkg_reads.py`).

Reads: the store's read path (Python's sqlite3, the R-tree for a bbox, WKB decoded by
shapely) against the baseline `pyogrio.read_dataframe` (GDAL) of the same layer in the same
run, on N polygons (buildings) and M points (pois), whole layer and a bbox of about 1 %.
Also: a thread's reused connection against a new connection per call.

Writes: committed write transactions per second with 1, 4 and 8 writer processes on one
file, each transaction as intake makes it (a case number, a report, its first step).

    scripts/bench/gpkg_reads.py                        # 100,000 polygons, 1,000,000 points
    scripts/bench/gpkg_reads.py --polygons 20000 --points 100000 --seconds 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import geopandas as gpd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyogrio  # noqa: E402
import shapely  # noqa: E402

from layers.store.gpkg import GeoPackageStore  # noqa: E402

W, S, SIZE = 118.70, 32.00, 0.10  # the synthetic city: 0.1° x 0.1°


def _fill(path: Path, layer: str, n: int, polygons: bool) -> None:
    """n random features appended by GDAL while no sqlite3 connection is open (set-up only;
    the store itself never writes through GDAL)."""
    rng = np.random.default_rng(1)
    x, y = W + rng.random(n) * SIZE, S + rng.random(n) * SIZE
    if polygons:
        geoms = shapely.multipolygons([[g] for g in shapely.box(x, y, x + 1e-4, y + 1e-4)])
    else:
        geoms = shapely.points(x, y)
    frame = gpd.GeoDataFrame({"osm_id": [f"way/{i}" for i in range(n)], "name": [f"名称 {i}" for i in range(n)],
                              "source": "bench", "raw_x" if not polygons else "height": rng.random(n) * 30},
                             geometry=geoms, crs="EPSG:4326")
    pyogrio.write_dataframe(frame, path, layer=layer, driver="GPKG", append=True)


def _best(fn, repeat: int = 3) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        size = len(fn())
        times.append(time.perf_counter() - t0)
    return min(times), size


def bench_reads(path: Path, polygons: int, points: int) -> None:
    GeoPackageStore(path).close()
    _fill(path, "buildings", polygons, True)
    _fill(path, "pois", points, False)
    store = GeoPackageStore(path)
    box = (W + 0.045, S + 0.045, W + 0.055, S + 0.055)
    print(f"{'layer':<10} {'query':<6} {'rows':>9} {'sqlite3 s':>10} {'pyogrio s':>10} {'ratio':>6}")
    for layer in ("buildings", "pois"):
        for name, bbox in (("all", None), ("bbox", box)):
            ours, rows = _best(lambda layer=layer, bbox=bbox: store.read(layer, bbox=bbox))
            store.close()  # one SQLite library at a time, even here
            gdal, _ = _best(lambda layer=layer, bbox=bbox: pyogrio.read_dataframe(path, layer=layer, bbox=bbox))
            print(f"{layer:<10} {name:<6} {rows:>9,} {ours:>10.3f} {gdal:>10.3f} {ours / gdal:>6.2f}")
    calls = 2000
    t0 = time.perf_counter()
    for _ in range(calls):
        store.count("problems")
    reused = (time.perf_counter() - t0) / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        con = sqlite3.connect(path)
        con.execute('SELECT count(*) FROM "problems"').fetchone()
        con.close()
    fresh = (time.perf_counter() - t0) / calls
    print(f"count(*) on a reused connection {reused * 1e6:.0f} µs, on a new one {fresh * 1e6:.0f} µs "
          f"(ratio {fresh / reused:.1f})")
    store.close()


def _writer(path: str, seconds: float, tag: str, start, queue) -> None:
    store = GeoPackageStore(path, busy_timeout_s=30)
    start.wait()
    done, i, end = 0, 0, time.monotonic() + seconds
    while time.monotonic() < end:
        i += 1
        pid = f"{tag}-{i}"
        with store.transaction() as tx:
            number = tx.next_number("case:20261130")
            tx.append("problems", gpd.GeoDataFrame(
                {"problem_id": [pid], "category": ["06010"], "description": [f"报告 {number}"]},
                geometry=[shapely.Point(118.78, 32.04)], crs="EPSG:4326"))
            tx.append("case_steps", pd.DataFrame([{"problem_id": pid, "seq": 1, "action": "report",
                                                   "at": dt.datetime.now(dt.UTC)}]))
        done += 1
    store.close()
    queue.put(done)


def bench_writes(folder: Path, seconds: float) -> None:
    ctx = mp.get_context("spawn")
    print(f"{'writers':>7} {'tx/s':>8} {'vs 1':>6}")
    base = None
    for n in (1, 4, 8):
        path = folder / f"writes-{n}.gpkg"
        GeoPackageStore(path).close()
        start, queue = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(str(path), seconds, f"w{k}", start, queue))
                 for k in range(n)]
        for p in procs:
            p.start()
        time.sleep(3)  # let every process import and open the store before the clock starts
        start.set()
        total = sum(queue.get() for _ in procs)
        for p in procs:
            p.join()
        rate = total / seconds
        base = base or rate
        print(f"{n:>7} {rate:>8.0f} {rate / base:>6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--polygons", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=10, help="length of each write run")
    ap.add_argument("--no-reads", action="store_true")
    ap.add_argument("--no-writes", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zonemap-bench-") as tmp:
        if not args.no_reads:
            bench_reads(Path(tmp) / "reads.gpkg", args.polygons, args.points)
        if not args.no_writes:
            bench_writes(Path(tmp), args.seconds)


if __name__ == "__main__":
    main()
