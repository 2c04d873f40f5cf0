"""Problems and cases: intake from any door, routing, duplicates, the workflow and queries.

Three doors share `intake`: the JSON API, Open311 and files (`import_problems`). Each report
is routed to the zone in force and its unit (layers.routing), checked against open cases of
the same category near it (a duplicate is linked, not opened), and written with its first
step in one transaction. `transition` moves a case by role along workflow.MOVES, keeps the
step (who, when, from, to, note) and sets the new stage's deadline against the calendar.
Nothing is ever overwritten: a state change adds a step; the case row holds the latest."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd

from geo.crs import NAMED_CRS, to_wgs84

from . import audit, notify
from .deadlines import YELLOW_SHARE, Category, WorkingCalendar, light_at, load_categories
from .errors import Forbidden, InputError, NotFound, Refused, StoreError
from .privacy import STAFF
from .routing import STREET_OFFICE, Router
from .schema import get_layer
from .service_area import ServiceArea
from .store import Store
from .store.base import empty_frame
from .users import User
from .workflow import FINAL, LINKED, MOVES, OPEN, REPORTERS, STATE_ZH, STATES, Limit, Workflow, find_move, moves_from

PAGE_MAX = 500


@dataclass
class Rules:
    """Categories, calendar and workflow, loaded once (a server keeps one)."""

    @cached_property
    def categories(self) -> dict[str, Category]:
        return load_categories()

    @cached_property
    def calendar(self) -> WorkingCalendar:
        return WorkingCalendar.load()

    @cached_property
    def workflow(self) -> Workflow:
        return Workflow.load()

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.workflow.timezone)

    def category(self, code) -> Category | None:
        return self.categories.get(str(code)) if code else None

    def disposal(self, code) -> Limit:
        return self.workflow.disposal_limit(self.category(code))

    def stage_limit(self, status: str, code) -> Limit | None:
        if status in ("dispatched", "processing", "rework"):
            return self.disposal(code)
        cat = self.category(code)
        if cat is not None and cat.urgency == "urgent" and status in self.workflow.stages_urgent:
            return self.workflow.stages_urgent[status]
        return self.workflow.stages.get(status)

    def add(self, start: dt.datetime, limit: Limit) -> dt.datetime:
        """start + limit on the calendar, counted in local office time, returned in UTC."""
        local = start.astimezone(self.tz).replace(tzinfo=None)
        return self.calendar.add(local, limit.amount, limit.unit).replace(tzinfo=self.tz).astimezone(dt.UTC)

    def _local(self, t) -> dt.datetime:
        return pd.Timestamp(t).to_pydatetime().astimezone(self.tz).replace(tzinfo=None)

    def light_times(self, status: str, code, start, deadline) -> tuple[dt.datetime | None, dt.datetime | None]:
        """(yellow_at, red_after) in UTC of a stage begun at `start` and due at `deadline`: it
        turns yellow once 80 % of its time on the stage's calendar (clock, working hours or
        working days) has passed, and red once more than all of it has (for working hours, when
        the next working period after the deadline begins). (None, None) without a limit.
        Stored with the case (`light_yellow_at`, `light_red_after`), so that a store tells
        lights in SQL, and every page tells the same light."""
        limit = self.stage_limit(status, code)
        if limit is None or _missing(start) or _missing(deadline):
            return None, None
        s, d = self._local(start), self._local(deadline)
        yellow = self.calendar.at_share(s, d, limit.unit, YELLOW_SHARE)
        red = self.calendar.resume(d, limit.unit)
        return tuple(t.replace(tzinfo=self.tz).astimezone(dt.UTC) for t in (yellow, red))

    def light(self, status: str, code, start, deadline, now: dt.datetime) -> str | None:
        """green below 80 % of the stage's time, yellow to 100 %, red beyond (None: no limit)."""
        yellow, red = self.light_times(status, code, start, deadline)
        if yellow is None:
            return None
        return light_at(pd.Timestamp(now), pd.Timestamp(yellow), pd.Timestamp(red))

    def case_light(self, case: dict, now: dt.datetime) -> str | None:
        """The light of a case (a row of the problems layer) at `now`: None when it is final,
        a linked duplicate or its stage has no limit; from its stored light times, else (a row
        written before they were kept) computed from its stage."""
        if case.get("status") in (*FINAL, LINKED):
            return None
        yellow, red = case.get("light_yellow_at"), case.get("light_red_after")
        if _missing(yellow) or _missing(red):
            return self.light(case.get("status"), case.get("category"), case.get("stage_started_at"),
                              case.get("stage_deadline"), now)
        return light_at(pd.Timestamp(now), pd.Timestamp(yellow), pd.Timestamp(red))


def _missing(v) -> bool:
    return v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def case_number(day: dt.date, n: int) -> str:
    """`ZM20261130-000123`: the city's date and the day's sequence (more digits past 999,999)."""
    return f"ZM{day:%Y%m%d}-{n:06d}"


def _metres(lon0, lat0, lon, lat) -> np.ndarray:
    """Great-circle distance in metres (haversine; exact enough within a duplicate window)."""
    r = 6371008.8
    p0, p1 = np.radians(lat0), np.radians(lat)
    a = np.sin((p1 - p0) / 2) ** 2 + np.cos(p0) * np.cos(p1) * np.sin(np.radians(lon - lon0) / 2) ** 2
    return 2 * r * np.arcsin(np.sqrt(a))


# ---- intake ----------------------------------------------------------------------------

def _routers(store: Store, rules: Rules, allow_empty: bool):
    """A Router per date when the zones have history, else one for all (and whether they have)."""
    zones = store.read("zones")
    history = not zones.empty and zones["valid_to"].notna().any()
    cache: dict = {}

    def get(day):
        key = day if history else None
        if key not in cache:
            cache[key] = Router(store, as_of=key, rules=rules.workflow.category_rules, allow_empty=allow_empty)
        return cache[key]
    return get, history


def _route_all(store, rules, lon, lat, cats, when: pd.Series, allow_empty, placeholder, router=None) -> pd.DataFrame:
    """Route every report in bulk: one call per city day when zones have history, else one."""
    get, history = ((lambda day: router), False) if router is not None else _routers(store, rules, allow_empty)
    if not history:
        routed = get(None).route(lon, lat, "wgs84", category=cats)
    else:
        days = when.dt.tz_convert(rules.tz).dt.tz_localize(None).dt.normalize().to_numpy()
        out = []
        for day in pd.unique(days):
            sel = np.flatnonzero(days == day)
            r = get(pd.Timestamp(day).date()).route(lon[sel], lat[sel], "wgs84", category=cats[sel])
            r.index = sel
            out.append(r)
        routed = pd.concat(out).sort_index()
    if placeholder.any():  # a stand-in point says nothing about the place
        routed.loc[placeholder, ["zone_code", "zone_kind", "zone_version", "distance_m", "grid_code"]] = None
        dept = routed["method"].eq("category") & routed["unit_id"].str.startswith("DEPT-", na=False)
        keep = placeholder & dept.to_numpy()
        routed.loc[placeholder & ~keep, "unit_id"] = STREET_OFFICE["unit_id"]
        routed.loc[placeholder & ~keep, "unit_name"] = STREET_OFFICE["name"]
        routed.loc[placeholder & ~keep, "method"] = "unlocated"
    return routed


def _open_cases(store: Store, cats: set, lon, lat, since: pd.Timestamp) -> pd.DataFrame:
    """The store's open cases of these categories near the batch and recent enough to repeat."""
    if not len(lon) or not cats:
        return pd.DataFrame()
    pad = 0.01  # > 1 km: wider than any duplicate distance
    box = (float(np.min(lon)) - pad, float(np.min(lat)) - pad, float(np.max(lon)) + pad, float(np.max(lat)) + pad)
    got = store.read("problems", bbox=box, where={"status": list(OPEN), "category": sorted(cats)})
    if got.empty:
        return pd.DataFrame()
    at = pd.to_datetime(got["reported_at"], utc=True)
    keep = (at >= since).to_numpy() & ~got["location_placeholder"].fillna(False).astype(bool).to_numpy()
    return pd.DataFrame({"problem_id": got["problem_id"].to_numpy()[keep], "category": got["category"].to_numpy()[keep],
                         "lon": got.geometry.x.to_numpy()[keep], "lat": got.geometry.y.to_numpy()[keep],
                         "at": at.to_numpy()[keep]})


def _pairs(cat, lon, lat, t_ns, queries, dist_m: float, window_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query i, candidate j, metres) with the same category, j reported 0…window_h
    before i and within dist_m of it. Points meet in grid cells at least dist_m wide and time
    buckets of window_h: only the 3 × 3 neighbouring cells of this and the previous bucket are
    compared, so the work grows with the reports, not with reports × candidates."""
    r = 6371008.8
    # metres east at the latitude farthest from the equator: never longer than the true distance
    x = r * np.radians(lon) * max(np.cos(np.radians(np.max(np.abs(lat)))), 1e-6)
    y = r * np.radians(lat)
    span = max(window_h * 3600e9, 1.0)
    t = np.floor((t_ns - t_ns.min()) / span).astype(np.int64)
    cell = dist_m * 1.01 + 1.0
    while True:  # one int64 key per (category, cell, bucket); far-flung points get coarser cells
        cx = np.floor((x - x.min()) / cell).astype(np.int64) + 1
        cy = np.floor((y - y.min()) / cell).astype(np.int64) + 1
        dims = (int(cat.max()) + 2, int(cx.max()) + 2, int(cy.max()) + 2, int(t.max()) + 2)
        if math.prod(dims) < 2**62:
            break
        cell *= 2
    key = np.ravel_multi_index((cat + 1, cx, cy, t + 1), dims)  # category -1 (none): never met
    order = np.argsort(key, kind="stable")
    ranked = key[order]
    found_i, found_j = [], []
    for dx, dy, dt_ in itertools.product((-1, 0, 1), (-1, 0, 1), (-1, 0)):
        k = np.ravel_multi_index((cat[queries] + 1, cx[queries] + dx, cy[queries] + dy, t[queries] + 1 + dt_), dims)
        lo, hi = np.searchsorted(ranked, k, "left"), np.searchsorted(ranked, k, "right")
        count = hi - lo
        total = int(count.sum())
        if not total:
            continue
        first = np.repeat(lo - (np.cumsum(count) - count), count)  # position of each pair's candidate
        found_i.append(np.repeat(queries, count))
        found_j.append(order[first + np.arange(total)])
    if not found_i:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    age_h = (t_ns[i] - t_ns[j]) / 1e9 / 3600
    near = (age_h >= 0) & (age_h <= window_h) & (i != j) & ((x[i] - x[j]) ** 2 + (y[i] - y[j]) ** 2 <= cell**2)
    i, j = i[near], j[near]
    d = _metres(lon[j], lat[j], lon[i], lat[i])
    near = d <= dist_m
    return i[near], j[near], d[near]


def _ns(times) -> np.ndarray:
    """UTC times as int64 nanoseconds since 1970."""
    t = pd.to_datetime(pd.Series(times), utc=True).dt.tz_localize(None)
    return t.to_numpy("datetime64[ns]").view(np.int64)


def _duplicates(rules: Rules, open_cases: pd.DataFrame, cats, lon, lat, when: pd.Series, eligible) -> tuple:
    """For each report, the open case it repeats: a case in the store (its id) or an earlier
    report of this batch that is itself not a duplicate (its index), the nearest within the
    category's window, ties to the first. Returns (store id or None, batch index or -1, metres)."""
    n, m = len(cats), len(open_cases)
    # one point set: the store's open cases first, then the batch, in order (the tie-break)
    all_cat = np.concatenate([open_cases["category"].to_numpy(dtype=object) if m else np.empty(0, object), cats])
    all_lon = np.concatenate([open_cases["lon"].to_numpy(float) if m else np.empty(0), lon])
    all_lat = np.concatenate([open_cases["lat"].to_numpy(float) if m else np.empty(0), lat])
    all_ns = np.concatenate([_ns(open_cases["at"]) if m else np.empty(0, np.int64), _ns(when)])
    usable = np.concatenate([np.ones(m, bool), eligible])  # placeholders neither repeat nor are repeated
    codes, uniques = pd.factorize(pd.Series(all_cat).where(usable))
    by_window: dict[tuple, list[int]] = {}
    for k, c in enumerate(uniques):
        by_window.setdefault(rules.workflow.duplicate_window(c), []).append(k)
    found = []
    for (dist_m, window_h), ks in by_window.items():
        queries = m + np.flatnonzero(np.isin(codes[m:], ks))
        if len(queries):
            found.append(_pairs(codes, all_lon, all_lat, all_ns, queries, dist_m, window_h))
    store_id = np.full(n, None, dtype=object)
    batch_of = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.nan)
    if not found:
        return store_id, batch_of, dist
    i, j, d = (np.concatenate(a) for a in zip(*found))
    keep = (j < m) | (j < i)  # a batch report can only repeat one before it in the batch
    i, j, d = i[keep], j[keep], d[keep]
    order = np.lexsort((j, d, i))
    i, j, d = i[order].tolist(), j[order].tolist(), d[order].tolist()
    linked = np.zeros(m + n, bool)
    ids = open_cases["problem_id"].to_numpy(dtype=object) if m else None
    k, total = 0, len(i)
    while k < total:  # in batch order: whether a report is linked decides whether it can be repeated
        q = i[k]
        while k < total and i[k] == q:
            if not linked[j[k]]:
                linked[q] = True
                if j[k] < m:
                    store_id[q - m] = ids[j[k]]
                else:
                    batch_of[q - m] = j[k] - m
                dist[q - m] = d[k]
                while k < total and i[k] == q:
                    k += 1
                break
            k += 1
    return store_id, batch_of, dist


class _Columns:
    """A report frame's columns as object arrays, with a default for a missing column."""

    def __init__(self, frame: pd.DataFrame):
        self.frame, self.n = frame, len(frame)

    def __contains__(self, name) -> bool:
        return name in self.frame

    def __call__(self, name, default=None) -> np.ndarray:
        if name in self.frame:
            return self.frame[name].to_numpy(dtype=object)
        if isinstance(default, np.ndarray):
            return default.astype(object)
        return np.full(self.n, default, dtype=object)


def _times(values: np.ndarray, now: dt.datetime) -> pd.Series:
    """Report times as UTC (naive ones are UTC: the file importer localised them already)."""
    try:
        t = pd.to_datetime(pd.Series(values, dtype=object), utc=True)
    except (TypeError, ValueError) as exc:
        raise InputError(f"a report time cannot be read ({exc}); give ISO 8601 times") from None
    fill = pd.Timestamp(now)
    fill = (fill.tz_localize("UTC") if fill.tzinfo is None else fill.tz_convert("UTC")).as_unit("us")
    return t.dt.as_unit("us").fillna(fill)


def _deadlines(rules: Rules, starts, limits) -> list:
    """start + limit on the calendar for each row (None without a limit), each pair computed once."""
    cache: dict = {}
    out = []
    for t, limit in zip(starts, limits):
        if limit is None or _missing(t):
            out.append(None)
            continue
        key = (t, limit)
        if key not in cache:
            cache[key] = rules.add(t, limit)
        out.append(cache[key])
    return out


def _per_pair(fn, a, b) -> list:
    """fn(a[i], b[i]) for every row, called once per distinct pair (states × categories)."""
    cache: dict = {}
    return [cache[k] if k in cache else cache.setdefault(k, fn(*k)) for k in zip(a, b)]


def _with_lights(rules: Rules, states: dict, cats) -> dict:
    """`states` plus light_yellow_at and light_red_after of each row's stage (once per distinct
    status, category, start and deadline)."""
    cache: dict = {}
    times = [cache[k] if k in cache else cache.setdefault(k, rules.light_times(*k))
             for k in zip(states["status"], cats, states["stage_started_at"], states["stage_deadline"])]
    yellow, red = (np.array([t[i] for t in times], dtype=object) for i in (0, 1))
    return {**states, "light_yellow_at": yellow, "light_red_after": red}


def _states(rules: Rules, rep: _Columns, cats, when: pd.Series, dup, live: bool, public: bool) -> dict:
    """status, stage_started_at, stage_deadline, the light's times (and target_at, closed_at for
    a file's own states)."""
    return _with_lights(rules, _stage(rules, rep, cats, when, dup, live, public), cats)


def _stage(rules: Rules, rep: _Columns, cats, when: pd.Series, dup, live: bool, public: bool) -> dict:
    n = len(cats)
    starts = np.array(when.dt.to_pydatetime(), dtype=object)
    if live:
        status = np.where(dup, LINKED, "verifying" if public else "reported").astype(object)
        limits = _per_pair(lambda s, c: None if s == LINKED else rules.stage_limit(s, c), status, cats)
        return {"status": status, "stage_started_at": starts, "stage_deadline": _deadlines(rules, starts, limits)}
    # a file with its own states: take them as they are, invent no history
    status = rep("status")
    target = np.array([None if _missing(v) else v for v in rep("target_at")], dtype=object)
    if "target_at" not in rep:  # a file with no deadlines gets the category's; an empty cell keeps none
        needs = [s not in ("reported", "verifying", "filed") for s in status]
        limits = _per_pair(lambda c, yes: rules.disposal(c) if yes else None, cats, needs)
        target = np.array(_deadlines(rules, starts, limits), dtype=object)
    limits = _per_pair(lambda s, c: None if s in FINAL or s in ("dispatched", "processing")
                       else rules.stage_limit(s, c), status, cats)
    stage = np.array(_deadlines(rules, starts, limits), dtype=object)
    held = np.isin(status.astype(str), ["dispatched", "processing"])
    stage[held] = target[held]
    closed = [None if _missing(v) else v for v in rep("closed_at")]
    return {"status": status, "stage_started_at": starts, "stage_deadline": stage, "target_at": target,
            "closed_at": np.array(closed, dtype=object) if n else np.empty(0, object)}


def _departments(rules: Rules, rep: _Columns, cats, routed: pd.DataFrame) -> np.ndarray:
    of_category = {c: (rules.category(c).department if rules.category(c) else None) for c in set(cats)}
    dept = np.array([of_category[c] if _missing(g) else g for g, c in zip(rep("department"), cats)], dtype=object)
    rule = (routed["method"].eq("category") & routed["unit_id"].astype(str).str.startswith("DEPT-")).to_numpy()
    dept[rule] = routed["unit_name"].to_numpy(dtype=object)[rule]
    return dept


class _Replay(Exception):  # not an error: the key was used before; answer with that case
    def __init__(self, row: dict):
        self.row = row


def check_idempotency_key(key) -> str | None:
    """The key as given (None: none). Refuses long keys and control characters (InputError)."""
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip():
        raise InputError("Idempotency-Key: give a non-empty text, e.g. a UUID made once per report")
    if len(key) > IDEMPOTENCY_KEY_MAX:
        raise InputError(f"Idempotency-Key is {len(key)} characters; the limit is {IDEMPOTENCY_KEY_MAX}")
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in key):
        raise InputError("Idempotency-Key holds a control character; use letters, digits and - _ . :")
    _check_unicode("Idempotency-Key", key)
    return key


def _scoped_key(user: User, key: str | None) -> str | None:
    """The key within its user's scope: user names hold no spaces, so the first one divides."""
    return None if key is None else f"{user.name} {key}"


def intake(store: Store, reports: pd.DataFrame, user: User, channel: str, *, now: dt.datetime | None = None,
           rules: Rules | None = None, dedupe: bool = True, allow_empty: bool = False,
           source_label: str | None = None, router: Router | None = None, idempotency_key: str | None = None,
           origin: str | None = None) -> pd.DataFrame:
    """Write `reports` as cases (or duplicates linked to open ones) in one transaction.

    `reports` has lon, lat (WGS 84) and may have raw_x/raw_y/raw_crs, category, description,
    address, contact, photo, reported_at, problem_id, status (a zonemap state, for files),
    source_status, department, target_at, closed_at, location_placeholder, source, attrs.
    A report without problem_id is numbered `ZM<city date>-<n>` from the store's sequence of
    the day it is taken in, inside the write transaction. `idempotency_key` (one report only):
    see report_one. One audit row describes the batch (origin: the client, or cli for files).
    Returns one row per report: problem_id, status, duplicate_of, zone_code, unit_id,
    unit_name, routed_by, distance_m, stage_deadline, replayed."""
    if user.role not in REPORTERS:
        raise Forbidden(f"role {user.role!r} may not report problems; reporters are {', '.join(REPORTERS)}")
    rules = rules or Rules()
    now = now or utc_now()
    n = len(reports)
    if n == 0:
        raise InputError("no reports to take in")
    if idempotency_key is not None and n != 1:
        raise InputError("an idempotency key is for one report, not a batch")
    rep = _Columns(reports.reset_index(drop=True))
    lon, lat = rep.frame["lon"].to_numpy(float), rep.frame["lat"].to_numpy(float)
    cats = np.array([None if _missing(c) else str(c).strip() or None for c in rep("category")], dtype=object)
    unknown = [c for c in cats if c and c.isdigit() and len(c) == 5 and c not in rules.categories]
    if unknown:
        raise InputError(f"category {unknown[0]} is not in the category table; see GET /api/categories "
                         "or layers/rules/categories.csv")
    when = _times(rep("reported_at"), now)
    placeholder = np.array([bool(v) and not _missing(v) for v in rep("location_placeholder", False)])
    routed = _route_all(store, rules, lon, lat, cats, when, allow_empty, placeholder, router)
    live = all(_missing(s) for s in rep("status"))
    public = user.role == "public"

    # duplicates: an open case of the same category within the window, nearest first
    dup_id, dup_row, dup_m = np.full(n, None, dtype=object), np.full(n, -1), np.full(n, np.nan)
    eligible = (cats != None) & ~placeholder  # noqa: E711 - elementwise
    if dedupe and live and eligible.any():
        longest = max(rules.workflow.duplicate_window(c)[1] for c in set(cats[eligible]))
        open_cases = _open_cases(store, set(cats[eligible]), lon, lat,
                                 when.min() - pd.Timedelta(hours=longest))
        dup_id, dup_row, dup_m = _duplicates(rules, open_cases, cats, lon, lat, when, eligible)
    dup = (dup_id != None) | (dup_row >= 0)  # noqa: E711 - elementwise
    states = _states(rules, rep, cats, when, dup, live, public)
    source = rep("source", source_label or channel)
    columns = {
        "category": cats, "description": rep("description"), "address": rep("address"),
        "reported_at": states["stage_started_at"], "channel": channel, "public_report": public,
        "reporter": rep("reporter") if "reporter" in rep else user.name, "contact": rep("contact"),
        "photo": rep("photo"), "department": _departments(rules, rep, cats, routed),
        "zone_code": routed["zone_code"].to_numpy(), "zone_version": routed["zone_version"].to_numpy(),
        "unit_id": routed["unit_id"].to_numpy(), "grid_code": routed["grid_code"].to_numpy(),
        "routed_by": routed["method"].to_numpy(), "route_distance_m": routed["distance_m"].to_numpy(),
        "location_placeholder": placeholder, "rework_count": 0, "extension_count": 0,
        "source_status": rep("source_status"), "raw_x": rep("raw_x", lon), "raw_y": rep("raw_y", lat),
        "raw_crs": rep("raw_crs", "wgs84"), "source": source, "attrs": rep("attrs"), **states,
        "idempotency_key": _scoped_key(user, idempotency_key)}
    given = rep("problem_id")
    key = columns["idempotency_key"]
    try:
        with store.transaction() as tx:
            ids = _number(tx, given, now, rules.tz)
            if key is not None:  # after numbering: a twin that took the day's counter has committed
                seen = tx.rows("problems", {"idempotency_key": key})
                if seen:
                    raise _Replay(seen[0])
            duplicate_of = np.where(dup_row >= 0, ids[np.maximum(dup_row, 0)], dup_id)
            frame = gpd.GeoDataFrame(pd.DataFrame({"problem_id": ids, **columns, "duplicate_of": duplicate_of}),
                                     geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
            audit.record(tx, actor=user.name, role=user.role, **_audit_of(frame, channel, source_label),
                         origin=origin if origin is not None or channel != "file" else "cli", at=now)
            _ensure_units(tx, store, routed)
            tx.append("problems", frame)
            tx.append("case_steps", _first_steps(frame, user, live, public, dup_m))
            notify.enqueue_intake(tx, frame, live=live, rules=rules)  # its notices, in this transaction
    except _Replay as replay:
        return pd.DataFrame([_replayed(store, replay.row, rules)])
    except StoreError:
        if key is not None and (twin := store.read("problems", where={"idempotency_key": key})).shape[0]:
            return pd.DataFrame([_replayed(store, case_rows(twin)[0], rules)])  # a racing twin won
        raise
    return pd.DataFrame({"problem_id": ids, "status": frame["status"].to_numpy(),
                         "status_zh": [STATE_ZH.get(s) for s in frame["status"]],
                         "duplicate_of": duplicate_of, "zone_code": routed["zone_code"].to_numpy(),
                         "zone_kind": routed["zone_kind"].to_numpy(), "zone_version": routed["zone_version"].to_numpy(),
                         "grid_code": routed["grid_code"].to_numpy(), "unit_id": routed["unit_id"].to_numpy(),
                         "unit_name": routed["unit_name"].to_numpy(), "routed_by": routed["method"].to_numpy(),
                         "distance_m": routed["distance_m"].to_numpy(), "department": columns["department"],
                         "stage_deadline": frame["stage_deadline"].to_numpy(), "replayed": False})


def _number(tx, given: np.ndarray, now: dt.datetime, tz: ZoneInfo) -> np.ndarray:
    """Ids the file gave, as they are; the others the next numbers of the city's day."""
    ids = np.array([None if _missing(v) else str(v) for v in given], dtype=object)
    need = np.flatnonzero(ids == None)  # noqa: E711 - elementwise
    if len(need):
        day = now.astimezone(tz).date()
        first = tx.next_number(f"case:{day:%Y%m%d}", len(need))
        ids[need] = [case_number(day, first + k) for k in range(len(need))]
    return ids


def _first_steps(frame: pd.DataFrame, user: User, live: bool, public: bool, dup_m) -> pd.DataFrame:
    """The step(s) a report starts with: report (or import), and for the public the wait for
    verification; a duplicate's step names the case it repeats."""
    status = frame["status"].to_numpy(dtype=object)
    dup = status == LINKED
    if live:
        action, to = "report", np.where(dup, LINKED, "reported").astype(object)
        note = np.array([f"重复上报:关联到 {p} ({d:.0f} m)" if k else None
                         for k, p, d in zip(dup, frame["duplicate_of"], dup_m)], dtype=object)
    else:
        action, to = "import", status
        note = np.array([f"导入 {s},原状态 {'—' if _missing(o) or not o else o}"
                         for s, o in zip(frame["source"], frame["source_status"])], dtype=object)
    first = pd.DataFrame({"problem_id": frame["problem_id"], "seq": 1, "at": frame["reported_at"],
                          "actor": user.name, "role": user.role, "action": action, "from_status": None,
                          "to_status": to, "unit_id": frame["unit_id"], "deadline_at": frame["stage_deadline"],
                          "note": note, "source": frame["source"]})
    if not (live and public):
        return first
    wait = first[~dup].assign(seq=2, actor="system", role="system", action="await_verification",
                              from_status="reported", to_status="verifying", note="公众上报,待监督员核实")
    return pd.concat([first, wait]).sort_index(kind="stable").reset_index(drop=True)


def _audit_of(frame: pd.DataFrame, channel: str, source_label: str | None) -> dict:
    if len(frame) == 1 and channel != "file":
        r = frame.iloc[0]
        return {"action": "report", "target": r["problem_id"],
                "detail": {"channel": channel, "status": r["status"], "unit_id": r["unit_id"]}}
    counts = frame["status"].value_counts()
    return {"action": "import:problems", "target": source_label or channel,
            "detail": {"channel": channel, "rows": len(frame), "linked": int(counts.get(LINKED, 0)),
                       "first": frame["problem_id"].iloc[0], "last": frame["problem_id"].iloc[-1]}}


def _replayed(store: Store, row: dict, rules: Rules) -> dict:
    """The intake answer for a case taken in before (an idempotent retry), as it stands now."""
    kind = None
    if row.get("zone_code"):
        z = store.read("zones", where={"code": row["zone_code"], "version": row["zone_version"]})
        kind = z["kind"].iloc[0] if len(z) else None
    names = unit_names_of(store, [row.get("unit_id")])
    return {"problem_id": row["problem_id"], "status": row["status"], "status_zh": STATE_ZH.get(row["status"]),
            "duplicate_of": row.get("duplicate_of"), "zone_code": row.get("zone_code"), "zone_kind": kind,
            "zone_version": row.get("zone_version"), "grid_code": row.get("grid_code"),
            "unit_id": row.get("unit_id"), "unit_name": names.get(row.get("unit_id"), STREET_OFFICE["name"]),
            "routed_by": row.get("routed_by"), "distance_m": row.get("route_distance_m"),
            "department": row.get("department"), "stage_deadline": row.get("stage_deadline"), "replayed": True}


def _ensure_units(tx, store: Store, routed: pd.DataFrame) -> None:
    """Department units named by category rules exist as units, so a unit user can answer."""
    dept = routed.loc[routed["unit_id"].str.startswith("DEPT-", na=False), ["unit_id", "unit_name"]].drop_duplicates()
    for uid, name in dept.itertuples(index=False):
        if not tx.rows("units", {"unit_id": uid}):
            tx.append("units", gpd.GeoDataFrame(
                pd.DataFrame([{"unit_id": uid, "name": name, "type": "department", "placeholder": False,
                               "source": "rules/workflow.toml"}]),
                geometry=gpd.GeoSeries([None], crs="EPSG:4326")))


# ---- one report from the API or Open311 ---------------------------------------------------

TEXT_LIMITS = {"description": 4000, "address": 500, "contact": 200, "photo": 200}
NOTE_MAX = 2000
IDEMPOTENCY_KEY_MAX = 200


def _check_unicode(name: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800", which JSON lets through
        raise InputError(f"field {name!r} is not valid Unicode (it holds a lone surrogate); "
                         "send UTF-8 text") from None


def check_text(name: str, value, limit: int | None = None) -> str | None:
    """`value` as text, whole, or InputError: text is kept intact or refused, never cut.
    Refused: a NUL character (GeoPackage would cut the text there), invalid Unicode, more
    than `limit` characters, or a value that is not text or a number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(f"field {name!r} must be text, not {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    _check_unicode(name, text)
    if "\x00" in text:
        raise InputError(f"field {name!r} holds a NUL character (\\x00); remove it")
    if limit is not None and len(text) > limit:
        raise InputError(f"field {name!r} is {len(text)} characters; the limit is {limit} "
                         "(nothing is cut: shorten it)")
    return text


def _number_field(data: dict, key: str) -> float:
    v = data.get(key)
    if isinstance(v, bool):  # JSON true is not longitude 1
        raise InputError(f"field {key!r}: {v!r} is a boolean, not a number")
    if isinstance(v, str):
        check_text(key, v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(f"field {key!r}: {v!r} is not a number") from None
    if not math.isfinite(f):
        raise InputError(f"field {key!r}: {v!r} is not a finite number")
    return f


def report_one(store: Store, data: dict, user: User, channel: str, *, now=None, rules=None, router=None,
               problem_id: str | None = None, area: ServiceArea | None = None,
               idempotency_key: str | None = None, origin: str | None = None) -> dict:
    """One report from the API or Open311: checks, converts the phone's coordinates, intakes.

    `router`: a live Router over the zones in force (a server keeps one); `area`: the service
    area, whose check refuses a place this deployment does not serve (OutsideServiceArea, 422);
    `data["photo"]`: the file name the web layer saved the photo under; `origin`: the client's
    address, for the audit log.
    `idempotency_key`: a retry with the same key from the same user (anonymous callers share one
    scope) answers the case the first request made, with "replayed": True, and stores nothing
    new, also when the two requests race. The retry's body is not compared: a replay with a
    different body still answers the first case (a key names one report, whatever is resent)."""
    idempotency_key = check_idempotency_key(idempotency_key)
    for key, value in data.items():  # every text, before any of it is echoed in a message
        if isinstance(value, str):
            check_text(str(key), value)
    lon, lat = _number_field(data, "lon"), _number_field(data, "lat")
    crs = str(check_text("crs", data.get("crs")) or "wgs84").lower()
    if crs not in NAMED_CRS:
        raise InputError(f"field 'crs': {crs!r}; use one of {', '.join(NAMED_CRS)}")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"fields 'lon'/'lat': ({lon}, {lat}) is not a longitude/latitude (swapped?)")
    category = (check_text("category", data.get("category")) or "").strip()
    rules = rules or Rules()
    if not category:
        raise InputError("field 'category' is required: a 5-digit code, see GET /api/categories")
    if category not in rules.categories:
        raise InputError(f"field 'category': {category!r} is not in the category table; see GET /api/categories")
    text = {k: check_text(k, data.get(k) if data.get(k) != "" else None, limit) for k, limit in TEXT_LIMITS.items()}
    wlon, wlat = to_wgs84(np.array([lon]), np.array([lat]), crs)
    if area is not None:
        area.check(float(wlon[0]), float(wlat[0]))
    frame = pd.DataFrame([{
        "lon": float(wlon[0]), "lat": float(wlat[0]), "raw_x": lon, "raw_y": lat, "raw_crs": crs,
        "category": category, **text, "problem_id": problem_id, "attrs": data.get("attrs")}])
    out = intake(store, frame, user, channel, now=now, rules=rules, source_label=channel, router=router,
                 idempotency_key=idempotency_key, origin=origin)
    return _jsonable(out.iloc[0].to_dict(), rules.tz)


def _jsonable(d: dict, tz: ZoneInfo) -> dict:
    """Plain JSON values; times in the city's time zone with its offset (they are stored in UTC)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        if _missing(v):
            v = None
        elif isinstance(v, (dt.datetime, pd.Timestamp)):
            t = pd.Timestamp(v)
            v = (t.tz_localize("UTC") if t.tzinfo is None else t).tz_convert(tz).isoformat()
        elif isinstance(v, dt.date):
            v = v.isoformat()
        out[k] = v
    return out


# ---- the workflow ------------------------------------------------------------------------

def _never_may(user: User, action: str) -> None:
    """Forbidden when the user's role may do `action` to no case at all (it says nothing of any
    case); the roles are every move's of that name."""
    roles = dict.fromkeys(r for m in MOVES if m.action == action for r in m.roles)
    if roles and user.role not in roles:
        raise Forbidden(f"role {user.role!r} may not {action}; it is for {', '.join(roles)}")


PHOTO_KINDS = ("before", "after", "photo")  # 处置前, 处置后, or a photo of the step


def transition(store: Store, problem_id: str, action: str, user: User, *, note: str | None = None,
               unit_id: str | None = None, photos: list[dict] | None = None, now: dt.datetime | None = None,
               rules: Rules | None = None, origin: str | None = None) -> dict:
    """Move case `problem_id` by `action`; NotFound (404) when the user may not see the case
    (see _scope), Refused (409) when the state does not allow it, Forbidden (403) when the role
    may not. `unit_id` with dispatch re-assigns (改派). `photos`: [{name, kind}] of files the
    web layer saved (kind before, after or photo), kept with the step.
    `origin`: the client's address, for the audit row written with the step."""
    rules = rules or Rules()
    now = now or utc_now()
    note = check_text("note", note, NOTE_MAX)
    unit_id = check_text("unit_id", unit_id, 200)
    bad = [p for p in photos or [] if p.get("kind") not in PHOTO_KINDS or not p.get("name")]
    if bad:
        raise InputError(f"a step's photo is {{name, kind}} with kind {', '.join(PHOTO_KINDS)}, not {bad[0]!r}")
    with store.transaction() as tx:
        got = tx.rows("problems", {"problem_id": problem_id}, lock=True)
        if not got or not _visible(got[0], user):  # unseen and missing answer alike: nothing to probe
            _never_may(user, action)
            raise NotFound(f"no case {problem_id!r}")
        case = got[0]
        status = case["status"]
        if status == LINKED:
            raise Refused(f"{problem_id} is a duplicate report linked to {case['duplicate_of']}; "
                          "act on that case instead")
        move = find_move(action, status)
        if move is None:
            can = ", ".join(dict.fromkeys(m.action for m in moves_from(status))) or "nothing (it is final)"
            known = "" if any(m.action == action for m in MOVES) else " (no such action)"
            raise Refused(f"cannot {action}{known} a case that is {status} ({STATE_ZH[status]}); "
                          f"from {status} it can: {can}")
        if user.role not in move.roles:
            raise Forbidden(f"role {user.role!r} may not {action}; it is for {', '.join(move.roles)}")
        new = {"status": move.target, "stage_started_at": now}
        cat = case["category"]
        if action == "dispatch":
            if unit_id and unit_id != case["unit_id"]:
                if not tx.rows("units", {"unit_id": unit_id}) and not unit_id.startswith("FALLBACK-"):
                    raise InputError(f"field 'unit_id': there is no unit {unit_id!r}")
                new["unit_id"] = unit_id
            new["target_at"] = rules.add(now, rules.disposal(cat))
            new["stage_deadline"] = new["target_at"]
        elif action in ("accept", "refuse_extension"):
            new["stage_deadline"] = case["target_at"] or rules.add(now, rules.disposal(cat))
        elif action == "approve_extension":
            base = max(case["target_at"] or now, now)
            new["target_at"] = rules.add(base, rules.disposal(cat))
            new["stage_deadline"] = new["target_at"]
            new["extension_count"] = (case["extension_count"] or 0) + 1
        elif action in ("rework", "resume"):
            new["target_at"] = rules.add(now, rules.disposal(cat))
            new["stage_deadline"] = new["target_at"]
            if action == "rework":
                new["rework_count"] = (case["rework_count"] or 0) + 1
        elif move.target in FINAL or move.target == "shelved":
            new["stage_deadline"] = None
            if move.target == "closed":
                new["closed_at"] = now
        else:
            limit = rules.stage_limit(move.target, cat)
            new["stage_deadline"] = rules.add(now, limit) if limit else None
        new["light_yellow_at"], new["light_red_after"] = rules.light_times(move.target, cat, now,
                                                                            new["stage_deadline"])
        left = rules.light(status, cat, case["stage_started_at"], case["stage_deadline"], now)
        seq = len(tx.rows("case_steps", {"problem_id": problem_id})) + 1
        tx.update("problems", case["fid"], new)
        tx.append("case_steps", pd.DataFrame([{
            "problem_id": problem_id, "seq": seq, "at": now, "actor": user.name, "role": user.role,
            "action": action, "from_status": status, "to_status": move.target,
            "unit_id": new.get("unit_id", case["unit_id"]), "deadline_at": new.get("stage_deadline"),
            "light": left, "note": note, "source": "api",
            "photos": json.dumps(photos, ensure_ascii=False) if photos else None}]))
        notify.enqueue(tx, {**case, **new}, tx.rows("case_steps", {"problem_id": problem_id, "seq": seq})[0],
                       rules=rules)  # the step's notices commit with it or not at all
        audit.record(tx, actor=user.name, role=user.role, action=f"transition:{action}", target=problem_id,
                     detail={"from": status, "to": move.target, "unit_id": new.get("unit_id", case["unit_id"])},
                     origin=origin, at=now)
    return get_case(store, problem_id, user, now=now, rules=rules)


def fill_light_times(store: Store, rules: Rules | None = None) -> int:
    """Store the light times of open cases written before they were kept (a store made by an
    older zonemap), so that every light can be told in SQL. Two counts when there is nothing
    to do; one transaction when there is. Returns how many cases were filled."""
    if store.count("problems", exclude={"stage_deadline": [None]}) == \
            store.count("problems", exclude={"light_yellow_at": [None]}):
        return 0
    rules = rules or Rules()
    rows = store.read("problems", exclude={"stage_deadline": [None], "status": [*FINAL, LINKED]})
    rows = rows[rows["light_yellow_at"].isna()]
    filled = 0
    with store.transaction() as tx:
        for case in case_rows(rows):
            yellow, red = rules.light_times(case["status"], case["category"], case["stage_started_at"],
                                            case["stage_deadline"])
            if yellow is not None:
                tx.update("problems", case["fid"], {"light_yellow_at": yellow, "light_red_after": red})
                filled += 1
    return filled


# ---- reading -------------------------------------------------------------------------------

def _scope(user: User | None) -> dict | None:
    """The cases `user` may see, as a filter on the problems layer ({}: all, None: none).
    Staff see every case, a unit its own, a signed-in reporter the reports it made. `None`
    for the user is the open-data feed (Open311): every case, shown by its public columns only."""
    if user is None or user.role in STAFF:
        return {}
    if user.role == "unit":
        return {"unit_id": [user.unit_id]}
    if user.name != "anonymous":
        return {"reporter": [user.name]}
    return None


def _visible(case: dict, user: User | None) -> bool:
    scope = _scope(user)
    return scope is not None and all(case.get(k) in values for k, values in scope.items())


def case_view(row: dict, user: User, rules: Rules, now: dt.datetime, unit_names: dict,
              steps: list[dict] | None = None, linked: list[str] | None = None) -> dict:
    status = row["status"]
    cat = rules.category(row.get("category"))
    target, closed = row.get("target_at"), row.get("closed_at")
    on_time = None
    if status == "closed" and not _missing(target) and not _missing(closed):
        on_time = bool(pd.Timestamp(closed) <= pd.Timestamp(target))
    out = {k: row.get(k) for k in (
        "problem_id", "status", "category", "description", "address", "reported_at", "channel",
        "public_report", "reporter", "department", "zone_code", "zone_version", "grid_code", "unit_id", "routed_by",
        "route_distance_m", "location_placeholder", "duplicate_of", "stage_started_at", "stage_deadline",
        "target_at", "closed_at", "rework_count", "extension_count", "source_status")}
    if user.role not in ("inspector", "dispatcher", "admin"):
        out.pop("reporter")
    out |= {"status_zh": STATE_ZH.get(status, status), "category_name": cat.name if cat else None,
            "unit_name": unit_names.get(row.get("unit_id"), row.get("unit_id")),
            "light": rules.case_light(row, now),
            "on_time": on_time, "lon": row.get("lon"), "lat": row.get("lat"),
            "actions": [m.action for m in moves_from(status) if user.role in m.roles
                        and (user.role != "unit" or row.get("unit_id") == user.unit_id)]}
    out["actions"] = list(dict.fromkeys(out["actions"]))
    if steps is not None:
        out["steps"] = [_jsonable({k: s.get(k) for k in ("seq", "at", "actor", "role", "action", "from_status",
                                                       "to_status", "unit_id", "deadline_at", "light", "note")},
                                  rules.tz)
                        for s in sorted(steps, key=lambda s: s["seq"])]
    if linked is not None:
        out["duplicates"] = linked
    return _jsonable(out, rules.tz)


def case_rows(frame: gpd.GeoDataFrame) -> list[dict]:
    """Rows of the problems layer as plain dicts with lon/lat, None for every missing value."""
    if frame.empty:
        return []
    df = pd.DataFrame(frame.drop(columns="geometry"))
    df["lon"] = frame.geometry.x.round(7)
    df["lat"] = frame.geometry.y.round(7)
    return [{k: (None if _missing(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


def unit_names_of(store: Store, ids) -> dict:
    ids = sorted({i for i in ids if i})
    if not ids:
        return {}
    units = store.read("units", where={"unit_id": ids})
    return dict(zip(units["unit_id"], units["name"]))


def may_see_photos(user: User, case: dict) -> bool:
    """Photos show faces, plates and doorways: staff see them, and the unit answering for the
    case (it has to find the spot); the public and other units do not."""
    return user.role in STAFF or (user.role == "unit" and case.get("unit_id") == user.unit_id)


def _photos(case: dict, steps: list[dict], tz) -> list[dict]:
    """The case's photos, oldest first: the report's, then each step's (before, after…)."""
    out = []
    if not _missing(case.get("photo")):
        out.append({"name": case["photo"], "kind": "report", "seq": None, "by": None,
                    "at": case.get("reported_at")})
    for s in sorted(steps, key=lambda s: s["seq"]):
        for p in json.loads(s["photos"]) if not _missing(s.get("photos")) else []:
            out.append({"name": p["name"], "kind": p["kind"], "seq": s["seq"], "by": s.get("actor"), "at": s["at"]})
    return [_jsonable(p, tz) for p in out]


def get_case(store: Store, problem_id: str, user: User, *, now=None, rules=None) -> dict:
    """One case as `user` may see it, with its steps, its linked duplicates and, for those who
    may see them (may_see_photos), its photos."""
    rules = rules or Rules()
    got = case_rows(find(store, user, ids=[problem_id], include_linked=True, order=None, rules=rules)[0])
    if not got:
        raise NotFound(f"no case {problem_id!r}")
    steps = store.read("case_steps", where={"problem_id": problem_id}).to_dict("records")
    linked = store.read("problems", where={"duplicate_of": problem_id})["problem_id"].tolist()
    view = case_view(got[0], user, rules, now or utc_now(), unit_names_of(store, [got[0]["unit_id"]]), steps, linked)
    view["photos"] = _photos(got[0], steps, rules.tz) if may_see_photos(user, got[0]) else []
    return view


_DATE_ONLY = re.compile(r"\d{4}-?\d{2}-?\d{2}")


def parse_time(text, name: str, hint: str = "YYYY-MM-DD or ISO 8601", *, tz: ZoneInfo | None = None,
               end: bool = False) -> pd.Timestamp | None:
    """A query parameter's date or time, as a UTC instant; None when empty. People mean their
    city's time (`tz`, the workflow's time zone by default): a date is 00:00 that day in the
    city, or with `end` (an `until`) the last instant of that city day; a time without offset
    is city time; a time with an offset is taken as given."""
    if text in (None, ""):
        return None
    tz = tz or Rules().tz
    try:
        check_text(name, text)
        t = pd.Timestamp(text)
    except (TypeError, ValueError, InputError):
        raise InputError(f"parameter {name!r}: {text!r} is not a date or time (use {hint})") from None
    if t is pd.NaT:
        raise InputError(f"parameter {name!r}: {text!r} is not a date or time (use {hint})")
    if t.tzinfo is not None:
        return t.tz_convert("UTC")
    if end and _DATE_ONLY.fullmatch(str(text).strip()):
        t += pd.Timedelta(days=1)  # through the end of that day: just before the next midnight
        return t.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC") - pd.Timedelta(1, "ns")
    return t.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")


# How find orders cases; the store's fid breaks the remaining ties (None: fid alone).
ORDERS = {"newest": [("reported_at", "desc"), ("problem_id", "desc")],
          "oldest": [("reported_at", "asc"), ("problem_id", "asc")], None: []}


def _values(name: str, value, allowed=None) -> list | None:
    """A filter's values from "a,b" or a list; None when none given. `allowed`: refuse others."""
    if value is None or value == "" or value == []:
        return None
    items = str(value).split(",") if isinstance(value, str) else [str(v) for v in value]
    values = [v.strip() for v in items if v.strip()]
    bad = [v for v in values if allowed and v not in allowed]
    if bad:
        raise InputError(f"parameter {name!r}: {bad[0]!r} is not one of {', '.join(allowed)}")
    return values or None


def _instant(value, name: str, tz: ZoneInfo, end: bool = False) -> pd.Timestamp | None:
    """since/until as given by a caller: text (city time, see parse_time) or an aware time."""
    if value is None or isinstance(value, str):
        return parse_time(value, name, tz=tz, end=end)
    return pd.Timestamp(value).tz_convert("UTC")


LIGHTS = ("green", "yellow", "red")
_US = pd.Timedelta(1, "us")
_EVER = pd.Timestamp("1970-01-01", tz="UTC")


def light_ranges(lights: set[str], now: dt.datetime) -> list[list[tuple]]:
    """The cases of `lights` at `now` as the stores' time ranges on the stored light times:
    one list of ranges (all of them hold) per query, two for "green or red"."""
    now = pd.Timestamp(now)
    yellow_by, red_by = ("light_yellow_at", None, now + _US), ("light_red_after", None, now)
    not_red = ("light_red_after", now, None)
    one = {frozenset({"red"}): [red_by], frozenset({"yellow"}): [yellow_by, not_red],
           frozenset({"green"}): [("light_yellow_at", now + _US, None)],
           frozenset({"red", "yellow"}): [yellow_by], frozenset({"yellow", "green"}): [not_red],
           frozenset(LIGHTS): [("light_yellow_at", _EVER, None)]}  # any light: a light time at all
    if frozenset(lights) in one:
        return [one[frozenset(lights)]]
    return [one[frozenset({"green"})], one[frozenset({"red"})]]


def find(store: Store, user: User | None, *, ids=None, status=None, category=None, unit=None, grid=None,
         bbox=None, since=None, until=None, light=None, include_linked: bool = False, closed: bool | None = None,
         order: str | None = "newest", limit: int | None = None, offset: int = 0,
         rules: Rules | None = None, now: dt.datetime | None = None) -> tuple[gpd.GeoDataFrame, int]:
    """The cases `user` may see (see _scope; None: the open-data feed, every case) that match
    the filters, as (one page of the problems layer in `order`, how many match in all).

    ids/status/category/unit/grid (单元网格 codes): a list or "a,b" text (any of them); a unit user sees its own
    unit's whatever `unit` says. since/until: text in city time (parse_time) or aware times,
    both ends included. light: "red", "yellow,red"… (any of them, at `now`; told by the store
    from the stored light times). Duplicates linked to another case are left out unless
    `include_linked` or `status` asks for them. `closed` (Open311's open/closed): True only
    final cases, False only open ones; a linked duplicate counts as its case. Filters, order and
    paging run in the store, so a page costs one page's rows."""
    rules = rules or Rules()
    if order not in ORDERS:
        raise InputError(f"order is one of {', '.join(o for o in ORDERS if o)}, not {order!r}")
    queries = case_queries(user, ids=ids, status=status, category=category, unit=unit, grid=grid, bbox=bbox,
                           since=since, until=until, light=light, include_linked=include_linked, rules=rules,
                           now=now)
    if not queries:
        return empty_frame(get_layer("problems")), 0
    if closed is None:
        return _merged(store, queries, order, limit, offset)
    if light:
        raise InputError("a light is told of open cases only: filter by light or by open/closed, not both")
    return _find_open_closed(store, queries[0], closed, order, limit, offset)


def case_queries(user: User | None, *, ids=None, status=None, category=None, unit=None, grid=None, bbox=None,
                 since=None, until=None, light=None, include_linked: bool = False,
                 rules: Rules | None = None, now: dt.datetime | None = None) -> list[dict]:
    """find's filters as the store's read/count/cells arguments: one dict per query (two for
    the lights "green or red", whose cases are disjoint); none when `user` may see nothing."""
    rules = rules or Rules()
    scope = _scope(user)
    if scope is None:
        return []
    where = {col: v for col, v in (("problem_id", _values("ids", ids)), ("category", _values("category", category)),
                                   ("unit_id", _values("unit", unit)), ("grid_code", _values("grid", grid)),
                                   ("status", _values("status", status, (*STATES, LINKED)))) if v}
    where |= scope
    start = _instant(since, "since", rules.tz)
    last = _instant(until, "until", rules.tz, end=True)  # included: the store's end is excluded
    times = [] if start is None and last is None else [
        ("reported_at", start, None if last is None else last + pd.Timedelta(1, "ns"))]
    query = {"bbox": bbox, "where": where, "exclude": None if include_linked or status else {"status": LINKED},
             "time": times}
    lights = _values("light", light, LIGHTS)
    if not lights:
        return [query]
    return [{**query, "time": times + ranges} for ranges in light_ranges(set(lights), now or utc_now())]


def _merged(store: Store, queries: list[dict], order, limit, offset) -> tuple:
    """One page of the cases any of `queries` (disjoint) finds, in `order`."""
    if len(queries) == 1:
        return (store.read("problems", **queries[0], order=ORDERS[order], limit=limit, offset=offset),
                store.count("problems", **queries[0]))
    end = None if limit is None else offset + limit
    both = pd.concat([store.read("problems", **q, order=ORDERS[order], limit=end) for q in queries],
                     ignore_index=True)
    return (_in_order(both, ORDERS[order]).iloc[offset:end].reset_index(drop=True),
            sum(store.count("problems", **q) for q in queries))


def _find_open_closed(store: Store, query: dict, closed: bool, order, limit, offset) -> tuple:
    """find with `closed`: cases by their own state in the store, plus the linked duplicates
    whose case is (or is not) final, merged in `order`. Duplicates are few: read them whole."""
    asked = query["where"].get("status") or [*STATES, *([] if query["exclude"] else [LINKED])]
    states = [s for s in asked if s != LINKED and (s in FINAL) == closed]
    own = {**query, "where": {**query["where"], "status": states}}
    end = None if limit is None else offset + limit
    frame, total = empty_frame(get_layer("problems")), 0
    if states:
        frame = store.read("problems", **own, order=ORDERS[order], limit=end)
        total = store.count("problems", **own)
    if LINKED not in asked:
        return frame.iloc[offset:end].reset_index(drop=True), total
    dups = store.read("problems", **{**query, "where": {**query["where"], "status": [LINKED]}})
    parents = store.read("problems", where={"problem_id": sorted(set(dups["duplicate_of"].dropna()))})
    final = dict(zip(parents["problem_id"], parents["status"].isin(FINAL)))
    dups = dups[[final.get(d, False) == closed for d in dups["duplicate_of"]]]
    if dups.empty:
        return frame.iloc[offset:end].reset_index(drop=True), total
    both = pd.concat([frame, dups], ignore_index=True)
    return _in_order(both, ORDERS[order]).iloc[offset:end].reset_index(drop=True), total + len(dups)


def _in_order(frame: pd.DataFrame, order: list) -> pd.DataFrame:
    """`frame` sorted as the store sorts (nulls last, text by code point, then fid)."""
    keys = {f"_k{i}": (pd.to_datetime(frame[c], utc=True) if c == "reported_at" else frame[c])
            for i, (c, _) in enumerate(order)}
    ranked = frame.assign(**keys).sort_values([*keys, "fid"], ascending=[d == "asc" for _, d in order] + [True],
                                              na_position="last", kind="stable")
    return ranked.drop(columns=list(keys))


def list_cases(store: Store, user: User, *, bbox=None, status=None, category=None, unit=None, grid=None,
               since=None, until=None, light=None, page: int = 1, per_page: int = 50, include_linked: bool = False,
               now=None, rules=None) -> dict:
    """Cases the user may see, newest first, one page at a time (only that page is read)."""
    rules = rules or Rules()
    now = now or utc_now()
    if page < 1 or not 1 <= per_page <= PAGE_MAX:
        raise InputError(f"page starts at 1 and per_page is 1–{PAGE_MAX}")
    frame, total = find(store, user, bbox=bbox, status=status, category=category, unit=unit, grid=grid,
                        since=since, until=until, light=light, include_linked=include_linked, limit=per_page,
                        offset=(page - 1) * per_page, rules=rules, now=now)
    chunk = case_rows(frame)
    names = unit_names_of(store, [r["unit_id"] for r in chunk])
    return {"total": total, "page": page, "per_page": per_page,
            "cases": [case_view(r, user, rules, now, names) for r in chunk]}


def on_time_rates(store: Store, by: str = "department") -> pd.DataFrame:
    """Per group: cases closed that had a disposal deadline, how many were closed by it, rate.
    (按期结案率 over closed cases; the evaluation's 应结案数 denominator is a later step.)"""
    if by not in ("department", "unit_id", "category", "zone_code"):
        raise InputError("--by is one of department, unit_id, category, zone_code")
    p = store.read("problems", where={"status": "closed"})
    p = p[p["target_at"].notna() & p["closed_at"].notna()]
    if p.empty:
        return pd.DataFrame(columns=[by, "closed", "on_time", "rate"])
    on = pd.to_datetime(p["closed_at"], utc=True) <= pd.to_datetime(p["target_at"], utc=True)
    g = pd.DataFrame({by: p[by].fillna("—").to_numpy(), "on_time": on.to_numpy()}).groupby(by)["on_time"]
    out = pd.DataFrame({"closed": g.size(), "on_time": g.sum()}).reset_index()
    out["rate"] = (out["on_time"] / out["closed"]).round(6)
    return out.sort_values(by).reset_index(drop=True)


__all__ = ["Forbidden", "NotFound", "Refused", "Rules", "case_queries", "case_rows", "case_view",
           "fill_light_times", "find", "get_case", "intake", "list_cases", "may_see_photos", "on_time_rates",
           "report_one", "transition", "unit_names_of"]
