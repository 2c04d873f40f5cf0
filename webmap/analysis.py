"""Analysis for staff: GET /api/hotspots, where problems concentrate (layers/hotspots.py).

Counts of problems name no one, but they are the city's working picture, so only signed-in
staff (inspector, dispatcher, planner, admin) get them. Dates are the city's."""

from __future__ import annotations

import math

from flask import Blueprint, jsonify, request

from layers import hotspots
from layers.errors import Forbidden, InputError
from layers.privacy import STAFF

from .common import int_arg, services, settings, signed_in

bp = Blueprint("analysis", __name__)


@bp.get("/api/hotspots")
def hotspots_api():
    """GET /api/hotspots?since=&until=&category=&cell_m=&method=gi|kde|counts|repeats|peaks&limit=

    GeoJSON of what the inspector map shows (significant Gi* cells, the dense part of the
    density surface, cells with reports, repeat spots), most notable first; `peaks` answers
    counts by hour and weekday instead."""
    user = signed_in()
    if user.role not in STAFF:
        raise Forbidden(f"{user.name} ({user.role}) may not see hotspots: they are for staff ({', '.join(STAFF)})")
    args = request.args
    method = args.get("method") or "gi"
    if method not in hotspots.METHODS:
        raise InputError(f"parameter 'method': {method!r}; use one of {', '.join(hotspots.METHODS)}")
    limit = int_arg("limit", settings().max_features, 1, settings().max_features)
    svc = services()
    result = hotspots.hotspots(svc.store, method, since=args.get("since"), until=args.get("until"),
                               category=args.get("category"), cell_m=_cell_m(args.get("cell_m")), rules=svc.rules)
    if method == "peaks":
        return jsonify({"method": method, "params": result.params, "summary": result.summary})
    return jsonify(hotspots.feature_collection(result, limit))


def _cell_m(text: str | None) -> float:
    if text in (None, ""):
        return 100.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    low, high = hotspots.CELL_M_RANGE
    if not (math.isfinite(value) and low <= value <= high):
        raise InputError(f"parameter 'cell_m': {text!r} is not a cell size of {low:g}–{high:g} metres")
    return value
