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

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from ._tiles import elementwise, grouped, nearest_of, polygonal, subtract, subtract_many
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
    zones: gpd.GeoDataFrame                  # owner (row of owners), kind, frontage_len_m, depth_m, geometry
    set_back: np.ndarray                     # owners near a street but beyond max depth
    in_parcels: np.ndarray                   # buildings that belong to a parcel


def resolve_owners(owners: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Owners with parcel overlaps resolved and buildings inside parcels removed.

    `owners` has columns `kind` (site/unit/building) and geometry (metric). Returns the kept
    owners (index preserved) and the index labels of buildings that fell inside a parcel."""
    geoms = polygonal(owners.geometry.to_numpy())
    kinds = owners["kind"].to_numpy()
    rank = np.array([OWNER_KINDS.index(k) for k in kinds], dtype=int)
    parcel = rank < OWNER_KINDS.index("building")
    order = np.lexsort((shapely.area(geoms), rank))
    out = geoms.copy()
    tree_geoms: list = []
    for i in order[parcel[order]]:  # parcels only: a few per district
        g = out[i]
        if tree_geoms:
            tree = shapely.STRtree(tree_geoms)
            g = subtract(g, [tree_geoms[h] for h in tree.query(g, predicate="intersects")])
        out[i] = g
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
            keep = np.isin(pairs[0], partly)
            out[b_idx[partly]] = subtract_many(geoms[b_idx], np.array(tree_geoms, dtype=object),
                                               pairs[:, keep])[partly]
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
    p, g = tree.query(starts, predicate="dwithin", distance=depth)
    dist = shapely.distance(starts[p], geoms[g])
    if not every:  # only the nearest (every one in reach: a far street may be the visible one)
        p, g, dist = nearest_of(p, g, dist)
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


def _runs(facing: np.ndarray, ring: np.ndarray):
    """Runs of consecutive facing pieces along each ring, which may wrap around the ring's
    end: (piece indices in order along the ring, run number of each) for rings that face in
    part, and the rings whose every piece faces."""
    n = len(ring)
    first = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    last = np.r_[first[1:], n] - 1
    ring_pos = np.cumsum(np.r_[True, ring[1:] != ring[:-1]]) - 1  # ring number 0.. per piece
    prev = np.arange(n) - 1
    prev[first] = last
    whole_ring = np.bincount(ring_pos, weights=~facing, minlength=len(first)) == 0
    starts = facing & ~facing[prev] & ~whole_ring[ring_pos]
    count = np.cumsum(starts)
    before = np.r_[0, count][first][ring_pos]  # starts in earlier rings
    run = count - before  # 1.. within the ring; 0 before the ring's first start
    n_runs = np.bincount(ring_pos, weights=starts, minlength=len(first)).astype(np.int64)
    member = facing & ~whole_ring[ring_pos]
    wrapped = member & (run == 0)
    run = np.where(wrapped, n_runs[ring_pos], run)  # a wrapped run goes on at the ring's start
    idx = np.flatnonzero(member)
    order = np.lexsort((np.arange(n)[idx], wrapped[idx], run[idx], ring_pos[idx]))
    idx = idx[order]
    key = ring_pos[idx] * (n + 1) + run[idx]
    run_id = np.cumsum(np.r_[True, key[1:] != key[:-1]]) - 1 if len(idx) else idx
    return idx, run_id, ring[first[whole_ring]]


def _chain_lines(idx, run_id, a, b, lateral):
    """One line per run of facing pieces, prolonged by `lateral` at both ends."""
    n_runs = int(run_id[-1]) + 1
    head = np.flatnonzero(np.r_[True, run_id[1:] != run_id[:-1]])
    tail = np.r_[head[1:], len(idx)] - 1
    pa, pb = a[idx], b[idx]
    d0 = pa[head] - pb[head]
    d1 = pb[tail] - pa[tail]
    d0 /= np.maximum(np.hypot(*d0.T), 1e-9)[:, None]
    d1 /= np.maximum(np.hypot(*d1.T), 1e-9)[:, None]
    pts = [pa[head] + d0 * lateral, pa, pb[tail], pb[tail] + d1 * lateral]
    runs = [np.arange(n_runs), run_id, np.arange(n_runs), np.arange(n_runs)]
    step = [0, 1, 2, 3]
    keys = np.concatenate([np.full(len(r), k) for k, r in zip(step, runs)])
    order = np.lexsort((keys, np.concatenate(runs)))
    coords = np.concatenate(pts)[order]
    which = np.concatenate(runs)[order]
    if lateral <= 0:  # no prolongation: drop the repeated end points
        keep = np.concatenate([np.full(len(r), k in (1, 2)) for k, r in zip(step, runs)])[order]
        coords, which = coords[keep], which[keep]
    return shapely.linestrings(coords, indices=which)


def frontage_zones(owners: gpd.GeoDataFrame, streets: Streets, profile: Profile, study_area,
                   sample_m: float = 2.0, only=None) -> FrontageResult:
    """Frontage (and parcel) zones for `owners` (columns kind, geometry; metric CRS) under
    `profile`, inside the polygon `study_area`. Zones carry the row label of their owner.

    With `only` (row labels, e.g. the owners of one tile), zones are drawn for those owners
    alone; every owner still takes part as a neighbour (Voronoi samples, blocking). Everything
    is done in vectorised shapely calls over all owners at once: no Python loop runs over
    buildings."""
    owners, in_parcels = resolve_owners(owners)
    polys = owners.geometry.to_numpy()
    kinds = owners["kind"].to_numpy()
    n_owners = len(owners)
    depth, lateral = profile.max_depth_m, profile.lateral_m
    candidate = np.ones(n_owners, dtype=bool) if only is None else owners.index.isin(only)
    a, b, ring, owner, length, _ = _pieces(polys, sample_m)
    own_piece = candidate[owner]
    mid = (a + b) / 2
    unit = (b - a) / length[:, None]
    normal = np.column_stack([unit[:, 1], -unit[:, 0]])  # right of a CCW ring = outside
    sel = np.flatnonzero(own_piece)
    start = mid[sel] + normal[sel] * 0.05
    starts = shapely.points(start)
    rays = shapely.linestrings(np.stack([start, mid[sel] + normal[sel] * depth], axis=1))
    n = len(sel)
    owner_tree = shapely.STRtree(polys)
    d_stop = _nearest_hit(starts, rays, streets.stop_tree, streets.stop, n)
    d_cut = _nearest_hit(starts, rays, streets.cut_tree, streets.cut_lines, n)
    d_target = np.minimum(d_stop, d_cut)
    d_owner = np.full(n, np.inf)  # asked only of the rays that reach a target at all
    aim = np.flatnonzero(np.isfinite(d_target))
    d_owner[aim] = _nearest_hit(starts[aim], rays[aim], owner_tree, polys, len(aim))
    facing_sel = np.isfinite(d_target) & (d_target < d_owner)
    # a side oblique to the street misses it along its normal but sees it at an angle: also
    # facing when the straight line to the nearest stop area or cut line leaves the facade
    # outward and meets no owner
    for tree, geoms, every in ((streets.stop_tree, streets.stop, False),
                               (streets.cut_tree, streets.cut_lines, True)):
        d_near = _seen(starts, normal[sel], tree, geoms, owner_tree, depth, every=every)
        facing_sel |= np.isfinite(d_near)
        d_target = np.minimum(d_target, d_near)
    facing = np.zeros(len(a), dtype=bool)
    facing[sel] = facing_sel
    depth_of = np.full(len(a), np.inf)
    depth_of[sel] = d_target

    # owners that face no street within max depth but have one a little farther: set back
    facing_owner = np.zeros(n_owners, dtype=bool)
    facing_owner[owner[facing]] = True
    near = np.zeros(n_owners, dtype=bool)
    if len(streets.stop):
        pairs = streets.stop_tree.query(polys[candidate], predicate="dwithin", distance=2 * depth)
        near[np.flatnonzero(candidate)[pairs[0]]] = True
    set_back = owners.index[near & ~facing_owner & (kinds == "building") & candidate].to_numpy()

    # which owners take a corridor all around
    all_sides = kinds != "building"
    if profile.no_neighbour == "all_sides":
        pairs = owner_tree.query(polys, predicate="dwithin", distance=profile.neighbour_m)
        has_neighbour = np.zeros(n_owners, dtype=bool)
        has_neighbour[pairs[0][pairs[0] != pairs[1]]] = True
        all_sides |= ~has_neighbour

    corridors = _corridors(facing, ring, owner, a, b, polys, all_sides & facing_owner, depth, lateral)
    active = np.flatnonzero(facing_owner & candidate)
    cells = _cells(polys, owner_tree, a, owner, active, corridors, sample_m)
    zones = _clip(active, cells[active], corridors[active], polys, owner_tree, streets, study_area)

    # a parcel is its own zone (卫生责任区) even where it faces no street
    lone = np.flatnonzero((kinds != "building") & ~facing_owner & candidate)
    if len(lone):
        base = elementwise(shapely.intersection, polys[lone], np.full(len(lone), study_area, dtype=object))
        pairs = streets.stop_tree.query(base, predicate="intersects")
        base = subtract_many(base, streets.stop, pairs)
        ok = ~shapely.is_empty(base) & (shapely.area(base) > 0.05)
        active = np.r_[active, lone[ok]]
        zones = np.concatenate([zones, base[ok]])
    got = zones != None  # noqa: E711 - elementwise on an object array
    idx, zones = active[got], zones[got]
    facing_len = np.bincount(owner[facing], weights=length[facing], minlength=n_owners)
    med = _median_by(owner[facing], depth_of[facing], n_owners)
    zframe = gpd.GeoDataFrame({"owner": owners.index[idx], "kind": kinds[idx],
                               "frontage_len_m": facing_len[idx], "depth_m": med[idx]},
                              geometry=zones, crs=owners.crs)
    return FrontageResult(zframe, set_back, in_parcels)


def _median_by(groups, values, n):
    """Median of `values` per group 0…n-1 (NaN for a group without values)."""
    out = np.full(n, np.nan)
    if len(values) == 0:
        return out
    order = np.lexsort((values, groups))
    g, v = groups[order], values[order]
    first = np.searchsorted(g, np.arange(n))
    count = np.bincount(g, minlength=n)
    has = count > 0
    lo = first[has] + (count[has] - 1) // 2
    hi = first[has] + count[has] // 2
    out[has] = (v[lo] + v[hi]) / 2
    return out


#: mitre limit of corridor corners (a corner's wedge reaches at most this × the depth)
MITRE = 3.0


def _corridors(facing, ring, owner, a, b, polys, all_sides, depth, lateral):
    """The area in front of each owner's street-facing sides (an array over owners; None for
    an owner that faces no street)."""
    out = np.full(len(polys), None, dtype=object)
    if not facing.any():
        return out
    idx, run_id, whole = _runs(facing, ring)
    ring_owner = np.zeros(int(ring.max()) + 1 if len(ring) else 0, dtype=np.int64)
    ring_owner[ring] = owner
    around = all_sides.copy()
    if len(whole):
        around[ring_owner[whole]] = True
    if len(idx):
        run_owner = owner[idx[np.flatnonzero(np.r_[True, run_id[1:] != run_id[:-1]])]]
        lines = _chain_lines(idx, run_id, a, b, lateral)
        who, inv = np.unique(run_owner, return_inverse=True)
        multi = shapely.multilinestrings(lines, indices=inv)
        out[who] = shapely.buffer(multi, -depth, single_sided=True, join_style="mitre", mitre_limit=MITRE)
    rounds = np.flatnonzero(around & (np.bincount(owner[facing], minlength=len(polys)) > 0))
    if len(rounds):  # all around, with the prolonged chains where it has some
        ring_buf = shapely.buffer(polys[rounds], depth, join_style="mitre", mitre_limit=MITRE)
        had = out[rounds] != None  # noqa: E711 - elementwise on an object array
        ring_buf[had] = elementwise(shapely.union, ring_buf[had], out[rounds][had])
        out[rounds] = ring_buf
    return out


#: a sample this near another owner's outline is on it (a shared wall), not inside it
SHARED_M = 0.05


def _inside_another(polys, owner_tree, pts, pts_owner):
    """Which samples lie inside another owner's outline (deeper than SHARED_M) where the two
    outlines only overlap, as buildings drawn over each other at a corner do: such a
    sample's Voronoi cell reaches out between the other owner's samples as a thin wedge that
    no corridor covers (a public sliver). An owner mostly (at least half its area) inside
    the other keeps its samples: a shop drawn inside a mall answers for its own frontage.
    Decided on the two outlines alone, so every tile decides alike."""
    pp = shapely.points(pts)
    hit = owner_tree.query(pp, predicate="within")
    hit = hit[:, hit[1] != pts_owner[hit[0]]]
    if not hit.size:
        return np.zeros(len(pts), dtype=bool)
    hit = hit[:, shapely.distance(shapely.boundary(polys[hit[1]]), pp[hit[0]]) > SHARED_M]
    a, b = pts_owner[hit[0]], hit[1]
    pair, inv = np.unique(np.column_stack([a, b]), axis=0, return_inverse=True)
    share = shapely.area(elementwise(shapely.intersection, polys[pair[:, 0]], polys[pair[:, 1]])) / \
        np.maximum(shapely.area(polys[pair[:, 0]]), 1e-9)
    out = np.zeros(len(pts), dtype=bool)
    out[hit[0][share[inv.ravel()] < 0.5]] = True
    return out


def _cells(polys, owner_tree, samples, sample_owner, active, corridors, sample_m):
    """Voronoi cells of outline samples dissolved per owner (an array over owners), for the
    active owners: one diagram over every sample near their corridors. Only the cells that
    meet their own owner's corridor are dissolved: the others cannot add to its zone."""
    out = np.full(len(corridors), None, dtype=object)
    if len(active) == 0:
        return out
    # one sample per place; a place on the outlines of two owners (a shared corner, a party
    # wall) is neither's: their samples on either side then split it on the bisector
    # (as complex numbers: np.unique over rows sorts them as records, 5× slower)
    key = np.ascontiguousarray(np.round(samples, 2)).view(np.complex128).ravel()
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    lo = np.full(len(first), np.iinfo(np.int64).max)
    hi = np.full(len(first), -1)
    np.minimum.at(lo, inv.ravel(), sample_owner)
    np.maximum.at(hi, inv.ravel(), sample_owner)
    first = np.sort(first[lo == hi])
    first = first[~_inside_another(polys, owner_tree, samples[first], sample_owner[first])]
    pts, pts_owner = samples[first], sample_owner[first]
    cor = corridors[active]
    # a point of an owner's corridor has its nearest own sample at most this far (its
    # corridor's farthest vertex from its outline, and a sample step): every sample that
    # near the corridor takes part (then no sample left out can be nearer to a corridor point
    # than the one the diagram gives it), and the diagram reaches that far beyond them
    verts, vi = shapely.get_coordinates(cor, return_index=True)
    dist = shapely.distance(shapely.points(verts), polys[active][vi])
    margin = np.zeros(len(active))
    np.maximum.at(margin, vi, dist)
    margin += 2 * sample_m
    cb = shapely.bounds(cor)
    lo, hi = cb[:, :2] - margin[:, None], cb[:, 2:] + margin[:, None]
    sel = _in_boxes(pts, lo, hi)
    window = shapely.box(*lo.min(axis=0), *hi.max(axis=0))
    vor = shapely.voronoi_polygons(shapely.multipoints(pts[sel]), extend_to=window, ordered=True)
    parts = shapely.get_parts(vor)
    own = pts_owner[sel]
    if len(parts) != len(own):  # GEOS dropped near-duplicates: fall back to matching by point
        hit = shapely.STRtree(parts).query(shapely.points(pts[sel]), predicate="intersects")
        cell_owner = np.full(len(parts), -1)
        cell_owner[hit[1]] = own[hit[0]]
    else:
        cell_owner = own
    is_active = np.zeros(len(corridors) + 1, dtype=bool)
    is_active[active] = True
    mine = np.flatnonzero(is_active[cell_owner])
    shapely.prepare(cor)
    mine = mine[shapely.intersects(corridors[cell_owner[mine]], parts[mine])]
    out[:] = grouped(shapely.coverage_union_all, parts[mine], cell_owner[mine], len(corridors))
    return out


def _in_boxes(pts: np.ndarray, lo: np.ndarray, hi: np.ndarray, grid_m: float = 10.0) -> np.ndarray:
    """Which points lie in (or within `grid_m` of) any of the boxes lo–hi: the boxes are
    counted onto a grid by a 2-D running sum, and a point is in where its grid cell is."""
    origin = lo.min(axis=0)
    i0 = np.floor((lo - origin) / grid_m).astype(np.int64)
    i1 = np.floor((hi - origin) / grid_m).astype(np.int64)
    nx, ny = i1.max(axis=0) + 2
    count = np.zeros((ny, nx), dtype=np.int32)
    for (ox, oy), sign in (((i0[:, 0], i0[:, 1]), 1), ((i1[:, 0] + 1, i0[:, 1]), -1),
                           ((i0[:, 0], i1[:, 1] + 1), -1), ((i1[:, 0] + 1, i1[:, 1] + 1), 1)):
        np.add.at(count, (oy, ox), sign)
    covered = count.cumsum(axis=0).cumsum(axis=1) > 0
    ij = np.floor((pts - origin) / grid_m).astype(np.int64)
    ok = (ij[:, 0] >= 0) & (ij[:, 1] >= 0) & (ij[:, 0] < nx) & (ij[:, 1] < ny)
    out = np.zeros(len(pts), dtype=bool)
    out[ok] = covered[ij[ok, 1], ij[ok, 0]]
    return out


def _clip(active, cells, corridors, polys, owner_tree, streets, study_area):
    """The active owners' zones: each cell within its corridor and the study area, minus stop
    areas and other owners, cut at cut lines, keeping the parts that touch the owner (None
    where nothing is left)."""
    out = np.full(len(active), None, dtype=object)
    ok = np.flatnonzero(cells != None)  # noqa: E711 - elementwise on an object array
    if len(ok) == 0:
        return out
    z = elementwise(shapely.intersection, cells[ok], corridors[ok])
    shapely.prepare(study_area)
    out_of = ~shapely.contains_properly(study_area, z)
    if out_of.any():
        z[out_of] = elementwise(shapely.intersection, z[out_of], np.full(out_of.sum(), study_area, dtype=object))
    cut_pieces = shapely.buffer(streets.cut_lines, 0.01, quad_segs=1)
    blockers = np.concatenate([streets.stop, polys, cut_pieces])
    off_owner, off_cut = len(streets.stop), len(streets.stop) + len(polys)
    pairs = [streets.stop_tree.query(z, predicate="intersects")]
    op = owner_tree.query(z, predicate="intersects")
    pairs.append(np.vstack([op[0], op[1] + off_owner])[:, op[1] != active[ok][op[0]]])
    cp = streets.cut_tree.query(z, predicate="intersects")
    pairs.append(np.vstack([cp[0], cp[1] + off_cut]))
    z = subtract_many(z, blockers, np.hstack(pairs))
    parts, pi = shapely.get_parts(z, return_index=True)
    poly = shapely.get_dimensions(parts) == 2
    parts, pi = parts[poly], pi[poly]
    keep = shapely.dwithin(parts, polys[active[ok][pi]], 0.05) & (shapely.area(parts) > 0.05)
    parts, pi = parts[keep], pi[keep]
    single = np.bincount(pi, minlength=len(ok)) == 1
    one = single[pi]
    res = np.full(len(ok), None, dtype=object)
    res[pi[one]] = parts[one]
    if (~one).any():
        who, inv = np.unique(pi[~one], return_inverse=True)
        res[who] = shapely.multipolygons(parts[~one], indices=inv)
    out[ok] = res
    return out
