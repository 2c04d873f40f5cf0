"""`create_app(settings)`: the Flask app, made of blueprints over layers/.

pages (the map, the phone report page, the case desk), api (JSON under /api/), open311
(GeoReport v2 under /open311/v2/). Here, once for all of them: the settings, the error
handler (every layers error carries its HTTP status), rate limits, security headers and the
access log."""

from __future__ import annotations

import logging
import secrets
import time
from urllib.parse import parse_qsl, urlencode

from flask import Flask, Response, g, jsonify, render_template_string, request
from flask_limiter import Limiter
from werkzeug.exceptions import HTTPException

from layers.errors import InputError, ZonemapError
from layers.settings import Settings

from . import (
    api,
    assets,
    auth,
    exports,
    field,
    inspector_pages,
    open311,
    openapi,
    pages,
    planner_api,
    planner_pages,
    tiles,
)
from .analysis import bp as analysis_bp
from .common import Services, client_addr, settings
from .maps import basemap_hosts

log = logging.getLogger("zonemap.web")
access = logging.getLogger("zonemap.access")

# old-style keys (create_app({"DB": …})) and the setting each stands for
_LEGACY = {"DB": "db", "PHOTOS": "photos", "REPORTS_NEED_TOKEN": "reports_need_token"}
SECRET_PARAMS = {"api_key", "token", "access_token", "password", "key"}


def create_app(config: Settings | dict | None = None) -> Flask:
    """The app for `config`: a Settings, or a dict of settings (by name; the old upper-case
    DB/PHOTOS/REPORTS_NEED_TOKEN keys too) and Flask keys (TESTING…)."""
    flask_keys = {}
    if not isinstance(config, Settings):
        values = {}
        for k, v in (config or {}).items():
            if k in _LEGACY or k.islower():
                values[_LEGACY.get(k, k)] = v
            else:
                flask_keys[k] = v
        config = Settings.load(values)
    app = Flask(__name__, static_folder=None)
    app.config.update(flask_keys)
    app.config["MAX_CONTENT_LENGTH"] = int(config.max_body_mb * 1024 * 1024)
    app.json.ensure_ascii = False
    app.json.sort_keys = False  # answers keep the order they are built in (and cost less)
    app.extensions["zonemap"] = Services(config)

    app.register_blueprint(pages.bp)
    app.register_blueprint(assets.bp)  # /vendor/{lib}/…, /static/zm/…: scripts and styles, gzipped
    app.register_blueprint(api.bp)
    app.register_blueprint(open311.bp)
    app.register_blueprint(openapi.bp)
    auth.init_app(app, config)  # sessions, CSRF, /login
    app.register_blueprint(planner_api.bp)
    app.register_blueprint(field.bp)  # POST /api/patrols, /api/inspections
    app.register_blueprint(field.pages_bp)  # GET /field, the inspector's phone page
    app.register_blueprint(planner_pages.bp)  # /planner, /units, the workspace header and assets
    app.register_blueprint(inspector_pages.bp)  # /inspector, /unit, GET /api/unit/zones
    app.register_blueprint(exports.bp)  # GET /api/export/ledger.xlsx|csv, zones.geojson|gpkg
    app.register_blueprint(analysis_bp)  # GET /api/hotspots
    app.register_blueprint(tiles.bp)  # GET /tiles/{layer}/{z}/{x}/{y}.pbf, vector tiles
    _limits(app, config)
    _errors(app)
    _headers_and_log(app, config)
    return app


def _signs_in_nothing() -> bool:
    """A request without a token cannot fail to sign in: it need not be counted (the hot
    routing path then costs the limiter nothing)."""
    return "Authorization" not in request.headers and "api_key" not in request.args and \
        request.method == "GET"


def _limits(app: Flask, config: Settings) -> None:
    """Reports per client, and failed sign-ins per address. Counted in each worker process's
    memory: with gunicorn's N workers a client may get up to N times the limit."""
    limiter = Limiter(key_func=client_addr, app=app, storage_uri="memory://", headers_enabled=True,
                      default_limits=[config.auth_failure_limit],
                      default_limits_deduct_when=lambda response: response.status_code == 401)
    limiter.request_filter(_signs_in_nothing)  # checked first: such a request costs nothing

    def reporter():  # a signed-in reporter is counted by name, the public by address
        header = request.headers.get("Authorization", "")
        return "token:" + header[-16:] if header else client_addr()

    for endpoint in ("api.report", "open311.post_request"):
        app.view_functions[endpoint] = limiter.limit(config.report_rate_limit, key_func=reporter)(
            app.view_functions[endpoint])


ERROR_PAGE = """<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{{ status }}</title>
<body style="font:16px sans-serif;margin:2em"><h1>{{ status }}</h1><p>{{ message }}</p>
<p><a href="/">地图 / map</a></p></body></html>"""


def _errors(app: Flask) -> None:
    def render(status: int, message: str):
        if request.path.startswith(open311.PREFIX + "/"):  # unrouted paths there too
            return open311.error(status, message)
        if request.blueprint == "pages" and request.accept_mimetypes.accept_html:
            return render_template_string(ERROR_PAGE, status=status, message=message), status
        return jsonify({"error": message, "status": status}), status

    @app.errorhandler(ZonemapError)
    def zonemap_error(exc):
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        response = render(exc.status, str(exc))
        if exc.status == 503:
            response = app.make_response(response)
            response.headers["Retry-After"] = "2"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc):
        message = exc.description
        if exc.code == 413:
            message = f"the request body is larger than this server takes ({settings().max_body_mb:g} MB)"
        elif exc.code == 429:
            message = f"too many requests ({exc.description}); wait a moment and try again"
        return render(exc.code or 500, message)

    @app.errorhandler(Exception)
    def server_error(exc):  # never crash the server; say what happened
        log.exception("unhandled error in %s %s", request.method, request.path)
        return render(500, f"internal error: {type(exc).__name__}")


def _csp(nonce: str, image_hosts: list[str]) -> str:
    """Scripts of our own (and this response's inline ones), images from us and the configured
    basemap's host only: with basemap none a page can reach no other host at all."""
    return ("default-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; "
            "style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data: blob:{''.join(' ' + h for h in image_hosts)}; "
            "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
            "frame-ancestors 'none'")


def redacted_query() -> str:
    pairs = parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True)
    return urlencode([(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in pairs])


def _headers_and_log(app: Flask, config: Settings) -> None:
    image_hosts = basemap_hosts(config.basemap)

    @app.before_request
    def started():
        g.started = time.perf_counter()
        # a NUL in a path or query matches nothing anywhere, and PostgreSQL refuses it outright
        if "\x00" in request.path or b"%00" in request.query_string or b"\x00" in request.query_string:
            raise InputError("the address holds a NUL character (%00); remove it")

    @app.after_request
    def headers(response: Response):
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("X-Frame-Options", "DENY")
        if response.mimetype == "text/html" and not response.direct_passthrough:
            # our own inline scripts get this response's nonce; untrusted text is escaped in
            # every page, so no "<script" in a page comes from a user
            nonce = secrets.token_urlsafe(16)
            html = response.get_data(as_text=True)
            response.set_data(html.replace("<script", f'<script nonce="{nonce}"'))
            h["Content-Security-Policy"] = _csp(nonce, image_hosts)
        else:
            h.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        response = tiles.compress_and_tag(response)  # gzip for JSON and tiles; ETag, 304 (webmap/tiles.py)
        if config.access_log:
            query = redacted_query()
            user = getattr(g, "user", None)
            took = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
            access.info("%s %s %s %s%s %s %s %.1fms", client_addr(), user.name if user else "-", request.method,
                        request.path, f"?{query}" if query else "", response.status_code,
                        response.content_length if response.content_length is not None else "-", took)
        return response


__all__ = ["create_app"]
