"""What every blueprint shares: the server's services, who is asking, and request parsing.

`services()` is the one object a running app keeps (settings, store, rules, the router over
the zones in force and the service area); blueprints reach it through here, never through
loose `app.extensions` keys. Parsing helpers raise layers' errors, which carry their HTTP
status; one handler in app.py renders them."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import threading
import time

from flask import current_app, g, request, session

from layers.cases import Rules
from layers.errors import InputError, StoreUnavailable, TooLarge, Unauthorized
from layers.routing import Router
from layers.settings import Settings
from layers.store import Store, open_store
from layers.users import ANONYMOUS, User, get_user, user_for_token
from layers.zone_edit import change_count
from layers.zones import FALLBACK

ROUTER_CHECK_S = 1.0  # how often the zone writers' counter is looked at for a new router
SESSION_KEY = "user"  # the signed-in browser's {"name", "at"} in the session cookie
SESSION_HOURS = 12  # a browser session older than this signs in nobody


class Services:
    """The store, rules, router and service area of one server process. Opened lazily and
    again after a fork (gunicorn forks its workers after the app is made)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.rules = Rules()
        self._lock = threading.Lock()
        self._pid = None
        self._store: Store | None = None
        self._router = None  # (router, area, key, checked)

    @property
    def store(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            with self._lock:
                if self._store is None or self._pid != os.getpid():
                    self._store, self._pid, self._router = open_store(self.settings.db), os.getpid(), None
        return self._store

    def _routing(self):
        """The Router over the zones in force and the service area they make, rebuilt when a
        zone or unit writer has committed (the store's "zones:versions" counter, which every
        one bumps, looked at once a second: every worker routes by an edit within a second)
        or the city's day turns (zones have validity dates)."""
        cached, now = self._router, time.monotonic()
        if cached is not None and now - cached[3] < ROUTER_CHECK_S:
            return cached
        store = self.store
        try:
            key = (change_count(store), self.city_today())
        except StoreUnavailable:
            if cached is None:
                raise
            return cached  # the store is restarting: keep routing by the zones we have
        if cached is None or cached[2] != key:
            from layers.service_area import ServiceArea

            # with no zones yet every point falls back to the street office (属地兜底): reports still go in
            router = Router(store, allow_empty=True)
            area = ServiceArea.from_store(store, margin_m=self.settings.service_margin_m,
                                          boundary=self.settings.service_area)
            cached = (router, area, key, now)
        else:
            cached = (*cached[:3], now)
        self._router = cached
        return cached

    def zones_changed(self) -> None:
        """This process has just written zones or units: look at the counter on the next
        routing, not a second later (other processes see it within ROUTER_CHECK_S)."""
        cached = self._router
        if cached is not None:
            self._router = (*cached[:3], float("-inf"))

    @property
    def router(self) -> Router:
        return self._routing()[0]

    @property
    def area(self):
        return self._routing()[1]

    def city_today(self) -> dt.date:
        return dt.datetime.now(self.rules.tz).date()

    def close(self):
        if self._store is not None and self._pid == os.getpid():
            self._store.close()
        self._store = None


def services() -> Services:
    return current_app.extensions["zonemap"]


def settings() -> Settings:
    return services().settings


# ---- who is asking -----------------------------------------------------------------------

def current_user(token: str | None = None) -> User:
    """The user of the request's bearer token (or of `token`, Open311's api_key); else the
    user signed in by the session cookie (webmap/auth.py); the public without either. A bad
    token is refused (401), never taken as the public."""
    header = request.headers.get("Authorization", "")
    if header:
        kind, _, value = header.partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            raise Unauthorized("Authorization must be 'Bearer TOKEN' (get one with `zonemap token NAME`)")
        token = value.strip()
    if token is not None and not isinstance(token, str):  # Open311's api_key from a JSON body
        raise InputError("api_key must be text: a token from `zonemap token NAME`")
    if not token:
        user = session_user()
        if user is None:
            return ANONYMOUS
        g.user = user
        return user
    user = user_for_token(services().store, token)
    if user is None:
        raise Unauthorized("the token is unknown or revoked; ask an admin for a new one (`zonemap token NAME`)")
    g.user = user
    return user


def session_user() -> User | None:
    """The user the session cookie names, if signed in less than SESSION_HOURS ago and still
    active; None otherwise (a stale session is cleared)."""
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return None
    try:
        fresh = time.time() - float(data.get("at", 0)) < SESSION_HOURS * 3600
        user = get_user(services().store, str(data.get("name"))) if fresh else None
    except (InputError, TypeError, ValueError):
        user = None
    if user is None:
        session.pop(SESSION_KEY, None)
    return user


def signed_in() -> User:
    user = current_user()
    if user is ANONYMOUS:
        raise Unauthorized("sign in at /login, or send Authorization: Bearer TOKEN (get one with "
                           "`zonemap token NAME`)")
    return user


def client_addr() -> str:
    """The client's address: the socket's, or the one the trusted proxies put in
    X-Forwarded-For (ZONEMAP_TRUST_PROXY of them)."""
    hops = settings().trust_proxy
    if hops:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.remote_addr or "-"


# ---- parsing -----------------------------------------------------------------------------

def bbox_arg(text: str | None):
    if not text:
        return None
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError("bbox must be W,S,E,N in degrees, e.g. bbox=118.76,32.03,118.80,32.05") from None
    if not all(map(math.isfinite, (w, s, e, n))) or w > e or s > n:
        raise InputError("bbox must be W,S,E,N with W ≤ E and S ≤ N")
    return w, s, e, n


def int_arg(name: str, default: int, low: int = 1, high: int | None = None) -> int:
    text = request.args.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"parameter {name!r}: {text!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        raise InputError(f"parameter {name!r}: {value} is outside {low}–{high if high is not None else '…'}")
    return value


def json_body() -> dict:
    """The request's JSON object, refused with a 4xx when it is too large, not JSON, nested
    deeper than the setting allows or holds text that is not valid Unicode (a lone surrogate
    such as \\ud800, which Python's json accepts but no store can keep)."""
    s = settings()
    limit = int(s.max_json_kb * 1024)
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"a JSON body may have at most {s.max_json_kb:g} kB")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(f"a JSON body may have at most {s.max_json_kb:g} kB")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InputError(f"the JSON body is nested deeper than {s.json_max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not JSON ({exc})") from None
    check_json(data, s.json_max_depth)
    if not isinstance(data, dict):
        raise InputError("send a JSON object, e.g. {\"lon\": 118.78, \"lat\": 32.04, \"category\": \"06010\"}")
    return data


def check_json(data, max_depth: int) -> None:
    """Depth and Unicode of a parsed JSON value, walked without recursion."""
    todo = [(data, 1, "body")]
    while todo:
        value, depth, where = todo.pop()
        if isinstance(value, str):
            _unicode(value, where)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > max_depth:
            raise InputError(f"the JSON body is nested deeper than {max_depth} levels")
        if isinstance(value, dict):
            for k, v in value.items():
                _unicode(k, where)
                todo.append((v, depth + 1, f"field {k!r}" if depth == 1 else where))
        else:
            todo.extend((v, depth + 1, where) for v in value)


def _unicode(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where} is not valid Unicode text (a lone surrogate such as \\ud800)") from None


def form_fields() -> dict:
    """Form fields as a dict, each checked like JSON text."""
    data = request.form.to_dict()
    for k, v in data.items():
        _unicode(v, f"field {k!r}")
    return data


# ---- city time ---------------------------------------------------------------------------

def city_time(value) -> str | None:
    """A stored (UTC) time as ISO 8601 in the city's time zone, with its offset."""
    if value is None:
        return None
    import pandas as pd

    t = pd.Timestamp(value)
    if t is pd.NaT:
        return None
    t = t.tz_localize("UTC") if t.tzinfo is None else t
    return t.tz_convert(services().rules.tz).isoformat(timespec="seconds")


def page_map(lang: str, editing: bool = False) -> dict:
    """The map configuration a page hands to static_zm/zonemap-map.js (webmap/maps.py)."""
    from .i18n import map_labels
    from .maps import map_config
    from .tiles import cache

    s = settings()
    return map_config(map_labels(lang), s.basemap, s.tianditu_key, editing, cache().first_zooms(services().store))


def unit_names(ids) -> dict[str, str]:
    """Unit id → name for `ids`: the units table, the category rules' units and the 属地兜底
    fallbacks (the router holds the first two), so a map never shows an id for a name."""
    svc = services()
    ids = sorted({i for i in ids if i is not None})
    units = svc.store.read("units", where={"unit_id": ids}) if ids else None
    return {**{u["unit_id"]: u["name"] for u in FALLBACK.values()}, **svc.router.unit_names,
            **(dict(zip(units["unit_id"], units["name"])) if units is not None else {})}
