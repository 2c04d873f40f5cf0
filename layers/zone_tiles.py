"""`zones generate` tile by tile: the study area is cut into tiles of whole public-zone cells
(lon/lat squares), and each tile goes through two passes, each a pure function of what it is
given (the driver reads it from the store): `draw_tile` draws the zones of the owners
anchored in the tile from its base data and a halo around it, `finish_tile` the public zones
of its cells, with every owner zone of the first pass that comes near it. Tiles run one after
another in this process, or on Dask distributed (a LocalCluster of N worker processes, or a
running cluster): the same functions on the same data, so both give the same zones. Results
come back in tile order, so that codes are numbered the same way whichever worker finished
first.

A zone belongs to the tile that holds its owner's anchor (the middle of the owner's box in
degrees), and is drawn once, there; public zones belong to the tile whose cells they fill.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import itertools
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo._tiles import polygonal
from geo.carriageway import CurbRules, build_streets
from geo.coverage import check as check_geometry
from geo.coverage import facade_coverage, public_zones
from geo.crs import reproject
from geo.describe import four_bounds
from geo.frontage import MITRE, Profile, frontage_zones

from .schema import STORAGE_CRS

STEP_DEG = 0.0025   # a public-zone cell: about 250 m
TILE_CELLS = 4      # a tile is TILE_CELLS × TILE_CELLS cells: about 1 km
READ_BATCH = 2      # tiles in flight per Dask worker (what bounds the memory of the run)


def reach_m(profile: Profile) -> float:
    """The farthest an owner's zone reaches from its outline: the lateral allowance plus a
    mitred corner of the maximum depth."""
    return profile.lateral_m + MITRE * profile.max_depth_m


def halo_m(profile: Profile) -> float:
    """How far around a tile its data is read: an owner zone's reach (`reach_m`) twice over
    (the Voronoi cells of a zone reaching into the tile need the outlines that far around it),
    plus the depth the facing test looks along."""
    return 2 * reach_m(profile) + profile.max_depth_m + 20.0


@dataclass(frozen=True)
class Tile:
    """One tile: its number (row from the south, column from the west) and its box in
    degrees (W, S, E, N)."""

    i: int
    j: int
    box: tuple[float, float, float, float]


def plan(bbox, step_deg: float = STEP_DEG, cells: int = TILE_CELLS) -> list[Tile]:
    """The tiles over `bbox` (W, S, E, N), blocks of cells × cells lon/lat cells aligned on
    the bbox's south-west corner, in the order their zones are numbered: north to south,
    west to east."""
    w, s, e, n = bbox
    size = step_deg * cells
    nx = max(1, int(np.ceil((e - w) / size - 1e-9)))
    ny = max(1, int(np.ceil((n - s) / size - 1e-9)))
    tiles = []
    for j in reversed(range(ny)):
        for i in range(nx):
            tiles.append(Tile(i, j, (w + i * size, s + j * size, min(e, w + (i + 1) * size),
                                     min(n, s + (j + 1) * size))))
    return tiles


def cell_boxes(box, origin, step_deg: float = STEP_DEG) -> list[tuple]:
    """The lon/lat cells of the grid that starts at `origin` (W, S) inside `box`, as degree
    boxes (W, S, E, N), clipped to `box`."""
    w, s, e, n = box
    ow, os_ = origin
    i0, i1 = int(np.floor((w - ow) / step_deg + 1e-9)), int(np.ceil((e - ow) / step_deg - 1e-9))
    j0, j1 = int(np.floor((s - os_) / step_deg + 1e-9)), int(np.ceil((n - os_) / step_deg - 1e-9))
    xs = np.clip(ow + np.arange(i0, i1 + 1) * step_deg, w, e)
    ys = np.clip(os_ + np.arange(j0, j1 + 1) * step_deg, s, n)
    return [(x0, y0, x1, y1) for y0, y1 in itertools.pairwise(ys) for x0, x1 in itertools.pairwise(xs)]


def boxes_in_metres(boxes, origin, metric: str, step_deg: float = STEP_DEG) -> np.ndarray:
    """Degree boxes (W, S, E, N) as polygons in the metric CRS, their edges densified with a
    vertex at every 1/50 cell of one grid (from `origin`), so that they stay the meridians and
    parallels they are, and two boxes sharing an edge share its vertices exactly (the same
    degrees project to the same metres): a tile's cells, its study area and its neighbours'
    then meet without slivers."""
    d = step_deg / 50
    rings = []
    for w, s, e, n in boxes:
        xs = np.r_[w, origin[0] + d * np.arange(np.floor((w - origin[0]) / d) + 1, np.ceil((e - origin[0]) / d)), e]
        ys = np.r_[s, origin[1] + d * np.arange(np.floor((s - origin[1]) / d) + 1, np.ceil((n - origin[1]) / d)), n]
        xs, ys = xs[(xs >= w) & (xs <= e)], ys[(ys >= s) & (ys <= n)]
        rings.append(np.vstack([np.column_stack([xs, np.full(len(xs), s)]),
                                np.column_stack([np.full(len(ys) - 1, e), ys[1:]]),
                                np.column_stack([xs[::-1][1:], np.full(len(xs) - 1, n)]),
                                np.column_stack([np.full(len(ys) - 1, w), ys[::-1][1:]])]))
    return reproject(np.array([shapely.Polygon(r) for r in rings], dtype=object), STORAGE_CRS, metric)


def grow_deg(box, metres: float):
    """`box` (degrees) grown by about `metres` on every side."""
    w, s, e, n = box
    dy = metres / 111_320.0
    dx = metres / (111_320.0 * max(np.cos(np.radians((s + n) / 2)), 0.05))
    return (w - dx, s - dy, e + dx, n + dy)


def in_metres(frame: gpd.GeoDataFrame, metric: str) -> gpd.GeoDataFrame:
    """`frame` (EPSG:4326) with its geometry in the metric CRS."""
    return frame.set_geometry(gpd.GeoSeries(reproject(frame.geometry.to_numpy(), STORAGE_CRS, metric),
                                            index=frame.index, crs=metric))


def anchors(geoms: np.ndarray, study) -> np.ndarray:
    """Each geometry's anchor (the middle of its box, in degrees), inside the study box."""
    b = shapely.bounds(geoms)
    w, s, e, n = study
    return np.column_stack([np.clip((b[:, 0] + b[:, 2]) / 2, w, e), np.clip((b[:, 1] + b[:, 3]) / 2, s, n)])


def in_tile(xy: np.ndarray, tile: Tile, study) -> np.ndarray:
    """Whether each anchor lies in the tile: boxes are closed on the west and south, open on
    the east and north except at the study area's own edge."""
    w, s, e, n = tile.box
    x_ok = (xy[:, 0] >= w) & ((xy[:, 0] < e) | (e >= study[2]))
    y_ok = (xy[:, 1] >= s) & ((xy[:, 1] < n) | (n >= study[3]))
    return x_ok & y_ok


@dataclass
class Context:
    """What every tile needs besides its own data (sent once with each tile)."""

    profile: Profile
    rules: CurbRules
    metric: str
    study: tuple[float, float, float, float]   # the study area (W, S, E, N), degrees
    kinds: tuple[str, ...]
    valid_from: object = None


@dataclass
class TileData:
    """The base data of one tile and its halo, as read from the store (EPSG:4326)."""

    tile: Tile
    buildings: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    areas: gpd.GeoDataFrame
    sites: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame


@dataclass
class OwnerZones:
    """What the first pass gives back for one tile: the zones of the owners anchored in it
    (metric), with their units and measures, its share of the facade report, and `box`: a
    lon/lat box around the tile and all of those zones."""

    tile: Tile
    zones: gpd.GeoDataFrame
    box: tuple[float, float, float, float]
    facade: tuple[float, float] = (0.0, 0.0)
    set_back: int = 0
    in_parcels: int = 0


@dataclass
class FinishData:
    """What the second pass needs for one tile: the buildings and roads around it and its
    zones (EPSG:4326), every owner zone drawn by the first pass that comes near it (metric;
    `mine` marks the tile's own), and the zones in force there before this run."""

    tile: Tile
    buildings: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    zones: gpd.GeoDataFrame
    old: gpd.GeoDataFrame


@dataclass
class TileResult:
    """What one tile gives back: its zones as rows ready to store (EPSG:4326), with for each
    the old zones it may continue (`match`: old fids by falling IoU, and whether the zone is
    unchanged from each), the units they name, and its share of the check."""

    tile: Tile
    rows: pd.DataFrame
    units: dict
    storage_area_changed: int = 0
    check: dict = field(default_factory=dict)


def read_tile(store, tile: Tile, ctx: Context) -> TileData:
    """The tile's data from the store: everything within its halo, grown further to hold
    the whole neighbourhood of every parcel anchored in it (a campus is drawn by its own
    tile alone, from all the departments and buildings around it)."""
    from .zones import parcel_kinds

    halo = halo_m(ctx.profile)
    window = grow_deg(tile.box, halo)
    areas = store.read("areas", bbox=window)
    sites = store.read("sites", bbox=window)
    parcels = [g[in_tile(anchors(g, ctx.study), tile, ctx.study)] for g in
               (areas.geometry.to_numpy()[parcel_kinds(areas) != ""], sites.geometry.to_numpy()) if len(g)]
    parcels = [g for g in parcels if len(g)]
    if parcels:
        w, s, e, n = grow_deg(shapely.total_bounds(np.concatenate(parcels)), halo)
        if w < window[0] or s < window[1] or e > window[2] or n > window[3]:
            window = (min(w, window[0]), min(s, window[1]), max(e, window[2]), max(n, window[3]))
            areas = store.read("areas", bbox=window)
            sites = store.read("sites", bbox=window)
    return TileData(tile, store.read("buildings", bbox=window), store.read("roads", bbox=window),
                    areas, sites, store.read("pois", bbox=window))


#: how far around a tile and its zones the second pass reads buildings and roads: the 四至
#: probes (1.5 m out), the road names they look for (25 m) and a carriageway's half width
FINISH_M = 60.0


def read_finish(store, tile: Tile, box, near: gpd.GeoDataFrame, keep_old) -> FinishData:
    """The second pass's data of one tile: buildings, roads and old zones around `box` (the
    tile and its zones, degrees), with `near`, the owner zones of the first pass around it.
    `keep_old(frame)` keeps the old zones that were in force when the run began."""
    window = grow_deg(box, FINISH_M)
    return FinishData(tile, store.read("buildings", bbox=window), store.read("roads", bbox=window),
                      near, keep_old(store.read("zones", bbox=box)))


#: the cyclic garbage collector's thresholds while zones are drawn: a tile makes millions of
#: short-lived objects (geometries, row dicts) and few cycles, and at Python's default (a
#: collection every 700 allocations) the collector's passes over every live object were
#: ~10 % of a run's CPU time (10k synthetic city)
GC_THRESHOLDS = (50_000, 20, 100)


@contextlib.contextmanager
def few_collections():
    """Collect garbage cycles rarely (GC_THRESHOLDS) inside the block, as before after it."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


@contextlib.contextmanager
def runner(workers: int | None = None, scheduler: str | None = None):
    """`run(func, inputs, ctx)`: the results of `func(input, ctx)` in the order of `inputs` (an
    iterator, read as tasks are sent): serially in this process, or on Dask distributed (a
    LocalCluster of `workers` processes on 127.0.0.1, or the cluster at `scheduler`), one
    cluster for every pass of the run. At most READ_BATCH inputs per worker are read ahead,
    so memory is set by the tile, not the city."""
    if not workers and not scheduler:
        yield lambda func, inputs, ctx: (func(x, ctx) for x in inputs)
        return
    from .partitioned import cluster  # only for a parallel run

    with cluster(scheduler, workers or 2) as client:
        ahead = READ_BATCH * max(1, len(client.scheduler_info()["workers"]))

        def run(func, inputs, ctx):
            pending: collections.deque = collections.deque()
            for x in inputs:
                pending.append(client.submit(func, x, ctx, pure=False))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

        yield run


def draw_tile(data: TileData, ctx: Context) -> OwnerZones:
    """First pass: the frontage, unit and site zones of the owners anchored in the tile,
    with their units and measures, and the tile's share of the facade report. Pure: reads
    nothing but `data` and `ctx`."""
    with few_collections():  # on a Dask worker as in this process
        return _draw_tile(data, ctx)


def _draw_tile(data: TileData, ctx: Context) -> OwnerZones:
    from . import zones as zm  # the unit rules live with the rest of zone generation

    tile, metric, profile = data.tile, ctx.metric, ctx.profile
    b = data.buildings
    empty = gpd.GeoDataFrame({"owner": [], "kind": []}, geometry=[], crs=metric)
    if data.roads.empty:
        return OwnerZones(tile, empty, tile.box)
    # the study area here: around the tile as far as its data was read (the study box's own
    # edge wherever that is nearer), never cut short where the data happens to end
    window = shapely.total_bounds(np.concatenate([f.geometry.to_numpy() for f in
                                                  (b, data.roads, data.areas, data.sites) if len(f)]
                                                 + [np.array([shapely.box(*grow_deg(tile.box, halo_m(profile)))])]))
    study_box = (max(window[0], ctx.study[0]), max(window[1], ctx.study[1]),
                 min(window[2], ctx.study[2]), min(window[3], ctx.study[3]))
    (study,) = boxes_in_metres([study_box], ctx.study[:2], metric)
    roads_m = in_metres(data.roads, metric)
    streets = build_streets(roads_m, ctx.rules, profile.depth_to, profile.no_sidewalk)
    owners = zm.select_owners(b, data.areas, data.sites, metric)
    anchored = in_tile(anchors(owners["deg"].to_numpy(), ctx.study), tile, ctx.study)
    owners = owners.drop(columns="deg")
    mine = owners.index[anchored]
    fz = frontage_zones(owners, streets, profile, study, only=mine)
    result = OwnerZones(tile, empty, tile.box, set_back=int(np.isin(fz.set_back, mine).sum()),
                        in_parcels=int(np.isin(fz.in_parcels, mine).sum()))

    pib = zm.pois_by_building(b, data.pois)
    who = owners[["kind", "src", "row"]].loc[fz.zones["owner"].to_numpy()]
    kind, src, row = (who[c].to_numpy() for c in ("kind", "src", "row"))
    # row dicts of the base rows that own a zone here (not of every row read with the halo),
    # of the fields the unit rules read
    records = []
    for name, f in (("buildings", b), ("areas", data.areas), ("sites", data.sites)):
        used = np.unique(row[src == name])
        fields = [c for c in zm.UNIT_FIELDS[name] if c in f.columns]
        records.append(dict(zip(used.tolist(), f[fields].iloc[used].to_dict("records"))))
    units = [zm.owner_unit(zm.Owner(*o), *records, pib) for o in zip(kind, src, row.tolist())]
    if units:
        co = [u.get("co") for u in units]
        depth = fz.zones["depth_m"].to_numpy(dtype=float)
        result.zones = gpd.GeoDataFrame({
            "owner": fz.zones["owner"].to_numpy(), "kind": [zm.OWNER_TO_ZONE[k] for k in kind],
            "primary_unit": [u["unit_id"] for u in units], "co_unit": [c["unit_id"] if c else None for c in co],
            "unit_name": [u["name"] for u in units], "unit": units,
            "frontage_len_m": [round(v, 2) for v in fz.zones["frontage_len_m"].to_numpy(dtype=float).tolist()],
            "depth_m": [round(v, 2) if np.isfinite(v) else None for v in depth.tolist()]},
            geometry=fz.zones.geometry.to_numpy(), crs=metric)
        x0, y0, x1, y1 = shapely.total_bounds(result.zones.geometry.to_numpy())
        corners = reproject(shapely.segmentize(np.array([shapely.box(x0, y0, x1, y1)]), 50.0), metric, STORAGE_CRS)
        w, s, e, n = shapely.total_bounds(corners)
        result.box = (min(w, tile.box[0]), min(s, tile.box[1]), max(e, tile.box[2]), max(n, tile.box[3]))

    # the tile's share of the facade report: its own buildings' street-facing sides
    is_b = anchored & (owners["kind"] == "building").to_numpy() & ~owners.index.isin(fz.in_parcels)
    zone_of = dict(zip(fz.zones["owner"].to_numpy(), fz.zones.geometry.to_numpy()))
    own_zone = np.array([zone_of.get(k) for k in owners.index[is_b]], dtype=object)
    geoms, is_building = owners.geometry.to_numpy(), (owners["kind"] == "building").to_numpy()
    # every building read with the halo blocks a line of sight, not only the tile's own: a
    # neighbour across the seam hides the wall behind it from the street as much as any
    fc = facade_coverage(geoms[is_b], own_zone, streets.carriageway, parcels=geoms[~is_building],
                         walls=geoms[is_building])
    result.facade = (fc["facing_m"], fc["covered_m"])
    return result


def finish_tile(data: FinishData, ctx: Context) -> TileResult:
    """Second pass: the public zones of the tile's cells (what the owner zones drawn around
    it leave), then for the tile's zones their measures, 四至 (every zone near it as a
    neighbour), the in-generation check, the storage geometry in degrees, and the old zones
    each may continue. Pure: reads nothing but `data` and `ctx`."""
    with few_collections():  # on a Dask worker as in this process
        return _finish_tile(data, ctx)


def _finish_tile(data: FinishData, ctx: Context) -> TileResult:
    from . import zones as zm  # the unit and storage rules live with the rest of zone generation

    tile, metric, profile = data.tile, ctx.metric, ctx.profile
    b = data.buildings
    result = TileResult(tile, pd.DataFrame(), {})
    # no early return without roads: a tile of fields far from any road still has public
    # cells to fill (the study area is covered exactly once)
    (core,) = boxes_in_metres([tile.box], ctx.study[:2], metric)
    cells = boxes_in_metres(cell_boxes(tile.box, ctx.study[:2]), ctx.study[:2], metric)
    streets = build_streets(in_metres(data.roads, metric), ctx.rules, profile.depth_to, profile.no_sidewalk)
    footprints = polygonal(reproject(b.geometry.to_numpy()[zm.owner_buildings(b)], STORAGE_CRS, metric))
    owned = data.zones
    rows = [{"owner": None, "kind": "public", "primary_unit": u["unit_id"], "co_unit": None,
             "unit_name": u["name"], "unit": {**u, "placeholder": False},
             "frontage_len_m": None, "depth_m": None, "geometry": geom, "mine": True}
            for geom, on_cw in public_zones(core, owned.geometry.to_numpy(), footprints, streets.carriageway, cells)
            for u in [zm.FALLBACK["cleaning" if on_cw else "street"]]]
    frame = pd.concat([owned, gpd.GeoDataFrame(rows, geometry="geometry", crs=metric)], ignore_index=True) \
        if rows else owned.reset_index(drop=True)
    frame = gpd.GeoDataFrame(frame, geometry="geometry", crs=metric)
    if frame.empty:
        return result
    emitted = frame["mine"].to_numpy(dtype=bool) & frame["kind"].isin(ctx.kinds).to_numpy()

    result.check = tile_check(frame.geometry.to_numpy(), emitted, frame["primary_unit"].notna().to_numpy(), core)
    out = frame[emitted].copy()
    result.units = {r["unit_id"]: r for u in out["unit"] for r in [u, u.get("co")] if r}
    if out.empty:
        return result
    # 四至 of the tile's own zones, with every zone near the tile as a neighbour
    b_labels = np.array([n or "建筑物" for n in b["name"].to_numpy()], dtype=object)
    labels = np.where(frame["kind"] == "public", None, frame["unit_name"].to_numpy())
    out["bounds_text"], out["street"] = four_bounds(
        frame.geometry.to_numpy(), labels, streets.carriageway, streets.centrelines, streets.names,
        reproject(b.geometry.to_numpy(), STORAGE_CRS, metric), b_labels, only=np.flatnonzero(emitted))
    out["area_m2"] = shapely.area(out.geometry.to_numpy()).round(2)
    rep = shapely.get_coordinates(shapely.point_on_surface(out.geometry.to_numpy()))
    out["order_x"], out["order_band"] = rep[:, 0], -np.floor(rep[:, 1] / 100.0)
    out["match"] = zm.match_old(out, data.old, metric, profile.name)
    stored, result.storage_area_changed = zm.to_storage(out.geometry.to_numpy(), metric)
    result.rows = pd.DataFrame(out.drop(columns=["geometry", "unit", "unit_name", "owner", "mine"]))
    result.rows["geometry"] = stored
    return result


def tile_check(zones: np.ndarray, counted: np.ndarray, has_unit, inside) -> dict:
    """The check of one tile while it is drawn: overlaps whose inner point lies in it, and
    slivers, invalid zones and zones without unit among those `counted` (the tile's own; a
    zone of a neighbouring tile is drawn here only as a neighbour). Gaps are left to `zones
    check` on what was stored: inside a tile the public zones fill every gap by
    construction, and the seams between tiles are only seen in the stored whole."""
    shapely.prepare(inside)
    # an overlap whose inner point lies in the tile is between zones that meet the tile
    keep = np.asarray(counted, dtype=bool) | shapely.intersects(inside, zones)
    res = check_geometry(zones[keep], np.array([], dtype=object), np.asarray(has_unit)[keep], inside=inside,
                         counted=np.asarray(counted, dtype=bool)[keep], gaps=False)
    return {k: res[k] for k in ("zones", "overlaps", "overlap_m2", "slivers", "invalid", "without_unit")}


def add_checks(total: dict, part: dict) -> dict:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v
    return total

