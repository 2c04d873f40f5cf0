"""Zone generation, checking and history over a store (the flow of architecture.md §2):
base layers → owners and units → geo.frontage under a rule profile → public remainder →
四至 and measures → stable codes → a new zone version, staged outside the store and moved in
through short transactions (a failure leaves the store as it was).

Nothing is hard-deleted: a zone that changes or disappears gets `valid_to`, and its new shape
is a new row with the next version. A zone whose shape, unit and profile are unchanged keeps
its row. A planner's edited file (`import … --as zones`) goes through the same versioning, by
code (`plan_import`, `write_import`). Validity dates are the city's dates (`city_today`), and
one zone writer at a time checks that no code is left in force twice (`_hold_versions`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo._tiles import densify, polygonal
from geo.coverage import MIN_AREA_M2
from geo.coverage import check as check_geometry
from geo.crs import metric_crs, reproject, transformer

from . import zone_stage, zone_tiles
from .errors import InputError, Refused
from .rules import load_curb_rules, load_profile
from .schema import STORAGE_CRS
from .store import Store

KINDS = ("frontage", "unit", "site", "public")
PREFIX = {"frontage": "F", "unit": "U", "site": "S", "public": "P"}
LOCK = "zones:versions"  # the counter every zone writer bumps (and so waits for the others)
OWNER_TO_ZONE = {"building": "frontage", "unit": "unit", "site": "site"}

# Fallback parties (属地兜底): carriageways to the professional cleaning unit, the rest to the
# street office of the place.
FALLBACK = {
    "street": {"unit_id": "FALLBACK-JD", "name": "属地街道办事处", "type": "街道办 (属地兜底)"},
    "cleaning": {"unit_id": "FALLBACK-HW", "name": "环卫专业作业单位", "type": "环卫专业单位"},
}

# Which parcels are a unit's own ground (卫生责任区), by OSM tag; see domain.md "who answers".
UNIT_AMENITY = {"school", "university", "college", "kindergarten", "hospital", "clinic", "marketplace",
                "townhall", "courthouse", "police", "fire_station", "library", "community_centre",
                "place_of_worship", "public_building", "bus_station", "parking", "prison", "embassy"}
UNIT_LEISURE = {"park", "sports_centre", "stadium", "pitch", "garden"}
UNIT_TOURISM = {"museum", "zoo", "theme_park", "attraction", "hotel"}
# building=* values that are not anyone's frontage (roofs over a pavement, bridges, ruins)
NOT_OWNER_BUILDINGS = {"roof", "bridge", "carport", "canopy", "ruins", "construction",
                       "transformer_tower", "no"}
TYPE_ZH = {"school": "学校", "university": "高校", "college": "学院", "kindergarten": "幼儿园",
           "hospital": "医院", "clinic": "诊所", "marketplace": "市场", "townhall": "政府机关",
           "courthouse": "法院", "police": "公安", "library": "图书馆", "park": "公园",
           "parking": "停车场", "hotel": "宾馆", "museum": "博物馆", "residential": "物业小区"}


@dataclass
class GenerateReport:
    profile: str
    crs: str
    study_area_m2: float = 0.0
    counts: dict = field(default_factory=dict)
    unchanged: int = 0
    new_versions: int = 0
    retired: int = 0
    new_units: int = 0
    facade: dict = field(default_factory=dict)
    set_back: int = 0
    buildings_in_parcels: int = 0
    check: dict = field(default_factory=dict)
    seconds: float = 0.0
    dry_run: bool = False
    storage_area_changed: int = 0  # zones whose stored shape could not keep its area exactly
    lock_seconds: float = 0.0  # how long the store's write lock was held (the move at the end)
    switch_seconds: float = 0.0  # of which the last transaction (switching the new rows on)

    def to_dict(self):
        return self.__dict__.copy()

    def text(self) -> str:
        c = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        f = self.facade
        ck = self.check
        verb = "would write" if self.dry_run else "wrote"
        return "\n".join([
            f"profile {self.profile} in {self.crs}: {c} zones ({self.seconds:.1f} s)",
            f"{verb}: {self.new_versions} new or changed, {self.unchanged} unchanged, "
            f"{self.retired} retired; {self.new_units} new units",
            f"street-facing facade covered by its own zone: {100 * f.get('share', 0):.1f} % "
            f"({f.get('covered_m', 0):.0f} of {f.get('facing_m', 0):.0f} m)",
            f"the store's write lock was held {self.lock_seconds:.2f} s at most at a time (moving the zones in; "
            f"switching them on: {self.switch_seconds:.2f} s)",
            f"{self.set_back} buildings set back beyond the profile's depth (no frontage zone); "
            f"{self.buildings_in_parcels} buildings answered for by their parcel",
            f"check: {ck.get('overlaps')} overlaps ({ck.get('overlap_m2', 0):.2f} m²), "
            f"{ck.get('slivers')} slivers, {ck.get('invalid')} invalid, {ck.get('without_unit')} without unit "
            "(gaps: `zones check`, on what was stored)"])


def _val(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) or v == "" else v


def _uid(*parts) -> str:
    return "U-" + hashlib.sha1("|".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:10]


def _text(frame: pd.DataFrame, col: str) -> pd.Series:
    """A text column as str ('' for a null or a missing column)."""
    if col not in frame:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    return frame[col].astype(object).where(frame[col].notna(), "").astype(str)


def parcel_kinds(areas) -> np.ndarray:
    """Which areas are owners: "site" (landuse=construction), "unit" (a unit's own ground:
    schools, hospitals, parks, named compounds…), else ""."""
    named = (_text(areas, "name") != "") | (_text(areas, "operator") != "")
    landuse, amenity = _text(areas, "landuse"), _text(areas, "amenity")
    site = landuse == "construction"
    unit = ~site & (amenity.isin(UNIT_AMENITY) | _text(areas, "leisure").isin(UNIT_LEISURE)
                    | _text(areas, "tourism").isin(UNIT_TOURISM) | ((landuse == "residential") & named)) \
        & (named | (amenity != "parking"))
    return np.where(site, "site", np.where(unit, "unit", ""))


def owner_buildings(buildings) -> np.ndarray:
    """Which buildings are owners: not underground, not roofs, bridges, ruins…"""
    attrs = _text(buildings, "attrs")
    layer = pd.to_numeric(attrs.str.extract(r'"layer"\s*:\s*"?\s*(-?\d+)', expand=False), errors="coerce")
    underground = attrs.str.contains(r'"location"\s*:\s*"underground"', regex=True) | (layer < 0)
    return ~(underground | _text(buildings, "building").str.lower().isin(NOT_OWNER_BUILDINGS)).to_numpy()


def select_owners(buildings, areas, sites, metric: str):
    """Owners (kind building/unit/site, metric geometry) from the base layers, indexed by a
    key that names the row whatever part of the store it was read with (b…/a…/s… and the
    fid); `src` and `row` say where each came from, `deg` keeps its geometry in degrees."""
    parts = []
    is_owner = np.where(owner_buildings(buildings), "building", "")
    for frame, src, prefix, kind in ((buildings, "buildings", "b", is_owner),
                                     (areas, "areas", "a", parcel_kinds(areas)),
                                     (sites, "sites", "s", np.full(len(sites), "site"))):
        keep = np.flatnonzero(np.asarray(kind) != "")
        if len(keep):
            parts.append(pd.DataFrame({"kind": np.asarray(kind)[keep], "src": src, "row": keep,
                                       "deg": frame.geometry.to_numpy()[keep]},
                                      index=[f"{prefix}{f}" for f in frame["fid"].to_numpy()[keep]]))
    if not parts:
        return gpd.GeoDataFrame({"kind": [], "src": [], "row": [], "deg": []}, geometry=[], crs=metric)
    frame = pd.concat(parts)
    geom = gpd.GeoSeries(reproject(frame["deg"].to_numpy(), STORAGE_CRS, metric), crs=metric, index=frame.index)
    frame = gpd.GeoDataFrame(frame, geometry=geom, crs=metric)
    # OSM outlines with a self-touching ring, or ones that fold when projected, are repaired
    # here once, so that every later step (footprints included) works on valid polygons
    frame["geometry"] = polygonal(frame.geometry.to_numpy())
    return frame[~frame.geometry.is_empty].copy()


def _address(r: dict) -> str | None:
    return " ".join(filter(None, [_val(r.get("addr_street")), _val(r.get("addr_housenumber"))])) or None


#: the fields of each base layer that `owner_unit` reads
UNIT_FIELDS = {"buildings": ("fid", "osm_id", "name", "shop", "amenity", "office", "building",
                             "addr_street", "addr_housenumber"),
               "areas": ("fid", "osm_id", "name", "operator", "amenity", "leisure", "tourism", "landuse"),
               "sites": ("fid", "code", "name", "contractor", "developer")}


class Owner(NamedTuple):
    """An owner as `owner_unit` takes it: its kind, the layer it came from and its row there."""

    kind: str
    src: str
    row: int


def owner_unit(owner: Owner, buildings, areas, sites, pois_in_building: dict) -> dict:
    """The responsible unit of an owner, derived from the data (placeholder when unnamed).
    The layers come as row dicts by row number (lists or dicts of `DataFrame.to_dict("records")`)."""
    if owner.src == "buildings":
        b = buildings[owner.row]
        key = b.get("osm_id") or f"fid{b['fid']}"
        poi = pois_in_building.get(owner.row)
        if _val(b.get("name")):
            return {"unit_id": _uid("building", key), "name": b["name"], "type": b.get("shop") or b.get("amenity")
                    or b.get("office") or b.get("building") or "building", "placeholder": False,
                    "address": _address(b)}
        if poi is not None:
            return {"unit_id": _uid("poi", poi.get("osm_id") or poi["fid"]), "name": poi["name"],
                    "type": poi.get("shop") or poi.get("amenity") or poi.get("office") or "shop",
                    "placeholder": False, "address": _address(poi)}
        addr = _address(b)
        return {"unit_id": _uid("building", key), "name": addr or f"建筑 {key}", "type": "待核实",
                "placeholder": True, "address": addr}
    if owner.src == "areas":
        a = areas[owner.row]
        name = _val(a.get("name")) or _val(a.get("operator"))
        kind = a.get("amenity") or a.get("leisure") or a.get("tourism") or a.get("landuse")
        label = TYPE_ZH.get(kind, kind)
        unit_name = name or f"{label or '地块'} {a.get('osm_id')}"
        if owner.kind == "site":
            unit_name = _val(a.get("operator")) or name or f"施工工地 {a.get('osm_id')}"
        return {"unit_id": _uid("area", a.get("osm_id") or a["fid"]), "name": unit_name,
                "type": "施工单位" if owner.kind == "site" else label, "placeholder": not name}
    s = sites[owner.row]
    contractor = _val(s.get("contractor"))
    unit = {"unit_id": _uid("site", s.get("code") or s["fid"]),
            "name": contractor or _val(s.get("name")) or f"工地 {s['fid']}",
            "type": "施工单位", "placeholder": not contractor}
    if _val(s.get("developer")):  # 建设单位: co-responsible for the site (协同)
        unit["co"] = {"unit_id": _uid("developer", s["developer"]), "name": s["developer"], "type": "建设单位",
                      "placeholder": False}
    return unit


def pois_by_building(buildings, pois) -> dict:
    """{building row: the first named POI inside it (a row dict)}."""
    named = pois[pois["name"].notna()]
    if named.empty or buildings.empty:
        return {}
    tree = shapely.STRtree(buildings.geometry.to_numpy())
    pairs = tree.query(named.geometry.to_numpy(), predicate="within")
    records = named.drop(columns=named.geometry.name).to_dict("records")
    out = {}
    for p, b in zip(*pairs):
        out.setdefault(int(b), records[int(p)])
    return out


def current(zones: gpd.GeoDataFrame, as_of: dt.date | None = None) -> gpd.GeoDataFrame:
    """The zone versions in force on `as_of` (today's current set when None)."""
    if zones.empty:
        return zones
    # compared as timestamps: a column with no date at all (no version closed yet) stays
    # datetime64 under pandas 3, where .dt.date would not compare with a date
    vf = pd.to_datetime(zones["valid_from"]).dt.normalize()
    vt = pd.to_datetime(zones["valid_to"]).dt.normalize()
    if as_of is None:
        return zones[vt.isna()]
    day = pd.Timestamp(as_of)
    return zones[(vf <= day) & (vt.isna() | (vt > day))]


def match_old(new: gpd.GeoDataFrame, old: gpd.GeoDataFrame, metric: str, profile: str) -> list:
    """For each new zone (metric), the old zones in force it may continue: those of its kind
    it overlaps with IoU ≥ 0.5, best first, as (fid, code, version, unchanged) where
    unchanged means the same unit and profile and a shape within 0.5 %."""
    out: list[list] = [[] for _ in range(len(new))]
    if old.empty or new.empty:
        return out
    og = polygonal(reproject(old.geometry.to_numpy(), STORAGE_CRS, metric))
    ng = new.geometry.to_numpy()
    pairs = shapely.STRtree(og).query(ng, predicate="intersects")
    if not pairs.size:
        return out
    same_kind = new["kind"].to_numpy()[pairs[0]] == old["kind"].to_numpy()[pairs[1]]
    pairs = pairs[:, same_kind]
    inter = shapely.area(shapely.intersection(ng[pairs[0]], og[pairs[1]]))
    union = shapely.area(ng[pairs[0]]) + shapely.area(og[pairs[1]]) - inter
    iou = inter / np.maximum(union, 1e-9)
    good = iou >= 0.5
    pairs, iou = pairs[:, good], iou[good]
    area = shapely.area(ng[pairs[0]])
    unchanged = ((new["primary_unit"].to_numpy()[pairs[0]] == old["primary_unit"].to_numpy()[pairs[1]])
                 & (old["profile"].to_numpy()[pairs[1]] == profile))
    if unchanged.any():
        k = np.flatnonzero(unchanged)
        sym = shapely.area(shapely.symmetric_difference(ng[pairs[0][k]], og[pairs[1][k]]))
        unchanged[k] = sym < 0.005 * area[k] + 0.05
    fids, codes = old["fid"].to_numpy(), old["code"].to_numpy()
    versions = old["version"].fillna(1).to_numpy()
    for k in np.argsort(-iou, kind="stable"):
        i, o = int(pairs[0][k]), int(pairs[1][k])
        out[i].append((int(fids[o]), codes[o], int(versions[o] or 1), bool(unchanged[k])))
    return out


def city_today(now: dt.datetime | None = None) -> dt.date:
    """The city's date (workflow.toml's time zone, Asia/Shanghai by default) at `now` (an aware
    time; the present when None): zones drawn at 00:30 Beijing time on 30 November are in force
    from the 30th, although it is still the 29th in UTC."""
    from zoneinfo import ZoneInfo

    from .workflow import Workflow

    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError("city_today needs an aware time")
    return now.astimezone(ZoneInfo(Workflow.load().timezone)).date()


def _chunks(values: list, size: int = 2000):
    for k in range(0, len(values), size):
        yield values[k:k + size]


def _hold_versions(tx, codes, closing) -> None:
    """Inside a zone-writing transaction: wait for any other zone writer to finish (a counter
    row both stores lock until commit), then make sure that what this writer is about to close
    is still in force and that nobody else opened a version of a code it writes. Otherwise two
    versions of one code would be left in force."""
    tx.next_number(LOCK)
    _verify_versions(tx, codes, closing)


def _verify_versions(tx, codes, closing) -> None:
    """Inside a zone-writing transaction: refuse when something this writer is about to
    close is no longer in force, or another version of a code it writes has been opened."""
    codes, closing = sorted(set(codes)), sorted(set(closing))
    open_rows = [r for chunk in _chunks(codes) for r in tx.rows("zones", {"code": chunk})
                 if r["valid_to"] is None]
    still_open = {r["fid"] for chunk in _chunks(closing) for r in tx.rows("zones", {"fid": chunk})
                  if r["valid_to"] is None}
    stray = sorted({r["code"] for r in open_rows if r["fid"] not in set(closing)})
    if stray or still_open != set(closing):
        what = f"zone {stray[0]} got a new version" if stray else "zones were closed"
        raise Refused(f"{what} while this change was being prepared (another import or `zones "
                      "generate` at the same time); nothing was written: run it again")


def study_box(store: Store, profile, bbox=None) -> tuple[float, float, float, float]:
    """The box (W, S, E, N) zones are drawn in: `bbox`, or the buildings' extent grown by the
    reach of a zone past its outline (zone_tiles.reach_m), so that the outermost buildings keep
    their street-facing zones whole. InputError when there is nothing to draw from."""
    box = tuple(bbox) if bbox is not None else store.extent(["buildings"], exact=True)
    if box is None or store.count("roads") == 0:
        raise InputError("zones need buildings and roads in the store: run `zonemap import-osm` "
                         "or `zonemap import … --as buildings/roads` first")
    return box if bbox is not None else zone_tiles.grow_deg(box, zone_tiles.reach_m(profile))


def generate(store: Store, profile_name: str = "beijing-2022", kinds=KINDS, bbox=None,
             valid_from: dt.date | None = None, dry_run: bool = False,
             now: dt.datetime | None = None, workers: int | None = None,
             scheduler: str | None = None) -> GenerateReport:
    """Generate zones from the store's base layers under a profile and write a new version,
    in force from `valid_from` (default: the city's date at `now`).

    The work goes tile by tile (layers.zone_tiles): serially here, on a LocalCluster of
    `workers` Dask processes, or on the Dask cluster at `scheduler`; the zones are the same.
    The tiles' zones are staged in a temporary file (layers.zone_stage) and moved into the
    store at the end in short transactions (`_move_in`): a failure anywhere leaves the store
    as it was."""
    t0 = time.time()
    kinds = tuple(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise InputError(f"unknown zone kind(s) {sorted(unknown)}; use {', '.join(KINDS)}")
    profile = load_profile(profile_name)
    rules = load_curb_rules()
    valid_from = valid_from or city_today(now)
    box = study_box(store, profile, bbox)
    x0, y0, x1, y1 = box
    metric = metric_crs((x0 + x1) / 2, (y0 + y1) / 2)
    report = GenerateReport(profile=profile.name, crs=metric, dry_run=dry_run)
    report.study_area_m2 = float(shapely.area(zone_tiles.boxes_in_metres([box], box[:2], metric)[0]))
    ctx = zone_tiles.Context(profile, rules, metric, box, kinds)
    tiles = zone_tiles.plan(box)
    counts = dict.fromkeys(KINDS, 0)
    from .zone_edit import change_count  # zone_edit builds on this module

    seen = change_count(store)
    book = _Book.scan(store, bbox, kinds)
    facing = covered = 0.0
    close: list[int] = []
    beside = getattr(store, "path", None)
    with zone_stage.Stage(beside.parent if beside is not None else None) as stage, \
            zone_tiles.runner(workers, scheduler) as run, zone_tiles.few_collections():
        # first pass: each tile draws the zones of the owners anchored in it
        boxes = []
        for k, res in enumerate(run(zone_tiles.draw_tile, (zone_tiles.read_tile(store, t, ctx) for t in tiles),
                                    ctx)):
            stage.add_owner_zones(k, res.zones)
            boxes.append(res.box)
            facing, covered = facing + res.facade[0], covered + res.facade[1]
            report.set_back += res.set_back
            report.buildings_in_parcels += res.in_parcels

        # second pass: public zones, 四至, storage and versions, with every zone near the tile
        def finishing():
            for k, t in enumerate(tiles):
                ring = zone_tiles.boxes_in_metres([boxes[k]], box[:2], metric)
                x0, y0, x1, y1 = shapely.total_bounds(ring)
                near = stage.owner_zones_near((x0 - 2, y0 - 2, x1 + 2, y1 + 2), k)
                yield zone_tiles.read_finish(store, t, boxes[k], near, book.in_force_then)

        for k, res in enumerate(run(zone_tiles.finish_tile, finishing(), ctx)):
            rows, closed = book.settle(res.rows, report, valid_from, profile)
            stage.add_rows(k, rows, res.units)
            close += closed
            for kind, v in res.rows["kind"].value_counts().items() if len(res.rows) else ():
                counts[kind] += int(v)
            report.storage_area_changed += res.storage_area_changed
            zone_tiles.add_checks(report.check, res.check)
        retire = [int(f) for f in book.unmatched()]
        if dry_run:
            report.new_units = sum(len(_new_units(store, None, page)) for page in stage.units())
        else:
            _move_in(store, stage, report, seen, close + retire, valid_from)
    report.retired = len(retire)
    report.counts = counts
    report.facade = {"facing_m": facing, "covered_m": covered, "share": covered / facing if facing else 1.0}
    report.check["zones"] = sum(counts.values())
    report.seconds = round(time.time() - t0, 2)
    return report


#: rows moved into the store per transaction before the switch (each holds the write lock
#: for a fraction of a second, whatever the size of the city)
MOVE_ROWS = 2000
#: a run listed this long ago was killed (a run of a million buildings takes well under this):
#: the next run deletes its hidden rows
STALE_RUN = dt.timedelta(hours=24)


def _move_in(store: Store, stage, report: GenerateReport, seen: int, close: list[int], valid_from) -> None:
    """Move what the tiles staged into the store. The run is listed in the store's runs table
    first (store.base RUNS); its rows go in in short transactions of MOVE_ROWS, each row
    marked with the run, which hides them from every reader, router, tile and check while the
    run is listed. Then one short transaction closes the versions they replace, checks that no
    other zone writer got in between and takes the run off the list: every new zone shows at
    once, and no new row is written again (the switch does not grow with the number of new
    zones; it does with the number of old versions it closes). The run's new units carry its
    mark as their `source` for good (which run derived them), so the switch rewrites none of
    them either; they are not hidden (a unit no zone names yet is harmless to a reader).
    A failure anywhere deletes the run's rows: the store is as it was. A run killed outright
    (no failure to catch) leaves hidden rows, which the first run started STALE_RUN later
    deletes (with what a run killed before the runs table left: rows marked `generating:…`). `report.lock_seconds`: the
    longest any of these transactions held the store's write lock; `report.switch_seconds`:
    how long the last did."""
    mark = f"generate:{uuid.uuid4().hex[:12]}"
    longest = 0.0
    unlisted = [r[0] for r in store.query(  # substr: a LIKE's % means a placeholder to psycopg
        "SELECT DISTINCT source FROM zones WHERE substr(source, 1, 11) = 'generating:'", ())]
    t = time.perf_counter()  # the lock's hold: the read above takes none
    with store.transaction() as tx:
        now = dt.datetime.now(dt.UTC)
        for stale in tx.runs_before(now - STALE_RUN):
            tx.end_run(stale, "zones", keep=False)
            _drop_units(tx, stale)
        for stale in unlisted:
            tx.delete_source("zones", stale)
            _drop_units(tx, stale)
        tx.start_run(mark, now)
    longest = time.perf_counter() - t
    try:
        for rows, units in _pages_of(stage, MOVE_ROWS):
            t = time.perf_counter()
            with store.transaction() as tx:
                new_units = _new_units(store, tx, units)
                if new_units:
                    tx.append("units", gpd.GeoDataFrame(
                        [{k: u.get(k) for k in ("unit_id", "name", "type", "address", "placeholder")}
                         | {"source": mark} for u in new_units], geometry=[None] * len(new_units), crs=STORAGE_CRS))
                if rows is not None:
                    tx.append("zones", gpd.GeoDataFrame(rows.assign(run=mark),
                                                        geometry="geometry", crs=STORAGE_CRS))
            longest = max(longest, time.perf_counter() - t)
            report.new_units += len(new_units)
        t = time.perf_counter()
        with store.transaction() as tx:
            if tx.next_number(LOCK) != seen + 1:  # another zone writer committed meanwhile
                _verify_versions(tx, [r["code"] for r in tx.rows("zones", {"run": mark})], close)
            for chunk in _chunks(close):
                tx.update_where("zones", {"fid": chunk}, {"valid_to": valid_from})
            tx.end_run(mark, "zones", keep=True)  # its units keep `source` = the run: no rewrite
        report.switch_seconds = round(time.perf_counter() - t, 2)
        longest = max(longest, report.switch_seconds)
    except BaseException:
        with store.transaction() as tx:
            tx.end_run(mark, "zones", keep=False)
            _drop_units(tx, mark)
        raise
    report.lock_seconds = round(longest, 2)


def _drop_units(tx, run: str) -> None:
    """Delete the units run `run` added (its zones deleted first), except those a zone names:
    a run after it found them in the store and used them, so they stay, as derived ones."""
    ids = [r["unit_id"] for r in tx.rows("units", {"source": run})]
    used = set()
    for chunk in _chunks(ids):
        for col in ("primary_unit", "co_unit"):
            used |= {r[col] for r in tx.rows("zones", {col: chunk})}
    for chunk in _chunks(sorted(used & set(ids))):
        tx.update_where("units", {"unit_id": chunk}, {"source": "derived"})
    tx.delete_source("units", run)


def _pages_of(stage, size: int):
    """(rows, units) in pages of about `size` rows: the staged rows in tile order (a frame),
    the units alongside (first, in pages of their own)."""
    for units in stage.units(size):
        yield None, units
    page: list[pd.DataFrame] = []
    held = 0
    for rows in stage.rows():
        page.append(rows)
        held += len(rows)
        while held >= size:
            whole = pd.concat(page, ignore_index=True)
            yield whole.iloc[:size], []
            page, held = [whole.iloc[size:]], held - size
    if held:
        yield pd.concat(page, ignore_index=True), []


class _Book:
    """The bookkeeping of versions across tiles: which zones were in force when the run
    began (fids, from one scan of the zones layer), which of them the new zones continue,
    and the next free number of each code prefix. A few numbers per zone, never geometry."""

    def __init__(self, fids, max_fid, last_number, kinds):
        self.in_force = np.asarray(fids, dtype=np.int64)
        self.max_fid = max_fid
        self.last = last_number
        self.kinds = kinds
        self.used: set[int] = set()
        self.closed: set[int] = set()

    @classmethod
    def scan(cls, store: Store, bbox, kinds, page: int = 20_000):
        fids, last, max_fid = [], {}, 0
        for zs in _pages(store, "zones", None, page):  # codes are numbered over the whole layer
            max_fid = max(max_fid, int(zs["fid"].max()))
            for prefix, num in zs["code"].dropna().str.extract(r"^(\D)(\d+)$").dropna().itertuples(index=False):
                last[prefix] = max(last.get(prefix, 0), int(num))
        for zs in _pages(store, "zones", bbox, page):
            open_ = zs[zs["valid_to"].isna() & zs["kind"].isin(kinds)]
            fids.append(open_["fid"].to_numpy())
        return cls(np.concatenate(fids) if fids else [], max_fid, last, kinds)

    def in_force_then(self, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        """The rows of `frame` (zones read during the run) that were in force at its start."""
        if frame.empty:
            return frame
        fid = frame["fid"].to_numpy()
        was = (fid <= self.max_fid) & (frame["valid_to"].isna().to_numpy() | np.isin(fid, list(self.closed)))
        return frame[was & frame["kind"].isin(self.kinds).to_numpy()]

    def settle(self, rows: pd.DataFrame, report: GenerateReport, valid_from, profile):
        """Codes and versions for one tile's zones (in the tile's order: north→south bands,
        west→east): the best old zone not yet continued keeps its code (and its row, when
        unchanged), else the next number of the kind. Returns the rows to write (a frame,
        geometry in its `geometry` column) and the fids to close. Only the choice of codes
        goes zone by zone (each takes what the zones before it left); the columns are
        built whole."""
        if rows.empty:
            return pd.DataFrame(), []
        order = np.lexsort((rows["order_x"].to_numpy(), rows["order_band"].to_numpy()))
        rows = rows.iloc[order].reset_index(drop=True)
        kinds = rows["kind"].to_numpy()
        codes = np.empty(len(rows), dtype=object)
        versions = np.ones(len(rows), dtype=np.int64)
        write = np.ones(len(rows), dtype=bool)
        close = []
        for i, matches in enumerate(rows["match"].to_numpy()):
            pick = next((m for m in matches if m[0] not in self.used), None)
            if pick is not None:
                fid, codes[i], version, unchanged = pick
                self.used.add(fid)
                if unchanged:
                    write[i] = False
                    continue
                close.append(fid)
                self.closed.add(fid)
                versions[i] = version + 1
            else:
                prefix = PREFIX[kinds[i]]
                self.last[prefix] = self.last.get(prefix, 0) + 1
                codes[i] = f"{prefix}{self.last[prefix]:06d}"
        report.unchanged += int((~write).sum())
        rows = rows[write]
        out = pd.DataFrame({"code": codes[write], "kind": rows["kind"].to_numpy(),
                            "primary_unit": rows["primary_unit"].to_numpy()})
        for col in ("co_unit", "frontage_len_m", "depth_m"):
            out[col] = [_val(v) for v in rows[col].to_numpy()]
        out["duties"], out["profile"] = profile.duties, profile.name
        out["area_m2"] = rows["area_m2"].to_numpy(dtype=float)
        out["bounds_text"], out["street"] = rows["bounds_text"].to_numpy(), rows["street"].to_numpy()
        out["valid_from"], out["version"], out["source"] = valid_from, versions[write], "generated"
        out["geometry"] = rows["geometry"].to_numpy()
        report.new_versions += len(out)
        return out, close

    def unmatched(self) -> np.ndarray:
        """The zones in force at the start that no new zone continues: to be retired."""
        return self.in_force[~np.isin(self.in_force, list(self.used))]


def _pages(store: Store, layer: str, bbox, size: int):
    """`layer` read in pages of `size` rows (by fid), so that memory holds one page."""
    offset = 0
    while True:
        page = store.read(layer, bbox=bbox, order=[("fid", "asc")], limit=size, offset=offset)
        if page.empty:
            return
        yield page
        offset += size


def _new_units(store: Store, tx, units: list[dict]) -> list[dict]:
    """The units of `units` that are not in the store (asked inside the transaction when
    there is one, which sees its own rows)."""
    ids = [u["unit_id"] for u in units]
    have = set()
    for chunk in _chunks(ids):
        rows = tx.rows("units", {"unit_id": chunk}) if tx is not None else \
            store.read("units", where={"unit_id": chunk}).to_dict("records")
        have |= {r["unit_id"] for r in rows}
    return [u for u in units if u["unit_id"] not in have]


# ---- a planner's file of zones (`import … --as zones`) -------------------------------------

# What a zone row says besides its code and shape; a column the file leaves empty keeps the
# value of the version in force.
ZONE_FIELDS = ("kind", "primary_unit", "co_unit", "duties", "profile", "frontage_len_m", "depth_m",
               "bounds_text", "street")
_SAME_FIELDS = ("kind", "primary_unit", "co_unit", "duties")


@dataclass
class ZoneImportPlan:
    """What a file of zones changes: per row (the user's row number) one of "new" (a code not
    in force), "version" (a new version of a code in force, whose open rows `close` lists) or
    "unchanged"; and the rows refused, with why."""

    valid_from: dt.date
    rows: list[dict] = field(default_factory=list)
    problems: dict[int, str] = field(default_factory=dict)

    def writes(self) -> list[dict]:
        return [r for r in self.rows if r["action"] != "unchanged" and r["row"] not in self.problems]

    def counts(self) -> dict:
        done = [r["action"] for r in self.rows if r["row"] not in self.problems]
        return {"new_zones": done.count("new"), "new_versions": done.count("version"),
                "unchanged": done.count("unchanged"), "valid_from": self.valid_from.isoformat()}


def _row_number(source: str) -> int:
    return int(str(source).rsplit("#", 1)[1])


def _row_problem(rec: dict, old: pd.DataFrame, units: set, valid_from: dt.date) -> str | None:
    """Why one row of a zones file cannot become the zone's next version, or None."""
    code = rec["code"]
    if _val(rec.get("valid_to")) is not None:
        return (f"valid_to {str(rec['valid_to'])[:10]} marks a closed version; a file of zones "
                "holds the zones to be in force (leave the closed ones out)")
    for col in ("primary_unit", "co_unit"):
        unit = _val(rec.get(col))
        if unit is not None and unit not in units:
            return (f"{col} {unit!r} is not a unit_id in the store; import the unit first "
                    "(import … --as units) or use its unit_id")
    if old.empty:
        return None
    if (old["kind"] != rec["kind"]).any():
        return (f"zone {code} in force is a {old['kind'].iloc[0]} zone, the file says {rec['kind']}; "
                "give the new zone a code of its own")
    starts = pd.to_datetime(old["valid_from"]).dt.date
    if (starts > valid_from).any():
        return (f"the version of {code} in force starts on {starts.max()}, after this import's "
                f"date {valid_from}")
    return None


def plan_import(store: Store, frame: gpd.GeoDataFrame, valid_from: dt.date | None = None,
                now: dt.datetime | None = None) -> ZoneImportPlan:
    """Match the rows of a prepared zones file (EPSG:4326, schema columns, `source` = file#row)
    to the zones in force by code. Nothing is written here."""
    plan = ZoneImportPlan(valid_from or city_today(now))
    every = store.read("zones")
    in_force = current(every)
    last_version = every.groupby("code")["version"].max().to_dict() if len(every) else {}
    units = set(store.read("units")["unit_id"])
    x0, y0, x1, y1 = frame.total_bounds
    metric = metric_crs((x0 + x1) / 2, (y0 + y1) / 2)
    new_m = polygonal(frame.to_crs(metric).geometry.to_numpy())
    old_m = polygonal(in_force.to_crs(metric).geometry.to_numpy()) if len(in_force) else np.array([], dtype=object)
    rows = frame.drop(columns=frame.geometry.name).to_dict("records")
    counts = frame["code"].value_counts()
    for k, rec in enumerate(rows):
        n, code = _row_number(rec["source"]), rec["code"]
        old = in_force[in_force["code"] == code]
        problem = (f"code {code} is in {counts[code]} rows of the file; one row per zone"
                   if counts[code] > 1 else _row_problem(rec, old, units, plan.valid_from))
        if problem:
            plan.problems[n] = problem
        values = {f: _val(rec.get(f)) if _val(rec.get(f)) is not None
                  else (_val(old[f].iloc[0]) if len(old) and f in old else None) for f in ZONE_FIELDS}
        same = (len(old) == 1 and all(values[f] == _val(old[f].iloc[0]) for f in _SAME_FIELDS)
                and shapely.area(shapely.symmetric_difference(
                    new_m[k], old_m[in_force.index.get_loc(old.index[0])]))
                < 0.005 * shapely.area(new_m[k]) + 0.05)
        plan.rows.append({"row": n, "code": code, "position": k, "close": [int(f) for f in old["fid"]],
                          "action": "unchanged" if same else "version" if len(old) else "new",
                          "version": int(last_version.get(code) or 0) + 1, "values": values,
                          "attrs": rec.get("attrs"), "source": rec["source"],
                          "area_m2": round(float(shapely.area(new_m[k])), 2)})
    _refuse_overlaps(plan, in_force, old_m, new_m)
    return plan


def _refuse_overlaps(plan: ZoneImportPlan, in_force, old_m: np.ndarray, new_m: np.ndarray) -> None:
    """Refuse rows whose new shape overlaps a zone that would be in force beside it. A refused
    row leaves its old version in force, which may overlap another row's new shape: repeat."""
    codes = in_force["code"].to_numpy()
    while True:
        writes = plan.writes()
        replaced = {r["code"] for r in writes}
        keep = np.flatnonzero(~np.isin(codes, list(replaced))) if len(codes) else np.array([], dtype=int)
        geoms = np.concatenate([old_m[keep], new_m[[r["position"] for r in writes]]])
        labels = [codes[i] for i in keep] + [r["code"] for r in writes]
        tree = shapely.STRtree(geoms)
        found = False
        for j, r in enumerate(writes):
            me = len(keep) + j
            hits = [h for h in tree.query(geoms[me], predicate="intersects") if h != me]
            areas = shapely.area(shapely.intersection(geoms[me], geoms[hits])) if hits else []
            worst = max(zip(areas, hits), default=(0.0, None))
            if worst[0] > MIN_AREA_M2:
                plan.problems[r["row"]] = (f"zone {r['code']} would overlap zone {labels[worst[1]]} by "
                                           f"{worst[0]:.2f} m²; zones may not overlap (see zones check)")
                found = True
        if not found:
            return


def write_import(store: Store, frame: gpd.GeoDataFrame, plan: ZoneImportPlan) -> int:
    """Write the plan's new zones and versions in one transaction, closing the versions they
    replace on the plan's date; refused and unchanged rows write nothing."""
    writes = plan.writes()
    if not writes:
        return 0
    close = [fid for r in writes for fid in r["close"]]
    new = gpd.GeoDataFrame(
        [r["values"] | {"code": r["code"], "area_m2": r["area_m2"], "valid_from": plan.valid_from,
                        "version": r["version"], "source": r["source"], "attrs": r["attrs"]}
         for r in writes],
        geometry=frame.geometry.iloc[[r["position"] for r in writes]].to_numpy(), crs=STORAGE_CRS)
    with store.transaction() as tx:
        _hold_versions(tx, [r["code"] for r in writes], close)
        for fid in close:
            tx.update("zones", fid, {"valid_to": plan.valid_from})
        tx.append("zones", new)
    return len(writes)


def to_storage(geoms: np.ndarray, metric: str, densify_m: float = 5.0) -> tuple[np.ndarray, int]:
    """Metric zones → EPSG:4326 for storage, and how many could not keep their area.

    Edges are densified to `densify_m` first: where a vertex of one zone lies on a long edge
    of its neighbour, reprojection bends the edge's true image but stores it straight, and
    the vertex drifts off it by ~length² × curvature (0.02 m² overlaps were seen on 250 m
    edges; with 5 m pieces the drift is a million times smaller). A few zones still come out
    invalid (a vertex overlay left 1e-10 m beside an edge; the two sides of a hair-thin spike
    crossing). Every repair was seen to fail on some zone (make_valid filling a hole, or
    collapsing a spiky ring; simplify moving shared edges; snap-rounding opening overlaps), so
    each candidate is measured back in metres and the first that keeps the zone's area is
    stored."""
    geoms = np.asarray(geoms, dtype=object)
    to_deg = transformer(metric, STORAGE_CRS)
    to_m = transformer(STORAGE_CRS, metric)

    def project(g, t):
        return shapely.transform(g, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))

    out = project(densify(geoms, densify_m), to_deg)
    lost = 0
    for i in np.flatnonzero(~shapely.is_valid(out)):
        want = shapely.area(geoms[i])
        plain = project(geoms[i], to_deg)
        structure, linework = {"method": "structure"}, {"method": "linework"}
        candidates = ((shapely.make_valid, out[i], structure), (shapely.make_valid, out[i], linework),
                      (None, plain, {}), (shapely.make_valid, plain, structure),
                      (shapely.make_valid, plain, linework), (shapely.buffer, out[i], {"distance": 0}))
        best, best_err = None, np.inf
        for repair, g, kw in candidates:
            try:  # a repair may itself fail (make_valid raised a non-noded intersection on one)
                c = polygonal(np.array([repair(g, **kw) if repair else g], dtype=object))[0]
            except shapely.errors.GEOSException:
                continue
            if not shapely.is_valid(c):
                continue
            err = abs(shapely.area(project(c, to_m)) - want)
            if err < best_err:
                best, best_err = c, err
            if err <= 1e-6 * want + 1e-4:
                break
        out[i] = best if best is not None else polygonal(np.array([plain], dtype=object))[0]
        lost += best_err > 1e-6 * want + 1e-4
    return out, int(lost)


def check(store: Store, as_of: dt.date | None = None) -> dict:
    """`zones check`: overlaps, gaps, slivers, invalid geometries, zones without a unit."""
    zones = current(store.read("zones"), as_of)
    if zones.empty:
        return {"zones": 0, "overlaps": 0, "overlap_m2": 0.0, "gaps": 0, "gap_m2": 0.0,
                "slivers": 0, "invalid": 0, "without_unit": 0, "by_kind": {}}
    x0, y0, x1, y1 = zones.total_bounds
    metric = metric_crs((x0 + x1) / 2, (y0 + y1) / 2)
    buildings = store.read("buildings", bbox=(x0, y0, x1, y1)).to_crs(metric)
    z = zones.to_crs(metric)
    # the study area is the hull of the zones in degrees (a lon/lat rectangle), projected densified
    hull = shapely.convex_hull(shapely.multipoints(shapely.get_coordinates(zones.geometry.to_numpy())))
    extent = gpd.GeoSeries([shapely.segmentize(hull, 1e-5)], crs=STORAGE_CRS).to_crs(metric).iloc[0]
    res = check_geometry(polygonal(z.geometry.to_numpy()), buildings.geometry.to_numpy(),
                         z["primary_unit"].notna().to_numpy(), extent=extent)
    # validity is judged on the stored geometries: reprojecting to metres for the measures
    # can fold a sound polygon, which the measuring step repairs for itself
    res["invalid"] = int((~shapely.is_valid(zones.geometry.to_numpy())).sum())
    res["overlap_pairs"] = [[zones["code"].iloc[a], zones["code"].iloc[b]] for a, b in res["overlap_pairs"]]
    res["by_kind"] = zones["kind"].value_counts().to_dict()
    res["crs"] = metric
    return res


def history(store: Store, code: str) -> list[dict]:
    zones = store.read("zones")
    rows = zones[zones["code"] == code].sort_values("version")
    if rows.empty:
        raise InputError(f"no zone with code {code!r}")
    out = []
    for r in rows.itertuples():
        out.append({"code": r.code, "version": int(r.version), "kind": r.kind, "primary_unit": r.primary_unit,
                    "profile": r.profile, "area_m2": r.area_m2, "valid_from": str(r.valid_from)[:10],
                    "valid_to": None if pd.isna(r.valid_to) else str(r.valid_to)[:10],
                    "bounds_text": r.bounds_text})
    return out
