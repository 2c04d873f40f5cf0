"""`zonemap export …`: the 台账 ledger (XLSX/CSV) and GIS files of zones, units and cases.

Registered on the main group by scripts/cli.py; the store is the main group's --db."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from layers import export as ex
from layers.errors import ZonemapError
from layers.store import open_store

GIS_HELP = {
    "zones": "The zones in force (on --as-of), with their units' names.",
    "units": "The responsible units (责任单位); units have no versions, so no --as-of.",
    "cases": "The cases (问题/案卷) with their state, category and unit names; times are city-time text. "
             "With --as-of: the cases reported by the end of that day, in the state they were in then.",
}


def parse_day(value):
    """A --as-of/--since/--until text as a date (None when not given); also cli_notice's."""
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from None


def _done(as_json: bool, data: dict, text: str) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2) if as_json else text)


def failed(as_json: bool, exc: ZonemapError) -> None:
    """Print the error (as JSON with --json) and exit 1; also cli_notice's."""
    if as_json:
        click.echo(json.dumps({"error": str(exc)}, ensure_ascii=False, indent=2))
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _tz():
    from layers.cases import Rules

    return Rules().tz


@click.group("export")
def export():
    """Export the 台账 ledger (XLSX, CSV) and GIS files (GeoPackage, Shapefile, GeoJSON, KML)."""


@export.command("ledger")
@click.option("--format", "fmt", type=click.Choice(["xlsx", "csv"]),
              help="xlsx (frozen header, filters) or csv (UTF-8 with BOM); default: --out's suffix, else xlsx.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@click.option("--as-of", help="The zones in force on this date (YYYY-MM-DD); default: today.")
@click.option("--street", help="Only the zones on this street (a road name of the zone, or its grid "
                               "cell's street office).")
@click.option("--sheets-by-street", is_flag=True, help="XLSX: one sheet per street (the zone's first).")
@click.option("--period", "month", metavar="YYYY-MM",
              help="The month 期内问题数 and 按期整改率 count (default: the month of --as-of, or this month).")
@click.option("--since", help="Instead of --period: the period's first day (YYYY-MM-DD).")
@click.option("--until", help="Instead of --period: the period's last day, included (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def ledger(ctx, fmt, out, as_of, street, sheets_by_street, month, since, until, as_json):
    """The zone responsibility ledger (责任区台账): one row per zone in force, Chinese headers.

    It holds personal fields (责任人, 联系电话): it is for staff, not for publishing.
    期内问题数 counts the problems reported in the period (not duplicates or voided ones);
    按期整改率 is the cases due in the period (disposal deadline in it) closed by their
    deadline, "—" when none was due."""
    fmt = fmt or ("csv" if Path(out).suffix.lower() == ".csv" else "xlsx")
    as_of = parse_day(as_of)
    try:
        tz = _tz()
        period = ex.choose_period(tz, month=month, since=parse_day(since), until=parse_day(until), as_of=as_of)
        with open_store(ctx.obj["db"]) as store:
            book = ex.ledger(store, as_of=as_of, street=street, period=period, tz=tz)
        with click.progressbar(length=len(book.rows), label=f"writing {Path(out).name}", file=sys.stderr) as bar:
            result = ex.write_ledger(book, out, fmt, by_street=sheets_by_street, progress=bar.update)
    except ZonemapError as exc:
        failed(as_json, exc)
    _done(as_json, result, f"{result['rows']} zones → {out} ({fmt}, period {result['period']}"
          + (f", {result['sheets']} sheets" if sheets_by_street else "") + ")")


def _gis_command(what: str):
    @export.command(what, help=GIS_HELP[what])
    @click.option("--format", "fmt", type=click.Choice(list(ex.GIS_FORMATS)),
                  help="gpkg, shp, geojson or kml; default: --out's suffix.")
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="The file to write.")
    @click.option("--as-of", help="As of this date (YYYY-MM-DD); default: now.")
    @click.option("--public", is_flag=True, help="Only the columns the public may see (no person, phone, "
                                                 "reporter, address or description): safe to publish.")
    @click.option("--encoding", help="Shapefile text encoding: utf-8 (default) or gbk for old desktop GIS; "
                                     "named in the .cpg file.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.pass_context
    def command(ctx, fmt, out, as_of, public, encoding, as_json):
        fmt = fmt or _format_of(out)
        try:
            with open_store(ctx.obj["db"]) as store:
                frame = ex.gis_frame(store, what, as_of=parse_day(as_of), public=public)
            click.echo(f"writing {len(frame)} {what} to {Path(out).name}…", err=True)
            result = ex.write_gis(frame, out, fmt, layer=what, encoding=encoding)
        except ZonemapError as exc:
            failed(as_json, exc)
        result["public"] = public
        _done(as_json, result, f"{result['rows']} {what} → {', '.join(result['files'])}"
              + (" (public columns only)" if public else ""))

    return command


def _format_of(out: str) -> str:
    suffix = Path(out).suffix.lower()
    for fmt, (_, ext) in ex.GIS_FORMATS.items():
        if suffix == ext:
            return fmt
    raise click.BadParameter(f"cannot tell the format of {Path(out).name}; give --format "
                             f"({', '.join(ex.GIS_FORMATS)})", param_hint="--format")


for _what in ex.GIS_LAYERS:
    _gis_command(_what)
