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
from flask import Blueprint, Response, jsonify, request, send_file

from layers import case_map, cases, photos
from layers.errors import Forbidden, InputError, TooLarge, Unauthorized
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
    _check_map_layer(name)
    bbox = bbox_arg(request.args.get("bbox"))
    limit = int_arg("limit", 5000, 1, settings().max_features)
    frame = services().store.read(name, bbox=bbox, limit=limit + 1)
    truncated = len(frame) > limit
    geo = _as_geojson(name, frame.iloc[:limit])
    body = geo[:-1] + f', "truncated": {"true" if truncated else "false"}}}'
    return Response(body, mimetype="application/geo+json")


KEYS = {"zones": "code", "problems": "problem_id", "units": "unit_id"}  # a feature's key; fid elsewhere


@bp.get("/api/layers/<name>/<key>.geojson")
def feature(name, key):
    """One feature of a map layer by its key (a zone's code: the version in force; a case's id;
    a unit's id; else the fid a tile carries), as the layer's GeoJSON gives it: what a map's
    popup shows when a vector tile's feature is clicked."""
    _check_map_layer(name)
    col = KEYS.get(name, "fid")
    if col == "fid" and not key.isdigit():
        raise cases.NotFound(f"no {name} feature {key!r}: features of {name} are named by their fid, a number")
    frame = services().store.read(name, where={col: int(key) if col == "fid" else key})
    if name == "zones":
        frame = frame[frame["valid_to"].isna()]
    if name == "problems" and not frame.empty and frame["location_placeholder"].fillna(False).astype(bool).all():
        frame = frame.iloc[0:0]
    if frame.empty:
        raise cases.NotFound(f"no {name} feature {key!r}")
    fc = _as_geojson(name, frame.iloc[:1])
    return Response(fc[fc.index('[') + 1:fc.rindex(']')], mimetype="application/geo+json")


def _check_map_layer(name: str) -> None:
    if name not in map_layers():
        raise cases.NotFound(f"no map layer {name!r}; the map layers are: {', '.join(map_layers())}")


def _as_geojson(name: str, frame) -> str:
    """A FeatureCollection of `frame` with the columns the caller's role may see, who answers
    by name, category names and times in city time."""
    user = current_user()
    svc = services()
    cols = visible_columns(name, None if user is ANONYMOUS else user.role)
    frame = frame[[*cols, "geometry"]].copy()
    if name in UNIT_OF and not frame.empty:  # who answers, by name: a popup never shows an id
        names = unit_names(frame[UNIT_OF[name]])
        frame["unit_name"] = [names.get(u, u) for u in frame[UNIT_OF[name]]]
    if name == "problems" and not frame.empty:
        cats = svc.rules.categories
        frame["category_name"] = [cats[c].name if c in cats else c for c in frame["category"]]
    for c in LAYERS[name].columns:
        if c.type == "datetime" and c.name in frame.columns:
            frame[c.name] = [city_time(v) for v in frame[c.name]]
    return frame.to_json(na="null", show_bbox=False, drop_id=True, default=str)


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


CASE_FILTERS = ("status", "category", "unit", "grid", "since", "until", "light")


def case_filters() -> dict:
    """The case filters of the query (cases.find's), those given only."""
    return {k: request.args[k] for k in CASE_FILTERS if request.args.get(k)}


def with_photo_urls(case: dict) -> dict:
    """A case's photos with the addresses a page loads them from (full size and thumbnail)."""
    base = f"api/cases/{case['problem_id']}/photos/"
    for p in case.get("photos", []):
        p["url"], p["thumb"] = base + p["name"], base + p["name"] + "?size=thumb"
    return case


@bp.get("/api/cases")
def case_list():
    user = signed_in()
    a = request.args
    got = cases.list_cases(services().store, user, bbox=bbox_arg(a.get("bbox")), **case_filters(),
                           page=int_arg("page", 1), per_page=int_arg("per_page", 50, 1, settings().page_max),
                           include_linked=a.get("linked") in ("1", "true", "yes"), rules=services().rules)
    return jsonify(got)


@bp.get("/api/cases/map")
def case_map_view():
    """The cases of a view for the inspector's map: points when few, else counts per cell
    with their lights (layers/case_map.py)."""
    user = signed_in()
    svc = services()
    box = bbox_arg(request.args.get("bbox"))
    if box is None:
        raise InputError("give the view as bbox=W,S,E,N, e.g. bbox=118.76,32.03,118.80,32.05")
    return jsonify(case_map.view(svc.store, user, box, int_arg("zoom", 14, 0, 22), filters=case_filters(),
                                 points_max=svc.settings.map_points_max, rules=svc.rules))


@bp.get("/api/cases/due")
def due_cases():
    """Today's list: red and yellow cases nearest `near=lon,lat`, with the way there."""
    user = signed_in()
    text = request.args.get("near", "")
    try:
        lon, lat = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError("give near=lon,lat (WGS 84), e.g. near=118.7835,32.0418") from None
    filters = {k: v for k, v in case_filters().items() if k != "light"}
    return jsonify(case_map.due_near(services().store, user, lon, lat, filters=filters, page=int_arg("page", 1),
                                     per_page=int_arg("per_page", 10, 1, 100),
                                     lang="en" if request.args.get("lang") == "en" else "zh",
                                     rules=services().rules))


@bp.get("/api/cases/<problem_id>")
def case(problem_id):
    return jsonify(with_photo_urls(cases.get_case(services().store, problem_id, signed_in(),
                                                  rules=services().rules)))


@bp.get("/api/cases/<problem_id>/photos/<name>")
def case_photo(problem_id, name):
    """A photo of a case, `?size=thumb` for its thumbnail: for staff and the case's unit."""
    user = signed_in()
    svc = services()
    case = cases.get_case(svc.store, problem_id, user, rules=svc.rules)  # 404 for a case one may not see
    if not cases.may_see_photos(user, case):
        raise Forbidden(f"{user.name} ({user.role}) may not see the photos of {problem_id}: they are for staff "
                        "and the unit answering for the case")
    if not any(p["name"] == name for p in case["photos"]):
        raise cases.NotFound(f"case {problem_id} has no photo {name!r}")
    folder = svc.settings.photos_dir
    path = photos.thumbnail(folder, name) if request.args.get("size") == "thumb" else photos.photo_path(folder, name)
    response = send_file(path, max_age=3600, conditional=True)
    response.cache_control.private = True  # what a role may see is never kept by a shared cache
    return response


STEP_PHOTO_FIELDS = {"before": "before", "after": "after", "photo": "photo"}  # form field → kind


@bp.post("/api/cases/<problem_id>/transition")
def transition(problem_id):
    """JSON {action, note?, unit_id? (dispatch to another unit)}; or the same as form fields
    with photos (multipart/form-data: `before`, `after`, `photo` files, e.g. a unit's
    feed-back with the spot before and after)."""
    user = signed_in()
    uploads = []
    if request.mimetype == "multipart/form-data":
        data = {k: v for k, v in form_fields().items() if v != ""}  # a form's empty field says nothing
        uploads = [(kind, f) for field, kind in STEP_PHOTO_FIELDS.items()
                   for f in request.files.getlist(field) if f and f.filename]
    else:
        data = json_body()
    if not isinstance(data.get("action"), str):
        raise InputError("send a JSON object with an action, e.g. {\"action\": \"dispatch\", \"note\": \"…\"}")
    svc = services()
    note, unit_id = data.get("note"), data.get("unit_id")
    for name, value in (("note", note), ("unit_id", unit_id)):  # text stays text: a list is no note
        if value is not None and not isinstance(value, str):
            raise InputError(f"field {name!r} must be text")
    saved = []
    try:
        for kind, upload in uploads:
            saved.append({"name": save_photo(upload), "kind": kind})
        moved = cases.transition(svc.store, problem_id, data["action"], user, note=note, unit_id=unit_id,
                                 photos=saved, rules=svc.rules, origin=client_addr())
    except BaseException:
        for p in saved:  # a refused move keeps no photo
            (settings().photos_dir / p["name"]).unlink(missing_ok=True)
        raise
    return jsonify(with_photo_urls(moved))


@bp.get("/api/me")
def me():
    return jsonify(signed_in().to_dict())


__all__ = ["bp", "take_report"]
