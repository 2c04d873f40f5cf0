"""Field work from the phone (走 and 评): POST /api/patrols records a grid worker's track,
POST /api/inspections an inspection scored on the sheet of layers/rules/inspection.toml.
Both need an inspector's (or admin's) token."""

from __future__ import annotations

from flask import Blueprint, jsonify

from layers import inspections, patrols
from layers.cases import check_text
from layers.errors import Forbidden, InputError

from .common import city_time, client_addr, json_body, services, signed_in

bp = Blueprint("field", __name__)

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


def _json(text):
    import json

    return json.loads(text) if text else None


__all__ = ["bp"]
