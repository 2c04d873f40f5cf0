"""Problems and cases: intake from any door, routing, duplicates, the workflow and queries.

Three doors share `intake`: the JSON API, Open311 and files (`import_problems`). Each report
is routed to the zone in force and its unit (layers.routing), checked against open cases of
the same category near it (a duplicate is linked, not opened), and written with its first
step in one transaction. `transition` moves a case by role along workflow.MOVES, keeps the
step (who, when, from, to, note) and sets the new stage's deadline against the calendar.
Nothing is ever overwritten: a state change adds a step; the case row holds the latest."""

from __future__ import annotations

import datetime as dt
import math
import secrets
from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd

from geo.crs import NAMED_CRS, to_wgs84

from .deadlines import Category, WorkingCalendar, light_of, load_categories
from .errors import Forbidden, InputError, NotFound, Refused
from .routing import STREET_OFFICE, Router
from .store import Store
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

    def light(self, status: str, code, start, deadline, now: dt.datetime) -> str | None:
        """green below 80 % of the stage's time, yellow to 100 %, red beyond (None: no limit)."""
        limit = self.stage_limit(status, code)
        if limit is None or _missing(start) or _missing(deadline):
            return None
        s, d, n = (pd.Timestamp(t).to_pydatetime().astimezone(self.tz).replace(tzinfo=None)
                   for t in (start, deadline, now))
        if n - d > dt.timedelta(days=31):  # a month past due holds working time in any calendar
            return "red"
        whole = self.calendar.elapsed(s, d, limit.unit)
        if whole <= 0:
            return "red" if n > d else "yellow"
        return light_of(self.calendar.elapsed(s, n, limit.unit) / whole)


def _missing(v) -> bool:
    return v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id(now: dt.datetime) -> str:
    return "ZM" + now.strftime("%Y%m%d") + "-" + secrets.token_hex(3).upper()


def _metres(lon0, lat0, lon, lat) -> np.ndarray:
    """Great-circle distance in metres (haversine; exact enough within a duplicate window)."""
    r = 6371008.8
    p0, p1 = np.radians(lat0), np.radians(lat)
    a = np.sin((p1 - p0) / 2) ** 2 + np.cos(p0) * np.cos(p1) * np.sin(np.radians(lon - lon0) / 2) ** 2
    return 2 * r * np.arcsin(np.sqrt(a))


# ---- intake ----------------------------------------------------------------------------

def _routers(store: Store, rules: Rules, allow_empty: bool):
    """A Router per date when the zones have history, else one for all."""
    zones = store.read("zones")
    history = not zones.empty and zones["valid_to"].notna().any()
    cache: dict = {}

    def get(day):
        key = day if history else None
        if key not in cache:
            cache[key] = Router(store, as_of=key, rules=rules.workflow.category_rules, allow_empty=allow_empty)
        return cache[key]
    return get


def _route_all(store, rules, lon, lat, cats, when, allow_empty, placeholder, router=None) -> pd.DataFrame:
    get = (lambda day: router) if router is not None else _routers(store, rules, allow_empty)
    days = pd.Series(when).map(lambda t: pd.Timestamp(t).astimezone(rules.tz).date()).to_numpy()
    out = []
    for day in dict.fromkeys(days):
        sel = np.flatnonzero(days == day)
        r = get(day).route(lon[sel], lat[sel], "wgs84", category=cats[sel])
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


def _open_cases(store: Store, cats: set, lon, lat) -> pd.DataFrame:
    if not len(lon) or not cats:
        return pd.DataFrame()
    pad = 0.01
    box = (float(np.min(lon)) - pad, float(np.min(lat)) - pad, float(np.max(lon)) + pad, float(np.max(lat)) + pad)
    got = store.read("problems", bbox=box, where={"status": list(OPEN), "category": sorted(cats)})
    if got.empty:
        return pd.DataFrame()
    return pd.DataFrame({"problem_id": got["problem_id"], "category": got["category"],
                         "lon": got.geometry.x, "lat": got.geometry.y,
                         "reported_at": pd.to_datetime(got["reported_at"], utc=True)})


def intake(store: Store, reports: pd.DataFrame, user: User, channel: str, *, now: dt.datetime | None = None,
           rules: Rules | None = None, dedupe: bool = True, allow_empty: bool = False,
           source_label: str | None = None, router: Router | None = None) -> pd.DataFrame:
    """Write `reports` as cases (or duplicates linked to open ones) in one transaction.

    `reports` has lon, lat (WGS 84) and may have raw_x/raw_y/raw_crs, category, description,
    address, contact, photo, reported_at, problem_id, status (a zonemap state, for files),
    source_status, department, target_at, closed_at, location_placeholder, source, attrs.
    Returns one row per report: problem_id, status, duplicate_of, zone_code, unit_id,
    unit_name, routed_by, distance_m, stage_deadline."""
    if user.role not in REPORTERS:
        raise Forbidden(f"role {user.role!r} may not report problems; reporters are {', '.join(REPORTERS)}")
    rules = rules or Rules()
    now = now or utc_now()
    n = len(reports)
    if n == 0:
        raise InputError("no reports to take in")
    rep = reports.reset_index(drop=True)

    cols: dict[tuple, np.ndarray] = {}

    def col(name, default=None):
        if (name, default) not in cols:
            cols[name, default] = rep[name].to_numpy(dtype=object) if name in rep \
                else np.full(n, default, dtype=object)
        return cols[name, default]

    lon, lat = rep["lon"].to_numpy(float), rep["lat"].to_numpy(float)
    cats = np.array([None if _missing(c) else str(c).strip() or None for c in col("category")], dtype=object)
    unknown = [c for c in cats if c and c.isdigit() and len(c) == 5 and c not in rules.categories]
    if unknown:
        raise InputError(f"category {unknown[0]} is not in the category table; see GET /api/categories "
                         "or layers/rules/categories.csv")
    when = np.array([now if _missing(t) else pd.Timestamp(t).to_pydatetime() for t in col("reported_at")],
                    dtype=object)
    placeholder = np.array([bool(v) and not _missing(v) for v in col("location_placeholder", False)])
    routed = _route_all(store, rules, lon, lat, cats, when, allow_empty, placeholder, router)
    given_status = col("status")
    live = all(_missing(s) for s in given_status)
    public = user.role == "public"

    # duplicates: an open case of the same category within the window, nearest first
    open_cases = _open_cases(store, {c for c in cats if c}, lon, lat) if dedupe and live else pd.DataFrame()
    candidates: dict[str, list[dict]] = {}  # by category: the store's open cases, then this batch's
    for c in open_cases.to_dict("records"):
        candidates.setdefault(c["category"], []).append(c)
    ids = col("problem_id")
    rows, steps, answers = [], [], []
    routed_rows = routed.to_dict("records")
    for i in range(n):
        pid = str(ids[i]) if not _missing(ids[i]) else new_id(now)
        t = when[i]
        dup = None
        if dedupe and live and cats[i] and not placeholder[i]:
            dist_m, window_h = rules.workflow.duplicate_window(cats[i])
            best = None
            for c in candidates.get(cats[i], ()):
                age = (pd.Timestamp(t) - pd.Timestamp(c["reported_at"])).total_seconds() / 3600
                if not 0 <= age <= window_h:
                    continue
                d = float(_metres(c["lon"], c["lat"], lon[i], lat[i]))
                if d <= dist_m and (best is None or d < best[1]):
                    best = (c["problem_id"], d)
            dup = best
        r = routed_rows[i]
        cat = rules.category(cats[i])
        dept = col("department")[i]
        if _missing(dept):
            dept = cat.department if cat else None
        if r["method"] == "category" and str(r["unit_id"]).startswith("DEPT-"):
            dept = r["unit_name"]
        row = {"problem_id": pid, "category": cats[i], "description": col("description")[i],
               "address": col("address")[i], "reported_at": t, "channel": channel,
               "public_report": public, "reporter": col("reporter", user.name)[i] if "reporter" in rep else user.name,
               "contact": col("contact")[i], "photo": col("photo")[i], "department": dept,
               "zone_code": r["zone_code"], "zone_version": r["zone_version"], "unit_id": r["unit_id"],
               "grid_code": r["grid_code"],
               "routed_by": r["method"], "route_distance_m": r["distance_m"],
               "location_placeholder": bool(placeholder[i]), "rework_count": 0, "extension_count": 0,
               "source_status": col("source_status")[i],
               "raw_x": col("raw_x", lon[i])[i], "raw_y": col("raw_y", lat[i])[i],
               "raw_crs": col("raw_crs", "wgs84")[i],
               "source": col("source", source_label or channel)[i], "attrs": col("attrs")[i]}
        first = []
        if dup is not None:
            row |= {"status": LINKED, "duplicate_of": dup[0], "stage_started_at": t, "stage_deadline": None}
            first.append(("report", None, LINKED, f"重复上报:关联到 {dup[0]} ({dup[1]:.0f} m)"))
        elif not live:  # a file with its own states: take them as they are, invent no history
            status = given_status[i]
            target = col("target_at")[i]
            closed = col("closed_at")[i]
            # a file with no deadlines gets the category's; one whose row left it empty keeps none
            if "target_at" not in rep and status not in ("reported", "verifying", "filed"):
                target = rules.add(pd.Timestamp(t).to_pydatetime(), rules.disposal(cats[i]))
            row |= {"status": status, "target_at": None if _missing(target) else target,
                    "closed_at": None if _missing(closed) else closed, "stage_started_at": t}
            limit = rules.stage_limit(status, cats[i]) if status not in FINAL else None
            row["stage_deadline"] = (row["target_at"] if status in ("dispatched", "processing")
                                     else rules.add(pd.Timestamp(t).to_pydatetime(), limit) if limit else None)
            first.append(("import", None, status, f"导入 {row['source']},原状态 {row['source_status'] or '—'}"))
        else:
            row |= {"status": "reported", "stage_started_at": t}
            first.append(("report", None, "reported", None))
            if public:
                first.append(("await_verification", "reported", "verifying", "公众上报,待监督员核实"))
                row["status"] = "verifying"
            row["stage_deadline"] = rules.add(t, rules.stage_limit(row["status"], cats[i]))
        for seq, (action, a, b, note) in enumerate(first, start=1):
            steps.append({"problem_id": pid, "seq": seq, "at": t, "actor": user.name if seq == 1 else "system",
                          "role": user.role if seq == 1 else "system", "action": action, "from_status": a,
                          "to_status": b, "unit_id": row["unit_id"], "deadline_at": row.get("stage_deadline"),
                          "note": note, "source": row["source"]})
        rows.append(row)
        if row["status"] in OPEN and cats[i]:
            candidates.setdefault(cats[i], []).append(
                {"problem_id": pid, "category": cats[i], "lon": lon[i], "lat": lat[i], "reported_at": t})
        answers.append({"problem_id": pid, "status": row["status"], "status_zh": STATE_ZH.get(row["status"]),
                        "duplicate_of": row.get("duplicate_of"),
                        "zone_code": r["zone_code"], "zone_kind": r["zone_kind"], "zone_version": r["zone_version"],
                        "grid_code": r["grid_code"],
                        "unit_id": r["unit_id"], "unit_name": r["unit_name"], "routed_by": r["method"],
                        "distance_m": r["distance_m"], "department": dept,
                        "stage_deadline": row.get("stage_deadline")})
    frame = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    with store.transaction() as tx:
        _ensure_units(tx, store, routed)
        tx.append("problems", frame)
        tx.append("case_steps", pd.DataFrame(steps))
    return pd.DataFrame(answers)


def _ensure_units(tx, store: Store, routed: pd.DataFrame) -> None:
    """Department units named by category rules exist as units, so a unit user can answer."""
    dept = routed.loc[routed["unit_id"].str.startswith("DEPT-", na=False), ["unit_id", "unit_name"]].drop_duplicates()
    for uid, name in dept.itertuples(index=False):
        if not tx.rows("units", {"unit_id": uid}):
            tx.append("units", gpd.GeoDataFrame(
                pd.DataFrame([{"unit_id": uid, "name": name, "type": "department", "placeholder": False,
                               "source": "rules/workflow.toml"}]),
                geometry=gpd.GeoSeries([None], crs="EPSG:4326")))


def report_one(store: Store, data: dict, user: User, channel: str, *, now=None, rules=None, router=None,
               problem_id: str | None = None) -> dict:
    """One report from the API or Open311: checks, converts the phone's coordinates, intakes.
    `router`: a live Router over the zones in force (a server keeps one)."""
    def number(key):
        v = data.get(key)
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise InputError(f"field {key!r}: {v!r} is not a number") from None
        if not math.isfinite(f):
            raise InputError(f"field {key!r}: {v!r} is not a finite number")
        return f

    lon, lat = number("lon"), number("lat")
    crs = str(data.get("crs") or "wgs84").lower()
    if crs not in NAMED_CRS:
        raise InputError(f"field 'crs': {crs!r}; use one of {', '.join(NAMED_CRS)}")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"fields 'lon'/'lat': ({lon}, {lat}) is not a longitude/latitude (swapped?)")
    category = str(data.get("category") or "").strip()
    rules = rules or Rules()
    if not category:
        raise InputError("field 'category' is required: a 5-digit code, see GET /api/categories")
    if category not in rules.categories:
        raise InputError(f"field 'category': {category!r} is not in the category table; see GET /api/categories")
    desc = data.get("description")
    if desc is not None and len(str(desc)) > 4000:
        raise InputError("field 'description' is longer than 4000 characters")
    wlon, wlat = to_wgs84(np.array([lon]), np.array([lat]), crs)
    frame = pd.DataFrame([{
        "lon": float(wlon[0]), "lat": float(wlat[0]), "raw_x": lon, "raw_y": lat, "raw_crs": crs,
        "category": category, "description": None if desc is None else str(desc),
        "address": (str(data["address"])[:500] if data.get("address") else None),
        "contact": (str(data["contact"])[:200] if data.get("contact") else None),
        "photo": data.get("photo"), "problem_id": problem_id, "attrs": data.get("attrs")}])
    out = intake(store, frame, user, channel, now=now, rules=rules, source_label=channel, router=router)
    return _jsonable(out.iloc[0].to_dict())


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        if _missing(v) or v is pd.NA:
            v = None
        elif isinstance(v, (dt.datetime, pd.Timestamp)):
            v = pd.Timestamp(v).tz_convert("UTC").isoformat() if pd.Timestamp(v).tzinfo else pd.Timestamp(v).isoformat()
        elif isinstance(v, dt.date):
            v = v.isoformat()
        out[k] = v
    return out


# ---- the workflow ------------------------------------------------------------------------

def transition(store: Store, problem_id: str, action: str, user: User, *, note: str | None = None,
               unit_id: str | None = None, now: dt.datetime | None = None, rules: Rules | None = None) -> dict:
    """Move case `problem_id` by `action`; Refused (409) when the state does not allow it,
    Forbidden (403) when the role may not. `unit_id` with dispatch re-assigns (改派)."""
    rules = rules or Rules()
    now = now or utc_now()
    if note is not None and len(str(note)) > 2000:
        raise InputError("field 'note' is longer than 2000 characters")
    with store.transaction() as tx:
        got = tx.rows("problems", {"problem_id": problem_id}, lock=True)
        if not got:
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
        if user.role == "unit" and case["unit_id"] != user.unit_id:
            raise Forbidden(f"case {problem_id} is not your unit's ({user.unit_id}); it is {case['unit_id']}'s")
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
        left = rules.light(status, cat, case["stage_started_at"], case["stage_deadline"], now)
        seq = len(tx.rows("case_steps", {"problem_id": problem_id})) + 1
        tx.update("problems", case["fid"], new)
        tx.append("case_steps", pd.DataFrame([{
            "problem_id": problem_id, "seq": seq, "at": now, "actor": user.name, "role": user.role,
            "action": action, "from_status": status, "to_status": move.target,
            "unit_id": new.get("unit_id", case["unit_id"]), "deadline_at": new.get("stage_deadline"),
            "light": left, "note": note, "source": "api"}]))
    return get_case(store, problem_id, user, now=now, rules=rules)


# ---- reading -------------------------------------------------------------------------------

def _visible(case: dict, user: User) -> bool:
    if user.role in ("inspector", "dispatcher", "admin", "planner"):
        return True
    if user.role == "unit":
        return case.get("unit_id") == user.unit_id
    return user.name != "anonymous" and case.get("reporter") == user.name


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
            "light": None if status in (*FINAL, LINKED) else rules.light(
                status, row.get("category"), row.get("stage_started_at"), row.get("stage_deadline"), now),
            "on_time": on_time, "lon": row.get("lon"), "lat": row.get("lat"),
            "actions": [m.action for m in moves_from(status) if user.role in m.roles
                        and (user.role != "unit" or row.get("unit_id") == user.unit_id)]}
    out["actions"] = list(dict.fromkeys(out["actions"]))
    if steps is not None:
        out["steps"] = [_jsonable({k: s.get(k) for k in ("seq", "at", "actor", "role", "action", "from_status",
                                                       "to_status", "unit_id", "deadline_at", "light", "note")})
                        for s in sorted(steps, key=lambda s: s["seq"])]
    if linked is not None:
        out["duplicates"] = linked
    return _jsonable(out)


def case_rows(frame: gpd.GeoDataFrame) -> list[dict]:
    """Rows of the problems layer as plain dicts with lon/lat, None for every missing value."""
    if frame.empty:
        return []
    df = pd.DataFrame(frame.drop(columns="geometry"))
    df["lon"] = frame.geometry.x.round(7)
    df["lat"] = frame.geometry.y.round(7)
    return [{k: (None if _missing(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


def _unit_names(store: Store, ids) -> dict:
    ids = sorted({i for i in ids if i})
    if not ids:
        return {}
    units = store.read("units", where={"unit_id": ids})
    return dict(zip(units["unit_id"], units["name"]))


def get_case(store: Store, problem_id: str, user: User, *, now=None, rules=None) -> dict:
    rules = rules or Rules()
    got = case_rows(store.read("problems", where={"problem_id": problem_id}))
    if not got or not _visible(got[0], user):
        raise NotFound(f"no case {problem_id!r}")
    steps = store.read("case_steps", where={"problem_id": problem_id}).to_dict("records")
    linked = store.read("problems", where={"duplicate_of": problem_id})["problem_id"].tolist()
    return case_view(got[0], user, rules, now or utc_now(), _unit_names(store, [got[0]["unit_id"]]), steps, linked)


def parse_time(text, name: str, hint: str = "YYYY-MM-DD or ISO 8601") -> pd.Timestamp | None:
    """A query parameter's date or time in UTC (a time without zone is UTC); None when empty."""
    if text in (None, ""):
        return None
    try:
        t = pd.Timestamp(text)
    except (TypeError, ValueError):
        raise InputError(f"parameter {name!r}: {text!r} is not a date or time (use {hint})") from None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def list_cases(store: Store, user: User, *, bbox=None, status=None, category=None, unit=None, since=None,
               until=None, page: int = 1, per_page: int = 50, include_linked: bool = False,
               now=None, rules=None) -> dict:
    """Cases the user may see, newest first, one page at a time."""
    rules = rules or Rules()
    if page < 1 or not 1 <= per_page <= PAGE_MAX:
        raise InputError(f"page starts at 1 and per_page is 1–{PAGE_MAX}")
    where = {}
    for name, value, allowed in (("status", status, (*STATES, LINKED)), ("category", category, None),
                                 ("unit_id", unit, None)):
        if value:
            values = [v.strip() for v in str(value).split(",") if v.strip()]
            if allowed:
                bad = [v for v in values if v not in allowed]
                if bad:
                    raise InputError(f"parameter 'status': {bad[0]!r}; the states are {', '.join(allowed)}")
            where[name] = values
    if user.role == "unit":
        where["unit_id"] = [user.unit_id]
    frame = store.read("problems", bbox=bbox, where=where or None)
    if not include_linked and not status and not frame.empty:
        frame = frame[frame["status"] != LINKED]
    t0, t1 = parse_time(since, "since"), parse_time(until, "until")
    if not frame.empty and (t0 is not None or t1 is not None):
        at = pd.to_datetime(frame["reported_at"], utc=True)
        keep = np.ones(len(frame), bool)
        if t0 is not None:
            keep &= (at >= t0).to_numpy()
        if t1 is not None:
            keep &= (at < t1 + pd.Timedelta(days=1) if len(str(until)) <= 10 else at <= t1).to_numpy()
        frame = frame[keep]
    if not frame.empty and user.role not in ("inspector", "dispatcher", "admin", "planner", "unit"):
        frame = frame[frame["reporter"].eq(user.name).to_numpy() & (user.name != "anonymous")]
    if not frame.empty:  # newest first, in pandas: only the page becomes Python rows
        frame = frame.assign(_at=pd.to_datetime(frame["reported_at"], utc=True)).sort_values(
            ["_at", "problem_id"], ascending=False, na_position="last").drop(columns="_at")
    total = len(frame)
    now = now or utc_now()
    chunk = case_rows(frame.iloc[(page - 1) * per_page: page * per_page])  # visibility filtered above
    names = _unit_names(store, [r["unit_id"] for r in chunk])
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


__all__ = ["Forbidden", "NotFound", "Refused", "Rules", "case_rows", "case_view", "get_case", "intake", "list_cases",
           "on_time_rates", "report_one", "transition"]
