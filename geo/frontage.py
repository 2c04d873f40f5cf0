"""门前三包 and parcel frontage zones: who answers for each piece of the public band.

Everything here is in one metric CRS (metres). The method (../shared/docs/zones-design.md):

1. *Owners* are buildings and parcels (unit parcels, construction sites). Parcels win over
   buildings: a building mostly inside a parcel is the parcel's, and overlapping parcels are
   resolved site > unit, then smaller > larger.
2. Each owner outline is cut into pieces of about `sample_m`. A piece *faces the street* when a
   ray along its outward normal reaches a stop area (carriageway) or a cut line (a centreline
   the zone may run to) within `max_depth_m` before meeting any owner.
3. Runs of facing pieces are chains; a chain's one-sided mitred buffer of `max_depth_m`,
   prolonged by the profile's lateral allowance at both ends, is the owner's *corridor*: the
   area in front of its street-facing sides, corners included. Owners with no neighbour under
   an "all sides" rule, and parcels, take a corridor all around.
4. Voronoi cells of points sampled along every outline, dissolved per owner, give each point
   to its nearest owner: a gap between neighbours is split at its midline and a corner on the
   bisector, and no two owners can claim the same place.
5. zone = cell ∩ corridor ∩ study area − stop areas − other owners, cut at cut lines, keeping
   only the parts that touch the owner. All of it is done tile by tile with spatial indexes,
   so time grows linearly with the city and no giant polygon is ever clipped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from ._tiles import overlay, subtract
from .carriageway import Streets

#: owner kinds, most specific first: where claims meet, the earlier wins
OWNER_KINDS = ("site", "unit", "building")


@dataclass(frozen=True)
class Profile:
    """A city's rules for drawing frontage zones (layers/rules/profiles/*.toml)."""

    name: str
    title: str
    depth_to: str = "curb"          # curb | nonmotor_curb | red_line
    no_sidewalk: str = "curb"       # curb | centreline
    lateral_m: float = 10.0         # how far a zone may reach sideways past its frontage
    no_neighbour: str = "none"      # none | all_sides
    neighbour_m: float = 6.0        # "no neighbour" = no other owner this close
    max_depth_m: float = 30.0       # farther than this from the depth target: no zone
    duties: str = "卫生,容貌,秩序"


@dataclass
class FrontageResult:
    zones: gpd.GeoDataFrame                  # owner (row of owners), kind, geometry, frontage_len_m
    facing: gpd.GeoDataFrame                 # facing outline pieces: owner, geometry, depth_m
    set_back: np.ndarray                     # owners near a street but beyond max depth
    in_parcels: np.ndarray                   # buildings that belong to a parcel


def resolve_owners(owners: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Owners with parcel overlaps resolved and buildings inside parcels removed.

    `owners` has columns `kind` (site/unit/building) and geometry (metric). Returns the kept
    owners (index preserved) and the index labels of buildings that fell inside a parcel."""
    geoms = shapely.make_valid(owners.geometry.to_numpy())
    geoms = np.array([shapely.union_all([p for p in shapely.get_parts(g) if shapely.get_dimensions(p) == 2])
                      for g in geoms], dtype=object)
    kinds = owners["kind"].to_numpy()
    rank = np.array([OWNER_KINDS.index(k) for k in kinds])
    parcel = rank < OWNER_KINDS.index("building")
    order = np.lexsort((shapely.area(geoms), rank))
    out = geoms.copy()
    taken: list[int] = []
    tree_geoms: list = []
    for i in order[parcel[order]]:
        g = out[i]
        if tree_geoms:
            tree = shapely.STRtree(tree_geoms)
            g = subtract(g, [tree_geoms[h] for h in tree.query(g, predicate="intersects")])
        out[i] = g
        taken.append(i)
        tree_geoms.append(g)
    inside = np.zeros(len(owners), dtype=bool)
    if tree_geoms:
        tree = shapely.STRtree(tree_geoms)
        b_idx = np.flatnonzero(~parcel)
        pairs = tree.query(geoms[b_idx], predicate="intersects")
        if pairs.size:
            shared = shapely.area(shapely.intersection(geoms[b_idx[pairs[0]]],
                                                       np.array(tree_geoms, dtype=object)[pairs[1]]))
            frac = np.zeros(len(b_idx))
            np.add.at(frac, pairs[0], shared)
            frac /= np.maximum(shapely.area(geoms[b_idx]), 1e-9)
            inside[b_idx[frac >= 0.5]] = True
            # a building partly in a parcel keeps only the part outside it
            partly = np.unique(pairs[0][(frac[pairs[0]] < 0.5)])
            for j in partly:
                hits = tree.query(geoms[b_idx[j]], predicate="intersects")
                out[b_idx[j]] = subtract(geoms[b_idx[j]], [tree_geoms[h] for h in hits])
    keep = ~inside & ~shapely.is_empty(out) & (shapely.area(out) > 0.01)
    result = owners.copy()
    result["geometry"] = out
    return result[keep], owners.index[inside].to_numpy()


def _pieces(polys: np.ndarray, sample_m: float):
    """Outline pieces of the exterior rings (CCW, so the outside is on the right)."""
    parts = shapely.get_parts(polys, return_index=True)
    part_geoms, part_owner = parts
    rings = shapely.get_exterior_ring(shapely.orient_polygons(part_geoms))
    rings = shapely.segmentize(rings, sample_m)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[:-1] == ring_of[1:]
    a, b = xy[:-1][same], xy[1:][same]
    ring = ring_of[:-1][same]
    length = np.hypot(*(b - a).T)
    ok = length > 1e-6
    return a[ok], b[ok], ring[ok], part_owner[ring[ok]], length[ok], part_geoms


def _nearest_hit(starts, rays, tree, geoms, n):
    """Distance from each ray start to the nearest geometry of `tree` its ray meets (inf if none)."""
    out = np.full(n, np.inf)
    if len(geoms) == 0:
        return out
    pairs = tree.query(rays, predicate="intersects")
    if pairs.size:
        d = shapely.distance(starts[pairs[0]], geoms[pairs[1]])
        np.minimum.at(out, pairs[0], d)
    return out


def _seen(starts, normal, tree, geoms, owner_tree, depth, min_cos=0.2, every=False):
    """Distance to the nearest geometry of `tree` within `depth` when the straight line to it
    leaves outward (cosine with the normal ≥ min_cos) and crosses no owner; else inf."""
    out = np.full(len(starts), np.inf)
    if len(geoms) == 0:
        return out
    if every:  # every geometry in reach, not only the nearest (a far street may be the visible one)
        p, g = tree.query(starts, predicate="dwithin", distance=depth)
        dist = shapely.distance(starts[p], geoms[g])
    else:
        (p, g), dist = tree.query_nearest(starts, max_distance=depth, return_distance=True,
                                          all_matches=False)
    if len(p) == 0:
        return out
    lines = shapely.shortest_line(starts[p], geoms[g])
    xy = shapely.get_coordinates(lines).reshape(-1, 2, 2)
    vec = xy[:, 1] - xy[:, 0]
    cos = np.einsum("ij,ij->i", vec, normal[p]) / np.maximum(np.hypot(*vec.T), 1e-9)
    blocked = np.zeros(len(p), dtype=bool)
    hits = owner_tree.query(lines, predicate="intersects")
    blocked[hits[0]] = True
    ok = (cos >= min_cos) & ~blocked
    np.minimum.at(out, p[ok], dist[ok])
    return out


def _chains(facing: np.ndarray, ring: np.ndarray):
    """(ring, first piece, last piece) of each run of consecutive facing pieces; runs may wrap
    around the end of a ring. A ring whose every piece faces gives (ring, -1, -1)."""
    runs = []
    starts = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    ends = np.r_[starts[1:], len(ring)]
    for s, e in zip(starts, ends):
        f = facing[s:e]
        if not f.any():
            continue
        if f.all():
            runs.append((ring[s], -1, -1))
            continue
        k = int(np.argmin(f))  # rotate to begin at a non-facing piece
        order = np.r_[np.arange(s + k, e), np.arange(s, s + k)]
        fo = facing[order]
        edges = np.diff(np.r_[0, fo.astype(int), 0])
        for r0, r1 in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            runs.append((ring[s], order[r0], order[r1 - 1]))
    return runs


def _extend(coords: np.ndarray, by: float) -> np.ndarray:
    if by <= 0:
        return coords
    d0 = coords[0] - coords[1]
    d1 = coords[-1] - coords[-2]
    d0 = d0 / max(np.hypot(*d0), 1e-9)
    d1 = d1 / max(np.hypot(*d1), 1e-9)
    return np.vstack([coords[0] + d0 * by, coords, coords[-1] + d1 * by])


def frontage_zones(owners: gpd.GeoDataFrame, streets: Streets, profile: Profile, study_area,
                   sample_m: float = 2.0, tile_m: float = 500.0) -> FrontageResult:
    """Frontage (and parcel) zones for `owners` (columns kind, geometry; metric CRS) under
    `profile`, inside the polygon `study_area`. Zones carry the row label of their owner."""
    owners, in_parcels = resolve_owners(owners)
    polys = owners.geometry.to_numpy()
    kinds = owners["kind"].to_numpy()
    n_owners = len(owners)
    depth = profile.max_depth_m
    a, b, ring, owner, length, part_geoms = _pieces(polys, sample_m)
    mid = (a + b) / 2
    unit = (b - a) / length[:, None]
    normal = np.column_stack([unit[:, 1], -unit[:, 0]])  # right of a CCW ring = outside
    start = mid + normal * 0.05
    end = mid + normal * depth
    starts = shapely.points(start)
    rays = shapely.linestrings(np.stack([start, end], axis=1))
    n = len(rays)
    owner_tree = shapely.STRtree(polys)
    d_stop = _nearest_hit(starts, rays, streets.stop_tree, streets.stop, n)
    d_cut = _nearest_hit(starts, rays, streets.cut_tree, streets.cut_lines, n)
    d_target = np.minimum(d_stop, d_cut)
    d_owner = _nearest_hit(starts, rays, owner_tree, polys, n)
    facing = np.isfinite(d_target) & (d_target < d_owner)
    # a side oblique to the street misses it along its normal but sees it at an angle: also
    # facing when the straight line to the nearest stop area or cut line leaves the facade
    # outward and meets no owner
    for tree, geoms, every in ((streets.stop_tree, streets.stop, False),
                               (streets.cut_tree, streets.cut_lines, True)):
        d_near = _seen(starts, normal, tree, geoms, owner_tree, depth, every=every)
        facing |= np.isfinite(d_near)
        d_target = np.minimum(d_target, d_near)

    # owners that face no street within max depth but have one a little farther: set back
    facing_owner = np.zeros(n_owners, dtype=bool)
    facing_owner[owner[facing]] = True
    near = np.zeros(n_owners, dtype=bool)
    if len(streets.stop):
        pairs = streets.stop_tree.query(polys, predicate="dwithin", distance=2 * depth)
        near[pairs[0]] = True
    set_back = owners.index[near & ~facing_owner & (kinds == "building")].to_numpy()

    # which owners take a corridor all around
    all_sides = kinds != "building"
    if profile.no_neighbour == "all_sides":
        pairs = owner_tree.query(polys, predicate="dwithin", distance=profile.neighbour_m)
        has_neighbour = np.zeros(n_owners, dtype=bool)
        has_neighbour[pairs[0][pairs[0] != pairs[1]]] = True
        all_sides |= ~has_neighbour

    corridors = _corridors(facing, ring, owner, a, b, part_geoms, polys, all_sides & facing_owner,
                           depth, profile.lateral_m)
    active = np.flatnonzero(facing_owner)
    cells = _cells(polys, a, owner, active, corridors, depth + profile.lateral_m, tile_m)

    zones = []
    for i in active:
        z = _clip(i, cells.get(i), corridors[i], polys, owner_tree, streets, study_area)
        if z is not None:
            zones.append((i, z))
    # a parcel is its own zone (卫生责任区) even where it faces no street
    for i in np.flatnonzero((kinds != "building") & ~facing_owner):
        hits = streets.stop_tree.query(polys[i], predicate="intersects")
        z = subtract(shapely.intersection(polys[i], study_area), list(streets.stop[hits]))
        if not shapely.is_empty(z) and shapely.area(z) > 0.05:
            zones.append((int(i), z))
    idx = [i for i, _ in zones]
    facing_len = np.bincount(owner[facing], weights=length[facing], minlength=n_owners)
    zframe = gpd.GeoDataFrame({"owner": owners.index[idx], "kind": kinds[idx],
                               "frontage_len_m": facing_len[idx]},
                              geometry=[z for _, z in zones], crs=owners.crs)
    fpieces = gpd.GeoDataFrame({"owner": owners.index[owner[facing]], "depth_m": d_target[facing]},
                               geometry=shapely.linestrings(np.stack([a[facing], b[facing]], axis=1)),
                               crs=owners.crs)
    return FrontageResult(zframe, fpieces, set_back, in_parcels)


def _corridors(facing, ring, owner, a, b, part_geoms, polys, all_sides, depth, lateral):
    """The area in front of each owner's street-facing sides (dict owner → polygon)."""
    chains: dict[int, list] = {}
    for r, first, last in _chains(facing, ring):
        o = int(owner[np.flatnonzero(ring == r)[0]]) if first < 0 else int(owner[first])
        if first < 0 or all_sides[o]:
            chains.setdefault(o, []).append(None)  # the whole ring
            continue
        idx = np.arange(first, last + 1) if first <= last else None
        if idx is None:  # wrapped run
            members = np.flatnonzero(ring == r)
            idx = np.r_[members[members >= first], members[members <= last]]
        coords = np.vstack([a[idx], b[idx[-1]]])
        line = shapely.linestrings(_extend(coords, lateral))
        chains.setdefault(o, []).append(shapely.buffer(line, -depth, single_sided=True,
                                                       join_style="mitre", mitre_limit=3.0))
    out = {}
    for o, parts in chains.items():
        if all_sides[o] or any(p is None for p in parts):
            ring_buf = shapely.buffer(polys[o], depth, join_style="mitre", mitre_limit=3.0)
            parts = [p for p in parts if p is not None] + [ring_buf]
        out[o] = overlay(shapely.union_all, parts)
    return out


def _cells(polys, samples, sample_owner, active, corridors, reach, tile_m):
    """Voronoi cells of outline samples dissolved per owner, for the active owners, tile by tile."""
    if len(active) == 0:
        return {}
    key = np.round(samples, 2)
    _, first = np.unique(key, axis=0, return_index=True)
    first.sort()
    pts, pts_owner = samples[first], sample_owner[first]
    rep = shapely.get_coordinates(shapely.point_on_surface(polys[active]))
    tile_of = np.floor(rep / tile_m).astype(np.int64)
    cells: dict[int, object] = {}
    for t in np.unique(tile_of, axis=0):
        members = active[(tile_of == t).all(axis=1)]
        x0, y0, x1, y1 = shapely.total_bounds([corridors[i] for i in members])
        margin = reach + 2 * tile_m / 10
        wx0, wy0, wx1, wy1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
        sel = (pts[:, 0] >= wx0) & (pts[:, 0] <= wx1) & (pts[:, 1] >= wy0) & (pts[:, 1] <= wy1)
        window = shapely.box(wx0, wy0, wx1, wy1)
        vor = shapely.voronoi_polygons(shapely.multipoints(pts[sel]), extend_to=window, ordered=True)
        parts = shapely.get_parts(vor)
        own = pts_owner[sel]
        if len(parts) != len(own):  # GEOS dropped near-duplicates: fall back to matching by point
            tree = shapely.STRtree(parts)
            hit = tree.query(shapely.points(pts[sel]), predicate="intersects")
            cell_owner = np.full(len(parts), -1)
            cell_owner[hit[1]] = own[hit[0]]
        else:
            cell_owner = own
        wanted = np.isin(cell_owner, members)
        order = np.argsort(cell_owner[wanted], kind="stable")
        co, cg = cell_owner[wanted][order], parts[wanted][order]
        bounds = np.flatnonzero(np.r_[True, co[1:] != co[:-1], True])
        for s, e in itertools.pairwise(bounds):
            try:
                cells[int(co[s])] = shapely.coverage_union_all(cg[s:e])
            except shapely.errors.GEOSException:
                cells[int(co[s])] = overlay(shapely.union_all, cg[s:e])
    return cells


def _clip(i, cell, corridor, polys, owner_tree, streets, study_area):
    """One owner's zone: its cell within its corridor and the study area, minus stop areas and
    other owners, cut at cut lines, keeping the parts that touch it."""
    if cell is None:
        return None
    own = polys[i]
    z = overlay(shapely.intersection, cell, corridor)
    if shapely.is_empty(z):
        return None
    z = overlay(shapely.intersection, z, study_area)
    blockers = []
    for tree, geoms in ((streets.stop_tree, streets.stop), (owner_tree, polys)):
        hits = tree.query(z, predicate="intersects")
        blockers += [geoms[h] for h in hits if geoms is not polys or h != i]
    cuts = streets.cut_tree.query(z, predicate="intersects")
    if len(cuts):
        blockers.append(shapely.buffer(shapely.union_all(streets.cut_lines[cuts]), 0.01, quad_segs=1))
    z = subtract(z, blockers)
    kinds = shapely.get_parts(z)
    kinds = kinds[shapely.get_dimensions(kinds) == 2]
    keep = kinds[shapely.dwithin(kinds, own, 0.05) & (shapely.area(kinds) > 0.05)]
    if len(keep) == 0:
        return None
    return shapely.union_all(keep)
