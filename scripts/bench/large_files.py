#!/usr/bin/env python3
"""Benchmark of files larger than memory (run by hand: `.venv/bin/python scripts/bench/large_files.py`).

The store: the real Nanjing extract (../shared/data) with its zones generated, or `--db`.
The file: `--points` synthetic reports (10M by default) uniformly over the zones' extent, with a
category and a time, written as a GeoParquet folder of parts of `--part-rows` rows (made part
by part, so the generator itself stays small). Every run is the real command in its own
process (`zonemap route …`, `zonemap hotspots …`), timed from start to exit (the local cluster's
start included), its peak memory the largest sum of the resident memory of the command and
all its children (the cluster's worker processes), sampled every 0.1 s.

1. route --engine dask on the whole file (a GeoParquet folder out), 2 workers;
2. route in memory on the first `--memory-rows` rows (what fits comfortably), and on one part;
3. the baseline, same run: geopandas.sjoin(points, zones, predicate="within") of one part,
   reading it included, in its own process;
4. hotspots --method gi (100 m squares) --engine dask on the whole file, and in memory on the
   first `--memory-rows` rows.

    scripts/bench/large_files.py                              # 10M points, parts of 1M
    scripts/bench/large_files.py --points 2000000 --memory-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
NANJING = ROOT.parent / "shared" / "data" / "nanjing_xinjiekou_osm" / "nanjing_xinjiekou_2021-06.osm.gz"
NANJING_BBOX = (118.7620, 32.0347, 118.7968, 32.0522)


def nanjing_store(folder: Path) -> str:
    import datetime as dt

    from layers import zones
    from layers.importer import import_osm
    from layers.store import open_store

    db = str(folder / "nanjing.gpkg")
    with open_store(db) as s:
        import_osm(s, NANJING, bbox=NANJING_BBOX)
        zones.generate(s, "beijing-2022", valid_from=dt.date(2026, 1, 1))
    return db


def write_points(db: str, folder: Path, n: int, part_rows: int) -> Path:
    """`n` reports as GeoParquet parts part.00000.parquet …, uniformly over the zones' extent."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    from layers.store import open_store
    from layers.zones import current

    with open_store(db) as s:
        w, so, e, no = current(s.read("zones")).total_bounds
    out = folder / "reports.parquet"
    out.mkdir()
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2026-01-01T00:00Z")
    for i, a in enumerate(range(0, n, part_rows)):
        m = min(part_rows, n - a)
        frame = gpd.GeoDataFrame(
            {"id": np.arange(a, a + m), "category": rng.choice(["06010", "06011", "09006"], m),
             "reported_at": start + pd.to_timedelta(rng.integers(0, 365 * 86400, m), unit="s")},
            geometry=gpd.points_from_xy(rng.uniform(w, e, m), rng.uniform(so, no, m)), crs="EPSG:4326")
        frame.to_parquet(out / f"part.{i:05d}.parquet", index=False)
    return out


def first_parts(src: Path, folder: Path, rows: int, part_rows: int) -> Path:
    """A GeoParquet folder holding the first `rows` rows of `src` (whole parts)."""
    out = folder / f"first-{rows}.parquet"
    if out.exists():
        return out
    out.mkdir()
    for p in sorted(src.iterdir())[: max(1, rows // part_rows)]:
        os.link(p, out / p.name)
    return out


def run(cmd: list[str]) -> dict:
    """Run `cmd`, answering its wall time, the peak RSS of its process tree and its JSON output."""
    import psutil

    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample():
        top = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [top, *top.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        data = out.strip()
    return {"seconds": round(seconds, 2), "peak_rss_mib": peak[0] // 2**20, "out": data}


def cli(db: str, *args) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "cli.py"), "--db", db, *map(str, args), "--json"]


SJOIN = """
import sys, time, geopandas as gpd
sys.path.insert(0, {root!r})
from layers.store import open_store
from layers.zones import current
with open_store({db!r}) as s:
    zones = current(s.read("zones"))
zones.sindex
t = time.perf_counter()
points = gpd.read_parquet({part!r})
joined = gpd.sjoin(points, zones[["code", "geometry"]], predicate="within", how="left")
print(round(time.perf_counter() - t, 3), len(points))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--part-rows", type=int, default=1_000_000)
    ap.add_argument("--memory-rows", type=int, default=2_000_000, help="rows the in-memory runs get")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--db", help="a store with zones (default: the Nanjing extract, zoned in a temp dir)")
    ap.add_argument("--keep", help="keep the generated files in this folder")
    a = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    folder = Path(a.keep or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    db = a.db or nanjing_store(folder)
    t = time.perf_counter()
    src = write_points(db, folder, a.points, a.part_rows)
    print(f"wrote {a.points:,} points in {len(list(src.iterdir()))} parts in {time.perf_counter() - t:.1f} s "
          f"({sum(p.stat().st_size for p in src.iterdir()) / 2**20:.0f} MiB)", flush=True)
    fits = first_parts(src, folder, a.memory_rows, a.part_rows)
    one = first_parts(src, folder, a.part_rows, a.part_rows)
    res = {"uptime_before": os.getloadavg(), "points": a.points, "part_rows": a.part_rows,
           "memory_rows": a.memory_rows, "workers": a.workers}

    def show(name, r, rows):
        r["rows"], r["rows_per_s"] = rows, round(rows / r["seconds"])
        res[name] = r
        print(f"{name:<28} {rows:>11,} rows {r['seconds']:>8.1f} s {r['rows_per_s']:>10,} rows/s "
              f"peak {r['peak_rss_mib']:>6,} MiB", flush=True)

    show("route dask", run(cli(db, "route", src, "--out", folder / "routed.parquet", "--engine", "dask",
                               "--workers", a.workers)), a.points)
    shutil.rmtree(folder / "routed.parquet")
    show("route memory (fits)", run(cli(db, "route", fits, "--out", folder / "m.parquet")), a.memory_rows)
    show("route memory (one part)", run(cli(db, "route", one, "--out", folder / "m1.parquet")), a.part_rows)
    show("route dask (one part)", run(cli(db, "route", one, "--out", folder / "d1.parquet", "--engine", "dask",
                                          "--workers", a.workers)), a.part_rows)
    base = run([sys.executable, "-c", SJOIN.format(root=str(ROOT), db=db, part=str(next(src.iterdir())))])
    seconds, rows = base["out"].split() if isinstance(base["out"], str) else (base["seconds"], a.part_rows)
    base["sjoin_seconds"] = float(seconds)  # reading the part and the join, without Python's start
    show("baseline sjoin (one part)", base, int(rows))
    show("hotspots gi dask", run(cli(db, "hotspots", "--file", src, "--engine", "dask", "--workers", a.workers,
                                     "--limit", 1)), a.points)
    show("hotspots gi memory (fits)", run(cli(db, "hotspots", "--file", fits, "--limit", 1)), a.memory_rows)
    res["uptime_after"] = os.getloadavg()
    print(json.dumps({k: v for k, v in res.items()}, indent=1, default=str)[:4000])
    tmp.cleanup()


if __name__ == "__main__":
    main()
