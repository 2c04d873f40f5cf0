#!/usr/bin/env python3
"""Benchmark of routing (run by hand: `.venv/bin/python scripts/bench/routing.py`).

1. Bulk: 1M points against 10k and 100k zones. zonemap's `geo.routing.ZoneIndex.route`
   (point in zone, else nearest within 5 m, one zone per point) beside
   `geopandas.sjoin(points, zones, predicate="within")` on the same data in the same run.
   Both start from the same coordinate arrays, as when a file of reports is routed: sjoin's
   time includes making its points and their index (which it queries with the zones). The
   "warm" sjoin figure, with points and index made beforehand, is printed too.
   The zones are Voronoi cells of random seeds (about 400 m² each, like frontage zones),
   shrunk by --gap/2 so that some points fall between zones and take the nearest-zone path
   (sjoin does no such thing). Generated zones leave no gaps, so the default gap is small.
   Memory: the peak of Python allocations (tracemalloc, numpy included) during each call,
   zonemap's measured on one thread (forked workers' memory is not this process's).
2. HTTP: `zonemap serve` (waitress) on a store with zones; client processes on loopback with
   keep-alive connections hammer `/api/route` (a random point inside the zones each time) and
   the trivial `/api/ping` of the same server, alternately, and the requests per second of
   the two are compared. The server's peak RSS is read from /proc.

    scripts/bench/routing.py                         # 1M points, 10k and 100k zones, HTTP on the demo city
    scripts/bench/routing.py --points 200000 --zones 10000 --http-seconds 5
    scripts/bench/routing.py --db var/zonemap.gpkg   # HTTP against an existing store with zones
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVE_ARGS: list[str] = []
sys.path.insert(0, str(ROOT))


def synthetic_zones(n: int, gap: float = 0.2, seed: int = 7):
    import numpy as np
    import shapely

    rng = np.random.default_rng(seed)
    side = float(np.sqrt(n * 400.0))
    x0, y0 = 500_000.0, 3_540_000.0
    seeds = shapely.multipoints(np.column_stack([x0 + rng.random(n) * side, y0 + rng.random(n) * side]))
    box = shapely.box(x0, y0, x0 + side, y0 + side)
    cells = np.asarray(shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=box)))
    cells = shapely.intersection(cells, box)
    cells = shapely.buffer(cells, -gap / 2, join_style="mitre")
    return cells[~shapely.is_empty(cells)], (x0, y0, side)


def best_of(fn, repeat: int):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def peak_memory(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def bulk(n_points: int, n_zones: int, repeat: int, gap: float) -> dict:
    import geopandas as gpd
    import numpy as np

    from geo.routing import ZoneIndex

    zones, (x0, y0, side) = synthetic_zones(n_zones, gap)
    rng = np.random.default_rng(11)
    x = x0 + rng.random(n_points) * side
    y = y0 + rng.random(n_points) * side
    t = time.perf_counter()
    index = ZoneIndex(zones)
    build = time.perf_counter() - t
    one = ZoneIndex(zones, threads=1)
    ours, (idx, method, _) = best_of(lambda: index.route(x, y, 5.0), repeat)
    ours1, _ = best_of(lambda: one.route(x, y, 5.0), repeat)

    zgdf = gpd.GeoDataFrame(geometry=gpd.GeoSeries(zones, crs=4549))
    zgdf.sindex  # noqa: B018 - the zones' index is built once, as a long-lived service would

    def sjoin():
        pgdf = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y, crs=4549))
        return gpd.sjoin(pgdf, zgdf, predicate="within", how="left")

    theirs, joined = best_of(sjoin, repeat)
    warm_pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y, crs=4549))
    warm_pts.sindex  # noqa: B018
    warm, _ = best_of(lambda: gpd.sjoin(warm_pts, zgdf, predicate="within", how="left"), repeat)
    inside = ~joined.index.duplicated()  # points in a zone per sjoin, one row each
    agree = float(np.mean((idx >= 0) == joined.loc[inside, "index_right"].notna().to_numpy()
                          | (method == "nearest")))
    return {
        "points": n_points, "zones": len(zones), "index_build_s": round(build, 3),
        "zonemap_s": round(ours, 3), "zonemap_1thread_s": round(ours1, 3), "sjoin_s": round(theirs, 3),
        "sjoin_warm_s": round(warm, 3), "gap_m": gap,
        "ratio_vs_sjoin": round(theirs / ours, 2), "ratio_1thread": round(theirs / ours1, 2),
        "zonemap_mpts_per_s": round(n_points / ours / 1e6, 2),
        "in_zone": int((method == "zone").sum()), "nearest": int((method == "nearest").sum()),
        "fallback": int((method == "fallback").sum()), "agree_with_sjoin": round(agree, 6),
        # on one thread: tracemalloc sees only this process, not forked workers
        "zonemap_peak_mib": round(peak_memory(lambda: one.route(x, y, 5.0)), 1),
        "sjoin_peak_mib": round(peak_memory(sjoin), 1),
        "threads": index.threads,
    }


# ---- HTTP -------------------------------------------------------------------------------

def _client(port: int, paths: list[str], seconds: float, out) -> None:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n, i, end = 0, 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        con.request("GET", paths[i % len(paths)])
        r = con.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"{paths[i % len(paths)]} answered {r.status}")
        n += 1
        i += 1
    out.put(n)


def load(port: int, paths: list[str], seconds: float, clients: int) -> float:
    q = mp.Queue()
    procs = [mp.Process(target=_client, args=(port, paths[k::clients] or paths, seconds, q)) for k in range(clients)]
    for p in procs:
        p.start()
    total = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def server_peak_rss(pid: int) -> int | None:
    """Peak RSS in MiB of the server and its worker processes (gunicorn forks workers)."""
    def hwm(p):
        status = Path(f"/proc/{p}/status")
        if not status.exists():
            return 0
        return next((int(line.split()[1]) for line in status.read_text().splitlines()
                     if line.startswith("VmHWM")), 0)

    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(c) for c in task.read_text().split()]
    total = sum(hwm(p) for p in pids)
    return total // 1024 if total else None


def demo_store(folder: Path) -> str:
    from layers import zones
    from layers.demo import demo_extract
    from layers.importer import import_osm
    from layers.store import open_store

    db = str(folder / "demo.gpkg")
    with open_store(db) as s:
        import_osm(s, demo_extract(ROOT / "var" / "cache"))
        zones.generate(s)
    return db


def http_bench(db: str | None, seconds: float, clients: int, rounds: int) -> dict:
    import numpy as np

    from layers.store import open_store
    from layers.zones import current

    tmp = tempfile.TemporaryDirectory()
    db = db or demo_store(Path(tmp.name))
    with open_store(db) as s:
        z = current(s.read("zones"))
    pts = z.geometry.sample(min(len(z), 2000), random_state=1).representative_point()
    routes = [f"/api/route?lon={p.x:.7f}&lat={p.y:.7f}" for p in pts]
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "cli.py"), "--db", db, "serve",
                               "--port", str(port), *SERVE_ARGS], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # the access log: a pipe nobody reads would stall it
    try:
        for _ in range(300):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
                break
            except OSError:
                time.sleep(0.1)
        load(port, routes[:50], 1.0, 1)  # warm: the router is built on the first request
        ping, route = [], []
        for _ in range(rounds):
            ping.append(load(port, ["/api/ping"], seconds, clients))
            route.append(load(port, routes, seconds, clients))
        hwm = server_peak_rss(server.pid)
    finally:
        server.terminate()
        server.wait(10)
        tmp.cleanup()
    p, r = float(np.median(ping)), float(np.median(route))
    return {"clients": clients, "seconds": seconds,
            "rounds": rounds, "zones": len(z), "ping_rps": round(p), "route_rps": round(r),
            "route_vs_ping": round(r / p, 2), "server_peak_rss_mib": hwm,
            "ping_each": [round(v) for v in ping], "route_each": [round(v) for v in route]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--zones", default="10000,100000", help="zone counts, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gap", type=float, default=0.2, help="metres between neighbouring synthetic zones")
    ap.add_argument("--db", help="store with zones for the HTTP part (default: the demo city, built in a temp dir)")
    ap.add_argument("--http-seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--server", choices=["gunicorn", "waitress"], default="gunicorn",
                    help="the WSGI server `zonemap serve` runs for the HTTP part")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = {"cpus": os.cpu_count(), "bulk": [], "http": None}
    for n in (int(v) for v in a.zones.split(",") if v):
        row = bulk(a.points, n, a.repeat, a.gap)
        out["bulk"].append(row)
        if not a.json:
            print(f"{row['points']:>9,} points × {row['zones']:>7,} zones: zonemap {row['zonemap_s']:.3f} s "
                  f"({row['threads']} workers; {row['zonemap_1thread_s']:.3f} s on 1), sjoin {row['sjoin_s']:.3f} s "
                  f"(warm {row['sjoin_warm_s']:.3f} s) "
                  f"→ {row['ratio_vs_sjoin']:.2f}× ({row['ratio_1thread']:.2f}× on 1 thread); "
                  f"zone {row['in_zone']:,} nearest {row['nearest']:,} fallback {row['fallback']:,}; "
                  f"peak {row['zonemap_peak_mib']} MiB vs {row['sjoin_peak_mib']} MiB; index {row['index_build_s']} s",
                  flush=True)
    if not a.no_http:
        SERVE_ARGS[:] = ["--server", a.server]
        out["http"] = h = http_bench(a.db, a.http_seconds, a.clients, a.rounds)
        h["server"] = f"zonemap serve --server {a.server}"
        if not a.json:
            print(f"HTTP ({h['clients']} clients, {h['rounds']}×{h['seconds']:g} s each): "
                  f"/api/ping {h['ping_rps']} req/s, "
                  f"/api/route {h['route_rps']} req/s → {h['route_vs_ping']:.0%} of the trivial endpoint; "
                  f"server peak RSS {h['server_peak_rss_mib']} MiB")
    if a.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
