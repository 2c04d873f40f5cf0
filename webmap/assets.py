"""The files the pages load from our own server, so that every map works on an intranet with
no internet: the front-end libraries npm installs under webmap/node_modules (pinned in
webmap/package.json, never committed) at /vendor/{lib}/{file}, and our own stylesheet and
map script (webmap/static_zm/) at /static/zm/{file}.

Scripts and stylesheets go out gzipped when the browser takes it (Leaflet's 147 kB are 42 kB
so): compressed once per file and kept in memory, keyed by the file's modification time."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

from flask import Blueprint, Response, request, send_from_directory
from werkzeug.security import safe_join

from layers.errors import NotFound

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"
STATIC = HERE / "static_zm"
VENDOR = {
    "leaflet": MODULES / "leaflet" / "dist",
    "geoman": MODULES / "@geoman-io" / "leaflet-geoman-free" / "dist",
    "markercluster": MODULES / "leaflet.markercluster" / "dist",
    "heat": MODULES / "leaflet.heat" / "dist",
    "vectorgrid": MODULES / "leaflet.vectorgrid" / "dist",
}
LEAFLET_DIST = VENDOR["leaflet"]
TEXT_TYPES = {".js": "text/javascript", ".css": "text/css", ".map": "application/json"}
VENDOR_MAX_AGE_S = 86400  # pinned versions: a day in the browser's cache
STATIC_MAX_AGE_S = 3600  # ours change with a deploy

bp = Blueprint("assets", __name__)
_packed: dict[Path, tuple[float, bytes]] = {}
_lock = threading.Lock()


def _gzipped(path: Path) -> bytes:
    mtime = path.stat().st_mtime
    with _lock:
        got = _packed.get(path)
    if got is None or got[0] != mtime:
        got = (mtime, gzip.compress(path.read_bytes(), compresslevel=9))
        with _lock:
            _packed[path] = got
    return got[1]


def send_asset(folder: Path, name: str, max_age: int):
    """`name` under `folder`; a script or stylesheet gzipped when the client takes it."""
    joined = safe_join(str(folder), name)
    path = Path(joined) if joined else None
    kind = TEXT_TYPES.get(path.suffix) if path else None
    if path is None or kind is None or not path.is_file() or "gzip" not in request.accept_encodings:
        return send_from_directory(folder, name, max_age=max_age)  # images, or plain; 404 when missing
    response = Response(_gzipped(path), mimetype=kind)
    response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    response.cache_control.public = True
    response.cache_control.max_age = max_age
    response.set_etag(f"{path.stat().st_mtime_ns:x}-gz", weak=True)
    return response.make_conditional(request)


@bp.get("/vendor/<lib>/<path:name>")
def vendor(lib, name):
    if lib not in VENDOR:
        raise NotFound(f"no front-end library {lib!r} here; the libraries are {', '.join(VENDOR)}")
    return send_asset(VENDOR[lib], name, VENDOR_MAX_AGE_S)


@bp.get("/static/zm/<path:name>")
def static_zm(name):
    return send_asset(STATIC, name, STATIC_MAX_AGE_S)


__all__ = ["LEAFLET_DIST", "VENDOR", "bp", "send_asset"]
