#!/usr/bin/env python3
"""Benchmark of the light map (run by hand: `.venv/bin/python scripts/bench/web.py`). A start
on issue 11's benchmark: tile times and bytes; the first view in Chromium comes later.

A synthetic city of N zones (default 100,000, scripts/bench/exports.py's make_city: Voronoi
cells of ~400 m², a unit each, 3 cases per 100 zones) goes into a temporary GeoPackage and,
when --pg or ZONEMAP_TEST_PG names a PostgreSQL, a throw-away schema there. Through the app
(Flask's test client: the server's work without the network), in the same run:

  tiles   every zones tile of a full-HD view (1920×1080) at z16, z15 and z14 around the
          city's centre: p50, p95 and max per tile, cold (GeoPackage: cache empty) and warm;
          bytes as sent gzipped
  naive   the same view as one GeoJSON answer (/api/layers/zones.geojson?bbox=…), the way the
          map loads today: time and bytes, plain and gzipped

Budgets (issue 11): tile p95 ≤ 50 ms on GeoPackage, ≤ 20 ms on PostGIS.

    scripts/bench/web.py
    scripts/bench/web.py --zones 20000 --pg postgresql://…
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

VIEW_PX = (1920, 1080)
ZOOMS = (16, 15, 14)
GZIP = {"Accept-Encoding": "gzip"}


def view_tiles(lon: float, lat: float, z: int) -> list[tuple[int, int]]:
    """The tiles a full-HD map centred on (lon, lat) at zoom z shows."""
    from layers.tiles import tile_of

    cx, cy = tile_of(lon, lat, z)
    half_x, half_y = VIEW_PX[0] // 512 + 1, VIEW_PX[1] // 512 + 1
    return [(x, y) for x in range(cx - half_x, cx + half_x + 1) for y in range(cy - half_y, cy + half_y + 1)]


def view_bbox(tiles: list[tuple[int, int]], z: int) -> tuple[float, float, float, float]:
    from layers.tiles import lonlat_bbox

    boxes = [lonlat_bbox(z, x, y, margin=0) for x, y in tiles]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def timed(client, path: str) -> tuple[float, int]:
    t = time.perf_counter()
    r = client.get(path, headers=GZIP)
    took = (time.perf_counter() - t) * 1000
    assert r.status_code == 200, (path, r.status_code, r.data[:200])
    return took, len(r.data)


def stats(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=20) if len(ms) > 1 else ms * 19
    return f"p50 {statistics.median(ms):6.1f}  p95 {q[18]:6.1f}  max {max(ms):6.1f} ms"


def bench_store(name: str, db: str, centre: tuple[float, float]) -> None:
    from webmap.app import create_app

    app = create_app({"db": db, "access_log": False})
    client = app.test_client()
    client.get("/health")  # open the store and the router before timing
    print(f"\n== {name}")
    for z in ZOOMS:
        tiles = view_tiles(*centre, z)
        for run in ("cold", "warm"):
            got = [timed(client, f"/tiles/zones/{z}/{x}/{y}.pbf") for x, y in tiles]
            ms = [g[0] for g in got]
            print(f"tiles z{z} {run}: {len(tiles)} tiles, {sum(g[1] for g in got) / 1e3:8.1f} kB gz  {stats(ms)}")
        w, s, e, n = view_bbox(tiles, z)
        path = f"/api/layers/zones.geojson?bbox={w},{s},{e},{n}&limit={app.extensions['zonemap'].settings.max_features}"
        t = time.perf_counter()
        plain = client.get(path)
        took = (time.perf_counter() - t) * 1000
        gz = client.get(path, headers=GZIP)
        print(f"naive z{z} view GeoJSON: {took:8.1f} ms, {len(plain.data) / 1e3:8.1f} kB plain, "
              f"{len(gz.data) / 1e3:8.1f} kB gz  (tiles p95 / naive: {statistics.quantiles(ms, n=20)[18] / took:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zones", type=int, default=100_000)
    ap.add_argument("--pg", default=os.environ.get("ZONEMAP_TEST_PG"),
                    help="a PostgreSQL URL (default: ZONEMAP_TEST_PG)")
    args = ap.parse_args()
    from exports import make_city

    from layers.store import open_store

    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        stores = [("geopackage", str(Path(tmp) / "city.gpkg"))]
        schema = None
        if args.pg:
            import psycopg

            schema = "bench_" + uuid.uuid4().hex[:10]
            with psycopg.connect(args.pg, autocommit=True) as con:
                con.execute(f"CREATE SCHEMA {schema}")
            sep = "&" if "?" in args.pg else "?"
            stores.append(("postgis", f"{args.pg}{sep}options=-csearch_path%3D{schema},public"))
        try:
            for name, db in stores:
                t = time.perf_counter()
                k = make_city(db, args.zones)
                print(f"{name}: {k} zones stored in {time.perf_counter() - t:.1f} s")
            with open_store(stores[0][1]) as s:
                w, so, e, n = s.extent()
            centre = ((w + e) / 2, (so + n) / 2)
            for name, db in stores:
                bench_store(name, db, centre)
        finally:
            if schema:
                with psycopg.connect(args.pg, autocommit=True) as con:
                    con.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
