"""Routing reports to the party that answers for the place, over the zones in a store.

`Router` loads the zones in force (optionally as of a date) and their units once; `route`
takes WGS 84 (or GCJ-02 / BD-09 / CGCS2000) longitude/latitude arrays and answers, for each
point, the zone code, kind, version, unit and how it was found: "zone" (inside it), "nearest"
(within a few metres outside every zone: GPS error), "building" (inside a building footprint,
which no zone covers: the nearest zone of an owner, within 60 m), "category" (a category rule
of rules/workflow.toml: a construction report near a site goes to the site's unit, road
damage to its department) or "fallback" (属地兜底, the street office)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import shapely

from geo._tiles import polygonal
from geo.crs import metric_crs, reproject, to_wgs84, transformer
from geo.routing import FALLBACK, ZoneIndex

from .errors import InputError
from .store import Store
from .workflow import CategoryRule, Workflow
from .zones import FALLBACK as FALLBACK_UNITS
from .zones import current

STREET_OFFICE = FALLBACK_UNITS["street"]
BUILDING = "building"  # inside a footprint: the nearest zone of an owner
BUILDING_REACH_M = 60.0
CATEGORY = "category"


class Router:
    """`allow_empty`: with no zones in force every point falls back (a city importing its
    report history before drawing zones); otherwise that is an error."""

    def __init__(self, store: Store, as_of: dt.date | None = None, tolerance_m: float = 5.0,
                 rules: tuple[CategoryRule, ...] | None = None, allow_empty: bool = False):
        zones = current(store.read("zones"), as_of)
        self.rules = Workflow.load().category_rules if rules is None else rules
        units = store.read("units")
        self.unit_names = dict(zip(units["unit_id"], units["name"]))
        self.unit_names.update({r.unit_id: r.unit_name for r in self.rules if r.unit_id})
        self.tolerance_m = tolerance_m
        self._kind_trees: dict[str, shapely.STRtree] = {}
        self._load_grid(store, units)
        self.empty = zones.empty
        if zones.empty and not allow_empty:
            raise InputError("there are no zones in force to route to: run `zonemap zones generate` first")
        if zones.empty:
            return
        x0, y0, x1, y1 = zones.total_bounds
        self.metric = metric_crs((x0 + x1) / 2, (y0 + y1) / 2)
        self.zones = zones.reset_index(drop=True)
        # reprojected with the process's cached transformer: to_crs makes a new one, ~0.1 s
        self.index = ZoneIndex(reproject(self.zones.geometry.to_numpy(), "EPSG:4326", self.metric))
        self._to_metric = transformer("EPSG:4326", self.metric)
        # the zones as stored (lon/lat): a point inside one needs no reprojection at all
        self._lonlat = ZoneIndex(self.zones.geometry.to_numpy())
        # the zones' attributes as plain arrays: picking from them costs nothing per request
        self._cols = {c: self.zones[c].to_numpy(dtype=object) for c in ("code", "kind", "version", "primary_unit")}
        # a report placed inside a building goes to the nearest zone of an owner, not public space
        self.footprints = shapely.STRtree(polygonal(reproject(
            store.read("buildings", bbox=(x0, y0, x1, y1)).geometry.to_numpy(), "EPSG:4326", self.metric)))
        owned = np.flatnonzero((self.zones["kind"] != "public").to_numpy())
        self.owned = owned
        self.owned_tree = shapely.STRtree(self.index.zones[owned])

    def _load_grid(self, store: Store, units) -> None:
        """The unit grid for 属地兜底: a point no zone answers for goes to its grid cell's
        community (社区) or, failing that, its street office (街道), when a unit of that name
        exists; else to the generic street office."""
        grid = store.read("grid")
        self._grid = None
        if grid.empty:
            return
        names = units["name"].value_counts()
        by_name = {n: u for n, u in zip(units["name"], units["unit_id"]) if names.get(n) == 1}
        self._grid_codes = grid["code"].to_numpy(dtype=object)
        self._grid_units = np.array([by_name.get(c) or by_name.get(s) for c, s in
                                     zip(grid["community"], grid["street"])], dtype=object)
        self._grid = ZoneIndex(grid.geometry.to_numpy())  # lon/lat: only "which cell holds it"

    def route(self, lon, lat, crs: str = "wgs84", category=None) -> pd.DataFrame:
        """One row per point; `category` (one code, or one per point) applies the rules."""
        return pd.DataFrame(self.route_arrays(lon, lat, crs, category))

    def route_one(self, lon: float, lat: float, crs: str = "wgs84", category=None) -> dict:
        """The same routing for a single point, as a dict of plain values (the web API).
        Without a category it takes a scalar path (ZoneIndex.route_point), which a test
        holds to the same answers as `route`; with one, the category rules' array path."""
        if category is not None or self.empty or self._grid is not None:
            return {k: (v[0].item() if isinstance(v[0], np.generic) else v[0])
                    for k, v in self.route_arrays([lon], [lat], crs, category).items()}
        if not (math.isfinite(lon) and math.isfinite(lat) and abs(lon) <= 180 and abs(lat) <= 90):
            raise InputError(f"point 1: ({lon}, {lat}) is not a longitude/latitude (did you swap them?)")
        if crs in ("wgs84", "cgcs2000"):
            wlon, wlat = float(lon), float(lat)
        else:
            a, b = to_wgs84(np.array([lon], float), np.array([lat], float), crs)
            wlon, wlat = float(a[0]), float(b[0])
        i, method, dist = self._lonlat.route_point(wlon, wlat, 0.0)  # inside a zone: no metric work
        if i < 0:
            mx, my = self._to_metric.transform(wlon, wlat)
            i, method, dist = self.index.route_point(mx, my, self.tolerance_m)
        if i < 0 and len(self.owned):
            p = shapely.Point(mx, my)
            if len(self.footprints.query(p, predicate="within")):
                z, d = self.owned_tree.query_nearest(p, max_distance=BUILDING_REACH_M, return_distance=True,
                                                     all_matches=False)  # one geometry in: 1-D answers
                if len(z):
                    i, dist, method = int(self.owned[z[0]]), float(d[0]), BUILDING
        c = self._cols
        unit = c["primary_unit"][i] if i >= 0 else STREET_OFFICE["unit_id"]
        version = c["version"][i] if i >= 0 else None
        return {"lon_wgs84": round(wlon, 7), "lat_wgs84": round(wlat, 7),
                "zone_code": c["code"][i] if i >= 0 else None, "zone_kind": c["kind"][i] if i >= 0 else None,
                "zone_version": version.item() if isinstance(version, np.generic) else version,
                "unit_id": unit, "unit_name": self.unit_names.get(unit, STREET_OFFICE["name"]),
                "method": method, "distance_m": round(dist, 2) if math.isfinite(dist) else None,
                "grid_code": None}

    def route_arrays(self, lon, lat, crs: str = "wgs84", category=None) -> dict[str, np.ndarray]:
        lon, lat = np.atleast_1d(np.asarray(lon, float)), np.atleast_1d(np.asarray(lat, float))
        bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"point {i + 1}: ({lon[i]}, {lat[i]}) is not a longitude/latitude "
                             "(did you swap them?)")
        wlon, wlat = to_wgs84(lon, lat, crs)
        cats = None if category is None else np.full(len(lon), category, dtype=object) \
            if np.isscalar(category) else np.asarray(category, dtype=object)
        if self.empty:
            n = len(lon)
            idx, method, dist = np.full(n, -1), np.full(n, FALLBACK, dtype=object), np.full(n, np.inf)
            return self._answer(wlon, wlat, idx, method, dist, self._by_department(cats, method))
        mx, my = self._to_metric.transform(wlon, wlat)
        mx, my = np.asarray(mx, float), np.asarray(my, float)
        idx, method, dist = self.index.route(mx, my, self.tolerance_m)
        rest = np.flatnonzero(idx < 0)
        if len(rest) and len(self.owned):
            pts = shapely.points(mx[rest], my[rest])
            inside = np.unique(self.footprints.query(pts, predicate="within")[0])
            if len(inside):
                (p, z), d = self.owned_tree.query_nearest(pts[inside], max_distance=BUILDING_REACH_M,
                                                          return_distance=True, all_matches=False)
                k = rest[inside[p]]
                idx[k], dist[k], method[k] = self.owned[z], d, BUILDING
        if cats is not None:
            self._near_kind(shapely.points(mx, my), cats, idx, method, dist)
        return self._answer(wlon, wlat, idx, method, dist, self._by_department(cats, method))

    def _near_kind(self, pts, cats, idx, method, dist) -> None:
        """Rules like "08xxx within 50 m of a site → the site's unit": the nearest zone of
        that kind within reach takes the point over from whatever held it."""
        for rule in self.rules if cats is not None else ():
            if not rule.near_kind:
                continue
            hit = np.flatnonzero([rule.matches(c) for c in cats])
            kind = np.flatnonzero((self.zones["kind"] == rule.near_kind).to_numpy())
            if not len(hit) or not len(kind):
                continue
            if rule.near_kind not in self._kind_trees:
                self._kind_trees[rule.near_kind] = shapely.STRtree(self.index.zones[kind])
            (p, z), d = self._kind_trees[rule.near_kind].query_nearest(
                pts[hit], max_distance=rule.within_m, return_distance=True, all_matches=False)
            k = hit[p]
            idx[k], dist[k], method[k] = kind[z], d, CATEGORY

    def _by_department(self, cats, method) -> np.ndarray:
        """unit_id of a department rule per point (None where none applies)."""
        unit = np.full(len(method), None, dtype=object)
        for rule in self.rules if cats is not None else ():
            if rule.unit_id:
                hit = np.array([unit[i] is None and rule.matches(c) for i, c in enumerate(cats)], bool)
                unit[hit] = rule.unit_id
                method[hit] = CATEGORY
        return unit

    def _answer(self, wlon, wlat, idx, method, dist, dept) -> dict[str, np.ndarray]:
        hit = idx >= 0
        if self.empty:
            codes = kinds = versions = np.full(len(idx), None, dtype=object)
            unit = np.full(len(idx), STREET_OFFICE["unit_id"], dtype=object)
        else:
            pick = np.where(hit, idx, 0)
            codes = np.where(hit, self._cols["code"][pick], None)
            kinds = np.where(hit, self._cols["kind"][pick], None)
            versions = np.where(hit, self._cols["version"][pick], None)
            unit = np.where(hit, self._cols["primary_unit"][pick], STREET_OFFICE["unit_id"])
        unit = np.where(dept != None, dept, unit)  # noqa: E711 - elementwise
        grid_code = np.full(len(idx), None, dtype=object)
        if self._grid is not None:
            cell = self._grid.route(wlon, wlat, 0.0)[0]
            in_grid = cell >= 0
            grid_code[in_grid] = self._grid_codes[cell[in_grid]]
            office = np.full(len(idx), None, dtype=object)
            office[in_grid] = self._grid_units[cell[in_grid]]
            fall = ~hit & (dept == None) & (office != None)  # noqa: E711 - elementwise
            unit = np.where(fall, office, unit)
        return {
            "lon_wgs84": np.round(wlon, 7), "lat_wgs84": np.round(wlat, 7),
            "zone_code": codes, "zone_kind": kinds, "zone_version": versions,
            "unit_id": unit, "unit_name": [self.unit_names.get(u, STREET_OFFICE["name"]) for u in unit],
            "method": method, "distance_m": np.where(np.isfinite(dist), np.round(dist, 2), None),
            "grid_code": grid_code,
        }


__all__ = ["FALLBACK", "Router"]
