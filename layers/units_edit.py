"""A planner's edits of units (责任单位): fill in name, person, phone and 统一社会信用代码, merge
a placeholder into the real unit, retire a unit. Units are kept, never deleted: a merged or
retired unit keeps its row with `retired_at` (and `merged_into`). Every edit writes an audit
row with who and why; a merge moves each zone of the placeholder to the kept unit as a new
zone version (layers.zone_edit stamps). The router holds unit names, so unit writers bump
the zone writers' counter too: servers route with the new names at once."""

from __future__ import annotations

import datetime as dt
import re

import geopandas as gpd
import pandas as pd

from . import audit
from .errors import Forbidden, InputError, NotFound, Refused
from .schema import STORAGE_CRS
from .store import Store
from .users import CLI, User
from .zone_edit import LOCK, _next, _note, _present, may_edit
from .zones import _hold_versions, city_today, current

EDITABLE = ("name", "person", "phone", "credit_code", "address", "type")
# GB 32100-2015: 18 characters of digits and capitals without I, O, S, V, Z
CREDIT_CODE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")
PHONE = re.compile(r"[0-9+()\- ]{3,30}")
STAFF = ("inspector", "dispatcher", "planner", "admin")


def _unit_row(store: Store, unit_id) -> dict:
    if not isinstance(unit_id, str) or not unit_id:
        raise InputError("give a unit_id")
    rows = store.read("units", where={"unit_id": unit_id})
    if rows.empty:
        raise NotFound(f"no unit {unit_id!r}; search the units page or `zonemap zones list`")
    return rows.iloc[0].to_dict()


def _clean(values: dict) -> dict:
    """The fields to set, checked: text, trimmed; an empty one clears it (never the name)."""
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; a unit has {', '.join(EDITABLE)}")
    out = {}
    for k, v in values.items():
        if v is not None and not isinstance(v, str):
            raise InputError(f"{k} must be text")
        v = (v or "").strip() or None
        if v is not None and len(v) > 200:
            raise InputError(f"{k}: keep it under 200 characters")
        if k == "name" and v is None:
            raise InputError("name may not be empty: a unit needs its real name")
        if k == "credit_code" and v is not None:
            v = v.upper()
            if not CREDIT_CODE.fullmatch(v):
                raise InputError(f"credit_code {v!r} is not a 统一社会信用代码 (18 digits and capitals, "
                                 "without I, O, S, V, Z)")
        if k == "phone" and v is not None and not PHONE.fullmatch(v):
            raise InputError(f"phone {v!r}: use digits, spaces, + - ( )")
        out[k] = v
    return out


def edit(store: Store, unit_id: str, values: dict, by: User = CLI, note=None, origin: str = "cli",
         now: dt.datetime | None = None) -> dict:
    """Set some of a unit's fields; naming a placeholder unit makes it a real one."""
    may_edit(by)
    note = _note(note)
    values = _clean({k: v for k, v in values.items() if k in EDITABLE or v is not None})
    with store.transaction() as tx:
        tx.next_number(LOCK)  # the router keeps unit names: make servers load them again
        (row,) = tx.rows("units", {"unit_id": unit_id}, lock=True) or [None]
        if row is None:
            raise NotFound(f"no unit {unit_id!r}; search the units page or `zonemap zones list`")
        if _present(row.get("retired_at")):
            raise Refused(f"unit {unit_id} was retired" + (f" (merged into {row['merged_into']})"
                                                            if row.get("merged_into") else ""))
        code = values.get("credit_code")
        if code and code != row.get("credit_code"):
            other = tx.rows("units", {"credit_code": code})
            if other:
                raise Refused(f"credit_code {code} is the code of unit {other[0]['unit_id']} "
                              f"({other[0]['name']}); merge the two units instead")
        changed = {k: v for k, v in values.items() if v != row.get(k)}
        if "name" in changed and row.get("placeholder"):
            changed["placeholder"] = False
        if changed:
            tx.update("units", int(row["fid"]), changed)
            audit.record(tx, actor=by.name, role=by.role, action="units:edit", target=unit_id,
                         detail={"fields": sorted(changed), "note": note}, origin=origin,
                         at=now or dt.datetime.now(dt.UTC))
    return view(_unit_row(store, unit_id), full=True)


def merge(store: Store, unit_id: str, into: str, by: User = CLI, note=None, origin: str = "cli",
          now: dt.datetime | None = None) -> dict:
    """Merge unit `unit_id` (typically a placeholder) into unit `into`: each zone in force
    that names it (primary or co-responsible) gets a new version naming `into`, and the unit
    is retired, its row kept with `merged_into`. One transaction."""
    may_edit(by)
    note = _note(note)
    if unit_id == into:
        raise InputError("a unit cannot be merged into itself")
    at = now or dt.datetime.now(dt.UTC)
    today = city_today(at)
    for uid in (unit_id, into):
        _unit_row(store, uid)
    with store.transaction() as tx:
        tx.next_number(LOCK)
        gone, kept = (tx.rows("units", {"unit_id": u}, lock=True)[0] for u in (unit_id, into))
        for u in (gone, kept):
            if _present(u.get("retired_at")):
                raise Refused(f"unit {u['unit_id']} was retired already"
                              + (f" (merged into {u['merged_into']})" if u.get("merged_into") else ""))
        if unit_id.startswith("FALLBACK-"):
            raise Refused(f"{unit_id} is the fallback party (属地兜底) and cannot be merged away")
        zones = _zones_naming(store, unit_id)
        rows = []
        for z in zones.to_dict("records"):
            swap = {c: into for c in ("primary_unit", "co_unit") if z.get(c) == unit_id}
            if swap.get("co_unit") and z.get("primary_unit") in (into, unit_id):
                swap["co_unit"] = None  # a unit is not its own co-responsible
            rows.append(_next(z, **swap))
        if rows:
            _hold_versions(tx, [r["code"] for r in rows], [int(f) for f in zones["fid"]])
            for fid in zones["fid"]:
                tx.update("zones", int(fid), {"valid_to": today})
            stamp = {"valid_from": today, "changed_by": by.name, "changed_at": at, "change_note": note,
                     "change_kind": "unit_merge", "source": "zonemap unit_merge"}
            tx.append("zones", gpd.GeoDataFrame([{k: v for k, v in r.items() if k != "geometry"} | stamp
                                                 for r in rows],
                                                geometry=[r["geometry"] for r in rows], crs=STORAGE_CRS))
        tx.update("units", int(gone["fid"]), {"retired_at": at, "merged_into": into})
        audit.record(tx, actor=by.name, role=by.role, action="units:merge", target=unit_id,
                     detail={"into": into, "zones": [r["code"] for r in rows], "note": note}, origin=origin, at=at)
    return view(_unit_row(store, into), full=True) | {"zones_moved": [r["code"] for r in rows]}


def retire(store: Store, unit_id: str, by: User = CLI, note=None, origin: str = "cli",
           now: dt.datetime | None = None) -> dict:
    """Retire a unit no zone in force names (its row is kept with `retired_at`)."""
    may_edit(by)
    note = _note(note)
    at = now or dt.datetime.now(dt.UTC)
    with store.transaction() as tx:
        tx.next_number(LOCK)
        (row,) = tx.rows("units", {"unit_id": unit_id}, lock=True) or [None]
        if row is None:
            raise NotFound(f"no unit {unit_id!r}")
        if _present(row.get("retired_at")):
            raise Refused(f"unit {unit_id} was retired already")
        named = _zones_naming(store, unit_id)
        if len(named):
            raise Refused(f"unit {unit_id} still answers for zone(s) {', '.join(sorted(named['code'])[:10])}; "
                          "assign them to another unit or merge this unit into it")
        tx.update("units", int(row["fid"]), {"retired_at": at})
        audit.record(tx, actor=by.name, role=by.role, action="units:retire", target=unit_id,
                     detail={"note": note}, origin=origin, at=at)
    return view(_unit_row(store, unit_id), full=True)


def _zones_naming(store: Store, unit_id: str) -> gpd.GeoDataFrame:
    z = pd.concat([current(store.read("zones", where={c: unit_id})) for c in ("primary_unit", "co_unit")])
    return z.drop_duplicates("fid")


def view(u: dict, full: bool, zones: int | None = None) -> dict:
    """A unit as the API shows it; person and phone only when `full` (planners, admins)."""
    out = {"unit_id": u["unit_id"], "name": u["name"], "type": u.get("type"),
           "credit_code": u.get("credit_code"), "placeholder": bool(u.get("placeholder")),
           "retired": _present(u.get("retired_at")), "merged_into": u.get("merged_into")}
    if full:
        out |= {"person": u.get("person"), "phone": u.get("phone"), "address": u.get("address")}
    if zones is not None:
        out["zones"] = zones
    return out


def listing(store: Store, user: User, q: str | None = None, placeholder: bool | None = None,
            page: int = 1, per_page: int = 50, retired: bool = False) -> dict:
    """Units for the units page: searched by name, unit_id or credit code, placeholders first
    when asked, with the number of zones in force each answers for."""
    if user.role not in STAFF:
        raise Forbidden(f"the units list is for staff (you are {user.name}, role {user.role})")
    units = store.read("units")
    if not retired:
        units = units[units["retired_at"].isna()]
    if q:
        text = units["name"].fillna("") + " " + units["unit_id"].fillna("") + " " + units["credit_code"].fillna("")
        units = units[text.str.contains(re.escape(q.strip()), case=False, regex=True)]
    if placeholder is not None:
        units = units[units["placeholder"].fillna(False).astype(bool) == placeholder]
    zones = current(store.read("zones"))
    counts = zones["primary_unit"].value_counts().to_dict() if len(zones) else {}
    units = units.sort_values(["name", "unit_id"])
    start = (page - 1) * per_page
    full = user.role in ("planner", "admin")
    return {"total": len(units), "page": page, "per_page": per_page,
            "units": [view(u, full, int(counts.get(u["unit_id"], 0)))
                      for u in units.iloc[start:start + per_page].to_dict("records")]}


__all__ = ["edit", "listing", "merge", "retire", "view"]
