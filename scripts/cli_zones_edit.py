"""`zonemap zones assign|import|restore` and `zonemap units edit|merge|retire`: a planner's
edits from the command line, through the same layers/ code as the planner's web pages (each
change a new zone version stamped with who, when and why).

Registered by scripts/cli.py (`zones.add_command(...)`, `main.add_command(units)`); the store
is the main group's --db. The edits are made as `cli:<login name>` of the machine."""

from __future__ import annotations

import getpass
import json
import sys

import click

from layers import importer, units_edit, zone_edit
from layers.errors import ZonemapError
from layers.store import open_store
from layers.users import User

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
note_option = click.option("--note", help="Why the change is made (kept with the new version).")


def _by() -> User:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return User(f"cli:{who}", "admin")


def _out(as_json: bool, data, text: str) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str) if as_json else text)


def _run(ctx, as_json: bool, work):
    """`work(store)` on the main group's store; a ZonemapError prints and exits 1."""
    try:
        with open_store(ctx.obj["db"]) as store:
            return work(store)
    except ZonemapError as exc:
        if as_json:
            click.echo(json.dumps({"error": str(exc), "status": exc.status, **getattr(exc, "extra", {})},
                                  ensure_ascii=False, indent=2, default=str))
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _versions(change: zone_edit.Change) -> dict:
    return {"written": change.written, "dry_run": change.dry_run,
            "versions": [{"code": r["code"], "version": r["version"], "primary_unit": r.get("primary_unit"),
                          "area_m2": r.get("area_m2")} for r in change.rows],
            "trimmed": [{k: v for k, v in t.items() if k != "geometry"} for t in change.trimmed]}


def _text(change: zone_edit.Change) -> str:
    if not change.rows:
        return f"{', '.join(change.codes)}: nothing to change"
    verb = "would write" if change.dry_run else "wrote"
    lines = [f"{verb} {r['code']} version {r['version']} ({r.get('primary_unit')}, {r.get('area_m2')} m²)"
             for r in change.rows]
    return "\n".join(lines)


@click.command("assign")
@click.argument("code")
@click.option("--unit", "unit_id", required=True, help="unit_id of the unit that answers from now on.")
@click.option("--base-version", type=int, help="Refuse if the version in force is not this one.")
@note_option
@json_option
@click.pass_context
def zones_assign(ctx, code, unit_id, base_version, note, as_json):
    """Give a zone another responsible unit: a new version (nothing written if it has it already)."""
    change = _run(ctx, as_json, lambda s: zone_edit.assign(s, code, unit_id, _by(), note=note,
                                                          base_version=base_version))
    _out(as_json, _versions(change), _text(change))


@click.command("restore")
@click.argument("code")
@click.option("--version", "version", required=True, type=int, help="The version to bring back.")
@click.option("--base-version", type=int, help="Refuse if the version in force is not this one.")
@click.option("--dry-run", is_flag=True, help="Show what would be written (and which neighbours trimmed).")
@note_option
@json_option
@click.pass_context
def zones_restore(ctx, code, version, base_version, dry_run, note, as_json):
    """Undo: a new version of the zone equal to an old one (neighbours grown into it are trimmed)."""
    change = _run(ctx, as_json, lambda s: zone_edit.restore(s, code, version, _by(), note=note,
                                                           base_version=base_version, dry_run=dry_run))
    _out(as_json, _versions(change), _text(change))


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--layer", help="The layer of a multi-layer file (GeoPackage) to read.")
@click.option("--crs", help="The file's CRS when it has none: EPSG code, wgs84, cgcs2000, gcj02, bd09.")
@click.option("--dry-run", is_flag=True, help="Compare with the zones in force and report; write nothing.")
@json_option
@click.pass_context
def zones_import(ctx, file, layer, crs, dry_run, as_json):
    """A planner's file of zones (GeoPackage, Shapefile, GeoJSON with code, primary_unit and
    geometry, e.g. exported, edited in QGIS and brought back): changed zones become new
    versions, new codes new zones, unchanged ones write nothing; overlaps with zones outside
    the file are refused by row. The same as `import FILE --as zones`."""
    report = _run(ctx, as_json, lambda s: importer.import_file(s, file, "zones", layer=layer, crs=crs,
                                                              dry_run=dry_run))
    _out(as_json, report.to_dict(), report.text())
    if report.error:
        sys.exit(1)


@click.group("units")
def units():
    """Fill in, merge and retire responsible units (责任单位)."""


@units.command("edit")
@click.argument("unit_id")
@click.option("--name", help="The unit's real name (a placeholder unit becomes a named one).")
@click.option("--person", help="责任人, the named person ('' clears it).")
@click.option("--phone", help="The person's phone ('' clears it).")
@click.option("--credit-code", help="统一社会信用代码 (18 characters).")
@click.option("--address", help="Address.")
@note_option
@json_option
@click.pass_context
def units_edit_cmd(ctx, unit_id, name, person, phone, credit_code, address, note, as_json):
    """Set some of a unit's fields; the others stay as they are."""
    values = {k: v for k, v in {"name": name, "person": person, "phone": phone, "credit_code": credit_code,
                                "address": address}.items() if v is not None}
    if not values:
        raise click.UsageError("give at least one of --name, --person, --phone, --credit-code, --address")
    unit = _run(ctx, as_json, lambda s: units_edit.edit(s, unit_id, values, _by(), note=note))
    _out(as_json, unit, f"{unit['unit_id']}: {unit['name']}  {unit.get('person') or ''} {unit.get('phone') or ''}")


@units.command("merge")
@click.argument("unit_id")
@click.option("--into", required=True, help="unit_id of the unit to keep.")
@note_option
@json_option
@click.pass_context
def units_merge_cmd(ctx, unit_id, into, note, as_json):
    """Merge a unit (a placeholder) into another: its zones move (new versions), it is retired."""
    unit = _run(ctx, as_json, lambda s: units_edit.merge(s, unit_id, into, _by(), note=note))
    _out(as_json, unit, f"{unit_id} merged into {unit['unit_id']} ({unit['name']}); "
                        f"{len(unit['zones_moved'])} zones moved: {', '.join(unit['zones_moved'])}")


@units.command("retire")
@click.argument("unit_id")
@note_option
@json_option
@click.pass_context
def units_retire_cmd(ctx, unit_id, note, as_json):
    """Retire a unit that answers for no zone (kept, never deleted)."""
    unit = _run(ctx, as_json, lambda s: units_edit.retire(s, unit_id, _by(), note=note))
    _out(as_json, unit, f"{unit_id} retired")


ZONE_COMMANDS = (zones_assign, zones_import, zones_restore)

__all__ = ["ZONE_COMMANDS", "units"]
