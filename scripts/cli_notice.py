"""`zonemap notice …` (unit notices, 告知书) and `zonemap bulletin …` (the monthly 通报).

Registered on the main group by scripts/cli.py; the store is the main group's --db."""

from __future__ import annotations

import json

import click

from layers.errors import ZonemapError
from layers.store import open_store
from scripts.cli_export import failed, parse_day


def _run(ctx, as_json: bool, make, text) -> None:
    """Open the store, make the document, print what was written (or the error, exit 1)."""
    try:
        with open_store(ctx.obj["db"]) as store:
            report = make(store)
    except ZonemapError as exc:
        failed(as_json, exc)
    click.echo(json.dumps(report, ensure_ascii=False, indent=2) if as_json else text(report))


@click.command("notice")
@click.option("--unit", "unit_id", help="The unit (unit_id) whose notice to print.")
@click.option("--street", help="Every unit of this street, one per page: a road named in the zones' street, "
                               "or a street office of the unit grid.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="FILE.pdf (printable, one unit per page) or FILE.html.")
@click.option("--as-of", "as_of", help="The zones in force on this city date (YYYY-MM-DD); default today.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def notice(ctx, unit_id, street, out, as_of, as_json):
    """Print the unit notice (门前三包责任告知书): map, 四至, duties, standards, person,
    validity and seal lines. Needs a Chinese font (Debian's fonts-noto-cjk)."""
    from layers.notice import write_notices

    day = parse_day(as_of)
    _run(ctx, as_json, lambda store: write_notices(store, out, unit_id=unit_id, street=street, as_of=day),
         lambda r: f"{r['out']}: {len(r['units'])} unit(s), {r['pages']} page(s), zones as of {r['as_of']}")


@click.command("bulletin")
@click.option("--period", required=True, help="The city month, YYYY-MM (e.g. 2026-11).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="FILE.pdf (the printed bulletin), FILE.html or FILE.xlsx (its tables, a sheet each).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def bulletin(ctx, period, out, as_json):
    """The monthly bulletin (通报): rankings, best and worst units, hotspot map, charts of the
    month, the overdue list and the 奖惩 list."""
    from layers.bulletin import write_bulletin

    _run(ctx, as_json, lambda store: write_bulletin(store, period, out),
         lambda r: f"{r['out']}: bulletin of {r['period']}, {r['cases']} case(s), {r['pages']} page(s)")
