#!/usr/bin/env python3
"""Benchmark of the light map, issue 11 (run by hand: `.venv/bin/python scripts/bench/web.py`).

A synthetic city (scripts/bench/city.py make_map_city: 100,000 zones of ~400 m² with a unit
each, a road grid of 100 m blocks, ~143,000 buildings, 1,000,000 cases of which 5 % open) goes
into a GeoPackage and, when --pg or ZONEMAP_TEST_PG names a PostgreSQL, a throw-away schema there.
Then, in the same run:

  tiles    per store (each in a process of its own, as a server serves one store: PostGIS's
           open-case tiles measured after the GeoPackage's in one process had a p95 of 29.6 ms,
           13.2 ms in their own), zoom (14, 15, 16) and layer: every tile of a full-HD view (1920×1080)
           around the city's centre, through the app (Flask's test client: the server's work
           without the network): p50 / p95 / max per tile, and p50 / p95 of the CPU time a tile
           took in this process and in the PostgreSQL cluster's processes (on a shared machine
           the wall clock also counts waits for a CPU), cold (the first request of each tile
           since the app opened the store) and warm (again), bytes as sent gzipped (mean and largest
           tile, the view's total); then one zone of the centre is given another unit and the
           z16 zones view is asked again (after edit: how many tiles were made again, how many kept)
  naive    a Folium page embedding the view's zones as folium.GeoJson (every column, as a naive
           developer would), at z16 and z15: build time, HTML bytes plain and gzipped
  browser  the real server (`zonemap serve`: gunicorn, 2 workers × 4 threads) over the GeoPackage,
           headless Chromium (Playwright, /usr/bin/chromium or $ZONEMAP_CHROMIUM) at 1920×1080 opens
           whatever page `/` serves: the first view's bytes as transferred (gzipped bodies plus
           headers) and requests until the network is idle for 0.5 s, by kind; then a pan by
           600 px, timed from the mouse's release to the last answer it caused (none for 5 s: done), with
           its bytes

Budgets (issue 11): tile p95 ≤ 50 ms on GeoPackage and ≤ 20 ms on PostGIS; the first view
≤ 1.5 MB; a pan redrawn within 1 s. The machine has 2 cores shared with others: the load
average is printed with the figures.

A PostgreSQL for it should hold the tables the tiles read in its shared_buffers, as a
deployment's should (the bench prints both; 128 MB, the default, does not hold the cases):

    ZONEMAP_PG_SHARED_BUFFERS=1GB scripts/pg-test-server start /tmp/pg-bench   # prints its URL

    scripts/bench/web.py                                   # builds the city (about 6 minutes)
    scripts/bench/web.py --gpkg /tmp/city.gpkg              # built there once, reused after
    scripts/bench/web.py --zones 20000 --problems 200000 --no-browser
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

VIEW_PX = (1920, 1080)
ZOOMS = (14, 15, 16)
LAYERS = ("zones", "buildings", "roads", "problems")
GZIP = {"Accept-Encoding": "gzip"}
LIMIT_S = 300  # how long the browser may take to load the first view, or to redraw a pan


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def view_box(lon: float, lat: float, z: int, px=VIEW_PX) -> tuple[float, float, float, float]:
    """(W, S, E, N) of a map of `px` pixels centred on (lon, lat) at zoom z."""
    from layers.tiles import ORIGIN, to_lonlat, to_mercator

    mx, my = to_mercator(lon, lat)
    metres = 2 * ORIGIN / 2 ** z / 256  # a pixel at zoom z
    (w, e), (s, n) = to_lonlat([mx - px[0] / 2 * metres, mx + px[0] / 2 * metres],
                               [my - px[1] / 2 * metres, my + px[1] / 2 * metres])
    return float(w), float(s), float(e), float(n)


def view_tiles(lon: float, lat: float, z: int) -> list[tuple[int, int]]:
    """The tiles a full-HD map centred on (lon, lat) at zoom z shows."""
    from layers.tiles import tile_of

    w, s, e, n = view_box(lon, lat, z)
    (x0, y0), (x1, y1) = tile_of(w, n, z), tile_of(e, s, z)
    return [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def quantiles(ms: list[float]) -> dict:
    q = statistics.quantiles(ms, n=20) if len(ms) > 1 else ms * 19
    return {"p50": round(statistics.median(ms), 1), "p95": round(q[18], 1), "max": round(max(ms), 1)}


def server_pids(db: str) -> list[int]:
    """The processes of the PostgreSQL cluster behind `db` (its postmaster and every child of
    it), whose CPU time a tile costs too; none for a GeoPackage (SQLite runs in this process)."""
    if "://" not in db:
        return []
    import psycopg

    with psycopg.connect(db) as con:
        data = con.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'").fetchone()[0]
    master = int(Path(data, "postmaster.pid").read_text().split()[0])
    return [master, *map(int, Path(f"/proc/{master}/task/{master}/children").read_text().split())]


def buffers(db: str) -> dict:
    """A PostgreSQL server's shared_buffers beside the size of the tables the tiles read (with
    their indexes and TOAST): a cold tile whose pages are not in the buffers waits for the OS's
    page cache, which a VM's host may keep small (docs/web.md)."""
    import psycopg

    with psycopg.connect(db) as con:
        got = {"shared_buffers": con.execute("SHOW shared_buffers").fetchone()[0]}
        for layer in LAYERS:
            mb = con.execute("SELECT pg_total_relation_size(%s::regclass)", (layer,)).fetchone()[0] / 2**20
            got[f"{layer}_MB"] = round(mb)
    return got


def cpu_ms(pids: list[int]) -> float:
    """CPU time (user + system) of this process and of `pids`, in ms: what a request costs on a
    machine that others share, whose wall-clock times wait for CPUs."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a backend that ended
            continue
        ticks += int(fields[11]) + int(fields[12])
    return time.process_time() * 1000 + ticks * 1000 / os.sysconf("SC_CLK_TCK")


def timed_view(client, layer: str, z: int, tiles: list, pids: list[int]) -> dict:
    ms, cpu, sizes = [], [], []
    for x, y in tiles:
        c, t = cpu_ms(pids), time.perf_counter()
        r = client.get(f"/tiles/{layer}/{z}/{x}/{y}.pbf", headers=GZIP)
        ms.append((time.perf_counter() - t) * 1000)
        cpu.append(cpu_ms(pids) - c)
        assert r.status_code == 200, (layer, z, x, y, r.status_code, r.data[:200])
        sizes.append(len(r.data))
    q = quantiles(cpu)
    return {**quantiles(ms), "cpu_p50": q["p50"], "cpu_p95": q["p95"], "tiles": len(tiles),
            "kB_mean": round(statistics.mean(sizes) / 1e3, 1),
            "kB_max": round(max(sizes) / 1e3, 1),
            "kB_view": round(sum(sizes) / 1e3, 1)}


def bench_tiles(name: str, db: str, centre: tuple[float, float]) -> dict:
    from layers import zone_edit
    from layers.store import open_store
    from webmap.app import create_app

    app = create_app({"db": db, "access_log": False})
    gc.freeze()  # as `zonemap serve` does once the app is made
    client = app.test_client()
    client.get("/health")  # open the store before timing
    pids = server_pids(db)
    out = {}
    if pids:
        out["buffers"] = buffers(db)
        print(f"{name:10s} {out['buffers']}", flush=True)
    for z in ZOOMS:
        tiles = view_tiles(*centre, z)
        for layer in LAYERS:
            for run in ("cold", "warm"):
                got = out[f"z{z} {layer} {run}"] = timed_view(client, layer, z, tiles, pids)
                print(f"{name:10s} z{z} {layer:9s} {run}: {got}  (load {load()})", flush=True)
    with open_store(db) as s:  # an edit in the middle of the view, as a planner makes it
        w, so, e, n = view_box(*centre, 20)
        near = s.read("zones", bbox=(w, so, e, n))
        zone = near[near["valid_to"].isna()].iloc[0]
        code = zone["code"]
        other = next(u for u in s.read("units", limit=2)["unit_id"] if u != zone["primary_unit"])
        zone_edit.assign(s, code, other, note="bench")
    cache = app.extensions["zonemap.tiles"]
    made, kept = cache.made, cache.kept
    got = out["z16 zones after edit"] = timed_view(client, "zones", 16, view_tiles(*centre, 16), pids)
    got |= {"made": cache.made - made, "kept": cache.kept - kept}
    print(f"{name:10s} z16 zones after an edit of {code}: {got}", flush=True)
    return out


def naive_page(db: str, centre: tuple[float, float], z: int) -> dict:
    """The view's zones embedded in a Folium page as folium.GeoJson, every column."""
    import folium

    from layers.store import open_store

    t = time.perf_counter()
    with open_store(db) as s:
        zones = s.read("zones", bbox=view_box(*centre, z))
    zones = zones[zones["valid_to"].isna()]
    m = folium.Map(location=[centre[1], centre[0]], zoom_start=z)
    folium.GeoJson(zones.drop(columns=["fid"]).to_json(default=str), name="zones").add_to(m)
    html = m.get_root().render().encode()
    took = time.perf_counter() - t
    got = {"zones": len(zones), "build_s": round(took, 2), "MB": round(len(html) / 1e6, 2),
           "MB_gz": round(len(gzip.compress(html, 5)) / 1e6, 2)}
    print(f"naive folium page, z{z} view: {got}", flush=True)
    return got


def browser(db: str, log: Path) -> dict:
    """The first view of `/` and a pan, in Chromium against the real server."""
    from load import Server
    from playwright.sync_api import sync_playwright

    server = Server(db, log)
    server.start()
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=os.environ.get("ZONEMAP_CHROMIUM", "/usr/bin/chromium"))
            page = chromium.new_page(viewport={"width": VIEW_PX[0], "height": VIEW_PX[1]})
            seen: list[dict] = []
            pending: set = set()

            def finished(request):
                pending.discard(request)
                sizes = request.sizes()
                seen.append({"url": request.url, "at": time.perf_counter(), "kind": request.resource_type,
                             "bytes": sizes["responseBodySize"] + sizes["responseHeadersSize"]})

            page.on("request", lambda r: pending.add(r))
            page.on("requestfinished", finished)
            def failed(request):
                pending.discard(request)
                seen.append({"url": request.url, "at": time.perf_counter(), "kind": "failed", "bytes": 0})

            page.on("requestfailed", failed)
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{server.port}/", wait_until="load", timeout=LIMIT_S * 1000)
            idle = quiet(page, pending, seen, start)
            first = summary(seen, start) | {"idle": idle}
            print(f"browser first view of /: {first}", flush=True)
            seen.clear()
            page.mouse.move(VIEW_PX[0] / 2, VIEW_PX[1] / 2)
            page.mouse.down()
            page.mouse.move(VIEW_PX[0] / 2 - 600, VIEW_PX[1] / 2, steps=12)
            released = time.perf_counter()
            page.mouse.up()
            idle = quiet(page, pending, seen, released, idle_s=5.0)  # a busy page may start its requests late
            pan = summary(seen, released) | {"idle": idle}  # s < 0: all its answers came during the drag
            print(f"browser pan by 600 px: {pan}", flush=True)
            chromium.close()
    finally:
        server.stop()
    return {"first_view": first, "pan": pan}


def quiet(page, pending: set, seen: list, since: float, idle_s: float = 0.5) -> bool:
    """Wait until no request is in flight and none has begun or ended for `idle_s` (from
    `since`); False when that did not happen within LIMIT_S."""
    deadline = since + LIMIT_S
    while time.perf_counter() < deadline:
        page.wait_for_timeout(50)
        last = max([since, *(s["at"] for s in seen[-1:])])
        if not pending and time.perf_counter() - last > idle_s:
            return True
    return False


def summary(seen: list[dict], since: float) -> dict:
    kinds: dict = {}
    for s in seen:
        kinds[s["kind"]] = round(kinds.get(s["kind"], 0) + s["bytes"] / 1e3, 1)
    return {"requests": len(seen), "failed": sum(s["kind"] == "failed" for s in seen),
            "MB": round(sum(s["bytes"] for s in seen) / 1e6, 3),
            "s": round(max((s["at"] for s in seen), default=since) - since, 2), "kB_by_kind": kinds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zones", type=int, default=100_000)
    ap.add_argument("--buildings", type=int, default=150_000)
    ap.add_argument("--problems", type=int, default=1_000_000)
    ap.add_argument("--gpkg", help="build the city into this GeoPackage, or use it as it is when it exists")
    ap.add_argument("--pg", default=os.environ.get("ZONEMAP_TEST_PG"),
                    help="a PostgreSQL URL for a throw-away schema (default: ZONEMAP_TEST_PG)")
    ap.add_argument("--pg-store", help="a PostGIS store URL holding the city already, used as it is")
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium part")
    args = ap.parse_args()
    from city import make_map_city

    from layers.store import open_store

    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        gpkg = args.gpkg or str(Path(tmp) / "city.gpkg")
        build = [] if Path(gpkg).exists() else [gpkg]
        stores = [("geopackage", gpkg)]
        schema = None
        if args.pg_store:
            stores.append(("postgis", args.pg_store))
        elif args.pg:
            import psycopg

            schema = "bench_" + uuid.uuid4().hex[:10]
            with psycopg.connect(args.pg, autocommit=True) as con:
                con.execute(f"CREATE SCHEMA {schema}")
            sep = "&" if "?" in args.pg else "?"
            stores.append(("postgis", f"{args.pg}{sep}options=-csearch_path%3D{schema},public"))
            build.append(stores[-1][1])
        results: dict = {"load_before": load()}
        try:
            for db in build:
                t = time.perf_counter()
                counts = make_map_city(db, args.zones, args.buildings, args.problems)
                print(f"city stored in {time.perf_counter() - t:.0f} s: {counts}", flush=True)
            with open_store(gpkg) as s:
                w, so, e, n = s.extent()
                results["city"] = {layer: s.count(layer) for layer in LAYERS}
            centre = ((w + e) / 2, (so + n) / 2)
            for name, db in stores:  # each store in a process of its own, as a server has one
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as own:
                    results[name] = own.submit(bench_tiles, name, db, centre).result()
            results["naive"] = {f"z{z}": naive_page(gpkg, centre, z) for z in (16, 15)}
            if not args.no_browser:
                try:
                    results["browser"] = browser(gpkg, Path(tmp) / "server.log")
                except Exception as exc:  # the figures above still count
                    results["browser"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                    print(f"browser: {results['browser']['error']}", flush=True)
        finally:
            if schema:
                with psycopg.connect(args.pg, autocommit=True) as con:
                    con.execute(f"DROP SCHEMA {schema} CASCADE")
        results["load_after"] = load()
    print(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
