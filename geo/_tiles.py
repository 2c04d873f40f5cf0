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
        fixed = shapely.make_valid(geoms[i])
        parts = [p for p in shapely.get_parts(fixed) if shapely.get_dimensions(p) == 2]
        out[i] = shapely.union_all(parts) if parts else shapely.Polygon()
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
    union = shapely.union_all(pieces)
    shapely.prepare(union)
    inner = shapely.point_on_surface(pieces)
    if shapely.covers(union, inner).all():
        rest = shapely.difference(geom, union)
        shapely.prepare(rest)
        if not shapely.contains_properly(rest, inner).any():
            return rest
    for p in sorted(pieces, key=shapely.area, reverse=True):
        if shapely.is_empty(geom):
            break
        if shapely.intersects(geom, p):
            geom = shapely.difference(geom, p)
    return geom
