"""Inspections (评): a score sheet per zone or unit from layers/rules/inspection.toml, the
奖惩台账 its rules give per period, and 迎检线路 (the zones along an inspection route).

An inspector scores each item of the sheet 0–100; the total is the weighted mean of the
items (weights are relative), and the inspection passes at or above the sheet's pass mark.
The sheet's version is kept with each inspection, the rules' version with each 奖惩 row, so a
changed sheet never rewrites the past."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from .deadlines import rule_file
from .errors import Forbidden, InputError, NotFound
from .evaluate import _number, _toml, load_formula, parse_period
from .store import Store

INSPECTORS = ("inspector", "admin")
OPEN_STATES_EXCLUDED = ("closed", "voided", "linked")
KINDS = ("reward", "fine")
_PHOTO = re.compile(r"[\w.\-]{1,200}")


@dataclass(frozen=True)
class Item:
    id: str
    name: str
    weight: float


@dataclass(frozen=True)
class SanctionRule:
    id: str
    when: str
    kind: str
    amount: float
    reason: str
    min: float | None = None
    max: float | None = None
    top: int | None = None
    bottom: int | None = None

    def holds(self, failed: int, rank: int | None, ranked: int) -> bool:
        if self.when == "failed_inspections":
            return failed >= (self.min or 1) and (self.max is None or failed <= self.max)
        if rank is None:
            return False
        return (self.top is not None and rank <= self.top) or \
            (self.bottom is not None and rank > ranked - self.bottom)


@dataclass(frozen=True)
class Sheet:
    version: str
    pass_mark: float
    items: tuple[Item, ...]
    sanctions: tuple[SanctionRule, ...]

    def total(self, scores: dict) -> float:
        """The weighted mean of the items' scores (every item must be scored 0–100)."""
        known = {i.id for i in self.items}
        unknown = [k for k in scores if k not in known]
        if unknown:
            raise InputError(f"score sheet item {unknown[0]!r} is not on sheet {self.version}; its items are "
                             + ", ".join(f"{i.id} ({i.name})" for i in self.items))
        for item in self.items:
            v = scores.get(item.id)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 100:
                raise InputError(f"score sheet item {item.id!r} ({item.name}) needs a score 0–100 (got {v!r})")
        return sum(i.weight * float(scores[i.id]) for i in self.items) / sum(i.weight for i in self.items)


def load_sheet(path: str | Path | None = None) -> Sheet:
    """inspection.toml (a city's own in $ZONEMAP_RULES, else ours), checked."""
    path = Path(path or rule_file("inspection.toml"))
    d = _toml(path)
    name = path.name
    if not isinstance(d.get("version"), str) or not d["version"].strip():
        raise InputError(f"{name}: give the sheet a version = \"…\" (inspections keep it)")
    items = []
    for n, it in enumerate(d.get("items", []), 1):
        if not isinstance(it.get("id"), str) or not it["id"]:
            raise InputError(f"{name} [[items]] #{n}: give it an id")
        items.append(Item(it["id"], str(it.get("name", it["id"])), _number(it, "weight", f"{name} item {it['id']}")))
    if not items or sum(i.weight for i in items) <= 0 or len({i.id for i in items}) < len(items):
        raise InputError(f"{name}: give [[items]] with distinct ids and positive weights")
    limits = d.get("limits", {})
    low = _number(limits, "min_amount", f"{name} [limits]", 0)
    high = _number(limits, "max_amount", f"{name} [limits]", float("inf"))
    rules = []
    for n, r in enumerate(d.get("sanctions", []), 1):
        where = f"{name} [[sanctions]] #{n} ({r.get('id', '?')})"
        if r.get("when") not in ("failed_inspections", "rank"):
            raise InputError(f"{where}: when = {r.get('when')!r}; use failed_inspections or rank")
        if r.get("kind") not in KINDS:
            raise InputError(f"{where}: kind = {r.get('kind')!r}; use reward or fine")
        amount = _number(r, "amount", where)
        if not low <= amount <= high:
            raise InputError(f"{where}: amount {amount:g} yuan is outside [limits] {low:g}–{high:g}")
        if r["when"] == "rank" and not (r.get("top") or r.get("bottom")):
            raise InputError(f"{where}: a rank rule needs top = N or bottom = N")
        rules.append(SanctionRule(str(r.get("id", f"rule-{n}")), r["when"], r["kind"], amount,
                                  str(r.get("reason", "")), r.get("min"), r.get("max"), r.get("top"), r.get("bottom")))
    return Sheet(d["version"].strip(), _number(d, "pass_mark", name, 60, high=100), tuple(items), tuple(rules))


# ---- recording ------------------------------------------------------------------------------

def _zone_unit(store: Store, zone_code, unit_id) -> tuple[str | None, str | None]:
    """The inspected zone (in force now) and unit; a zone's unit is its primary unit."""
    if not zone_code and not unit_id:
        raise InputError("an inspection is of a zone (zone_code) or a unit (unit_id)")
    if zone_code:
        from . import zones as zones_mod

        z = zones_mod.current(store.read("zones", where={"code": str(zone_code)}))
        if z.empty:
            raise NotFound(f"no zone {zone_code!r} in force")
        unit_id = unit_id or z["primary_unit"].iloc[0]
    if unit_id and store.read("units", where={"unit_id": str(unit_id)}).empty:
        raise NotFound(f"no unit {unit_id!r}")
    return (str(zone_code) if zone_code else None), (str(unit_id) if unit_id else None)


def _photos(photos) -> list[str]:
    if photos is None:
        return []
    if isinstance(photos, str):
        photos = [p.strip() for p in re.split(r"[;,，；]", photos) if p.strip()]
    if not isinstance(photos, list) or not all(isinstance(p, str) and _PHOTO.fullmatch(p) for p in photos):
        raise InputError("photos are file names (letters, digits, . _ -), as a list or separated by commas")
    return photos


def _row(store: Store, sheet: Sheet, rec: dict, inspector: str, at: pd.Timestamp) -> dict:
    """The row to store (inspection_id None until numbered), or InputError/NotFound naming the field."""
    zone, unit = _zone_unit(store, rec.get("zone_code"), rec.get("unit_id"))
    scores = rec.get("scores")
    if not isinstance(scores, dict):
        raise InputError("scores must be an object: score sheet item id → 0–100")
    total = sheet.total(scores)
    remarks = rec.get("remarks")
    if remarks is not None and (not isinstance(remarks, str) or len(remarks) > 2000):
        raise InputError("remarks must be text of at most 2000 characters")
    given = rec.get("inspection_id")
    if given is not None and (not isinstance(given, str) or not _PHOTO.fullmatch(given)):
        raise InputError("inspection_id must be letters, digits, . _ - (or left out: zonemap numbers it)")
    return {"inspection_id": given or None,
            "zone_code": zone, "unit_id": unit, "inspected_at": at, "inspector": inspector,
            "scores": json.dumps({i.id: scores[i.id] for i in sheet.items}, ensure_ascii=False),
            "total": round(total, 2), "passed": bool(total >= sheet.pass_mark - 1e-9),
            "sheet_version": sheet.version, "photos": json.dumps(_photos(rec.get("photos")), ensure_ascii=False),
            "remarks": remarks or None}


def _time(value, tz, name="inspected_at") -> pd.Timestamp:
    if value in (None, ""):
        return pd.Timestamp.now(tz="UTC")
    from .cases import parse_time

    return parse_time(value, name, tz=tz)


def add(store: Store, rec: dict, user, *, sheet: Sheet | None = None, tz=None, origin: str | None = None,
        source: str = "api") -> dict:
    """Record one inspection (inspector or admin): the row as stored, with its total and pass."""
    from . import audit
    from .cases import Rules

    if user.role not in INSPECTORS:
        raise Forbidden(f"role {user.role!r} may not record inspections; inspectors and admins may")
    sheet = sheet or load_sheet()
    at = _time(rec.get("inspected_at"), tz or Rules().tz)
    row = _row(store, sheet, rec, user.name, at)
    with store.transaction() as tx:
        _number_rows(tx, [row])
        if rec.get("inspection_id") and tx.rows("inspections", {"inspection_id": row["inspection_id"]}):
            raise InputError(f"inspection {row['inspection_id']!r} is already recorded")
        audit.record(tx, actor=user.name, role=user.role, action="inspection:add", target=row["inspection_id"],
                     detail={"total": row["total"], "passed": row["passed"]}, origin=origin)
        tx.append("inspections", pd.DataFrame([{**row, "source": source}]))
    return row


# 检查表 columns as people write them: the sheet's items by id or by name, the rest by alias.
_FILE_COLUMNS = {"inspection_id": ("inspection_id", "检查编号", "编号"), "zone_code": ("zone_code", "责任区编号"),
                 "unit_id": ("unit_id", "单位编号"), "inspected_at": ("inspected_at", "检查时间", "检查日期", "date"),
                 "inspector": ("inspector", "检查人"), "photos": ("photos", "照片"), "remarks": ("remarks", "备注")}


def import_file(store: Store, path: str | Path, *, dry_run: bool = False, sheet: Sheet | None = None,
                tz=None) -> dict:
    """Inspections from a CSV or XLSX sheet, one row each: zone or unit, time, inspector, one column
    per score sheet item (its id or its name), photos, remarks. All rows or none: a bad row is
    named with its number and what to fix."""
    from .cases import Rules
    from .readers import read_file

    sheet = sheet or load_sheet()
    tz = tz or Rules().tz
    src = read_file(path)
    frame = pd.DataFrame(src.frame.drop(columns=src.frame.geometry.name, errors="ignore"))
    cols = {k: next((c for c in names if c in frame.columns), None) for k, names in _FILE_COLUMNS.items()}
    item_cols = {i.id: next((c for c in (i.id, i.name) if c in frame.columns), None) for i in sheet.items}
    missing = [i for i, c in item_cols.items() if c is None]
    if missing:
        raise InputError(f"{Path(path).name}: no column for score sheet item(s) {', '.join(missing)} "
                         f"(sheet {sheet.version}; name a column by item id or name)")
    rows, errors = [], []
    for label, rec in zip(src.row_numbers, frame.to_dict("records")):
        get = {k: (None if c is None or _blank(rec[c]) else rec[c]) for k, c in cols.items()}
        try:
            scores = {i: _score(rec[c], i) for i, c in item_cols.items()}
            at = _time(str(get["inspected_at"]) if get["inspected_at"] is not None else None, tz)
            row = _row(store, sheet, {**get, "scores": scores}, str(get["inspector"] or "import"), at)
        except (InputError, NotFound) as exc:
            errors.append(f"{src.row_word} {label}: {exc}")
            continue
        rows.append({**row, "source": f"{Path(path).name}#{label}"})
    report = {"file": Path(path).name, "rows": len(frame), "accepted": len(rows), "errors": errors,
              "sheet_version": sheet.version, "dry_run": dry_run, "written": 0}
    if errors:
        report["error"] = f"{len(errors)} of {len(frame)} rows are unusable, so nothing was written"
        return report
    if not dry_run and rows:
        with store.transaction() as tx:
            _number_rows(tx, rows)
            report["written"] = tx.append("inspections", pd.DataFrame(rows))
    return report


def _number_rows(tx, rows: list[dict]) -> None:
    """Number the rows without an id JC + city date + a counter per day, inside the writing
    transaction (no duplicates or gaps across writers)."""
    days = {}
    for r in rows:
        if not r["inspection_id"]:
            days.setdefault(r["inspected_at"].strftime("%Y%m%d"), []).append(r)
    for day, group in days.items():
        first = tx.next_number(f"inspection:{day}", len(group))
        for j, r in enumerate(group):
            r["inspection_id"] = f"JC{day}{first + j:05d}"


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _score(v, item: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InputError(f"item {item!r}: {v!r} is not a score 0–100") from None


def list_inspections(store: Store, period: str | None = None, *, zone: str | None = None, unit: str | None = None,
                     tz=None) -> list[dict]:
    """Inspections, newest first, optionally of one period, zone or unit."""
    from .cases import Rules

    where = {k: v for k, v in (("zone_code", zone), ("unit_id", unit)) if v}
    ins = pd.DataFrame(store.read("inspections", where=where or None))
    if period and len(ins):
        per = parse_period(period, tz or Rules().tz)
        ins = ins[per.contains(ins["inspected_at"])]
    if ins.empty:
        return []
    ins = ins.assign(_t=pd.to_datetime(ins["inspected_at"], utc=True)).sort_values("_t", ascending=False)
    out = []
    for r in ins.drop(columns=["_t", "fid", "attrs"], errors="ignore").to_dict("records"):
        r["scores"] = json.loads(r["scores"]) if r.get("scores") else {}
        r["photos"] = json.loads(r["photos"]) if r.get("photos") else []
        out.append({k: (None if _blank(v) else v) for k, v in r.items()})
    return out


# ---- 奖惩台账 -------------------------------------------------------------------------------

def sanctions(store: Store, period: str | None = None, *, sheet: Sheet | None = None, save: bool = True,
              now: dt.datetime | None = None, tz=None) -> dict:
    """The period's rewards and fines per unit from the sheet's rules: failed inspections counted
    per unit, ranks from the unit evaluation. With `save` they replace the period's rows in the
    奖惩台账 (one transaction), each with the rules' version."""
    from .cases import Rules
    from .evaluate import evaluate

    sheet = sheet or load_sheet()
    tz = tz or Rules().tz
    per = parse_period(period, tz)
    ins = pd.DataFrame(store.read("inspections"))
    ins = ins[per.contains(ins["inspected_at"]) & ins["unit_id"].notna().to_numpy()] if len(ins) else ins
    failed = (ins[~ins["passed"].fillna(False).astype(bool)].groupby("unit_id").size().to_dict()
              if len(ins) else {})
    ranks = {}
    if any(r.when == "rank" for r in sheet.sanctions):
        ranking = evaluate(store, per.label, "unit", tz=tz)
        ranks = {r["subject"]: r["rank"] for r in ranking["rows"] if r["rank"] is not None}
    units = sorted(set(failed) | set(ranks))
    units_frame = store.read("units")
    names = dict(zip(units_frame["unit_id"], units_frame["name"]))
    now = now or dt.datetime.now(dt.UTC)
    rows = [{"unit_id": u, "name": names.get(u, u), "period": per.label, "kind": r.kind, "amount": r.amount,
             "rule": r.id, "reason": r.reason, "rules_version": sheet.version, "computed_at": now,
             "failed_inspections": int(failed.get(u, 0)), "rank": ranks.get(u)}
            for u in units for r in sheet.sanctions if r.holds(int(failed.get(u, 0)), ranks.get(u), len(ranks))]
    if save:
        stored = pd.DataFrame([{k: r[k] for k in ("unit_id", "period", "kind", "amount", "rule", "reason",
                                                  "rules_version", "computed_at")} for r in rows],
                              columns=["unit_id", "period", "kind", "amount", "rule", "reason", "rules_version",
                                       "computed_at"])
        with store.transaction() as tx:
            tx.delete_source("sanctions", f"sanctions:{per.label}")  # a recomputation replaces the period
            if len(stored):
                tx.append("sanctions", stored.assign(source=f"sanctions:{per.label}"))
    return {"period": per.label, "rules_version": sheet.version, "saved": save,
            "fines": sum(r["amount"] for r in rows if r["kind"] == "fine"),
            "rewards": sum(r["amount"] for r in rows if r["kind"] == "reward"), "rows": rows}


# ---- 迎检线路 ------------------------------------------------------------------------------

def route_check(store: Store, path: str | Path, *, within_m: float | None = None, layer: str | None = None,
                crs: str | None = None, as_of: dt.date | None = None) -> dict:
    """The zones in force within `within_m` of an inspection route (a line in a GeoJSON, GPX or
    KML file), in the order the route meets them, each with its unit, open problems and last
    inspection."""
    from .patrols import read_lines, to_metric
    from .zones import current

    within_m = load_formula().route_within_m if within_m is None else within_m
    if not 0 <= within_m <= 5000:
        raise InputError("--within is 0–5000 metres")
    lines = read_lines(path, layer, crs)
    zones = current(store.read("zones"), as_of)
    if zones.empty:
        raise InputError("no zones in force; generate or import zones first")
    zm, metric = to_metric(zones.geometry.values)
    route = shapely.line_merge(shapely.union_all(to_metric(lines.geometry.values, metric)[0]))
    dist = shapely.distance(zm, route)
    near = np.flatnonzero(dist <= within_m)
    along = shapely.line_locate_point(route, shapely.centroid(zm[near])) if route.geom_type == "LineString" \
        else np.zeros(len(near))
    problems = pd.DataFrame(store.read("problems").drop(columns="geometry", errors="ignore"))
    open_ = problems[~problems["status"].isin(OPEN_STATES_EXCLUDED)].groupby("zone_code").size().to_dict() \
        if len(problems) else {}
    last = _last_inspections(store)
    units = store.read("units")
    names = dict(zip(units["unit_id"], units["name"]))
    out = []
    for i, pos in sorted(zip(near, along), key=lambda t: t[1]):
        z = zones.iloc[i]
        out.append({"code": z["code"], "kind": z["kind"], "unit_id": z["primary_unit"],
                    "unit": names.get(z["primary_unit"]), "street": z["street"], "distance_m": round(float(dist[i]), 1),
                    "along_m": round(float(pos), 1), "open_problems": int(open_.get(z["code"], 0)),
                    "last_inspection": last.get(z["code"])})
    return {"file": Path(path).name, "within_m": within_m, "route_m": round(float(route.length), 1),
            "zones": out}


def _last_inspections(store: Store) -> dict:
    ins = pd.DataFrame(store.read("inspections"))
    if ins.empty:
        return {}
    ins = ins[ins["zone_code"].notna()].assign(_t=pd.to_datetime(ins["inspected_at"], utc=True))
    last = ins.sort_values("_t").groupby("zone_code").tail(1)
    return {r["zone_code"]: {"inspected_at": r["_t"].isoformat(), "total": r["total"], "passed": bool(r["passed"]),
                             "inspector": r["inspector"]} for r in last.to_dict("records")}


__all__ = ["Sheet", "add", "import_file", "list_inspections", "load_sheet", "route_check", "sanctions"]
