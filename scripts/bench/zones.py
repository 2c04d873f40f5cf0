#!/usr/bin/env python3
"""Benchmark of zone generation (run by hand: `.venv/bin/python scripts/bench/zones.py`).

For each real OSM extract in ../shared/data and for synthetic grid cities of N buildings,
measures `zones generate` (written for real: staged tile by tile, then moved in), serially
and on a Dask LocalCluster of 2 workers, and, in the same run as a baseline, one vectorised
shapely buffer + union of the same roads (the cheapest thing any zone method must do).
After each generation `zones check` measures overlaps and gaps of what was stored (timed
apart), with the process's CPU time (the driver's alone on a Dask run), the longest the
store's write lock was held, and how long the last transaction (switching the new zones on)
held it. Each case runs in its own process so that its peak memory is
its own: the process's max RSS, and for a Dask run also the largest worker's. Prints a table
and, with --json, the numbers.

    scripts/bench/zones.py                           # real extracts + 10k and 100k, serial and 2 workers
    scripts/bench/zones.py --sizes 1000000 --no-real --workers 0 --no-check   # the 1M city, by hand
    scripts/bench/zones.py --sizes 10000 --workers 0,2
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
REAL = {
    "nanjing": ("nanjing_xinjiekou_osm/nanjing_xinjiekou_2021-06.osm.gz", (118.7620, 32.0347, 118.7968, 32.0522)),
    "beijing-cau": ("beijing_haidian_osm/beijing_haidian_cau_2026-03.osm.gz", None),
    "beijing-tsinghua": ("beijing_haidian_osm/beijing_haidian_tsinghua_2017-06.osm.gz", None),
    "guixi": ("guixi_jiangxi_osm/guixi_2024-11.osm.gz", None),
}


def synthetic_city(store, n_buildings: int, seed: int = 1, pitch: float = 100.0, per_block: int = 40):
    """A grid city near Nanjing: blocks of `pitch` metres between streets (every 5th a
    secondary road, the rest residential), `per_block` buildings a block along its four
    sides, set back 2–6 m. Written to `store` in one transaction."""
    import geopandas as gpd
    import numpy as np
    import shapely

    rng = np.random.default_rng(seed)
    side = max(1, per_block // 4)
    blocks = int(np.ceil(np.sqrt(n_buildings / (4 * side))))
    x0, y0 = 500_000.0, 3_540_000.0
    k = np.arange(blocks + 1)
    classes = np.repeat(np.where(k % 5 == 0, "secondary", "residential"), 2)
    ends = x0 + blocks * pitch
    roads = shapely.linestrings(np.stack([
        np.column_stack([x0 + k * pitch, np.full(len(k), y0), x0 + k * pitch, np.full(len(k), y0 + blocks * pitch)]),
        np.column_stack([np.full(len(k), x0), y0 + k * pitch, np.full(len(k), ends), y0 + k * pitch]),
    ], axis=1).reshape(-1, 2, 2))
    inner = pitch - 24
    bx, by, sd, j = np.meshgrid(np.arange(blocks), np.arange(blocks), np.arange(4), np.arange(side), indexing="ij")
    bx, by, sd, j = bx.ravel(), by.ravel(), sd.ravel(), j.ravel()
    n = len(bx)
    w = inner / side - rng.uniform(0.5, 2.0, n)
    d = rng.uniform(8, 14, n)
    off = rng.uniform(0, 4, n)
    left, bottom = x0 + bx * pitch + 12, y0 + by * pitch + 12
    s = j * inner / side
    xa = np.select([sd == 0, sd == 1, sd == 2], [left + s, left + s, left + off], left + inner - off - d)
    ya = np.select([sd == 0, sd == 1, sd == 2], [bottom + off, bottom + inner - off - d, bottom + s], bottom + s)
    xb = np.select([sd == 0, sd == 1, sd == 2], [left + s + w, left + s + w, left + off + d], left + inner - off)
    yb = np.select([sd == 0, sd == 1, sd == 2], [bottom + off + d, bottom + inner - off, bottom + s + w],
                   bottom + s + w)
    buildings = shapely.box(xa, ya, xb, yb)[:n_buildings]
    b = gpd.GeoDataFrame({"building": ["yes"] * len(buildings), "source": "synthetic"},
                         geometry=buildings, crs="EPSG:4549").to_crs(4326)
    r = gpd.GeoDataFrame({"highway": classes, "source": "synthetic"}, geometry=roads, crs="EPSG:4549").to_crs(4326)
    with store.transaction() as tx:
        tx.append("buildings", b)
        tx.append("roads", r)


def build(db: str, name: str, size: int | None) -> None:
    """Write the case's base data (a synthetic city, or a real extract) to a new store."""
    from layers.importer import import_osm
    from layers.store import open_store

    with open_store(db) as store:
        if size:
            synthetic_city(store, size)
        else:
            path, bbox = REAL[name]
            import_osm(store, SHARED / path, bbox=bbox)


def run_case(name: str, db: str, workers: int, check: bool = True) -> dict:
    """One case, in this process, on the store `db` built for it: baseline, generate, check
    (without `check`, the counts of the check made while generating: overlaps and slivers,
    no gaps)."""
    import shapely

    from geo.carriageway import curb_offsets
    from geo.crs import metric_crs
    from layers import zones
    from layers.rules import load_curb_rules
    from layers.store import open_store

    store = open_store(db)
    load_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    roads = store.read("roads")
    n_buildings = store.count("buildings")
    x0, y0, x1, y1 = roads.total_bounds
    metric = metric_crs((x0 + x1) / 2, (y0 + y1) / 2)
    rm = roads.to_crs(metric)
    offsets = curb_offsets(rm, load_curb_rules())
    t = time.perf_counter()
    drivable = offsets > 0
    shapely.union_all(shapely.buffer(rm.geometry.to_numpy()[drivable], offsets[drivable]))
    baseline = time.perf_counter() - t
    del roads, rm
    t, cpu = time.perf_counter(), time.process_time()
    report = zones.generate(store, "beijing-2022", workers=workers or None)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    gen_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    checked = zones.check(store) if check else {"gaps": None, "gap_m2": 0.0} | report.check
    check_s = time.perf_counter() - t
    store.close()
    return {"case": name, "workers": workers, "buildings": n_buildings,
            "zones": int(sum(report.counts.values())), "frontage": report.counts["frontage"],
            "seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "lock_s": report.lock_seconds,
            "switch_s": report.switch_seconds,
            "baseline_s": round(baseline, 3),
            "ratio": round(seconds / max(baseline, 1e-9), 1),
            "us_per_building": round(1e6 * seconds / max(n_buildings, 1), 0),
            "facade_share": round(report.facade.get("share", 0), 4),
            "overlaps": checked["overlaps"], "overlap_m2": round(checked["overlap_m2"], 2),
            "gaps": checked["gaps"], "gap_m2": round(checked["gap_m2"], 2), "slivers": checked["slivers"],
            "check_s": round(check_s, 1), "open_peak_mb": round(load_mb), "peak_mb": round(gen_mb),
            "worker_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="synthetic city sizes (buildings)")
    ap.add_argument("--workers", default="0,2", help="Dask workers per run (0: serial), comma-separated")
    ap.add_argument("--no-real", action="store_true", help="skip the real extracts")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-check", action="store_true",
                    help="skip `zones check` after generating (it reads the whole city: for the 1M city); "
                         "overlaps and slivers are then those the tiles counted while drawing, gaps not searched")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--build", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.build:
        build(a.build, a.case, a.size)
        return
    workers = [int(w) for w in str(a.workers).split(",") if w != ""]
    if a.case:
        print(json.dumps(run_case(a.case, a.db, workers[0], check=not a.no_check)))
        return
    cases = [] if a.no_real or not SHARED.is_dir() else [(n, None) for n in REAL]
    cases += [(f"synthetic-{int(s) // 1000}k", int(s)) for s in a.sizes.split(",") if s]
    rows = []
    for name, size in cases:
        with tempfile.TemporaryDirectory() as tmp:
            base = str(Path(tmp) / "base.gpkg")
            # the city is built in a process of its own, so that the peaks measured are
            # generation's, not those of building a million boxes
            subprocess.run([sys.executable, __file__, "--build", base, "--case", name]
                           + (["--size", str(size)] if size else []), check=True)
            for w in workers:
                db = str(Path(tmp) / "run.gpkg")
                shutil.copy(base, db)
                cmd = [sys.executable, __file__, "--case", name, "--workers", str(w), "--db", db,
                       *(["--no-check"] if a.no_check else [])]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(f"{r['case']:<18} w={r['workers']} {r['buildings']:>7} bld {r['zones']:>7} zones "
                      f"{r['seconds']:>8.1f} s (cpu {r['cpu_s']:.1f} s, lock {r['lock_s']} s, "
                      f"switch {r['switch_s']} s)  "
                      f"baseline {r['baseline_s']:>6.2f} s  ×{r['ratio']:<7} "
                      f"{r['us_per_building']:>6.0f} µs/bld  facade {100 * r['facade_share']:.1f} %  "
                      f"overlaps {r['overlaps']} ({r['overlap_m2']} m²) gaps {r['gaps']} ({r['gap_m2']} m²) "
                      f"slivers {r['slivers']}  check {r['check_s']} s  peak {r['peak_mb']} MB "
                      f"(after opening {r['open_peak_mb']}, largest worker {r['worker_peak_mb']})", flush=True)
    if a.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
