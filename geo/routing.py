"""Point → zone: who answers for a place. The same code routes one point and a million.

Metric CRS. A point inside a zone is that zone's ("zone"); a point within `tolerance_m` of a
zone but inside none (GPS error at the edge of the covered area) goes to the nearest zone
("nearest"); anything else is left to the territorial fallback (属地兜底, "fallback").
A point on a shared edge goes to the zone listed first (zones are kept disjoint, so this
only decides boundary points)."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import shapely

ZONE, NEAREST, FALLBACK = "zone", "nearest", "fallback"
CHUNK = 50_000  # below this many points one thread is faster than splitting


FORK_MIN = 200_000  # from this many points, forked workers beat threads (see docs/routing.md)
_FORK_STATE: tuple | None = None


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _can_fork() -> bool:
    """Forking is safe only from a process's single Python thread (a command, a benchmark);
    a threaded server routes with threads instead."""
    return ("fork" in mp.get_all_start_methods() and threading.active_count() == 1
            and threading.current_thread() is threading.main_thread())


def _forked_chunk(ab):
    index, x, y, tolerance_m = _FORK_STATE
    return index._chunk(x[ab[0]:ab[1]], y[ab[0]:ab[1]], tolerance_m)


class ZoneIndex:
    """A spatial index over zone polygons (metric CRS), built once and queried many times."""

    def __init__(self, zones: np.ndarray, threads: int | None = None):
        self.zones = np.asarray(zones, dtype=object)
        self.tree = shapely.STRtree(self.zones)
        self.threads = threads or default_threads()

    def _chunk(self, x: np.ndarray, y: np.ndarray, tolerance_m: float):
        pts = shapely.points(x, y)
        n = len(pts)
        idx = np.full(n, -1, dtype=np.int64)
        dist = np.full(n, np.inf)
        near = np.zeros(n, dtype=bool)
        if n >= len(self.zones) // 2:
            # many points: index the points and ask each (prepared) zone which it holds; far
            # cheaper than asking the zone tree once per point
            z, p = shapely.STRtree(pts).query(self.zones, predicate="intersects")
        else:
            p, z = self.tree.query(pts, predicate="intersects")
        # one zone per point: the first listed (zones are disjoint; this decides shared edges)
        first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, p, z)
        hit = first < np.iinfo(np.int64).max
        idx[hit] = first[hit]
        dist[hit] = 0.0
        rest = np.flatnonzero(idx < 0)
        if len(rest) and tolerance_m > 0:
            # nearest zone within reach: candidates by distance-within, then the closest
            pp, zz = self.tree.query(pts[rest], predicate="dwithin", distance=tolerance_m)
            if len(pp):
                d = shapely.distance(pts[rest][pp], self.zones[zz])
                order = np.lexsort((zz, d, pp))
                keep = order[np.unique(pp[order], return_index=True)[1]]
                k = rest[pp[keep]]
                idx[k], dist[k], near[k] = zz[keep], d[keep], True
        return idx, dist, near

    def route_point(self, x: float, y: float, tolerance_m: float = 5.0) -> tuple[int, str, float]:
        """`route` for one point without array overhead (a web request); same answers."""
        if len(self.zones) == 0:
            return -1, FALLBACK, np.inf
        p = shapely.Point(x, y)
        hits = self.tree.query(p, predicate="intersects")
        if len(hits):
            return int(hits.min()), ZONE, 0.0
        if tolerance_m > 0:
            cand = self.tree.query(p, predicate="dwithin", distance=tolerance_m)
            if len(cand):
                d = shapely.distance(p, self.zones[cand])
                k = np.lexsort((cand, d))[0]
                return int(cand[k]), NEAREST, float(d[k])
        return -1, FALLBACK, np.inf

    def route(self, x: np.ndarray, y: np.ndarray, tolerance_m: float = 5.0):
        """(zone index or -1, method, distance in metres) for each point (x, y). Large inputs
        are split over `threads` workers: forked processes when the caller is single-threaded
        (making a million shapely points holds the GIL, so only processes share that out),
        else threads (shapely releases the GIL while it queries)."""
        global _FORK_STATE
        x, y = np.asarray(x, float), np.asarray(y, float)
        n = len(x)
        if len(self.zones) == 0 or n == 0:
            return np.full(n, -1, dtype=np.int64), np.full(n, FALLBACK, dtype=object), np.full(n, np.inf)
        parts = min(self.threads, max(1, n // CHUNK))
        if parts == 1:
            idx, dist, near = self._chunk(x, y, tolerance_m)
        else:
            bounds = np.linspace(0, n, parts + 1).astype(int)
            spans = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
            if n >= FORK_MIN and _can_fork():
                _FORK_STATE = (self, x, y, tolerance_m)
                try:
                    with mp.get_context("fork").Pool(parts) as pool:
                        done = pool.map(_forked_chunk, spans)
                finally:
                    _FORK_STATE = None
            else:
                with ThreadPoolExecutor(parts) as pool:
                    done = list(pool.map(lambda ab: self._chunk(x[ab[0]:ab[1]], y[ab[0]:ab[1]], tolerance_m),
                                         spans))
            idx, dist, near = (np.concatenate(c) for c in zip(*done))
        method = np.full(n, FALLBACK, dtype=object)  # filled by mask: string arrays cost more
        method[idx >= 0] = ZONE
        method[near] = NEAREST
        return idx, method, dist
