"""`zonemap evaluate`, `inspections …`, `patrols …`, `sanctions` and `route-check`: 走 and 评.

Registered on the main group by scripts/cli.py; the store is the main group's --db."""

from __future__ import annotations

import datetime as dt
import json
import sys

import click

from layers import evaluate as ev
from layers import inspections as insp
from layers import patrols as pat
from layers.errors import ZonemapError
from layers.store import open_store

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
period_option = click.option("--period", help="YYYY-MM (a month), YYYY-Qn or YYYY, in city time; "
                                              "default: last month.")


def _show(as_json: bool, data, text: str) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str) if as_json else text)


def _fail(as_json: bool, message: str) -> None:
    if as_json:
        click.echo(json.dumps({"error": message}, ensure_ascii=False, indent=2))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _run(ctx, as_json: bool, fn):
    """fn(store) with the main group's store; a ZonemapError is a message and exit 1."""
    try:
        with open_store(ctx.obj["db"]) as store:
            return fn(store)
    except ZonemapError as exc:
        _fail(as_json, str(exc))


def _pct(v) -> str:
    return ev.DASH if v is None else f"{100 * v:.1f}%"


# ---- evaluate -------------------------------------------------------------------------------

@click.command("evaluate")
@period_option
@click.option("--by", default="department", show_default=True, type=click.Choice(list(ev.SUBJECTS)))
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the ranking to FILE.xlsx or FILE.csv.")
@click.option("--lang", default="zh", show_default=True, type=click.Choice(["zh", "en"]),
              help="Column labels of the table and file.")
@click.option("--sanctions", "with_sanctions", is_flag=True,
              help="Also compute the period's 奖惩 from inspection.toml and store them in the 奖惩台账.")
@json_option
@click.pass_context
def evaluate(ctx, period, by, out, lang, with_sanctions, as_json):
    """Counts, rates, 综合指标值, grades and the ranking (红黑榜) of a period per subject, with the
    change from the previous period; the formula is layers/rules/evaluation.toml (versioned)."""
    def go(store):
        result = ev.evaluate(store, period, by)
        if out:
            result["out"] = str(ev.write(result, out, lang))
        if with_sanctions:
            result["sanctions"] = insp.sanctions(store, result["period"])
        return result

    result = _run(ctx, as_json, go)
    text = ev.text(result, lang)
    if "sanctions" in result:
        text += "\n" + _sanctions_text(result["sanctions"])
    _show(as_json, result, text + (f"\nwritten: {result['out']}" if out else ""))


def _sanctions_text(s: dict) -> str:
    lines = [f"奖惩 {s['period']} (rules {s['rules_version']}): fines {s['fines']:g} yuan, rewards "
             f"{s['rewards']:g} yuan" + ("" if s["saved"] else " (not saved)")]
    lines += [f"  {r['kind']:<6} {r['amount']:>6g}  {r['name']} ({r['unit_id']}): {r['reason']}" for r in s["rows"]]
    return "\n".join(lines)


@click.command("sanctions")
@period_option
@click.option("--dry-run", is_flag=True, help="Compute and show, store nothing.")
@json_option
@click.pass_context
def sanctions(ctx, period, dry_run, as_json):
    """The period's rewards and fines (奖惩台账) from the rules of inspection.toml; stored with the
    rules' version, replacing that period's earlier computation."""
    result = _run(ctx, as_json, lambda store: insp.sanctions(store, period, save=not dry_run))
    _show(as_json, result, _sanctions_text(result))


# ---- inspections --------------------------------------------------------------------------

@click.group("inspections")
def inspections():
    """Inspection records (检查记录) scored on the sheet of layers/rules/inspection.toml."""


@inspections.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check and score every row, write nothing.")
@json_option
@click.pass_context
def inspections_import(ctx, file, dry_run, as_json):
    """Inspections from a CSV/XLSX: 责任区编号 or 单位编号, 检查时间, 检查人, one column per score sheet
    item (its id or name), 照片, 备注. All rows or none."""
    rep = _run(ctx, as_json, lambda store: insp.import_file(store, file, dry_run=dry_run))
    verb = "would import" if dry_run else "imported"
    text = "\n".join([f"{rep['file']}: {verb} {rep['written'] or rep['accepted']} of {rep['rows']} inspections "
                      f"(sheet {rep['sheet_version']})", *(f"  {e}" for e in rep["errors"][:20])]
                     + ([f"error: {rep['error']}"] if rep.get("error") else []))
    _show(as_json, rep, text)
    if rep.get("error"):
        sys.exit(1)


def _ins_line(r: dict) -> str:
    return (f"{r['inspection_id']}  {r['inspected_at']}  {r.get('zone_code') or ev.DASH}  {r.get('unit_id') or ev.DASH}"
            f"  {r['total']:.1f} {'合格' if r['passed'] else '不合格'}  {r.get('inspector') or ''}")


@inspections.command("list")
@period_option
@click.option("--zone", help="Only this zone code.")
@click.option("--unit", help="Only this unit_id.")
@json_option
@click.pass_context
def inspections_list(ctx, period, zone, unit, as_json):
    """Inspections, newest first."""
    rows = _run(ctx, as_json, lambda store: insp.list_inspections(store, period, zone=zone, unit=unit))
    _show(as_json, rows, "\n".join(_ins_line(r) for r in rows) or "no inspections")


def _scores(values) -> dict:
    out = {}
    for v in values:
        item, sep, num = v.partition("=")
        try:
            out[item.strip()] = float(num)
        except ValueError:
            raise click.BadParameter(f"{v!r} is not ITEM=SCORE (a number 0–100)", param_hint="--score") from None
        if not sep:
            raise click.BadParameter(f"{v!r} is not ITEM=SCORE", param_hint="--score")
    return out


@inspections.command("add")
@click.option("--zone", "zone_code", help="The zone inspected (its code).")
@click.option("--unit", "unit_id", help="The unit inspected (default: the zone's primary unit).")
@click.option("--score", "scores", multiple=True, metavar="ITEM=SCORE", required=True,
              help="One per score sheet item, 0–100 (repeatable).")
@click.option("--at", "inspected_at", help="When (YYYY-MM-DD or ISO 8601, city time); default now.")
@click.option("--photo", "photos", multiple=True, help="A photo file name (repeatable).")
@click.option("--remarks", help="Remarks.")
@click.option("--as", "user_name", required=True, help="The inspector (a user of role inspector or admin).")
@json_option
@click.pass_context
def inspections_add(ctx, zone_code, unit_id, scores, inspected_at, photos, remarks, user_name, as_json):
    """Record one inspection; prints its total and whether it passed."""
    from layers.users import get_user

    rec = {"zone_code": zone_code, "unit_id": unit_id, "scores": _scores(scores), "inspected_at": inspected_at,
           "photos": list(photos), "remarks": remarks}
    row = _run(ctx, as_json, lambda store: insp.add(store, rec, get_user(store, user_name), origin="cli",
                                                    source="cli"))
    _show(as_json, row, _ins_line(row))


# ---- patrols -------------------------------------------------------------------------------

@click.group("patrols")
def patrols():
    """Grid workers' patrol tracks (巡查轨迹) and 巡查率."""


@patrols.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--worker", help="The grid worker of every track (default: the track's name/worker property).")
@click.option("--layer", help="The layer of a multi-layer file (default for GPX: tracks, else routes).")
@click.option("--crs", help="The file's CRS when it has none: wgs84, gcj02, bd09, EPSG code.")
@click.option("--skip-invalid", is_flag=True, help="Import the usable tracks even if some are not.")
@click.option("--dry-run", is_flag=True)
@json_option
@click.pass_context
def patrols_import(ctx, file, worker, layer, crs, skip_invalid, dry_run, as_json):
    """Import GPX/GeoJSON/KML tracks (the same as `import FILE --as patrols`, with --worker)."""
    rep = _run(ctx, as_json, lambda store: pat.import_tracks(store, file, layer=layer, crs=crs, worker=worker,
                                                             dry_run=dry_run, skip_invalid=skip_invalid))
    _show(as_json, rep.to_dict(), rep.text())
    if rep.error:
        sys.exit(1)


@patrols.command("coverage")
@period_option
@click.option("--of", "of", default="grid", show_default=True, type=click.Choice(["grid", "zones"]),
              help="What must be patrolled: unit grid cells or the zones in force.")
@click.option("--within", "within_m", type=float, help="Metres a track may pass from a cell (default: "
                                                        "evaluation.toml [patrol], 15).")
@click.option("--target", type=float, help="The target share 0–1 (default: evaluation.toml, 0.95).")
@json_option
@click.pass_context
def patrols_coverage(ctx, period, of, within_m, target, as_json):
    """巡查率 of a period per street, community and worker, against the target, and the list of cells
    NOT patrolled."""
    res = _run(ctx, as_json, lambda store: pat.coverage(store, period, of=of, within_m=within_m, target=target))
    mark = "meets" if res["meets_target"] else "BELOW"
    lines = [f"{res['period']}: {res['patrolled']}/{res['cells']} {res['of']} patrolled within {res['within_m']:g} m "
             f"= {_pct(res['rate'])} ({mark} the {_pct(res['target'])} target; {res['tracks']} tracks)"]
    for key in ("street", "community", "primary_unit"):
        for r in res.get(f"by_{key}", []):
            lines.append(f"  {key} {r[key]}: {r['patrolled']}/{r['cells']} = {_pct(r['rate'])}")
    lines += [f"  worker {r['worker']}: {r['cells']} cells = {_pct(r['rate'])}" for r in res["by_worker"]]
    lines.append(f"not patrolled ({len(res['not_patrolled'])}):")
    lines += ["  " + "  ".join(str(v) for v in r.values() if v is not None) for r in res["not_patrolled"]]
    _show(as_json, res, "\n".join(lines))


# ---- 迎检线路 ------------------------------------------------------------------------------

@click.command("route-check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--within", "within_m", type=float, help="Metres from the route (default: evaluation.toml "
                                                        "[route], 30).")
@click.option("--layer", help="The layer of a multi-layer file.")
@click.option("--crs", help="The file's CRS when it has none: wgs84, gcj02, bd09, EPSG code.")
@click.option("--as-of", help="The zones in force on this date (YYYY-MM-DD); default now.")
@json_option
@click.pass_context
def route_check(ctx, file, within_m, layer, crs, as_of, as_json):
    """迎检线路: the zones within N m of an inspection route (GeoJSON/GPX/KML line), in the route's
    order, with their units, open problems and last inspection."""
    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise click.BadParameter(f"{as_of!r} is not a date; use YYYY-MM-DD", param_hint="--as-of") from None
    res = _run(ctx, as_json, lambda store: insp.route_check(store, file, within_m=within_m, layer=layer, crs=crs,
                                                            as_of=day))
    lines = [f"{res['file']}: {len(res['zones'])} zones within {res['within_m']:g} m of a {res['route_m']:.0f} m route"]
    for z in res["zones"]:
        last = z["last_inspection"]
        seen = f"{last['inspected_at'][:10]} {last['total']:.0f} {'合格' if last['passed'] else '不合格'}" if last \
            else "never inspected"
        lines.append(f"  {z['along_m']:>7.0f} m  {z['code']}  {z['unit'] or z['unit_id'] or ev.DASH}  "
                     f"open problems {z['open_problems']}  last inspection {seen}")
    _show(as_json, res, "\n".join(lines))


COMMANDS = (evaluate, sanctions, inspections, patrols, route_check)

__all__ = ["COMMANDS"]
