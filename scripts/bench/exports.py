#!/usr/bin/env python3
"""Benchmark of the ledger and GIS exports (run by hand: `.venv/bin/python scripts/bench/exports.py`).

A synthetic city of N zones (default 100,000 Voronoi cells of about 400 m², scripts/bench/city.py and
routing.py) with a unit each (name, credit code, person, phone), and a few cases per hundred
zones, goes into a temporary GeoPackage store. Then, in the same run, each of these is timed
(best of --repeat) and its memory measured, every job in a fresh process:

  ledger build   layers.export.ledger (store → rows)  beside  the bare reads of zones, units, problems
  ledger xlsx    write_ledger(…, "xlsx")               beside  xlsxwriter constant_memory, write_row per row
  ledger csv     write_ledger(…, "csv")                beside  csv.writer.writerows of the same rows
  zones gpkg     gis_frame + write_gis(…, "gpkg")      beside  pyogrio.write_dataframe of the stored zones

Memory: the peak of Python's allocations during the job (tracemalloc, numpy's included, GDAL's
not: it is a separate run, since tracing slows Python code) and the process's peak resident
size above what it held before the job began (getrusage; a high-water mark, so a job using
less than its preparation shows 0). Ratios are ours / bare.

    scripts/bench/exports.py                 # 100,000 zones
    scripts/bench/exports.py --zones 20000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TZ = ZoneInfo("Asia/Shanghai")
PAIRS = (("ledger build", "ledger", "reads"), ("ledger xlsx", "xlsx", "xlsx_bare"),
         ("ledger csv", "csv", "csv_bare"), ("zones gpkg", "gpkg", "gpkg_bare"))


# ---- the jobs: prepare (not measured) and run (measured), in a child process ---------------

def _book(db):
    from layers import export
    from layers.store import open_store

    with open_store(db) as s:
        return export.ledger(s, period=export.month_period("2026-11", TZ), tz=TZ)


def _zones_frame(db):
    from layers import export
    from layers.store import open_store

    with open_store(db) as s:
        return export.gis_frame(s, "zones")


def job(name: str, db: str, out: Path):
    """(prepare, run) for job `name`; run takes what prepare made."""
    from layers import export

    if name == "ledger":
        return lambda: None, lambda _: _book(db)
    if name == "reads":
        def reads(_):
            from layers.store import open_store

            with open_store(db) as s:
                return s.read("zones"), s.read("units"), s.read("problems"), s.count("grid")
        return lambda: None, reads
    if name == "xlsx":
        return lambda: _book(db), lambda book: export.write_ledger(book, out / "l.xlsx", "xlsx")
    if name == "xlsx_bare":
        return lambda: _book(db), lambda book: bare_xlsx(book, out / "b.xlsx")
    if name == "csv":
        return lambda: _book(db), lambda book: export.write_ledger(book, out / "l.csv", "csv")
    if name == "csv_bare":
        return lambda: _book(db), lambda book: bare_csv(book, out / "b.csv")
    if name == "gpkg":
        return lambda: None, lambda _: export.write_gis(_zones_frame(db), out / "z.gpkg", "gpkg", layer="zones")
    if name == "gpkg_bare":
        def bare(_):
            import pyogrio

            from layers.store import open_store

            with open_store(db) as s:
                frame = s.read("zones")
            (out / "b.gpkg").unlink(missing_ok=True)
            pyogrio.write_dataframe(frame.drop(columns=["fid"]), out / "b.gpkg", layer="zones", driver="GPKG")
        return lambda: None, bare
    raise SystemExit(f"unknown job {name}")


def bare_xlsx(book, path: Path) -> None:
    import xlsxwriter

    from layers.export import LEDGER_HEADERS

    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    ws = wb.add_worksheet()
    ws.write_row(0, 0, LEDGER_HEADERS)
    for r, row in enumerate(book.rows, start=1):
        ws.write_row(r, 0, row)
    wb.close()


def bare_csv(book, path: Path) -> None:
    import csv

    from layers.export import LEDGER_HEADERS

    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(LEDGER_HEADERS)
        w.writerows(book.rows)


def child(name: str, db: str, out: str, repeat: int, trace: bool) -> dict:
    prepare, run = job(name, db, Path(out))
    made = prepare()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
        run(made)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return {"traced_mb": peak / 2**20}
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run(made)
        times.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": statistics.median(times), "rss_mb": (rss - rss0) / 1024, "peak_rss_mb": rss / 1024}


def measure(name: str, db: str, out: Path, repeat: int) -> dict:
    res = {}
    for trace in (False, True):
        cmd = [sys.executable, __file__, "--child", name, "--db", db, "--out", str(out), "--repeat", str(repeat)]
        done = subprocess.run(cmd + (["--trace"] if trace else []), capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"job {name} failed:\n{done.stderr}")
        res.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zones", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="time each job this many times (median)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.db, args.out, args.repeat, args.trace)))
        return
    with tempfile.TemporaryDirectory(prefix="zonemap-bench-exports-") as tmp:
        tmp = Path(tmp)
        db = str(tmp / "city.gpkg")
        t = time.perf_counter()
        from city import make_city

        n = make_city(db, args.zones)
        print(f"{n} zones, units and cases stored in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        rows = []
        for label, ours, bare in PAIRS:
            a, b = measure(ours, db, tmp, args.repeat), measure(bare, db, tmp, args.repeat)
            rows.append({"job": label, "ours_s": round(a["seconds"], 2), "bare_s": round(b["seconds"], 2),
                         "ratio": round(a["seconds"] / b["seconds"], 2),
                         "ours_traced_mb": round(a["traced_mb"], 1), "bare_traced_mb": round(b["traced_mb"], 1),
                         "ours_rss_mb": round(a["rss_mb"]), "bare_rss_mb": round(b["rss_mb"]),
                         "ours_peak_rss_mb": round(a["peak_rss_mb"])})
            print(json.dumps(rows[-1], ensure_ascii=False), file=sys.stderr)
        sizes = {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(tmp.iterdir()) if p.is_file()}
    print(json.dumps({"zones": n, "repeat": args.repeat, "jobs": rows, "file_mb": sizes}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
