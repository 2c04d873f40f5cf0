"""One settings object: every path, limit and environment variable zonemap reads.

Each setting has a name, a type, a default, the environment variable that sets it and a line
of documentation (README.md documents every one; a test keeps them equal). `Settings.load`
takes, for each setting, an explicit value (a command-line flag, a test), else the
environment, else the default, and checks them all at start: a wrong value stops the
server before it serves, with a message naming the variable. `zonemap config check` prints
them with where each came from."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _setting(default, env: str, doc: str, kind: str | None = None):
    return field(default=default, metadata={"env": env, "doc": doc, "kind": kind})


@dataclass(frozen=True)
class Settings:
    db: str = _setting(str(ROOT / "var" / "zonemap.gpkg"), "ZONEMAP_DB",
                       "the store: a GeoPackage path, or postgresql://… for PostGIS", "text")
    rules: str | None = _setting(None, "ZONEMAP_RULES",
                                 "a folder with a city's own rule files (categories.csv, calendar.toml, "
                                 "workflow.toml); the shipped ones otherwise", "dir")
    photos: str | None = _setting(None, "ZONEMAP_PHOTOS",
                                  "where uploaded photos are kept; default: photos/ beside a GeoPackage "
                                  "store, var/photos for PostGIS", "text")
    host: str = _setting("127.0.0.1", "ZONEMAP_HOST", "the address `serve` listens on", "text")
    port: int = _setting(8000, "ZONEMAP_PORT", "the port `serve` listens on", "port")
    server: str = _setting("gunicorn", "ZONEMAP_SERVER",
                           "gunicorn (worker processes × threads) or waitress (one process)", "server")
    workers: int = _setting(2, "ZONEMAP_WORKERS", "gunicorn worker processes", "count")
    threads: int = _setting(4, "ZONEMAP_THREADS", "threads per worker process", "count")
    reports_need_token: bool = _setting(False, "ZONEMAP_REPORTS_NEED_TOKEN",
                                        "refuse anonymous reports (only grid workers and staff with a "
                                        "token may report)", "bool")
    max_body_mb: float = _setting(12.0, "ZONEMAP_MAX_BODY_MB",
                                  "the largest request body taken, in MB (a report with its photo); "
                                  "larger ones get 413", "size")
    max_json_kb: float = _setting(256.0, "ZONEMAP_MAX_JSON_KB",
                                  "the largest JSON body taken, in kB; larger ones get 413", "size")
    max_photo_mb: float = _setting(10.0, "ZONEMAP_MAX_PHOTO_MB", "the largest photo taken, in MB", "size")
    json_max_depth: int = _setting(20, "ZONEMAP_JSON_MAX_DEPTH",
                                   "the deepest nesting of arrays and objects a JSON body may have", "count")
    service_area: str | None = _setting(None, "ZONEMAP_SERVICE_AREA",
                                        "a boundary file (GeoJSON, GeoPackage, Shapefile…) of the place "
                                        "this deployment serves; reports outside get 422", "file")
    service_margin_m: float = _setting(2000.0, "ZONEMAP_SERVICE_MARGIN_M",
                                       "without a boundary file, the zones' extent plus this margin in "
                                       "metres is the service area", "size")
    report_rate_limit: str = _setting("30/minute;300/hour", "ZONEMAP_REPORT_RATE_LIMIT",
                                      "reports one client (token, else address) may send, in "
                                      "Flask-Limiter's notation; beyond: 429", "limit")
    auth_failure_limit: str = _setting("10/minute", "ZONEMAP_AUTH_FAILURE_LIMIT",
                                       "failed sign-ins (bad token) one address may make; beyond: 429",
                                       "limit")
    max_features: int = _setting(20000, "ZONEMAP_MAX_FEATURES",
                                 "the most features one map layer request answers", "count")
    page_max: int = _setting(500, "ZONEMAP_PAGE_MAX", "the largest per_page of a case list", "count")
    map_points_max: int = _setting(2000, "ZONEMAP_MAP_POINTS_MAX",
                                   "the most cases the inspector's map draws one by one; a view with more "
                                   "gets counts per cell with their lights", "count")
    open311_max: int = _setting(1000, "ZONEMAP_OPEN311_MAX",
                                "the most service requests one Open311 query answers", "count")
    access_log: bool = _setting(True, "ZONEMAP_ACCESS_LOG",
                                "log one line per request (never a token, password or api_key)", "bool")
    secret_key: str | None = _setting(None, "ZONEMAP_SECRET_KEY",
                                      "the key that signs browser sessions and CSRF tokens (at least 32 "
                                      "characters); when unset, one is generated once and kept in "
                                      "var/secret_key (mode 0600), shared by every worker", "secret")
    trust_proxy: int = _setting(0, "ZONEMAP_TRUST_PROXY",
                                "how many reverse proxies in front set X-Forwarded-For (0: none; the "
                                "client address is the socket's)", "whole")
    notify: bool = _setting(True, "ZONEMAP_NOTIFY",
                            "run the notice sender inside `serve` (one thread in one process); "
                            "off: run `zonemap notify run` yourself", "bool")
    notify_every_s: float = _setting(15.0, "ZONEMAP_NOTIFY_EVERY_S",
                                     "how often the notice sender inside `serve` looks for notices to send, "
                                     "in seconds", "size")
    smtp_host: str | None = _setting(None, "ZONEMAP_SMTP_HOST",
                                     "the mail server notices are sent through (unset: e-mail notices wait "
                                     "in the outbox)", "text")
    smtp_port: int | None = _setting(None, "ZONEMAP_SMTP_PORT",
                                     "its port (default 25, 587 with starttls, 465 with ssl)", "port")
    smtp_tls: str = _setting("starttls", "ZONEMAP_SMTP_TLS",
                             "none, starttls or ssl (TLS from the first byte)", "tls")
    smtp_user: str | None = _setting(None, "ZONEMAP_SMTP_USER", "the login at the mail server (unset: none)",
                                     "text")
    smtp_password: str | None = _setting(None, "ZONEMAP_SMTP_PASSWORD", "its password (shown as ***)",
                                         "password")
    smtp_from: str = _setting("zonemap@localhost", "ZONEMAP_SMTP_FROM", "the From address of notices",
                              "email")
    gateway_url: str | None = _setting(None, "ZONEMAP_GATEWAY_URL",
                                       "the SMS/WeChat gateway notices are POSTed to as JSON (unset: "
                                       "gateway notices wait in the outbox)", "url")
    gateway_secret: str | None = _setting(None, "ZONEMAP_GATEWAY_SECRET",
                                          "the key of the HMAC-SHA256 signature header X-Zonemap-Signature "
                                          "(shown as ***)", "password")
    base_url: str = _setting("http://127.0.0.1:8000", "ZONEMAP_BASE_URL",
                             "where people reach this server: the start of links in notices", "url")
    basemap: str = _setting("none", "ZONEMAP_BASEMAP",
                            "the maps' basemap: none (our own roads and buildings, works offline), osm, "
                            "tianditu (天地图, needs ZONEMAP_TIANDITU_KEY) or amap (高德, GCJ-02: our layers "
                            "are shifted onto it)", "basemap")
    tianditu_key: str | None = _setting(None, "ZONEMAP_TIANDITU_KEY",
                                        "the 天地图 tk key (a browser-side key from console.tianditu.gov.cn) "
                                        "for basemap tianditu", "text")

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, values: dict | None = None, environ=None) -> Settings:
        """Settings from `values` (explicit; None means "not given"), else `environ`, else the
        defaults; every value checked. Raises InputError naming the variable."""
        environ = os.environ if environ is None else environ
        given = {k: v for k, v in (values or {}).items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)}; see `zonemap config check`")
        out = {}
        for f in dataclasses.fields(cls):
            env = f.metadata["env"]
            if f.name in given:
                raw, where = given[f.name], "given"
            elif environ.get(env, "") != "":
                raw, where = environ[env], env
            else:
                continue
            out[f.name] = _convert(raw, f, where)
        made = cls(**out)
        if made.basemap == "tianditu" and not made.tianditu_key:
            raise InputError("setting ZONEMAP_BASEMAP = 'tianditu' needs ZONEMAP_TIANDITU_KEY, the tk key of a "
                             "天地图 browser application (console.tianditu.gov.cn); or choose none, osm or amap")
        return made

    def sources(self, values: dict | None = None, environ=None) -> dict[str, str]:
        """Where each setting came from: given, the environment variable, or default."""
        environ = os.environ if environ is None else environ
        given = {k for k, v in (values or {}).items() if v is not None}
        return {f.name: "given" if f.name in given else f.metadata["env"]
                if environ.get(f.metadata["env"], "") != "" else "default" for f in dataclasses.fields(self)}

    def describe(self) -> list[dict]:
        return [{"name": f.name, "env": f.metadata["env"],
                 "value": "***" if f.metadata["kind"] in ("secret", "password") and getattr(self, f.name)
                 else getattr(self, f.name),
                 "default": f.default, "doc": f.metadata["doc"]} for f in dataclasses.fields(self)]

    @property
    def photos_dir(self) -> Path:
        if self.photos:
            return Path(self.photos)
        if "://" in self.db:
            return ROOT / "var" / "photos"
        return Path(self.db).parent / "photos"


def _convert(raw, f: dataclasses.Field, where: str):
    kind = f.metadata["kind"]
    name = f.metadata["env"] if where != "given" else f.name

    def bad(what: str):
        return InputError(f"setting {name} = {raw!r}: {what}")

    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise bad("use true or false")
    if kind in ("count", "port", "whole"):
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise bad("not a whole number") from None
        low, high = {"count": (1, 10**7), "port": (1, 65535), "whole": (0, 100)}[kind]
        if not low <= value <= high:
            raise bad(f"must be {low}–{high}")
        return value
    if kind == "size":
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise bad("not a number") from None
        if not value > 0 or value != value or value == float("inf"):
            raise bad("must be a positive number")
        return value
    text = str(raw).strip()
    if kind == "secret" and len(text) < 32:
        raise InputError(f"setting {name}: a secret key needs at least 32 characters (e.g. the output "
                         "of `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    if kind == "tls" and text not in ("none", "starttls", "ssl"):
        raise bad("use none, starttls or ssl")
    if kind == "url" and not text.startswith(("http://", "https://")):
        raise bad("give an http:// or https:// URL")
    if kind == "email" and "@" not in text:
        raise bad("give an e-mail address, like zonemap@city.gov.cn")
    if kind == "basemap" and text not in ("none", "osm", "tianditu", "amap"):
        raise bad("use none, osm, tianditu or amap")
    if kind == "server" and text not in ("gunicorn", "waitress"):
        raise bad("use gunicorn or waitress")
    if kind == "dir" and not Path(text).is_dir():
        raise bad("no such folder")
    if kind == "file" and not Path(text).is_file():
        raise bad("no such file")
    if kind == "limit":
        from limits import parse_many

        try:
            parse_many(text)
        except ValueError as exc:
            raise bad(f"not a rate limit like 30/minute;300/hour ({exc})") from None
    return text


__all__ = ["Settings"]
