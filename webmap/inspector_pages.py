"""The inspector's and the unit's workspace (issue 11): /inspector, the map of problems for
inspectors, dispatchers and admins (clusters coloured by light, a heatmap, Gi* hot cells,
filters, today's list, a case panel), and /unit, a unit user's own zones, cases and figures.

The pages hold no data: their scripts call /api/cases, /api/categories, /api/hotspots,
/api/planner/… (staff) and GET /api/unit/zones, the one route added here, since a unit may not
read the planner's zones. Leaflet.markercluster and Leaflet.heat (npm) are served from our
own server like Leaflet itself, so the pages ask no other host."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
from flask import Blueprint, jsonify, render_template, request
from shapely.geometry import mapping

from layers import zones as zone_layers
from layers.errors import Forbidden, ZonemapError
from layers.privacy import visible_columns
from layers.users import ANONYMOUS
from layers.workflow import STATE_ZH, STATES

from .common import current_user, page_map, services, signed_in
from .i18n import inspector_labels, pick_lang
from .maps import KIND_STYLES
from .planner_pages import to_login

INSPECTORS = ("inspector", "dispatcher", "admin")  # who works the map of problems
UNITS = ("unit",)  # a unit user answers for its own zones; staff have their own pages

bp = Blueprint("inspector_pages", __name__)


def _page(template: str, roles: tuple[str, ...], who: str):
    """`template` for a signed-in user of `roles`; the signed-out go to sign in, others get a 403
    page in the product's frame."""
    lang = pick_lang(request.args.get("lang"))
    try:
        user = current_user()
        if user is ANONYMOUS:
            return to_login()
        if user.role not in roles:
            raise Forbidden(f"{user.name} ({user.role}) may not open {request.path}: this page is for {who}")
        svc = services()
        extent = svc.store.extent()
        month = dt.datetime.now(svc.rules.tz).date().replace(day=1).isoformat()  # the city's month
    except ZonemapError as exc:
        return render_template("error.html", status=exc.status, message=str(exc)), exc.status
    return render_template(template, lang=lang, t=inspector_labels(lang), user=user, extent=extent,
                           map_cfg=page_map(lang), kind_styles=KIND_STYLES,
                           states=[(s, STATE_ZH[s]) for s in STATES], month=month)


@bp.get("/inspector")
def inspector():
    return _page("inspector.html", INSPECTORS, "inspectors, dispatchers and admins")


@bp.get("/unit")
def unit():
    return _page("unit.html", UNITS, "unit users (a unit's own zones and cases)")


@bp.get("/api/unit/zones")
def unit_zones():
    """GeoJSON of the signed-in unit's zones in force today (city time), as primary or
    co-responsible unit, with the columns a unit may see (layers.privacy)."""
    user = signed_in()
    if user.role not in UNITS or not user.unit_id:
        raise Forbidden(f"{user.name} ({user.role}) has no unit: GET /api/unit/zones is for unit users")
    return jsonify(own_zones(user.unit_id, user.role))


def own_zones(unit_id: str, role: str) -> dict:
    svc = services()
    today = dt.datetime.now(svc.rules.tz).date()
    parts = [svc.store.read("zones", where={col: [unit_id]}) for col in ("primary_unit", "co_unit")]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return {"type": "FeatureCollection", "features": []}
    found = zone_layers.current(pd.concat(parts, ignore_index=True), today)
    found = found.drop_duplicates(["code", "version"]).sort_values("code")
    cols = [c for c in visible_columns("zones", role) if c in found.columns and c != "geometry"]
    features = []
    for row in found.to_dict("records"):
        props = {c: _plain(row[c]) for c in cols}
        props["role"] = "primary" if row["primary_unit"] == unit_id else "co"
        features.append({"type": "Feature", "geometry": mapping(row["geometry"]), "properties": props})
    return {"type": "FeatureCollection", "features": features}


def _plain(value):
    """A JSON value: dates as ISO text, missing numbers as null."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, (dt.date, pd.Timestamp)):
        return value.isoformat()[:10]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


__all__ = ["bp", "own_zones"]
