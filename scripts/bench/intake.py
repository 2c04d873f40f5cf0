#!/usr/bin/env python3
"""Benchmark of a bulk problem import (run by hand: `.venv/bin/python scripts/bench/intake.py`).

N synthetic reports (default 100,000) are written to a GeoPackage file and imported the way
`zonemap import reports.gpkg --as problems` does (layers.importer.import_file): read, checked,
routed in bulk, duplicates linked, numbered, written with their first steps and an audit row
in one transaction. Beside it, in the same run and on the same rows, the baseline: a bare
`pyogrio.read_dataframe` of the file plus `Router.route` of its points (bulk routing, the
Router built from the same store). The ratio says what intake costs on top of read + route.

The zones are Voronoi cells of random seeds (scripts/bench/routing.py, about 400 m² each);
the reports fall at random among them over `--days` days in a few categories, so some are
duplicates of others. `--profile` prints where the import spends its time (cProfile).

    scripts/bench/intake.py                          # 100,000 rows into a temporary GeoPackage
    scripts/bench/intake.py --rows 20000 --profile
    scripts/bench/intake.py --db postgresql://…/throwaway   # an EMPTY PostGIS database or schema
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CATEGORIES = ["06010", "06036", "06013", "08004", "06001", "06002"]


def make_zones(n_zones: int):
    import geopandas as gpd
    from routing import synthetic_zones

    cells, (x0, y0, side) = synthetic_zones(n_zones)
    zones = gpd.GeoDataFrame(
        {"code": [f"Z{i:06d}" for i in range(len(cells))], "kind": "frontage",
         "primary_unit": [f"U{i:06d}" for i in range(len(cells))], "valid_from": dt.date(2026, 1, 1),
         "version": 1}, geometry=gpd.GeoSeries(cells, crs=4549)).to_crs(4326)
    return zones, (x0, y0, side)


def make_reports(path: Path, n: int, box, days: int, seed: int = 5) -> None:
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import pyogrio

    x0, y0, side = box
    rng = np.random.default_rng(seed)
    pts = gpd.GeoSeries(gpd.points_from_xy(x0 + rng.random(n) * side, y0 + rng.random(n) * side), crs=4549)
    start = pd.Timestamp("2026-03-01", tz="Asia/Shanghai")
    frame = gpd.GeoDataFrame({
        "category": rng.choice(CATEGORIES, n),
        "description": [f"synthetic report {i}" for i in range(n)],
        "reported_at": (start + pd.to_timedelta(np.sort(rng.random(n)) * days * 86400, unit="s")).tz_convert("UTC"),
    }, geometry=pts.to_crs(4326))
    pyogrio.write_dataframe(frame, path, layer="reports", driver="GPKG")


def baseline(store, path: Path) -> tuple[float, int]:
    """A bare read of the file and bulk routing of its points."""
    import pyogrio

    from layers.routing import Router

    t = time.perf_counter()
    df = pyogrio.read_dataframe(path)
    routed = Router(store).route(df.geometry.x.to_numpy(), df.geometry.y.to_numpy(), "wgs84",
                                 category=df["category"].to_numpy(dtype=object))
    return time.perf_counter() - t, len(routed)


def ours(store, path: Path, profile: bool) -> tuple[float, object, str]:
    from layers.importer import import_file

    prof = cProfile.Profile() if profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    report = import_file(store, path, "problems")
    if prof:
        prof.disable()
    took = time.perf_counter() - t
    text = ""
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        text = out.getvalue()
    return took, report, text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--zones", type=int, default=5_000)
    ap.add_argument("--days", type=int, default=90, help="the reports' time span")
    ap.add_argument("--db", help="an empty PostGIS URL (default: a temporary GeoPackage)")
    ap.add_argument("--profile", action="store_true", help="print where the import spends its time")
    args = ap.parse_args()

    from layers.store import open_store

    with tempfile.TemporaryDirectory(prefix="zonemap-bench-intake-") as tmp:
        tmp = Path(tmp)
        zones, box = make_zones(args.zones)
        reports = tmp / "reports.gpkg"
        make_reports(reports, args.rows, box, args.days)
        store = open_store(args.db or str(tmp / "store.gpkg"))
        if store.count("problems") or store.count("zones"):
            raise SystemExit(f"{store.url} is not empty: give an empty database (the bench writes into it)")
        with store.transaction() as tx:
            tx.append("zones", zones)
        base_s, base_n = baseline(store, reports)
        took, report, prof = ours(store, reports, args.profile)
        if report.error:
            raise SystemExit(report.error)
        ids = store.read("problems")["problem_id"]
        store.close()
    if args.profile:
        print(prof, file=sys.stderr)
    print(json.dumps({
        "store": "postgis" if args.db else "geopackage", "rows": args.rows, "zones": len(zones),
        "baseline_read_and_route_s": round(base_s, 2), "import_s": round(took, 2),
        "ratio_import_to_baseline": round(took / base_s, 1),
        "import_rows_per_s": round(args.rows / took), "baseline_rows_per_s": round(base_n / base_s),
        "written": report.written, "linked_duplicates": report.linked, "routed": report.routed,
        "ids_unique": bool(ids.is_unique and len(ids) == args.rows),
    }, indent=2))


if __name__ == "__main__":
    main()
