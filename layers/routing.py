"""Routing reports to the party that answers for the place, over the zones in a store.

`Router` loads the zones in force (optionally as of a date) and their units once; `route`
takes WGS 84 (or GCJ-02 / BD-09 / CGCS2000) longitude/latitude arrays and answers, for each
point, the zone code, kind, version, unit and how it was found: "zone" (inside it), "nearest"
(within a few metres outside every zone: GPS error), "building" (inside a building footprint,
which no zone covers: the nearest zone of an owner, within 60 m), or "fallback" (属地兜底, the
street office)."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo._tiles import polygonal
from geo.crs import metric_crs, to_wgs84
from geo.routing import FALLBACK, ZoneIndex

from .errors import InputError
from .store import Store
from .zones import FALLBACK as FALLBACK_UNITS
from .zones import current

STREET_OFFICE = FALLBACK_UNITS["street"]
BUILDING = "building"  # inside a footprint: the nearest zone of an owner
BUILDING_REACH_M = 60.0


class Router:
    def __init__(self, store: Store, as_of: dt.date | None = None, tolerance_m: float = 5.0):
        zones = current(store.read("zones"), as_of)
        if zones.empty:
            raise InputError("there are no zones in force to route to: run `zonemap zones generate` first")
        x0, y0, x1, y1 = zones.total_bounds
        self.metric = metric_crs((x0 + x1) / 2, (y0 + y1) / 2)
        self.zones = zones.reset_index(drop=True)
        self.index = ZoneIndex(self.zones.to_crs(self.metric).geometry.to_numpy())
        units = store.read("units")
        self.unit_names = dict(zip(units["unit_id"], units["name"]))
        self.tolerance_m = tolerance_m
        # a report placed inside a building goes to the nearest zone of an owner, not public space
        self.footprints = shapely.STRtree(polygonal(
            store.read("buildings", bbox=(x0, y0, x1, y1)).to_crs(self.metric).geometry.to_numpy()))
        owned = np.flatnonzero((self.zones["kind"] != "public").to_numpy())
        self.owned = owned
        self.owned_tree = shapely.STRtree(self.index.zones[owned])

    def route(self, lon, lat, crs: str = "wgs84") -> pd.DataFrame:
        lon, lat = np.atleast_1d(np.asarray(lon, float)), np.atleast_1d(np.asarray(lat, float))
        bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"point {i + 1}: ({lon[i]}, {lat[i]}) is not a longitude/latitude "
                             "(did you swap them?)")
        wlon, wlat = to_wgs84(lon, lat, crs)
        xy = gpd.GeoSeries(gpd.points_from_xy(wlon, wlat), crs="EPSG:4326").to_crs(self.metric)
        idx, method, dist = self.index.route(xy.x.to_numpy(), xy.y.to_numpy(), self.tolerance_m)
        rest = np.flatnonzero(idx < 0)
        if len(rest) and len(self.owned):
            pts = xy.to_numpy()[rest]
            inside = np.unique(self.footprints.query(pts, predicate="within")[0])
            if len(inside):
                (p, z), d = self.owned_tree.query_nearest(pts[inside], max_distance=BUILDING_REACH_M,
                                                          return_distance=True, all_matches=False)
                k = rest[inside[p]]
                idx[k], dist[k], method[k] = self.owned[z], d, BUILDING
        hit = idx >= 0
        z = self.zones.iloc[np.where(hit, idx, 0)]
        unit = np.where(hit, z["primary_unit"].to_numpy(), STREET_OFFICE["unit_id"])
        return pd.DataFrame({
            "lon_wgs84": np.round(wlon, 7), "lat_wgs84": np.round(wlat, 7),
            "zone_code": np.where(hit, z["code"].to_numpy(), None),
            "zone_kind": np.where(hit, z["kind"].to_numpy(), None),
            "zone_version": np.where(hit, z["version"].to_numpy(), None),
            "unit_id": unit, "unit_name": [self.unit_names.get(u, STREET_OFFICE["name"]) for u in unit],
            "method": method, "distance_m": np.where(np.isfinite(dist), np.round(dist, 2), None),
        })


__all__ = ["FALLBACK", "Router"]
