"""`zonemap hotspots`: where problems concentrate (layers/hotspots.py), as text, JSON or a
GeoPackage layer. Registered in scripts/cli.py; kept free of cli.py's own imports (cli.py
imports this module while it is itself being run)."""

from __future__ import annotations

import json
import sys

import click

from layers import hotspots as layer
from layers.errors import ZonemapError
from layers.store import open_store
from scripts.cli_engine import engine_args, engine_options

TEXT_ROWS = 20
WEEKDAYS_ZH = "一二三四五六日"


@click.command("hotspots")
@click.option("--method", type=click.Choice(layer.METHODS), default="gi", show_default=True,
              help="gi: Getis–Ord Gi* hot/cold cells; kde: density surface; counts: per cell, zone and unit; "
                   "repeats: the same place and category again and again; peaks: by hour and weekday.")
@click.option("--since", help="Reported on or after this city date (YYYY-MM-DD) or ISO time.")
@click.option("--until", help="Reported on or before this city date (the whole day) or ISO time.")
@click.option("--category", help="Only these categories (comma-separated codes).")
@click.option("--cell-m", type=float, default=100.0, show_default=True, help="Square cell size in metres.")
@click.option("--cells", type=click.Choice(layer.CELLS), default="auto", show_default=True,
              help="Count in the 单元网格 (grid layer) or squares; auto: the grid when the store has one.")
@click.option("--band-m", type=float, help="gi: a distance band in metres instead of queen contiguity.")
@click.option("--permutations", type=int, default=0, show_default=True,
              help="gi: permutation p-values from this many permutations (0: analytic); 999 to reach 99 %.")
@click.option("--seed", type=int, default=0, show_default=True, help="gi: seed of the permutations.")
@click.option("--correction", type=click.Choice(["fdr", "none"]), default="fdr", show_default=True,
              help="gi: hold the false discovery rate across cells, or test each cell alone.")
@click.option("--bandwidth-m", type=float, help="kde: the Gaussian kernel's σ in metres (default 2 cells).")
@click.option("--k", "k", type=int, default=3, show_default=True, help="repeats: at least this many reports…")
@click.option("--days", type=float, default=30.0, show_default=True, help="repeats: …within this many days.")
@click.option("--tz", help="Time zone of dates and hours (default: the city's, from workflow.toml).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the cells or spots to this GeoPackage (.gpkg).")
@click.option("--limit", type=int, help=f"Rows to print (text: {TEXT_ROWS} by default; JSON: all).")
@click.option("--file", "file", type=click.Path(),
              help="Count the reports of this file instead of the store's (CSV, GeoJSON, GeoPackage, GeoParquet…; "
                   "e.g. the output of `route`).")
@click.option("--x", "x_col", help="--file: the longitude column (WGS 84).")
@click.option("--y", "y_col", help="--file: the latitude column (WGS 84).")
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def hotspots(ctx, method, since, until, category, cell_m, cells, band_m, permutations, seed, correction, bandwidth_m,
             k, days, tz, out, limit, file, x_col, y_col, engine, scheduler, workers, as_json):
    """Where problems concentrate, with significance: Gi* hot spots, density, counts, repeat
    spots and peaks in time (dates and hours in city time)."""
    try:
        with open_store(ctx.obj["db"]) as store:
            result = layer.hotspots(store, method, since=since, until=until, category=category, cell_m=cell_m,
                                    cells=cells, band_m=band_m, permutations=permutations, seed=seed,
                                    correction=correction, bandwidth_m=bandwidth_m, k=k, days=days, tz=tz,
                                    file=file, x=x_col, y=y_col, **engine_args(engine, scheduler, workers))
        written = layer.write_gpkg(result, out) if out else []
    except ZonemapError as exc:
        if as_json:
            click.echo(json.dumps({"error": str(exc)}, ensure_ascii=False))
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    shown = layer.rows(result, limit if limit is not None or not as_json else None)
    if as_json:
        data = {"method": method, "params": result.params, "summary": result.summary, "rows": shown,
                "out": {"file": out, "layers": written} if out else None}
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
        return
    click.echo("\n".join(_text(result, shown[: limit or TEXT_ROWS], out, written)))


def _text(result, shown: list[dict], out, written) -> list[str]:
    s = result.summary
    given = ", ".join(f"{k}={v}" for k, v in result.params.items() if v not in (None, "") and k != "tz")
    lines = [f"{result.method}: {s['problems']} problems; {given} (tz {result.params['tz']})"]
    if result.method == "peaks":
        return lines + _peaks(s)
    if result.method == "gi" and "spots" in s:
        lines.append("cells: " + str(s["cells"]) + "; " + ", ".join(f"{k} {v}" for k, v in s["spots"].items()))
    elif "note" in s:
        lines.append(s["note"])
    if shown:
        cols = [c for c in shown[0] if c not in ("geometry",)]
        lines.append("  ".join(cols))
        lines += ["  ".join(_cell(c, r[c]) for c in cols) for r in shown]
    if out:
        lines.append(f"wrote {', '.join(written)} to {out}")
    return lines


def _cell(name: str, v) -> str:
    if isinstance(v, float):
        return f"{v:.6f}" if name in ("lon", "lat") else f"{v:.3g}"
    return "" if v is None else str(v)


def _peaks(s: dict) -> list[str]:
    if not s["total"]:
        return ["no reports in the period"]
    top = max(s["by_hour"])
    lines = [f"{h:02d}时 {n:6d} {'█' * round(30 * n / top)}" for h, n in enumerate(s["by_hour"])]
    lines += [f"周{WEEKDAYS_ZH[d]} {n:6d}" for d, n in enumerate(s["by_weekday"])]
    lines.append(f"peak: {s['peak_hour']:02d}:00–{s['peak_hour']:02d}:59, 周{WEEKDAYS_ZH[s['peak_weekday']]}")
    return lines
