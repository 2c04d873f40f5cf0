"""Zone generation, checking and history over a store (the flow of architecture.md §2):
base layers → owners and units → geo.frontage under a rule profile → public remainder →
四至 and measures → stable codes → a new zone version, written in one transaction.

Nothing is hard-deleted: a zone that changes or disappears gets `valid_to`, and its new shape
is a new row with the next version. A zone whose shape, unit and profile are unchanged keeps
its row. A planner's edited file (`import … --as zones`) goes through the same versioning, by
code (`plan_import`, `write_import`). Validity dates are the city's dates (`city_today`), and
one zone writer at a time checks that no code is left in force twice (`_hold_versions`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from geo._tiles import densify, polygonal
from geo.carriageway import build_streets
from geo.coverage import MIN_AREA_M2, facade_coverage, public_zones
from geo.coverage import check as check_geometry
from geo.crs import metric_crs
from geo.describe import four_bounds
from geo.frontage import frontage_zones

from .errors import InputError, Refused
from .rules import load_curb_rules, load_profile
from .schema import STORAGE_CRS
from .store import Store

KINDS = ("frontage", "unit", "site", "public")
PREFIX = {"frontage": "F", "unit": "U", "site": "S", "public": "P"}
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
            f"{self.set_back} buildings set back beyond the profile's depth (no frontage zone); "
            f"{self.buildings_in_parcels} buildings answered for by their parcel",
            f"check: {ck.get('overlaps')} overlaps ({ck.get('overlap_m2', 0):.2f} m²), {ck.get('gaps')} gaps "
            f"({ck.get('gap_m2', 0):.2f} m²), {ck.get('slivers')} slivers, {ck.get('invalid')} invalid, "
            f"{ck.get('without_unit')} without unit"])


def _attrs(frame: pd.DataFrame) -> list[dict]:
    return [json.loads(a) if isinstance(a, str) and a else {} for a in frame.get("attrs", [None] * len(frame))]


def _val(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) or v == "" else v


def _uid(*parts) -> str:
    return "U-" + hashlib.sha1("|".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:10]


def select_owners(buildings, areas, sites, metric: str):
    """Owners (kind building/unit/site, metric geometry) and the unit of each, from base layers."""
    rows = []
    battrs = _attrs(buildings)
    for i, (b, a) in enumerate(zip(buildings.itertuples(), battrs)):
        layer = str(a.get("layer", "0")).split(";")[0]
        underground = a.get("location") == "underground" or (layer.lstrip("-").isdigit() and int(layer) < 0)
        if underground or (b.building or "").lower() in NOT_OWNER_BUILDINGS:
            continue
        rows.append(("building", i, "buildings"))
    owners = []
    for kind, i, src in rows:
        owners.append({"kind": kind, "src": src, "row": i, "geometry": buildings.geometry.iloc[i]})
    for i, a in enumerate(areas.itertuples()):
        named = _val(a.name) or _val(a.operator)
        if a.landuse == "construction":
            owners.append({"kind": "site", "src": "areas", "row": i, "geometry": areas.geometry.iloc[i]})
        elif (a.amenity in UNIT_AMENITY or a.leisure in UNIT_LEISURE or a.tourism in UNIT_TOURISM
              or (a.landuse == "residential" and named)) and (named or a.amenity != "parking"):
            owners.append({"kind": "unit", "src": "areas", "row": i, "geometry": areas.geometry.iloc[i]})
    for i in range(len(sites)):
        owners.append({"kind": "site", "src": "sites", "row": i, "geometry": sites.geometry.iloc[i]})
    frame = gpd.GeoDataFrame(owners, geometry="geometry", crs=STORAGE_CRS) if owners else \
        gpd.GeoDataFrame({"kind": [], "src": [], "row": []}, geometry=[], crs=STORAGE_CRS)
    frame = frame.to_crs(metric)
    # OSM outlines with a self-touching ring, or ones that fold when projected, are repaired
    # here once, so that every later step (footprints included) works on valid polygons
    frame["geometry"] = polygonal(frame.geometry.to_numpy())
    return frame[~frame.geometry.is_empty].copy()


def owner_unit(owner, buildings, areas, sites, pois_in_building: dict) -> dict:
    """The responsible unit of an owner, derived from the data (placeholder when unnamed)."""
    if owner.src == "buildings":
        b = buildings.iloc[owner.row]
        key = b.osm_id or f"fid{b.fid}"
        poi = pois_in_building.get(owner.row)
        if _val(b["name"]):
            return {"unit_id": _uid("building", key), "name": b["name"], "type": b.shop or b.amenity
                    or b.office or b.building or "building", "placeholder": False,
                    "address": " ".join(filter(None, [_val(b.addr_street), _val(b.addr_housenumber)])) or None}
        if poi is not None:
            return {"unit_id": _uid("poi", poi.osm_id or poi.fid), "name": poi["name"],
                    "type": poi.shop or poi.amenity or poi.office or "shop", "placeholder": False,
                    "address": " ".join(filter(None, [_val(poi.addr_street), _val(poi.addr_housenumber)]))
                    or None}
        addr = " ".join(filter(None, [_val(b.addr_street), _val(b.addr_housenumber)]))
        return {"unit_id": _uid("building", key), "name": addr or f"建筑 {key}", "type": "待核实",
                "placeholder": True, "address": addr or None}
    if owner.src == "areas":
        a = areas.iloc[owner.row]
        name = _val(a["name"]) or _val(a.operator)
        kind = a.amenity or a.leisure or a.tourism or a.landuse
        label = TYPE_ZH.get(kind, kind)
        unit_name = name or f"{label or '地块'} {a.osm_id}"
        if owner.kind == "site":
            unit_name = _val(a.operator) or name or f"施工工地 {a.osm_id}"
        return {"unit_id": _uid("area", a.osm_id or a.fid), "name": unit_name,
                "type": "施工单位" if owner.kind == "site" else label, "placeholder": not name}
    s = sites.iloc[owner.row]
    contractor = _val(s.contractor)
    unit = {"unit_id": _uid("site", s.code or s.fid), "name": contractor or _val(s["name"]) or f"工地 {s.fid}",
            "type": "施工单位", "placeholder": not contractor}
    if _val(s.developer):  # 建设单位: co-responsible for the site (协同)
        unit["co"] = {"unit_id": _uid("developer", s.developer), "name": s.developer, "type": "建设单位",
                      "placeholder": False}
    return unit


def _pois_by_building(buildings, pois) -> dict:
    named = pois[pois["name"].notna()]
    if named.empty or buildings.empty:
        return {}
    tree = shapely.STRtree(buildings.geometry.to_numpy())
    pairs = tree.query(named.geometry.to_numpy(), predicate="within")
    out = {}
    for p, b in zip(*pairs):
        out.setdefault(int(b), named.iloc[int(p)])
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


def _codes(new: gpd.GeoDataFrame, old: gpd.GeoDataFrame, og: np.ndarray) -> tuple[list, list]:
    """A code per new zone (the old zone's, where they overlap by IoU ≥ 0.5 and are of the same
    kind; else the next free number of its kind, west→east within north→south bands) and the
    matched old row for each (or None). `og` holds the old zones' geometries in the new zones'
    metric CRS, projected and repaired once by the caller."""
    codes = [None] * len(new)
    matched: list = [None] * len(new)
    if not old.empty:
        ng = new.geometry.to_numpy()
        tree = shapely.STRtree(og)
        pairs = tree.query(ng, predicate="intersects")
        if pairs.size:
            inter = shapely.area(shapely.intersection(ng[pairs[0]], og[pairs[1]]))
            union = shapely.area(ng[pairs[0]]) + shapely.area(og[pairs[1]]) - inter
            iou = inter / np.maximum(union, 1e-9)
            same_kind = new["kind"].to_numpy()[pairs[0]] == old["kind"].to_numpy()[pairs[1]]
            order = np.argsort(-iou)
            used_old = set()
            for k in order:
                if iou[k] < 0.5 or not same_kind[k]:
                    continue
                ni, oi = int(pairs[0][k]), int(pairs[1][k])
                if codes[ni] is None and oi not in used_old:
                    codes[ni] = old["code"].iloc[oi]
                    matched[ni] = oi
                    used_old.add(oi)
    taken: dict[str, int] = {}
    for c in old["code"] if not old.empty else []:
        prefix, num = c[:1], c[1:]
        if num.isdigit():
            taken[prefix] = max(taken.get(prefix, 0), int(num))
    rep = shapely.get_coordinates(shapely.point_on_surface(new.geometry.to_numpy()))
    order = np.lexsort((rep[:, 0], -np.floor(rep[:, 1] / 100.0)))
    for i in order:
        if codes[i] is None:
            prefix = PREFIX[new["kind"].iloc[i]]
            taken[prefix] = taken.get(prefix, 0) + 1
            codes[i] = f"{prefix}{taken[prefix]:06d}"
    return codes, matched


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
    tx.next_number("zones:versions")
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


def generate(store: Store, profile_name: str = "beijing-2022", kinds=KINDS, bbox=None,
             valid_from: dt.date | None = None, dry_run: bool = False,
             now: dt.datetime | None = None) -> GenerateReport:
    """Generate zones from the store's base layers under a profile and write a new version,
    in force from `valid_from` (default: the city's date at `now`)."""
    t0 = time.time()
    kinds = tuple(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise InputError(f"unknown zone kind(s) {sorted(unknown)}; use {', '.join(KINDS)}")
    profile = load_profile(profile_name)
    rules = load_curb_rules()
    valid_from = valid_from or city_today(now)
    buildings = store.read("buildings", bbox=bbox)
    roads = store.read("roads", bbox=None if bbox is None else _grow(bbox, 0.003))
    if buildings.empty or roads.empty:
        raise InputError("zones need buildings and roads in the store: run `zonemap import-osm` "
                         "or `zonemap import … --as buildings/roads` first")
    areas = store.read("areas", bbox=bbox)
    sites = store.read("sites", bbox=bbox)
    pois = store.read("pois", bbox=bbox)
    x0, y0, x1, y1 = bbox or buildings.total_bounds
    metric = metric_crs((x0 + x1) / 2, (y0 + y1) / 2)
    report = GenerateReport(profile=profile.name, crs=metric, dry_run=dry_run)

    study = _degree_cells((x0, y0, x1, y1), metric, whole=True)[0]
    report.study_area_m2 = float(study.area)
    roads_m = roads.to_crs(metric)
    streets = build_streets(roads_m, rules, profile.depth_to, profile.no_sidewalk)
    owners = select_owners(buildings, areas, sites, metric)
    result = frontage_zones(owners, streets, profile, study)
    report.set_back = len(result.set_back)
    report.buildings_in_parcels = len(result.in_parcels)

    pib = _pois_by_building(buildings, pois)
    units: dict[str, dict] = {}
    rows = []
    for z in result.zones.itertuples():
        o = owners.loc[z.owner]
        u = owner_unit(o, buildings, areas, sites, pib)
        units.setdefault(u["unit_id"], u)
        co = u.get("co")
        if co:
            units.setdefault(co["unit_id"], co)
        rows.append({"owner": z.owner, "kind": OWNER_TO_ZONE[o.kind], "primary_unit": u["unit_id"],
                     "co_unit": co["unit_id"] if co else None, "unit_name": u["name"],
                     "frontage_len_m": round(float(z.frontage_len_m), 2), "geometry": z.geometry})
    # the owners' own ground: a parcel's zone is the parcel plus its strip (already in z)
    claimed = np.array([r["geometry"] for r in rows], dtype=object)
    footprints = owners[owners["kind"] == "building"].geometry.to_numpy()
    cells = _degree_cells((x0, y0, x1, y1), metric)
    for geom, on_cw in public_zones(study, claimed, footprints, streets.carriageway, cells):
        u = FALLBACK["cleaning" if on_cw else "street"]
        units.setdefault(u["unit_id"], {**u, "placeholder": False})
        rows.append({"owner": None, "kind": "public", "primary_unit": u["unit_id"], "co_unit": None,
                     "unit_name": u["name"],
                     "frontage_len_m": None, "geometry": geom})
    new = gpd.GeoDataFrame(rows, geometry="geometry", crs=metric)
    new = new[new["kind"].isin(kinds)].reset_index(drop=True)


    # measures and 四至 in metres
    new["area_m2"] = shapely.area(new.geometry.to_numpy()).round(2)
    # depth: median distance from a street-facing piece of the outline to its depth target
    med = result.zones.set_index("owner")["depth_m"]
    new["depth_m"] = [round(float(med[o]), 2) if o in med.index and np.isfinite(med[o]) else None
                      for o in new["owner"]]
    b_labels = np.array([n or "建筑物" for n in buildings["name"].to_numpy()], dtype=object)
    labels = np.where(new["kind"] == "public", None, new["unit_name"].to_numpy())
    texts, streets_named = four_bounds(new.geometry.to_numpy(), labels,
                                       streets.carriageway, streets.centrelines, streets.names,
                                       buildings.to_crs(metric).geometry.to_numpy(), b_labels)
    new["bounds_text"], new["street"] = texts, streets_named

    # facade coverage: how much street-facing facade has its own building's zone in front
    zone_of = np.full(len(owners), None, dtype=object)
    pos = {label: k for k, label in enumerate(owners.index)}
    for z in result.zones.itertuples():
        zone_of[pos[z.owner]] = z.geometry
    is_b = (owners["kind"] == "building").to_numpy() & ~owners.index.isin(result.in_parcels)
    report.facade = facade_coverage(owners.geometry.to_numpy()[is_b], zone_of[is_b], streets.carriageway)
    report.facade.pop("uncovered_points", None)

    report.check = check_geometry(new.geometry.to_numpy(), footprints, new["primary_unit"].notna().to_numpy(),
                                  extent=study)
    report.counts = new["kind"].value_counts().reindex(list(KINDS), fill_value=0).to_dict()

    old_all = store.read("zones", bbox=bbox)
    old = current(old_all)
    old = old[old["kind"].isin(kinds)]
    og_metric = polygonal(old.to_crs(metric).geometry.to_numpy()) if len(old) else np.array([], dtype=object)
    codes, matched = _codes(new, old, og_metric)
    new["code"] = codes
    new_wgs = new.to_crs(STORAGE_CRS)
    new_wgs["geometry"], report.storage_area_changed = to_storage(new.geometry.to_numpy(), metric)
    write_rows, close = [], []
    seen_old = set()
    for i, m in enumerate(matched):
        g = new_wgs.geometry.iloc[i]
        if m is not None:
            o = old.iloc[m]
            seen_old.add(m)
            same = (o["primary_unit"] == new["primary_unit"].iloc[i] and o["profile"] == profile.name
                    and shapely.area(shapely.symmetric_difference(og_metric[m], new.geometry.iloc[i]))
                    < 0.005 * new["area_m2"].iloc[i] + 0.05)
            if same:
                report.unchanged += 1
                continue
            close.append(int(o["fid"]))
            version = int(o["version"] or 1) + 1
        else:
            version = 1
        write_rows.append({"code": codes[i], "kind": new["kind"].iloc[i],
                           "primary_unit": new["primary_unit"].iloc[i],
                           "co_unit": _val(new["co_unit"].iloc[i]), "duties": profile.duties,
                           "profile": profile.name, "area_m2": float(new["area_m2"].iloc[i]),
                           "frontage_len_m": _val(new["frontage_len_m"].iloc[i]),
                           "depth_m": _val(new["depth_m"].iloc[i]),
                           "bounds_text": new["bounds_text"].iloc[i], "street": new["street"].iloc[i],
                           "valid_from": valid_from, "version": version, "source": "generated",
                           "geometry": g})
    retire = [int(old["fid"].iloc[k]) for k in range(len(old)) if k not in seen_old]
    report.new_versions = len(write_rows)
    report.retired = len(retire)
    have_units = set(store.read("units")["unit_id"])
    new_units = [u for uid, u in units.items() if uid not in have_units]
    report.new_units = len(new_units)
    if not dry_run:
        with store.transaction() as tx:
            _hold_versions(tx, [r["code"] for r in write_rows], close + retire)
            for fid in close + retire:
                tx.update("zones", fid, {"valid_to": valid_from})
            if write_rows:
                tx.append("zones", gpd.GeoDataFrame(write_rows, geometry="geometry", crs=STORAGE_CRS))
            if new_units:
                tx.append("units", gpd.GeoDataFrame(
                    [{k: u.get(k) for k in ("unit_id", "name", "type", "address", "placeholder")}
                     | {"source": "derived"} for u in new_units],
                    geometry=[None] * len(new_units), crs=STORAGE_CRS))
    report.seconds = round(time.time() - t0, 2)
    return report


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


def _degree_cells(bbox, metric: str, step_deg: float = 0.0025, whole: bool = False) -> np.ndarray:
    """Cells of a lon/lat grid (about 250 m) over `bbox`, densified and projected to `metric`;
    or, with whole=True, the bbox itself. Their edges stay straight lines when stored in degrees."""
    w, s, e, n = bbox
    if whole:
        boxes = np.array([shapely.box(w, s, e, n)])
    else:
        xs = np.r_[np.arange(w, e, step_deg), e]
        ys = np.r_[np.arange(s, n, step_deg), n]
        gx0, gy0 = np.meshgrid(xs[:-1], ys[:-1])
        gx1, gy1 = np.meshgrid(xs[1:], ys[1:])
        boxes = shapely.box(gx0.ravel(), gy0.ravel(), gx1.ravel(), gy1.ravel())
    boxes = shapely.segmentize(boxes, step_deg / 50)
    return gpd.GeoSeries(boxes, crs=STORAGE_CRS).to_crs(metric).to_numpy()


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
    to_deg = pyproj.Transformer.from_crs(metric, STORAGE_CRS, always_xy=True)
    to_m = pyproj.Transformer.from_crs(STORAGE_CRS, metric, always_xy=True)

    def project(g, t):
        return shapely.transform(g, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))

    out = project(densify(geoms, densify_m), to_deg)
    lost = 0
    for i in np.flatnonzero(~shapely.is_valid(out)):
        want = shapely.area(geoms[i])
        plain = project(geoms[i], to_deg)
        candidates = [shapely.make_valid(out[i], method="structure"), shapely.make_valid(out[i]),
                      plain, shapely.make_valid(plain, method="structure"), shapely.make_valid(plain),
                      shapely.buffer(out[i], 0)]
        best, best_err = None, np.inf
        for c in candidates:
            c = polygonal(np.array([c], dtype=object))[0]
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


def _grow(bbox, d):
    w, s, e, n = bbox
    return (w - d, s - d, e + d, n + d)


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
