"""Field work from the phone (走 and 评): POST /api/patrols records a grid worker's track,
POST /api/inspections an inspection scored on the sheet of layers/rules/inspection.toml.
Both need an inspector's (or admin's) token or browser session. GET /field is their page for
the phone (templates/field.html): it records a track with the browser's geolocation and fills
an inspection, calling these same routes."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from layers import inspections, patrols
from layers.cases import check_text
from layers.errors import Forbidden, InputError, ZonemapError
from layers.users import ANONYMOUS

from .common import city_time, client_addr, current_user, json_body, services, signed_in
from .i18n import field_labels, pick_lang
from .planner_pages import to_login

bp = Blueprint("field", __name__)
pages_bp = Blueprint("field_pages", __name__)  # the HTML page, kept apart from the JSON routes

INSPECTION_FIELDS = ("zone_code", "unit_id", "inspected_at", "scores", "photos", "remarks")
FIELD_ROLES = ("inspector", "admin")


def _field_worker():
    """The signed-in inspector or admin (401 without a token, 403 for other roles)."""
    user = signed_in()
    if user.role not in FIELD_ROLES:
        raise Forbidden(f"role {user.role!r} may not record field work; inspectors (grid workers) and admins may")
    return user


@bp.post("/api/patrols")
def record_patrol():
    """A GeoJSON Feature: a LineString with one time per point in properties.times."""
    user = _field_worker()
    svc = services()
    got = patrols.record_track(svc.store, json_body(), user, origin=client_addr(), area=svc.area)
    return jsonify({**got, "started_at": city_time(got["started_at"]), "ended_at": city_time(got["ended_at"])}), 201


@bp.post("/api/inspections")
def record_inspection():
    """{zone_code | unit_id, scores: {item: 0–100}, inspected_at?, photos?, remarks?}."""
    user = _field_worker()
    data = json_body()
    unknown = sorted(set(data) - set(INSPECTION_FIELDS))
    if unknown:
        raise InputError(f"field {unknown[0]!r} is not known; send {', '.join(INSPECTION_FIELDS)}")
    for name, limit in (("zone_code", 200), ("unit_id", 200), ("inspected_at", 64), ("remarks", 2000)):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InputError(f"field {name!r} must be text")
        check_text(name, data.get(name), limit)  # no NUL (a store cannot keep it), valid Unicode
    svc = services()
    row = inspections.add(svc.store, data, user, tz=svc.rules.tz, origin=client_addr())
    return jsonify({**row, "inspected_at": city_time(row["inspected_at"]), "scores": _json(row["scores"]),
                    "photos": _json(row["photos"])}), 201


@pages_bp.get("/field")
def field_page():
    """The inspector's phone page: the signed-out are sent to sign in, other roles refused (403)
    on a page; the score sheet's items come from the rules, so the form is the sheet in force."""
    lang = pick_lang(request.args.get("lang"))
    try:
        user = current_user()
        if user is ANONYMOUS:
            return to_login()
        if user.role not in FIELD_ROLES:
            raise Forbidden(f"{user.name} ({user.role}) may not open /field: the field page is for "
                            "inspectors (grid workers) and admins")
        sheet = inspections.load_sheet()
    except ZonemapError as exc:
        return render_template("error.html", status=exc.status, message=str(exc)), exc.status
    items = [{"id": i.id, "name": i.name, "weight": i.weight} for i in sheet.items]
    return render_template("field.html", lang=lang, f=field_labels(lang), items=items, pass_mark=sheet.pass_mark,
                           sheet_version=sheet.version, max_points=patrols.MAX_POINTS)


def _json(text):
    import json

    return json.loads(text) if text else None


__all__ = ["bp", "pages_bp"]
