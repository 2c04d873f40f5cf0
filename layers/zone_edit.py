"""A planner's edits of zones: assign a unit, redraw, create, split, merge, restore (undo).

Every edit is a new version of each zone it touches (layers.zones versioning: the version in
force is closed with `valid_to`, the new one opened on the city's date), stamped with who
(`changed_by`), when (`changed_at`), why (`change_note`) and what (`change_kind`), and an
audit row; nothing is deleted. An edit carries the version it was based on: when another
version is in force by then, it is refused (409) naming who made that one and when.

The coverage rule (one for every edit that draws a shape): a shape that overlaps zones in
force beside it TRIMS them (each trimmed neighbour gets a new version too, kind "trim"); a
dry run shows the trims before anything is written. A shape that would swallow a neighbour
whole, or leave less than 1 m² of it, is refused (409) with the neighbour's geometry. Pieces
of a neighbour under 1 m² that a trim would leave go to the edited zone, so no sliver and
no gap is made. Set operations are done in stored lon/lat, so shared edges stay identical;
areas are measured in metres.

Zone writers serialise on the store counter "zones:versions" (layers.zones._hold_versions),
which every zone-writing transaction bumps: the web server compares it once a second to
route by the new zones at once (`change_count`), and an edit planned while another writer
committed is planned again inside its own transaction, where no other zone writer can run."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.ops
from shapely.geometry import mapping, shape

from geo._tiles import densify, polygonal
from geo.coverage import MIN_AREA_M2
from geo.crs import metric_crs, transformer

from . import audit
from .errors import Forbidden, InputError, NotFound, Refused
from .schema import STORAGE_CRS
from .store import Store
from .store.base import COUNTERS, RUNS
from .users import CLI, User
from .workflow import FINAL, LINKED, STATE_ZH, Workflow
from .zones import LOCK, PREFIX, _hold_versions, city_today, current

EDITORS = ("planner", "admin")
SLIVER_M2 = 1.0  # the smallest zone (or piece of one) an edit may leave
DENSIFY_DEG = 1e-5  # about 1 m: a drawn edge crossing a neighbour keeps its line when projected
KIND_ZH = {"frontage": "门前三包责任区", "unit": "单位卫生责任区", "site": "施工现场", "public": "公共区域（属地兜底）"}
# what each version says it is, for versions written before change_kind existed
_SOURCE_KIND = {"generated": "generate"}
# the columns a new version copies from the one it replaces
_COPIED = ("code", "kind", "primary_unit", "co_unit", "duties", "profile", "area_m2", "frontage_len_m",
           "depth_m", "bounds_text", "street", "attrs")


class EditRefused(Refused):
    """An edit refused (409) with data for the answer's body: a stale edit (the version in
    force, who made it and when) or a shape that would swallow a neighbour (its geometry)."""

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.extra = extra


@dataclass
class Change:
    """What an edit writes (or, in a dry run, would write): new versions (`rows`, values and a
    lon/lat `geometry`), the versions they close (`close`, fids), the neighbours trimmed
    (`trimmed`) and the codes the answer is about (`codes`)."""

    kind: str
    codes: list[str]
    rows: list[dict] = field(default_factory=list)
    close: list[int] = field(default_factory=list)
    trimmed: list[dict] = field(default_factory=list)
    dry_run: bool = False

    @property
    def written(self) -> int:
        return 0 if self.dry_run else len(self.rows)


# ---- who may, and what the store says now ---------------------------------------------------

def may_edit(user: User) -> None:
    if user.role not in EDITORS:
        raise Forbidden(f"only planners and admins may change zones and units (you are {user.name}, "
                        f"role {user.role})")


# change_count's read as an SQL expression (the same text for SQLite and PostgreSQL), which a
# map tile's statement reads with the tile (layers/tiles.py)
CHANGE_COUNT = f"coalesce((SELECT value FROM {COUNTERS} WHERE name = '{LOCK}'), 0)"


def change_count(store: Store) -> int:
    """How many zone-writing transactions the store has committed (the "zones:versions"
    counter; 0 before the first): one indexed read, cheap enough to ask every second."""
    reader = getattr(store, "counter", None)
    if reader is not None:
        return int(reader(LOCK))
    return int(store.query(f"SELECT {CHANGE_COUNT}", ())[0][0])  # until Store has counter()


def _tz():
    from zoneinfo import ZoneInfo

    return ZoneInfo(Workflow.load().timezone)


def city_time(value) -> str | None:
    """A stored UTC time as ISO 8601 in the city's time zone (None stays None)."""
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    t = pd.Timestamp(value)
    t = t.tz_localize("UTC") if t.tzinfo is None else t
    return t.tz_convert(_tz()).isoformat(timespec="seconds")


def _versions(store: Store, code: str) -> gpd.GeoDataFrame:
    if not isinstance(code, str) or not code.strip():
        raise InputError("give a zone code, e.g. F000012")
    rows = store.read("zones", where={"code": code})
    if rows.empty:
        raise NotFound(f"no zone with code {code!r}; find one with `zonemap zones list` or the planner's search")
    return rows.sort_values("version")


def _in_force(rows: gpd.GeoDataFrame) -> dict | None:
    now = rows[rows["valid_to"].isna()]
    if now.empty:
        return None
    return now.iloc[-1].to_dict()


def _who(row: dict) -> tuple[str, str | None]:
    """Who made a version and when (city time): its stamp, or what made it before stamps."""
    by = row.get("changed_by") or ("zones generate" if row.get("source") == "generated" else "import")
    at = city_time(row.get("changed_at")) or str(row.get("valid_from"))[:10]
    return by, at


def _check_base(code: str, cur: dict | None, last: dict, base_version) -> None:
    """Refuse an edit based on a version other than the one in force (409 naming who and when)."""
    if base_version is None:
        return
    if isinstance(base_version, bool) or not isinstance(base_version, (int, np.integer)):
        raise InputError(f"base_version must be the version number the edit was based on, not {base_version!r}")
    now = cur or last
    if int(base_version) == int(now["version"]):
        return
    by, at = _who(now)
    state = "is in force" if cur is not None else "retired the zone"
    raise EditRefused(f"zone {code} was changed by {by} at {at}: version {int(now['version'])} {state}, "
                    f"and your edit was based on version {int(base_version)}; reload it and make your "
                    "change again", current_version=int(now["version"]), by=by, at=at)


def _current(store: Store, code: str, base_version=None) -> tuple[dict, gpd.GeoDataFrame]:
    rows = _versions(store, code)
    cur = _in_force(rows)
    _check_base(code, cur, rows.iloc[-1].to_dict(), base_version)
    if cur is None:
        raise NotFound(f"zone {code} is not in force (its last version {int(rows['version'].max())} was "
                       f"closed on {str(rows['valid_to'].iloc[-1])[:10]}); see its history")
    return cur, rows


def _unit(store: Store, unit_id, field_name: str = "unit_id") -> dict:
    if not isinstance(unit_id, str) or not unit_id.strip():
        raise InputError(f"{field_name} must be a unit_id (find one on the units page or with `zonemap zones list`)")
    rows = store.read("units", where={"unit_id": unit_id})
    if rows.empty:
        raise InputError(f"{field_name} {unit_id!r} is not a unit in the store; import it first "
                         "(import … --as units) or pick one from the list")
    unit = rows.iloc[0].to_dict()
    if _present(unit.get("retired_at")):
        into = unit.get("merged_into")
        raise InputError(f"unit {unit_id} was retired" + (f" (merged into {into}); use {into}" if into else ""))
    return unit


def _present(value) -> bool:
    return value is not None and value is not pd.NaT and not (isinstance(value, float) and np.isnan(value))


def _note(note) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise InputError("note must be text: why the change is made")
    note = note.strip()
    if len(note) > 2000:
        raise InputError("note: keep it under 2000 characters")
    return note or None


# ---- shapes ------------------------------------------------------------------------------

class _Metres:
    """Areas and distances in metres of lon/lat shapes around one place."""

    def __init__(self, geom):
        c = geom.centroid if not geom.is_empty else shapely.Point(0, 0)
        self._t = transformer(STORAGE_CRS, metric_crs(c.x, c.y))

    def project(self, geom):
        return shapely.transform(geom, lambda xy: np.column_stack(self._t.transform(xy[:, 0], xy[:, 1])))

    def area(self, geom) -> float:
        return float(shapely.area(self.project(geom)))


def parse_polygon(value, what: str = "geometry"):
    """A GeoJSON (Multi)Polygon in WGS 84 lon/lat (or a Feature holding one) as a valid shapely
    (Multi)Polygon, densified to about 1 m; InputError naming what is wrong."""
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    if not isinstance(value, dict) or value.get("type") not in ("Polygon", "MultiPolygon"):
        raise InputError(f"{what} must be a GeoJSON Polygon or MultiPolygon in WGS 84 longitude/latitude")
    try:
        geom = shape(value)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, shapely.errors.ShapelyError) as exc:
        raise InputError(f"{what} is not a usable GeoJSON polygon ({exc})") from None
    xy = shapely.get_coordinates(geom)
    if not len(xy) or not np.isfinite(xy).all() or (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
        raise InputError(f"{what}: coordinates must be longitude −180…180, latitude −90…90 (WGS 84)")
    geom = polygonal(np.array([geom], dtype=object))[0]
    if geom is None or geom.is_empty:
        raise InputError(f"{what} has no area (a line or a point, or a ring that folds onto itself)")
    geom = densify(np.array([geom], dtype=object), DENSIFY_DEG)[0]
    if _Metres(geom).area(geom) < SLIVER_M2:
        raise InputError(f"{what} is smaller than {SLIVER_M2:g} m²; draw the zone's whole outline")
    return geom


def _multi(parts) -> shapely.MultiPolygon:
    polys = [p for g in parts for p in shapely.get_parts(g) if isinstance(p, shapely.Polygon) and not p.is_empty]
    return shapely.MultiPolygon(polys)


def _fit(store: Store, geom, skip: set[str]) -> tuple[object, list[tuple[dict, object, float]]]:
    """The coverage rule: `geom` and the neighbours it trims, as (row in force, shape left,
    m² lost). Refuses (409) when it would swallow a neighbour or leave less than 1 m² of it."""
    m = _Metres(geom)
    near = current(store.read("zones", bbox=tuple(geom.bounds)))
    trims, swallowed, crumbs = [], [], []
    for row in near[~near["code"].isin(skip)].to_dict("records"):
        other = row["geometry"]
        if not shapely.intersects(geom, other) or m.area(shapely.intersection(geom, other)) <= MIN_AREA_M2:
            continue
        rest = [p for p in shapely.get_parts(shapely.difference(other, geom)) if isinstance(p, shapely.Polygon)]
        keep = [p for p in rest if m.area(p) >= SLIVER_M2]
        if not keep:
            swallowed.append(row)
            continue
        crumbs += [p for p in rest if m.area(p) < SLIVER_M2]
        left = _multi(keep)
        trims.append((row, left, round(m.area(other) - m.area(left), 2)))
    if swallowed:
        names = ", ".join(r["code"] for r in swallowed)
        raise EditRefused(f"the shape would swallow zone {names} whole or leave less than {SLIVER_M2:g} m² of it; "
                       "draw it so that the neighbour keeps its ground, or merge the zones",
                       conflicts=[{"code": r["code"], "version": int(r["version"]),
                                   "geometry": mapping(r["geometry"])} for r in swallowed])
    if crumbs:
        geom = _multi([shapely.union_all([geom, *crumbs])])
    return geom, trims


def _trim_rows(trims, today) -> tuple[list[dict], list[int], list[dict]]:
    rows, close, shown = [], [], []
    for row, left, lost in trims:
        new = _next(row, geometry=left, area_m2=round(_Metres(left).area(left), 2), change_kind="trim")
        rows.append(new)
        close.append(int(row["fid"]))
        shown.append({"code": row["code"], "version_before": int(row["version"]),
                      "version_after": new["version"], "area_m2_lost": lost, "geometry": mapping(left)})
    return rows, close, shown


def _next(row: dict, **changes) -> dict:
    """The values of the version after `row` (its version + 1), with `changes`."""
    out = {c: row.get(c) for c in _COPIED}
    out["geometry"] = row["geometry"]
    out["version"] = int(row["version"]) + 1
    return out | changes


def _last_versions(store: Store, codes) -> dict[str, int]:
    rows = store.read("zones", where={"code": list(codes)})
    return rows.groupby("code")["version"].max().astype(int).to_dict() if len(rows) else {}


def _new_codes(store: Store, kind: str, n: int) -> list[str]:
    """`n` unused codes of `kind` (the next numbers after the highest ever used, in any version)."""
    prefix = PREFIX[kind]
    every = store.read("zones", where={"kind": kind})["code"].tolist()
    # and those of a `zones generate` still moving in, hidden from readers till it ends: a code
    # taken here and there would make that run refuse itself at its end
    runs = [r[0] for r in store.query(f"SELECT run FROM {RUNS}", ())]
    if runs:
        every += store.read("zones", where={"kind": kind, "run": runs})["code"].tolist()
    nums = [int(c[1:]) for c in every if isinstance(c, str) and c[:1] == prefix and c[1:].isdigit()]
    top = max(nums, default=0)
    return [f"{prefix}{top + k:06d}" for k in range(1, n + 1)]


# ---- writing -----------------------------------------------------------------------------

def _apply(store: Store, build: Callable[[dt.date], Change], by: User, note, *, dry_run: bool = False,
           origin: str = "cli", now: dt.datetime | None = None) -> Change:
    """Plan with `build(today)`, then write its versions in one transaction, stamped."""
    may_edit(by)
    note = _note(note)
    at = now or dt.datetime.now(dt.UTC)
    today = city_today(at)
    seen = change_count(store)
    change = build(today)
    change.dry_run = dry_run
    if dry_run or not change.rows:
        return change
    with store.transaction() as tx:
        if tx.next_number(LOCK) != seen + 1:  # another zone writer committed since: plan again, alone now
            change = build(today)
        if not change.rows:
            return change
        codes = [r["code"] for r in change.rows]
        _hold_versions(tx, codes, change.close)
        for fid in change.close:
            tx.update("zones", fid, {"valid_to": today})
        stamp = {"valid_from": today, "changed_by": by.name, "changed_at": at, "change_note": note,
                 "source": f"zonemap {change.kind}"}
        frame = gpd.GeoDataFrame([{k: v for k, v in r.items() if k != "geometry"} | stamp
                                  | {"change_kind": r.get("change_kind") or change.kind} for r in change.rows],
                                 geometry=[r["geometry"] for r in change.rows], crs=STORAGE_CRS)
        tx.append("zones", frame)
        audit.record(tx, actor=by.name, role=by.role, action=f"zones:{change.kind}", target=",".join(change.codes),
                     detail={"versions": {r["code"]: r["version"] for r in change.rows},
                             "trimmed": [t["code"] for t in change.trimmed], "note": note},
                     origin=origin, at=at)
    return change


def _guard_start(cur: dict, today: dt.date) -> None:
    start = pd.Timestamp(cur["valid_from"]).date()
    if start > today:
        raise Refused(f"zone {cur['code']}'s version {int(cur['version'])} starts on {start}, after today "
                      f"({today}); change it from that day on")


def assign(store: Store, code: str, unit_id: str, by: User = CLI, note=None, base_version=None,
           origin: str = "cli", now=None) -> Change:
    """Give zone `code` another primary unit: a new version (nothing written when it already has it)."""
    def build(today):
        cur, _ = _current(store, code, base_version)
        _unit(store, unit_id)
        if cur["primary_unit"] == unit_id:
            return Change("assign", [code])
        _guard_start(cur, today)
        return Change("assign", [code], rows=[_next(cur, primary_unit=unit_id)], close=[int(cur["fid"])])

    return _apply(store, build, by, note, origin=origin, now=now)


def reshape(store: Store, code: str, geometry, by: User = CLI, note=None, base_version=None,
            dry_run: bool = False, origin: str = "cli", now=None) -> Change:
    """Redraw zone `code`; neighbours it overlaps are trimmed (the coverage rule)."""
    geom = parse_polygon(geometry)

    def build(today):
        cur, _ = _current(store, code, base_version)
        _guard_start(cur, today)
        shaped, trims = _fit(store, geom, {code})
        m = _Metres(shaped)
        if m.area(shapely.symmetric_difference(shaped, cur["geometry"])) <= MIN_AREA_M2 and not trims:
            return Change("geometry", [code])
        rows, close, shown = _trim_rows(trims, today)
        mine = _next(cur, geometry=_multi([shaped]), area_m2=round(m.area(shaped), 2))
        return Change("geometry", [code], rows=[mine, *rows], close=[int(cur["fid"]), *close], trimmed=shown)

    return _apply(store, build, by, note, dry_run=dry_run, origin=origin, now=now)


def create(store: Store, geometry, kind: str, unit_id: str, by: User = CLI, note=None, co_unit=None,
           dry_run: bool = False, origin: str = "cli", now=None) -> Change:
    """A new zone (the next free code of its kind); neighbours it overlaps are trimmed."""
    if not isinstance(kind, str) or kind not in PREFIX:
        raise InputError(f"kind must be one of {', '.join(PREFIX)}, not {kind!r}")
    geom = parse_polygon(geometry)

    def build(today):
        _unit(store, unit_id)
        if co_unit is not None:
            _unit(store, co_unit, "co_unit")
        shaped, trims = _fit(store, geom, set())
        (code,) = _new_codes(store, kind, 1)
        rows, close, shown = _trim_rows(trims, today)
        new = {"code": code, "kind": kind, "primary_unit": unit_id, "co_unit": co_unit, "version": 1,
               "area_m2": round(_Metres(shaped).area(shaped), 2), "geometry": _multi([shaped])}
        return Change("create", [code], rows=[new, *rows], close=close, trimmed=shown)

    return _apply(store, build, by, note, dry_run=dry_run, origin=origin, now=now)


def split(store: Store, code: str, line, by: User = CLI, note=None, base_version=None,
          dry_run: bool = False, origin: str = "cli", now=None) -> Change:
    """Cut zone `code` along a line: the largest piece keeps the code (a new version), the
    others become new zones of the same kind and unit."""
    cut = _line(line)

    def build(today):
        cur, _ = _current(store, code, base_version)
        _guard_start(cur, today)
        pieces = [p for part in shapely.get_parts(cur["geometry"])
                  for p in shapely.get_parts(shapely.ops.split(part, cut))]
        if len(pieces) < 2:
            raise InputError(f"the line does not cut zone {code} in two: draw it across the zone, from "
                             "outside one edge to outside the other")
        m = _Metres(cur["geometry"])
        areas = [m.area(p) for p in pieces]
        if min(areas) < SLIVER_M2:
            raise InputError(f"the line would cut off a piece of {min(areas):.2f} m² (less than {SLIVER_M2:g} m²)")
        order = np.argsort(areas)[::-1]
        codes = [code, *_new_codes(store, cur["kind"], len(pieces) - 1)]
        rows = []
        for k, i in enumerate(order):
            base = _next(cur) if k == 0 else {c: cur.get(c) for c in _COPIED} | {"version": 1}
            rows.append(base | {"code": codes[k], "geometry": _multi([pieces[i]]), "area_m2": round(areas[i], 2)})
        return Change("split", codes, rows=rows, close=[int(cur["fid"])])

    return _apply(store, build, by, note, dry_run=dry_run, origin=origin, now=now)


def _line(value):
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    if not isinstance(value, dict) or value.get("type") != "LineString":
        raise InputError("line must be a GeoJSON LineString in WGS 84 longitude/latitude")
    try:
        line = shape(value)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, shapely.errors.ShapelyError) as exc:
        raise InputError(f"line is not a usable GeoJSON LineString ({exc})") from None
    xy = shapely.get_coordinates(line)
    if len(xy) < 2 or not np.isfinite(xy).all() or (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
        raise InputError("line needs two or more longitude/latitude points (WGS 84)")
    return line


def merge(store: Store, codes, by: User = CLI, note=None, base_versions=None, origin: str = "cli",
          now=None) -> Change:
    """Join zones of one kind that touch: the first code keeps the union (a new version) and
    its unit; the others are closed (retired, their history kept)."""
    if not isinstance(codes, list) or len(codes) < 2 or not all(isinstance(c, str) for c in codes) \
            or len(set(codes)) != len(codes):
        raise InputError("codes must list two or more different zone codes; the first one is kept")
    base_versions = base_versions or {}
    if not isinstance(base_versions, dict) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in base_versions.values()):
        raise InputError("base_versions must map each code to the version (a number) the merge was based on")

    def build(today):
        rows = [_current(store, c, base_versions.get(c))[0] for c in codes]
        for r in rows:
            _guard_start(r, today)
        kinds = {r["kind"] for r in rows}
        if len(kinds) > 1:
            raise InputError(f"zones {', '.join(codes)} are of different kinds ({', '.join(sorted(kinds))}); "
                             "only zones of one kind merge")
        geoms = [r["geometry"] for r in rows]
        m = _Metres(geoms[0])
        whole = shapely.union_all(geoms)
        far = [c for c, g in zip(codes[1:], geoms[1:])
               if shapely.distance(m.project(g), m.project(shapely.union_all([x for x in geoms if x is not g]))) > 0.5]
        if far:
            raise InputError(f"zone {far[0]} does not touch the others; only neighbouring zones merge")
        kept = _next(rows[0], geometry=_multi([whole]), area_m2=round(m.area(whole), 2))
        return Change("merge", list(codes), rows=[kept], close=[int(r["fid"]) for r in rows])

    return _apply(store, build, by, note, origin=origin, now=now)


def restore(store: Store, code: str, version, by: User = CLI, note=None, base_version=None,
            dry_run: bool = False, origin: str = "cli", now=None) -> Change:
    """Undo: a new version equal to version `version` (shape, unit, kind…); neighbours that
    have grown into its shape since are trimmed by the coverage rule."""
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)):
        raise InputError("version must be the number of the version to restore")

    def build(today):
        every = _versions(store, code)
        cur = _in_force(every)
        _check_base(code, cur, every.iloc[-1].to_dict(), base_version)
        old = every[every["version"] == int(version)]
        if old.empty:
            raise NotFound(f"zone {code} has no version {version}; it has {', '.join(map(str, every['version']))}")
        old = old.iloc[0].to_dict()
        for col in ("primary_unit", "co_unit"):
            if old.get(col):
                _unit(store, old[col], col)
        if cur is not None:
            _guard_start(cur, today)
        geom = densify(np.array([old["geometry"]], dtype=object), DENSIFY_DEG)[0]
        shaped, trims = _fit(store, geom, {code})
        rows, close, shown = _trim_rows(trims, today)
        new = _next(old, geometry=_multi([shaped]), version=int(every["version"].max()) + 1,
                    area_m2=round(_Metres(shaped).area(shaped), 2))
        own = [int(cur["fid"])] if cur is not None else []
        return Change("restore", [code], rows=[new, *rows], close=own + close, trimmed=shown)

    return _apply(store, build, by, note, dry_run=dry_run, origin=origin, now=now)


# ---- reading -------------------------------------------------------------------------------

def change_of(row: dict) -> str:
    """What made a version: its change_kind, or generate/import for versions before stamps."""
    kind = row.get("change_kind")
    if kind:
        return kind
    return _SOURCE_KIND.get(row.get("source"), "import")


def history(store: Store, code: str) -> list[dict]:
    """Every version of a zone, oldest first, with who, when and why."""
    rows = _versions(store, code)
    names = unit_names(store, rows["primary_unit"].dropna().unique().tolist())
    out = []
    for r in rows.to_dict("records"):
        by, at = _who(r)
        out.append({"version": int(r["version"]), "valid_from": str(r["valid_from"])[:10],
                    "valid_to": str(r["valid_to"])[:10] if _present(r["valid_to"]) else None,
                    "unit_id": r["primary_unit"], "unit_name": names.get(r["primary_unit"]),
                    "by": by, "at": at, "note": r.get("change_note"), "change": change_of(r),
                    "kind": r["kind"], "area_m2": _number(r["area_m2"])})
    return out


def unit_names(store: Store, unit_ids) -> dict[str, str]:
    ids = [u for u in unit_ids if isinstance(u, str)]
    if not ids:
        return {}
    units = store.read("units", where={"unit_id": ids})
    return dict(zip(units["unit_id"], units["name"]))


def _unit_view(store: Store, unit_id, staff: bool) -> dict | None:
    if not unit_id:
        return None
    rows = store.read("units", where={"unit_id": unit_id})
    if rows.empty:
        return {"unit_id": unit_id, "name": None, "placeholder": None}
    u = rows.iloc[0]
    out = {"unit_id": unit_id, "name": u["name"], "placeholder": bool(u["placeholder"])}
    if staff:
        out |= {"person": u["person"], "phone": u["phone"]}
    return out


def _number(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def panel(store: Store, code: str, user: User, categories: dict | None = None, row: dict | None = None) -> dict:
    """What the planner's panel shows of the version of `code` in force, or of `row` (a
    version a dry run would write)."""
    if row is None:
        cur, _ = _current(store, code)
    else:
        cur = {"valid_from": city_today(), "changed_by": user.name} | {c: None for c in _COPIED} | row
    staff = user.role in ("inspector", "dispatcher", "planner", "admin")
    problems = store.read("problems", where={"zone_code": code})
    open_ = problems[~problems["status"].isin([*FINAL, LINKED])]
    cats = categories or {}
    return {"code": cur["code"], "kind": cur["kind"], "kind_zh": KIND_ZH.get(cur["kind"], cur["kind"]),
            "version": int(cur["version"]), "valid_from": str(cur["valid_from"])[:10], "valid_to": None,
            "area_m2": _number(cur["area_m2"]), "frontage_len_m": _number(cur["frontage_len_m"]),
            "depth_m": _number(cur["depth_m"]), "bounds_text": cur["bounds_text"], "street": cur["street"],
            "duties": cur["duties"], "unit": _unit_view(store, cur["primary_unit"], staff),
            "co_unit": _unit_view(store, cur["co_unit"], staff),
            "changed_by": _who(cur)[0], "changed_at": _who(cur)[1], "change_note": cur.get("change_note"),
            "open_problems": [{"problem_id": p["problem_id"], "category": p["category"],
                               "category_name": getattr(cats.get(p["category"]), "name", None),
                               "status": p["status"], "status_zh": STATE_ZH.get(p["status"], p["status"]),
                               "reported_at": city_time(p["reported_at"])}
                              for p in open_.to_dict("records")],
            "geometry": mapping(cur["geometry"])}


SEARCH_MAX = 20


def search(store: Store, q: str) -> dict:
    """Zones by code, units by name, streets by name (case-insensitive substring), at most
    SEARCH_MAX of each, zones in force only."""
    if not isinstance(q, str) or not q.strip():
        raise InputError("q: type part of a zone code, a unit name or a street")
    q = q.strip()
    pat = re.escape(q)
    zones = current(store.read("zones"))
    units = store.read("units")
    units = units[units["retired_at"].isna()]
    names = dict(zip(units["unit_id"], units["name"]))
    hit_units = units[units["name"].fillna("").str.contains(pat, case=False, regex=True)].head(SEARCH_MAX)
    by_unit = zones.groupby("primary_unit")["code"].apply(list).to_dict() if len(zones) else {}
    code_hit = zones["code"].str.contains(pat, case=False, regex=True)
    unit_hit = zones["primary_unit"].isin(hit_units["unit_id"])
    street_hit = zones["street"].fillna("").str.contains(pat, case=False, regex=True)
    found = zones[code_hit | unit_hit].head(SEARCH_MAX)
    streets = []
    for street, group in zones[street_hit].groupby("street"):
        streets.append({"street": street, "bbox": [round(v, 7) for v in group.total_bounds]})
    return {"zones": [{"code": z["code"], "kind_zh": KIND_ZH.get(z["kind"], z["kind"]),
                       "unit_name": names.get(z["primary_unit"]), "street": z["street"],
                       "bbox": [round(v, 7) for v in z["geometry"].bounds]} for z in found.to_dict("records")],
            "units": [{"unit_id": u, "name": n, "zones": sorted(by_unit.get(u, []))[:SEARCH_MAX]}
                      for u, n in zip(hit_units["unit_id"], hit_units["name"])],
            "streets": streets[:SEARCH_MAX]}


def zones_geojson(store: Store, bbox=None, limit: int = 20000) -> dict:
    """The zones in force (in `bbox`) with their unit's name and the labels the map needs."""
    zones = current(store.read("zones", bbox=bbox))
    truncated = len(zones) > limit
    zones = zones.iloc[:limit]
    units = unit_table(store, zones["primary_unit"].dropna().unique().tolist())
    feats = []
    for z in zones.to_dict("records"):
        u = units.get(z["primary_unit"], {})
        feats.append({"type": "Feature", "geometry": mapping(z["geometry"]), "properties": {
            "code": z["code"], "kind": z["kind"], "kind_zh": KIND_ZH.get(z["kind"], z["kind"]),
            "version": int(z["version"]), "unit_id": z["primary_unit"], "unit_name": u.get("name"),
            "placeholder": u.get("placeholder"), "street": z["street"], "area_m2": _number(z["area_m2"])}})
    return {"type": "FeatureCollection", "features": feats, "truncated": truncated}


def unit_table(store: Store, unit_ids) -> dict[str, dict]:
    ids = [u for u in unit_ids if isinstance(u, str)]
    if not ids:
        return {}
    units = store.read("units", where={"unit_id": ids})
    return {r["unit_id"]: {"name": r["name"], "placeholder": bool(r["placeholder"])}
            for r in units.to_dict("records")}


QA_ZH = {"overlap": "重叠", "gap": "空隙", "sliver": "碎片", "no_unit": "无责任单位", "placeholder_unit": "待核实单位"}


def qa(store: Store, bbox=None) -> dict:
    """The QA layer: overlaps, gaps, slivers, zones without a unit and zones whose unit is a
    placeholder, as GeoJSON features (`zones check` over the zones in force in `bbox`)."""
    from geo.coverage import check as check_geometry

    zones = current(store.read("zones", bbox=bbox)).reset_index(drop=True)
    feats = []

    def add(kind, geom, codes, area):
        feats.append({"type": "Feature", "geometry": mapping(geom), "properties": {
            "kind": kind, "kind_zh": QA_ZH[kind], "codes": codes, "area_m2": None if area is None else round(area, 2)}})

    if zones.empty:
        return {"type": "FeatureCollection", "features": feats}
    x0, y0, x1, y1 = zones.total_bounds
    metric = metric_crs((x0 + x1) / 2, (y0 + y1) / 2)
    z_m = polygonal(zones.to_crs(metric).geometry.to_numpy())
    res = check_geometry(z_m, np.array([], dtype=object), zones["primary_unit"].notna().to_numpy())
    geoms = zones.geometry.to_numpy()
    for a, b in res["overlap_pairs"]:
        add("overlap", shapely.intersection(geoms[a], geoms[b]), [zones["code"][a], zones["code"][b]],
            float(shapely.area(shapely.intersection(z_m[a], z_m[b]))))
    back = transformer(metric, STORAGE_CRS)
    for x, y in res["gap_places"]:
        add("gap", shapely.Point(*back.transform(x, y)), [], None)
    area = shapely.area(z_m)
    thin = 4 * np.pi * area / np.maximum(shapely.length(z_m) ** 2, 1e-9)
    for i in np.flatnonzero((area < SLIVER_M2) | ((thin < 0.02) & (area < 20.0))):
        add("sliver", geoms[i], [zones["code"][i]], float(area[i]))
    units = unit_table(store, zones["primary_unit"].dropna().unique().tolist())
    for i, z in enumerate(zones.to_dict("records")):
        if not z["primary_unit"]:
            add("no_unit", geoms[i], [z["code"]], float(area[i]))
        elif units.get(z["primary_unit"], {}).get("placeholder"):
            add("placeholder_unit", geoms[i], [z["code"]], float(area[i]))
    return {"type": "FeatureCollection", "features": feats}


__all__ = ["Change", "EditRefused", "assign", "change_count", "create", "history", "merge", "panel", "qa",
           "reshape", "restore", "search", "split", "zones_geojson"]
