"""The planner's JSON API: zones (panel, search, map, QA, history) and their edits under
/api/planner/, and units under /api/units. Each route checks who asks and calls
layers.zone_edit / layers.units_edit.

Reading is for staff (inspectors, dispatchers, planners, admins); every write, and the QA
layer, for planners and admins; unit users and the public get 403. Writes made with the
session cookie need the CSRF token (webmap/auth.py). A stale edit or a shape that would
swallow a neighbour answers 409 with what the page needs to show it."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from layers import units_edit, zone_edit
from layers.errors import Forbidden, InputError
from layers.privacy import STAFF
from layers.users import User

from .common import bbox_arg, client_addr, int_arg, json_body, services, settings, signed_in

bp = Blueprint("planner_api", __name__)
PREFIX = "/api/planner"


@bp.after_request
def routing_follows(response):
    """After a write, this worker routes by the new zones and unit names at once."""
    if request.method == "POST" and response.status_code < 300:
        services().zones_changed()
    return response


@bp.errorhandler(zone_edit.EditRefused)
def refused(exc):
    return jsonify({"error": str(exc), "status": exc.status, **exc.extra}), exc.status


def _staff() -> User:
    user = signed_in()
    if user.role not in STAFF:
        raise Forbidden(f"{user.name} ({user.role}) may not read the planner's data; it is for staff")
    return user


def _editor() -> User:
    user = signed_in()
    zone_edit.may_edit(user)
    return user


def _panel(code: str, user: User, row: dict | None = None) -> dict:
    svc = services()
    return zone_edit.panel(svc.store, code, user, svc.rules.categories, row=row)


def _edit_args(body: dict, *names) -> dict:
    """The body's note and base_version (required: an edit says which version it changes)."""
    if "base_version" in names and body.get("base_version") is None:
        raise InputError("base_version is required: the version of the zone the edit was based on")
    return {"note": body.get("note"), **{n: body.get(n) for n in names}, "origin": client_addr()}


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false")
    return value


def _answer(change: zone_edit.Change, user: User) -> dict:
    """The zone an edit is about: as stored, or (dry run) as it would be."""
    row = next((r for r in change.rows if r["code"] == change.codes[0]), None)
    return _panel(change.codes[0], user, row=row if change.dry_run else None)


# ---- reading -----------------------------------------------------------------------------

@bp.get(f"{PREFIX}/zones/<code>")
def zone(code):
    return jsonify(_panel(code, _staff()))


@bp.get(f"{PREFIX}/zones/<code>/history")
def history(code):
    _staff()
    return jsonify(zone_edit.history(services().store, code))


@bp.get(f"{PREFIX}/search")
def search():
    _staff()
    return jsonify(zone_edit.search(services().store, request.args.get("q", "")))


@bp.get(f"{PREFIX}/zones.geojson")
def zones_map():
    _staff()
    color = request.args.get("color") or "kind"
    if color not in ("kind", "unit"):
        raise InputError("color must be kind or unit")
    body = zone_edit.zones_geojson(services().store, bbox_arg(request.args.get("bbox")), settings().max_features)
    return jsonify(body | {"color": color}), 200, {"Content-Type": "application/geo+json"}


@bp.get(f"{PREFIX}/qa")
def qa():
    _editor()
    return jsonify(zone_edit.qa(services().store, bbox_arg(request.args.get("bbox")))), 200, \
        {"Content-Type": "application/geo+json"}


# ---- zone edits --------------------------------------------------------------------------

@bp.post(f"{PREFIX}/zones/<code>/assign")
def assign(code):
    user, body = _editor(), json_body()
    change = zone_edit.assign(services().store, code, body.get("unit_id"), user,
                              **_edit_args(body, "base_version"))
    return jsonify(_answer(change, user))


@bp.post(f"{PREFIX}/zones/<code>/geometry")
def reshape(code):
    user, body = _editor(), json_body()
    change = zone_edit.reshape(services().store, code, body.get("geometry"), user,
                               dry_run=_flag(body, "dry_run"), **_edit_args(body, "base_version"))
    return jsonify({"zone": _answer(change, user), "trimmed": change.trimmed, "dry_run": change.dry_run})


@bp.post(f"{PREFIX}/zones")
def create():
    user, body = _editor(), json_body()
    change = zone_edit.create(services().store, body.get("geometry"), body.get("kind"), body.get("unit_id"), user,
                              co_unit=body.get("co_unit"), dry_run=_flag(body, "dry_run"), **_edit_args(body))
    status = 200 if change.dry_run else 201
    return jsonify({"zone": _answer(change, user), "trimmed": change.trimmed, "dry_run": change.dry_run}), status


@bp.post(f"{PREFIX}/zones/<code>/split")
def split(code):
    user, body = _editor(), json_body()
    change = zone_edit.split(services().store, code, body.get("line"), user, dry_run=_flag(body, "dry_run"),
                             **_edit_args(body, "base_version"))
    rows = {r["code"]: r for r in change.rows}
    return jsonify({"zones": [_panel(c, user, row=rows.get(c) if change.dry_run else None) for c in change.codes],
                    "dry_run": change.dry_run})


@bp.post(f"{PREFIX}/zones/merge")
def merge():
    user, body = _editor(), json_body()
    change = zone_edit.merge(services().store, body.get("codes"), user, base_versions=body.get("base_versions"),
                             **_edit_args(body))
    return jsonify(_answer(change, user))


@bp.post(f"{PREFIX}/zones/<code>/restore")
def restore(code):
    user, body = _editor(), json_body()
    change = zone_edit.restore(services().store, code, body.get("version"), user, dry_run=_flag(body, "dry_run"),
                               **_edit_args(body, "base_version"))
    return jsonify(_answer(change, user))


# ---- units -------------------------------------------------------------------------------

@bp.get("/api/units")
def units():
    user = _staff()
    flag = request.args.get("placeholder")
    if flag not in (None, "", "0", "1", "true", "false"):
        raise InputError("placeholder must be 1 (only placeholders) or 0 (only named units)")
    only = None if flag in (None, "") else flag in ("1", "true")
    return jsonify(units_edit.listing(services().store, user, q=request.args.get("q") or None, placeholder=only,
                                      page=int_arg("page", 1, 1, 10**6),
                                      per_page=int_arg("per_page", 50, 1, settings().page_max)))


@bp.post("/api/units/<unit_id>")
def unit_edit(unit_id):
    user, body = _editor(), json_body()
    values = {k: v for k, v in body.items() if k != "note" and v is not None}  # null: leave it as it is
    return jsonify(units_edit.edit(services().store, unit_id, values, user, note=body.get("note"),
                                   origin=client_addr()))


@bp.post("/api/units/<unit_id>/merge")
def unit_merge(unit_id):
    user, body = _editor(), json_body()
    into = body.get("into")
    if not isinstance(into, str) or not into:
        raise InputError("into must be the unit_id of the unit to keep")
    return jsonify(units_edit.merge(services().store, unit_id, into, user, note=body.get("note"),
                                    origin=client_addr()))


__all__ = ["bp"]
