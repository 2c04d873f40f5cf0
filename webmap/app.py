"""`create_app(config)`: the Flask app. Routes parse the request, call layers/, serialise."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from pathlib import Path

from flask import Flask, Response, abort, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from layers.errors import ZonemapError
from layers.routing import Router
from layers.schema import LAYERS
from layers.store import open_store

from . import api, open311
from .i18n import labels, pick_lang
from .maps import layers_page

LEAFLET_DIST = Path(__file__).resolve().parent / "node_modules" / "leaflet" / "dist"
MAX_LIMIT = 20000

log = logging.getLogger("zonemap.web")


def _bbox_arg(text: str | None):
    if not text:
        return None
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        abort(400, "bbox must be W,S,E,N in degrees, e.g. bbox=118.76,32.03,118.80,32.05")
    if not all(map(math.isfinite, (w, s, e, n))) or w > e or s > n:
        abort(400, "bbox must be W,S,E,N with W ≤ E and S ≤ N")
    return w, s, e, n


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update({"DB": None, "JSON_AS_ASCII": False})
    app.config.update(config or {})
    app.json.ensure_ascii = False
    app.json.sort_keys = False  # answers keep the order they are built in (and cost less)

    def store():
        if "store" not in app.extensions:
            app.extensions["store"] = open_store(app.config["DB"])
        return app.extensions["store"]

    @app.get("/")
    def index():
        lang = pick_lang(request.args.get("lang"))
        leaflet = "vendor/leaflet" if (LEAFLET_DIST / "leaflet.js").exists() else None
        if leaflet is None:
            log.warning("Leaflet is not installed under webmap/node_modules (run scripts/run); "
                        "the page falls back to Folium's CDN and needs the internet")
        html = layers_page(store().extent(), labels(lang), lang, leaflet)
        return Response(html, mimetype="text/html")

    @app.get("/vendor/leaflet/<path:name>")
    def leaflet_asset(name):
        return send_from_directory(LEAFLET_DIST, name, max_age=86400)

    @app.get("/api/layers")
    def api_layers():
        st = store()
        return jsonify({"store": st.kind, "extent": st.extent(), "layers": st.layer_info()})

    @app.get("/api/layers/<name>.geojson")
    def api_layer(name):
        shown = [n for n, spec in LAYERS.items() if spec.geometry_type and not spec.private]
        if name not in shown:
            abort(404, f"no map layer {name!r}; the map layers are: {', '.join(shown)}")
        bbox = _bbox_arg(request.args.get("bbox"))
        try:
            limit = min(int(request.args.get("limit", 5000)), MAX_LIMIT)
        except ValueError:
            abort(400, "limit must be a whole number")
        frame = store().read(name, bbox=bbox)
        truncated = len(frame) > limit
        hidden = ["attrs", *(c.name for c in LAYERS[name].columns if c.private)]
        frame = frame.iloc[:limit].drop(columns=hidden)
        geo = frame.to_json(na="null", show_bbox=False, drop_id=True, default=str)
        body = geo[:-1] + f', "truncated": {"true" if truncated else "false"}}}'
        return Response(body, mimetype="application/geo+json")

    def router():
        """The Router over the zones in force, rebuilt when the zones change (checked at most
        once a minute) or the day turns (zones have validity dates)."""
        cached = app.extensions.get("router")
        now = time.monotonic()
        if cached is not None and now - cached["checked"] < 60:
            return cached["router"]
        key = (store().count("zones"), dt.date.today())
        if cached is None or cached["key"] != key:
            # with no zones yet every point falls back to the street office (属地兜底): reports still go in
            cached = {"router": Router(store(), allow_empty=True), "key": key}
        cached["checked"] = now
        app.extensions["router"] = cached
        return cached["router"]

    @app.get("/api/route")
    def api_route():
        """Who answers for a point: GET /api/route?lon=&lat=&crs=wgs84|gcj02|bd09|cgcs2000&category="""
        args = request.args.to_dict()  # a plain dict: the hot path pays no per-lookup exceptions
        try:
            lon, lat = float(args["lon"]), float(args["lat"])
        except (KeyError, ValueError):
            abort(400, "give lon and lat as numbers, e.g. /api/route?lon=118.7835&lat=32.0418")
        system = args.get("crs", "wgs84").lower()
        if system not in ("wgs84", "gcj02", "bd09", "cgcs2000"):
            abort(400, "crs must be wgs84, gcj02, bd09 or cgcs2000")
        category = args.get("category") or None
        if category is not None and category not in app.extensions["rules"].categories:
            abort(400, f"category {category!r} is not in the category table; see /api/categories")
        if not (math.isfinite(lon) and math.isfinite(lat)):
            abort(400, "lon and lat must be finite numbers")
        row = router().route_one(lon, lat, system, category=category)
        return jsonify(row | {"lon": lon, "lat": lat, "crs": system, "category": category})

    @app.get("/api/ping")
    def ping():  # the trivial endpoint the routing benchmark compares /api/route with
        return jsonify({"ok": True})

    api.register(app, store, router)
    open311.register(app, store)

    @app.get("/favicon.ico")
    def favicon():
        return Response(status=204)

    @app.get("/health")
    def health():
        return jsonify({"ok": True})

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return jsonify({"error": exc.description, "status": exc.code}), exc.code

    @app.errorhandler(ZonemapError)
    def zonemap_error(exc):
        return jsonify({"error": str(exc), "status": 400}), 400

    @app.errorhandler(Exception)
    def server_error(exc):  # never crash the server; say what happened
        log.exception("unhandled error")
        return jsonify({"error": f"internal error: {type(exc).__name__}", "status": 500}), 500

    return app
