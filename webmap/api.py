"""The JSON API under /api/: map layers, routing, reports, cases, and /health.

Authentication: `Authorization: Bearer TOKEN` (tokens from `zonemap token NAME`). Without a
token a request acts as the public: it may report (unless reports need a token) and read the
public map layers. Errors carry their status (layers/errors.py): 401 bad token, 403 role,
404 unknown, 409 a move the state does not allow, 413 too large, 422 outside the service
area, 429 too many, 503 store busy or restarting."""

from __future__ import annotations

import math
import secrets

import pandas as pd
from flask import Blueprint, Response, jsonify, request

from layers import cases
from layers.errors import InputError, TooLarge, Unauthorized
from layers.privacy import visible_columns
from layers.schema import LAYERS
from layers.users import ANONYMOUS, User

from .common import (
    bbox_arg,
    city_time,
    client_addr,
    current_user,
    form_fields,
    int_arg,
    json_body,
    services,
    settings,
    signed_in,
    unit_names,
)

bp = Blueprint("api", __name__)

PHOTO_KINDS = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}
CRS_NAMES = ("wgs84", "gcj02", "bd09", "cgcs2000")
IDEMPOTENCY_HEADER = "Idempotency-Key"
UNIT_OF = {"zones": "primary_unit", "problems": "unit_id"}  # the column naming who answers


def photo_kind(head: bytes) -> str | None:
    for magic, ext in PHOTO_KINDS.items():
        if head.startswith(magic):
            return ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def map_layers() -> list[str]:
    return [n for n, spec in LAYERS.items() if spec.geometry_type and not spec.private]


@bp.get("/api/layers")
def layers():
    st = services().store
    return jsonify({"store": st.kind, "extent": st.extent(),
                    "layers": [i for i in st.layer_info() if i["name"] in map_layers()]})


@bp.get("/api/layers/<name>.geojson")
def layer(name):
    """One map layer in a box, with the columns the caller's role may see, times in city time."""
    if name not in map_layers():
        raise cases.NotFound(f"no map layer {name!r}; the map layers are: {', '.join(map_layers())}")
    bbox = bbox_arg(request.args.get("bbox"))
    limit = int_arg("limit", 5000, 1, settings().max_features)
    user = current_user()
    svc = services()
    frame = svc.store.read(name, bbox=bbox, limit=limit + 1)
    truncated = len(frame) > limit
    cols = visible_columns(name, None if user is ANONYMOUS else user.role)
    frame = frame.iloc[:limit][[*cols, "geometry"]].copy()
    if name in UNIT_OF and not frame.empty:  # who answers, by name: a popup never shows an id
        names = unit_names(frame[UNIT_OF[name]])
        frame["unit_name"] = [names.get(u, u) for u in frame[UNIT_OF[name]]]
    if name == "problems" and not frame.empty:
        cats = svc.rules.categories
        frame["category_name"] = [cats[c].name if c in cats else c for c in frame["category"]]
    for c in LAYERS[name].columns:
        if c.type == "datetime" and c.name in frame.columns:
            frame[c.name] = [city_time(v) for v in frame[c.name]]
    geo = frame.to_json(na="null", show_bbox=False, drop_id=True, default=str)
    body = geo[:-1] + f', "truncated": {"true" if truncated else "false"}}}'
    return Response(body, mimetype="application/geo+json")


@bp.get("/api/route")
def route():
    """Who answers for a point: GET /api/route?lon=&lat=&crs=wgs84|gcj02|bd09|cgcs2000&category="""
    args = request.args.to_dict()  # a plain dict: the hot path pays no per-lookup exceptions
    try:
        lon, lat = float(args["lon"]), float(args["lat"])
    except (KeyError, ValueError):
        raise InputError("give lon and lat as numbers, e.g. /api/route?lon=118.7835&lat=32.0418") from None
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise InputError("lon and lat must be finite numbers")
    system = args.get("crs", "wgs84").lower()
    if system not in CRS_NAMES:
        raise InputError(f"crs must be {', '.join(CRS_NAMES)}")
    svc = services()
    category = args.get("category") or None
    if category is not None and category not in svc.rules.categories:
        raise InputError(f"category {category!r} is not in the category table; see /api/categories")
    row = svc.router.route_one(lon, lat, system, category=category)
    return jsonify(row | {"lon": lon, "lat": lat, "crs": system, "category": category})


@bp.get("/api/ping")
def ping():  # the trivial endpoint the routing benchmark compares /api/route with
    return jsonify({"ok": True})


@bp.get("/health")
def health():
    """Asks the store for real; 503 when it cannot answer."""
    return jsonify(services().store.check())


@bp.get("/api/categories")
def categories():
    return jsonify([{"code": c.code, "name": c.name, "major": c.major, "limit": c.limit,
                     "limit_unit": c.limit_unit, "urgency": c.urgency, "department": c.department}
                    for c in services().rules.categories.values()])


def save_photo(upload) -> str:
    """Keep an uploaded photo under a new random name; answers that name."""
    limit = int(settings().max_photo_mb * 1024 * 1024)
    head = upload.stream.read(16)
    kind = photo_kind(head)
    if kind is None:
        raise InputError(f"photo {upload.filename!r} is not a JPEG, PNG or WebP image")
    body = head + upload.stream.read(limit + 1 - len(head))
    if len(body) > limit:
        raise TooLarge(f"photo {upload.filename!r} is larger than {settings().max_photo_mb:g} MB")
    folder = settings().photos_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pd.Timestamp.now(tz='UTC'):%Y%m%d}-{secrets.token_hex(8)}.{kind}"
    path.write_bytes(body)
    return path.name


def take_report(data: dict, user: User, channel: str, upload=None, key: str | None = None) -> dict:
    """One report from any door: the photo kept first (removed again if the report fails),
    then one transaction through layers.cases; the answer goes out only after COMMIT."""
    if user is ANONYMOUS and settings().reports_need_token:
        raise Unauthorized("reports need a token on this server (Authorization: Bearer TOKEN)")
    svc = services()
    saved = None
    if upload is not None and upload.filename:
        saved = settings().photos_dir / save_photo(upload)
        data = {**data, "photo": saved.name}
    try:
        return cases.report_one(svc.store, data, user, channel, rules=svc.rules, router=svc.router,
                                area=svc.area, idempotency_key=key, origin=client_addr())
    except BaseException:
        if saved is not None:
            saved.unlink(missing_ok=True)
        raise


@bp.post("/api/problems")
def report():
    """JSON {lon, lat, crs, category, description, address, contact}, or the same as form
    fields with a `photo` file (multipart/form-data). `Idempotency-Key: <uuid>` makes a retry
    answer the same case."""
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        data, upload = form_fields(), request.files.get("photo")
    else:
        data, upload = json_body(), None
    # the stored photo's name, the attrs JSON and the id are zonemap's to set, never a client's
    data = {k: v for k, v in data.items() if k not in ("photo", "attrs", "problem_id", "idempotency_key")}
    answer = take_report(data, current_user(), "api", upload, request.headers.get(IDEMPOTENCY_HEADER))
    replayed = bool(answer.pop("replayed", False))
    response = jsonify(answer)
    response.status_code = 201
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/api/cases")
def case_list():
    user = signed_in()
    a = request.args
    got = cases.list_cases(services().store, user, bbox=bbox_arg(a.get("bbox")), status=a.get("status"),
                           category=a.get("category"), unit=a.get("unit"), since=a.get("since"),
                           until=a.get("until"), page=int_arg("page", 1),
                           per_page=int_arg("per_page", 50, 1, settings().page_max),
                           include_linked=a.get("linked") in ("1", "true", "yes"), rules=services().rules)
    return jsonify(got)


@bp.get("/api/cases/<problem_id>")
def case(problem_id):
    return jsonify(cases.get_case(services().store, problem_id, signed_in(), rules=services().rules))


@bp.post("/api/cases/<problem_id>/transition")
def transition(problem_id):
    """JSON {action, note?, unit_id? (dispatch to another unit)}."""
    user = signed_in()
    data = json_body()
    if not isinstance(data.get("action"), str):
        raise InputError("send a JSON object with an action, e.g. {\"action\": \"dispatch\", \"note\": \"…\"}")
    svc = services()
    note, unit_id = data.get("note"), data.get("unit_id")
    for name, value in (("note", note), ("unit_id", unit_id)):  # text stays text: a list is no note
        if value is not None and not isinstance(value, str):
            raise InputError(f"field {name!r} must be text")
    return jsonify(cases.transition(svc.store, problem_id, data["action"], user, note=note, unit_id=unit_id,
                                    rules=svc.rules, origin=client_addr()))


@bp.get("/api/me")
def me():
    return jsonify(signed_in().to_dict())


__all__ = ["bp", "take_report"]
