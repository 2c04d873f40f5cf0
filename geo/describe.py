"""四至 (the four bounds of a zone in words) and the street names of zones. Metric CRS.

For each side (东/西/南/北) the probe is the zone's outermost boundary point on that side moved
`probe_m` outward; what lies there names the side: a carriageway (the nearest road's name), a
neighbouring zone (its unit), a building (its name), else the nearest road within reach, else
open ground (空地)."""

from __future__ import annotations

import numpy as np
import shapely

SIDES = (("东", 0, 1.0), ("西", 0, -1.0), ("南", 1, -1.0), ("北", 1, 1.0))  # name, axis, sign
UNNAMED_ROAD = "无名道路"
OPEN = "空地"


def _extremes(zones: np.ndarray):
    xy, idx = shapely.get_coordinates(zones, return_index=True)
    n = len(zones)
    out = []
    for _, axis, sign in SIDES:
        val = xy[:, axis] * sign
        best = np.full(n, -np.inf)
        np.maximum.at(best, idx, val)
        pick = np.full(n, -1)
        hit = np.flatnonzero(val == best[idx])
        pick[idx[hit]] = hit  # any one of the extreme vertices
        out.append(xy[pick])
    return out


class _Roads:
    """The centrelines' trees, made once for the four sides: all of them, and the named ones."""

    def __init__(self, centrelines, names):
        self.names = names
        self.any_tree = shapely.STRtree(centrelines)
        self.named = np.flatnonzero(names != None)  # noqa: E711
        self.named_tree = shapely.STRtree(centrelines[self.named]) if len(self.named) else None

    def near(self, points, reach):
        """The nearest named road within `reach` of each point, else 无名道路 if any road is
        there, else None."""
        res = np.full(len(points), None, dtype=object)
        if self.named_tree is not None:
            (p, c), _ = self.named_tree.query_nearest(points, max_distance=reach, return_distance=True,
                                                      all_matches=False)
            res[p] = self.names[self.named[c]]
        rest = np.flatnonzero(res == None)  # noqa: E711 - elementwise on an object array
        if len(rest):  # any road at all there: a box query and a distance, not a nearest search
            hit = self.any_tree.query(points[rest], predicate="dwithin", distance=reach)[0]
            res[rest[np.unique(hit)]] = UNNAMED_ROAD
        return res


def four_bounds(zones: np.ndarray, zone_labels: np.ndarray, carriageway: np.ndarray,
                centrelines: np.ndarray, road_names: np.ndarray, buildings: np.ndarray,
                building_labels: np.ndarray, probe_m: float = 1.5, reach_m: float = 25.0, only=None):
    """(四至 text, streets) for each zone: "东至长江路；西至中央商场；南至…；北至…" and the road
    names found on any side, joined with 、. A neighbouring zone is named by its label; one whose
    label is None (public space) is named by the road there instead. With `only` (indices),
    for those zones alone, every zone still taking part as a neighbour."""
    zones = np.asarray(zones, dtype=object)
    ztree = shapely.STRtree(zones)
    ctree = shapely.STRtree(carriageway)
    btree = shapely.STRtree(buildings)
    roads = _Roads(np.asarray(centrelines, dtype=object), np.asarray(road_names, dtype=object))
    which = np.arange(len(zones)) if only is None else np.asarray(only, dtype=np.int64)
    n = len(which)
    labels = np.empty((n, 4), dtype=object)
    is_road = np.zeros((n, 4), dtype=bool)
    for k, ((_, axis, sign), xy) in enumerate(zip(SIDES, _extremes(zones[which]))):
        step = np.zeros(2)
        step[axis] = sign * probe_m
        probes = shapely.points(xy + step)
        names = roads.near(probes, reach_m)
        side = np.full(n, OPEN, dtype=object)
        roadish = names != None  # noqa: E711 - elementwise on an object array
        side[roadish] = names[roadish]
        is_road[roadish, k] = True
        b = btree.query(probes, predicate="intersects")
        side[b[0]] = [building_labels[j] for j in b[1]]
        is_road[b[0], k] = False
        zz = ztree.query(probes, predicate="intersects")
        other = (which[zz[0]] != zz[1]) & (zone_labels[zz[1]] != None)  # noqa: E711 - public: say the road
        side[zz[0][other]] = zone_labels[zz[1][other]]
        is_road[zz[0][other], k] = False
        cw = ctree.query(probes, predicate="intersects")
        on_cw = np.unique(cw[0])
        side[on_cw] = [names[i] or UNNAMED_ROAD for i in on_cw]
        is_road[on_cw, k] = True
        labels[:, k] = side
    texts, streets = [], []
    for row, road in zip(labels, is_road):
        texts.append("；".join(f"{s}至{lab}" for (s, _, _), lab in zip(SIDES, row)))
        streets.append("、".join(dict.fromkeys(lab for lab, r in zip(row, road) if r and lab != UNNAMED_ROAD))
                       or None)
    return texts, streets
