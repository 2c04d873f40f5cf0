"""GET /tiles/{layer}/{z}/{x}/{y}.pbf: zones, buildings, roads and problems as Mapbox Vector
Tiles (layers/tiles.py), with the columns the caller's role may see (layers/privacy.py) and,
for zones and problems, who answers by name (`unit_name`). Below a layer's minimum zoom the
answer is 200 with an empty body: a valid MVT without layers, which every client draws as
nothing (a 204 would be as small, but some tile clients treat it as an error). `?crs=gcj02`
gives the tiles of a GCJ-02 basemap (AMap): our WGS 84 features shifted onto it by geo/crs.py.

Also `compress_and_tag(response)`, which app.py's after_request calls for every answer: gzip
for JSON and tiles when the client takes it, and ETag, Cache-Control and 304 for tiles and the
map layers' GeoJSON."""

from __future__ import annotations

import gzip

from flask import Blueprint, Response, current_app, request

from layers import tiles
from layers.errors import InputError
from layers.privacy import visible_columns
from layers.users import ANONYMOUS
from layers.zones import FALLBACK

from .common import current_user, services

bp = Blueprint("tiles", __name__)

MVT = "application/vnd.mapbox-vector-tile"
COMPRESSED = {"application/json", "application/geo+json", MVT}
MIN_GZIP_BYTES = 512  # below this gzip's own header and the CPU cost more than they save
GZIP_LEVEL = 5  # most of level 9's saving at a third of its time
# a new tile's gzip is part of its first answer: level 3 took half of level 5's time for a z16
# zones tile of ~90 kB (1.1 against 2.2 ms) for 4 % more bytes (33.3 against 32.0 kB)
TILE_GZIP_LEVEL = 3
TILE_MAX_AGE_S = 60  # a browser reuses a tile this long before asking again (then a 304)


def _rule_names() -> dict[str, str]:
    """The names a store's units table does not hold: the 属地兜底 fallbacks and the category
    rules' units (from the rules, not the router: a tile never waits for the router to load)."""
    names = {u["unit_id"]: u["name"] for u in FALLBACK.values()}
    names.update({r.unit_id: r.unit_name for r in services().rules.workflow.category_rules if r.unit_id})
    return names


def cache() -> tiles.TileCache:
    """This process's tile cache (one per app)."""
    return current_app.extensions.setdefault("zonemap.tiles", tiles.TileCache())


@bp.get("/tiles/<layer>/<int:z>/<int:x>/<int:y>.pbf")
def tile(layer: str, z: int, x: int, y: int):
    tiles.check_tile(layer, z, x, y)
    crs = request.args.get("crs", "wgs84")
    if crs not in ("wgs84", "gcj02"):
        raise InputError(f"crs must be wgs84 (the default) or gcj02 (tiles shifted onto an AMap basemap), not {crs!r}")
    svc = services()
    # a sparse city's first zoom is looked up only below the zoom every city draws from
    if not tiles.shown(layer, z) and z < cache().first_zoom(svc.store, layer):
        return Response(b"", mimetype=MVT)
    user = current_user()
    cols = tiles.tile_columns(layer, visible_columns(layer, None if user is ANONYMOUS else user.role))
    made = cache().tile(svc.store, layer, cols, z, x, y, _rule_names(), svc.rules.tz,
                        shift=None if crs == "wgs84" else crs)
    response = Response(made.body, mimetype=MVT)
    response.set_etag(made.etag, weak=True)  # of the plain bytes, the same for the gzipped ones
    if "gzip" in request.accept_encodings and len(made.body) >= MIN_GZIP_BYTES and request.method != "HEAD":
        # gzipped once per cached tile, not on every answer as compress_and_tag would
        response.set_data(made.gzipped(TILE_GZIP_LEVEL))
        response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    return response


# ---- every answer: gzip, ETag, Cache-Control -----------------------------------------------

def _tagged() -> bool:
    """The answers that get an ETag: tiles and the map layers' GeoJSON."""
    return request.blueprint == "tiles" or (request.path.startswith("/api/layers/")
                                            and request.path.endswith(".geojson"))


def compress_and_tag(response: Response) -> Response:
    """ETag (weak: the same for the gzipped and plain bytes), Cache-Control and 304 on
    If-None-Match for tiles and map layers; then gzip for JSON and tiles when the client
    sends Accept-Encoding: gzip. Streamed downloads (exports) and files sent as they are
    (direct_passthrough) are left alone: reading them here would hold them in memory."""
    if response.direct_passthrough or response.is_streamed or response.status_code != 200:
        return response
    if request.method in ("GET", "HEAD") and _tagged():
        signed_in = "Authorization" in request.headers or "Cookie" in request.headers
        if request.blueprint == "tiles":  # what a role may see differs: never shared between users
            scope = "private" if signed_in else "public"
            response.headers["Cache-Control"] = f"{scope}, max-age={TILE_MAX_AGE_S}"
        else:
            response.headers["Cache-Control"] = "private, no-cache"  # ask every time; a 304 is cheap
        response.vary.update(("Authorization", "Cookie"))
        response.add_etag(weak=True)
        response.make_conditional(request)
        if response.status_code == 304:
            return response
    if response.mimetype not in COMPRESSED or "Content-Encoding" in response.headers:
        return response
    response.vary.add("Accept-Encoding")
    if "gzip" not in request.accept_encodings or request.method == "HEAD":
        return response
    data = response.get_data()
    if len(data) < MIN_GZIP_BYTES:
        return response
    response.set_data(gzip.compress(data, compresslevel=GZIP_LEVEL))
    response.headers["Content-Encoding"] = "gzip"
    return response


__all__ = ["bp", "compress_and_tag"]
