"""Cutting large polygons into grid-sized pieces, so that spatial indexes stay sharp and
local clipping never meets one giant polygon (the same trick as PostGIS ST_Subdivide)."""

from __future__ import annotations

import numpy as np
import shapely


def grid_boxes(bounds, size: float) -> np.ndarray:
    """Square boxes of `size` covering `bounds` (minx, miny, maxx, maxy)."""
    x0, y0, x1, y1 = bounds
    xs = np.arange(np.floor(x0 / size) * size, x1 + size, size)
    ys = np.arange(np.floor(y0 / size) * size, y1 + size, size)
    gx, gy = np.meshgrid(xs[:-1], ys[:-1])
    return shapely.box(gx.ravel(), gy.ravel(), gx.ravel() + size, gy.ravel() + size)


def tile_polygons(polys: np.ndarray, size: float) -> np.ndarray:
    """Polygon pieces of `polys` no larger than a `size` grid cell (parts of MultiPolygons)."""
    polys = shapely.get_parts(polys[~shapely.is_empty(polys)]) if len(polys) else polys
    if len(polys) == 0:
        return np.array([], dtype=object)
    b = shapely.bounds(polys)
    big = ((b[:, 2] - b[:, 0]) > size) | ((b[:, 3] - b[:, 1]) > size)
    out = [polys[~big]]
    for p in polys[big]:
        boxes = grid_boxes(p.bounds, size)
        boxes = boxes[shapely.intersects(p, boxes)]
        pieces = shapely.intersection(p, boxes)
        out.append(shapely.get_parts(pieces[~shapely.is_empty(pieces)]))
    res = np.concatenate(out)
    res = res[shapely.get_dimensions(res) == 2]
    return res


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Valid (Multi)Polygons: repaired with make_valid, keeping only the areal parts. Needed
    after every reprojection, which can fold a thin strip onto itself."""
    geoms = np.asarray(geoms, dtype=object)
    bad = ~shapely.is_valid(geoms) | (shapely.get_type_id(geoms) == 7)
    out = geoms.copy()
    for i in np.flatnonzero(bad):
        # "structure" (shells minus holes) and "linework" (faces rebuilt from all rings) each
        # lose area on some folds: linework was seen to fill a hole that touched its shell
        # after reprojection (+8 %), structure to drop a 0.2 m² spike of a public zone folded
        # by the way back from degrees (a false gap in `zones check`). The repair kept is the
        # one whose area is nearest the ring's own (shoelace) area.
        want = shapely.area(geoms[i])
        best, err = shapely.Polygon(), np.inf
        for method in ("structure", "linework"):
            parts = [p for p in shapely.get_parts(shapely.make_valid(geoms[i], method=method))
                     if shapely.get_dimensions(p) == 2]
            fixed = shapely.union_all(parts) if parts else shapely.Polygon()
            if abs(shapely.area(fixed) - want) < err - 1e-9:
                best, err = fixed, abs(shapely.area(fixed) - want)
        out[i] = best
    return out


#: grid (metres) for the snap-rounding overlay used when floating-point overlay throws
ROBUST_GRID_M = 1e-6


def overlay(op, a, b=None):
    """shapely set operation `op` (union_all when b is None), retried with snap-rounding on a
    1 µm grid when GEOS throws a TopologyException (non-noded intersections were seen on the
    demo city's zones): fixed-precision overlay is robust by construction."""
    try:
        return op(a) if b is None else op(a, b)
    except shapely.errors.GEOSException:
        return op(a, grid_size=ROBUST_GRID_M) if b is None else op(a, b, grid_size=ROBUST_GRID_M)


def nearest_of(p, g, dist):
    """Of (query, geometry, distance) pairs, the nearest geometry of each query (the first of
    equals): what STRtree.query_nearest gives, from a cheaper dwithin query."""
    order = np.lexsort((g, dist, p))
    p, g, dist = p[order], g[order], dist[order]
    first = np.r_[True, p[1:] != p[:-1]][:len(p)]
    return p[first], g[first], dist[first]


def elementwise(op, a, b):
    """`op(a, b)` over arrays in one vectorised call; when GEOS throws on some pair, each pair
    again through `overlay` (snap-rounding for the ones that need it)."""
    try:
        return op(a, b)
    except shapely.errors.GEOSException:
        return np.array([overlay(op, x, y) for x, y in zip(a, b)], dtype=object)


def grouped(func, geoms: np.ndarray, groups: np.ndarray, n: int, width: int = 32) -> np.ndarray:
    """`func` (shapely.union_all or coverage_union_all) of the geometries of each group 0…n-1,
    in vectorised calls over a padded (group, member) table; None for an empty group. Groups
    larger than `width` are reduced in chunks first, so the table stays small."""
    geoms = np.asarray(geoms, dtype=object)
    groups = np.asarray(groups, dtype=np.int64)
    out = np.full(n, None, dtype=object)
    if len(geoms) == 0:
        return out
    order = np.argsort(groups, kind="stable")
    g, x = groups[order], geoms[order]
    pos = np.arange(len(g)) - np.searchsorted(g, g)
    if pos.max() >= width:  # big groups: reduce chunks of `width` members, then the chunks
        key = g * (pos.max() // width + 1) + pos // width
        keys, chunk = np.unique(key, return_inverse=True)
        partial = grouped(func, x, chunk, len(keys), width)
        return grouped(func, partial, keys // (pos.max() // width + 1), n, width)
    table = np.full((n, pos.max() + 1), None, dtype=object)
    table[g, pos] = x
    present = np.unique(g)
    try:
        out[present] = func(table[present], axis=1)
    except shapely.errors.GEOSException:
        out[present] = [overlay(shapely.union_all, [v for v in row if v is not None]) for row in table[present]]
    return out


def subtract_many(geoms: np.ndarray, pieces: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Each of `geoms` minus the `pieces` paired with it (`pairs`: rows of geom index, piece
    index, as STRtree.query gives them), in vectorised calls: the pieces of each geometry are
    unioned, and the difference taken once. The result is checked as `subtract` checks it
    (every piece's inner point in the union, none left inside the result); the few that fail
    go through `subtract` one by one."""
    out = np.asarray(geoms, dtype=object).copy()
    if pairs.size == 0:
        return out
    pieces = np.asarray(pieces, dtype=object)
    union = grouped(shapely.union_all, pieces[pairs[1]], pairs[0], len(out))
    has = np.flatnonzero(union != None)  # noqa: E711 - elementwise on an object array
    out[has] = elementwise(shapely.difference, out[has], union[has])
    inner = shapely.point_on_surface(pieces[pairs[1]])
    shapely.prepare(union[has])
    bad = ~shapely.covers(union[pairs[0]], inner)
    rest = out[pairs[0]]
    shapely.prepare(rest)
    bad |= shapely.contains_properly(rest, inner)
    for i in np.unique(pairs[0][bad]):
        out[i] = subtract(geoms[i], pieces[pairs[1][pairs[0] == i]])
    return out


def subtract(geom, pieces):
    """`geom` minus all `pieces`. GEOS was seen (shapely 2.2, on Nanjing zones) to return a
    valid union of a few dozen touching polygons that silently leaves one of them out, and a
    difference that returns its input whole. So the fast path (one difference with the union)
    is kept only when every piece's inner point lies in the union and none lies inside the
    result; otherwise the pieces are taken away one at a time."""
    pieces = np.array([p for p in pieces if not shapely.is_empty(p)], dtype=object)
    if len(pieces) == 0 or shapely.is_empty(geom):
        return geom
    # a piece much larger than `geom` (a campus parcel against one cell) is cut to the
    # neighbourhood of `geom` first, so that the union stays local
    x0, y0, x1, y1 = shapely.bounds(geom)
    pad = 1.0 + 0.01 * max(x1 - x0, y1 - y0)
    window = shapely.box(x0 - pad, y0 - pad, x1 + pad, y1 + pad)
    pb = shapely.bounds(pieces)
    big = ((pb[:, 2] - pb[:, 0]) * (pb[:, 3] - pb[:, 1])) > 4 * shapely.area(window)
    if big.any():
        pieces[big] = [overlay(shapely.intersection, p, window) for p in pieces[big]]
        pieces = pieces[~shapely.is_empty(pieces)]
        if len(pieces) == 0:
            return geom
    try:  # unions each group of touching pieces apart: ~30 % faster on a cell's zones and footprints
        union = shapely.disjoint_subset_union_all(pieces)
    except shapely.errors.GEOSException:
        union = overlay(shapely.union_all, pieces)
    shapely.prepare(union)
    inner = shapely.point_on_surface(pieces)
    if shapely.covers(union, inner).all():
        rest = overlay(shapely.difference, geom, union)
        shapely.prepare(rest)
        if not shapely.contains_properly(rest, inner).any():
            return rest
    for p in sorted(pieces, key=shapely.area, reverse=True):
        if shapely.is_empty(geom):
            break
        if shapely.intersects(geom, p):
            geom = overlay(shapely.difference, geom, p)
    return geom


def densify(polys: np.ndarray, max_len: float) -> np.ndarray:
    """(Multi)Polygons with points added so that no edge is longer than `max_len`.

    Not shapely.segmentize: GEOS's densifier "repairs" a result it finds invalid with
    buffer(0), and was seen to turn a valid 12,000 m² zone into a 13-point sliver. Here the
    new points lie on the existing edges and nothing else changes. Returns MultiPolygons."""
    polys = np.asarray(polys, dtype=object)
    if len(polys) == 0:
        return polys
    multi = polys.copy()
    single = shapely.get_type_id(polys) != 6
    multi[single] = shapely.multipolygons(polys[single], indices=np.arange(single.sum()))
    _, coords, (ring_off, poly_off, multi_off) = shapely.to_ragged_array(multi)
    n = len(coords)
    ring_len = np.diff(ring_off)
    ring_of = np.repeat(np.arange(len(ring_len)), ring_len)
    nxt = np.minimum(np.arange(n) + 1, n - 1)
    same = np.zeros(n, dtype=bool)
    same[:-1] = ring_of[:-1] == ring_of[1:]
    seg = np.hypot(*(coords[nxt] - coords).T)
    pieces = np.where(same, np.maximum(1, np.ceil(seg / max_len)), 1).astype(np.int64)
    rep = np.repeat(np.arange(n), pieces)
    start = np.repeat(np.cumsum(pieces) - pieces, pieces)
    t = (np.arange(len(rep)) - start) / pieces[rep]
    new = coords[rep] + (coords[nxt[rep]] - coords[rep]) * t[:, None]
    new_ring_off = np.r_[0, np.cumsum(np.bincount(ring_of, weights=pieces, minlength=len(ring_len)))]
    return shapely.from_ragged_array(shapely.GeometryType.MULTIPOLYGON, new,
                                     (new_ring_off.astype(np.int64), poly_off, multi_off))
