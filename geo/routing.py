"""Point → zone: who answers for a place. The same code routes one point and a million.

Metric CRS. A point inside a zone is that zone's ("zone"); a point within `tolerance_m` of a
zone but inside none (GPS error at the edge of the covered area) goes to the nearest zone
("nearest"); anything else is left to the territorial fallback (属地兜底, "fallback").
A point on a shared edge goes to the zone listed first (zones are kept disjoint, so this
only decides boundary points)."""

from __future__ import annotations

import numpy as np
import shapely

ZONE, NEAREST, FALLBACK = "zone", "nearest", "fallback"


class ZoneIndex:
    """A spatial index over zone polygons (metric CRS), built once and queried many times."""

    def __init__(self, zones: np.ndarray):
        self.zones = np.asarray(zones, dtype=object)
        self.tree = shapely.STRtree(self.zones)

    def route(self, x: np.ndarray, y: np.ndarray, tolerance_m: float = 5.0):
        """(zone index or -1, method, distance in metres) for each point (x, y)."""
        pts = shapely.points(np.asarray(x, float), np.asarray(y, float))
        n = len(pts)
        idx = np.full(n, -1, dtype=np.int64)
        dist = np.full(n, np.inf)
        method = np.full(n, FALLBACK, dtype=object)
        if len(self.zones) == 0 or n == 0:
            return idx, method, dist
        p, z = self.tree.query(pts, predicate="intersects")
        first = np.unique(p, return_index=True)[1]  # one zone per point: the first listed
        idx[p[first]] = z[first]
        dist[p[first]] = 0.0
        method[p[first]] = ZONE
        rest = np.flatnonzero(idx < 0)
        if len(rest) and tolerance_m > 0:
            (pp, zz), d = self.tree.query_nearest(pts[rest], max_distance=tolerance_m, return_distance=True,
                                                  all_matches=False)
            idx[rest[pp]] = zz
            dist[rest[pp]] = d
            method[rest[pp]] = NEAREST
        return idx, method, dist
