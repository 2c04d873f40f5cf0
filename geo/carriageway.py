"""Carriageways from road centrelines: where frontage zones must stop.

Works in a metric CRS (metres). Real data has centrelines, rarely curbs: each drivable
centreline is buffered by its curb offset (its own `curb_offset_m`, else `width`/2, else
`lanes` × lane width / 2, else a table by road class). Two one-way centrelines running side by
side are the halves of one road: the strip between them is closed into the carriageway
(a morphological closing of the one-way carriageways), so it never becomes "pavement".
Footways and pedestrian streets have no carriageway: their centreline is a *cut line*, where
zones from either side meet; so is the centreline of a road without sidewalk under profiles
whose frontage runs to the centreline.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._tiles import tile_polygons


@dataclass(frozen=True)
class CurbRules:
    """The curb-offset table (layers/rules/curbs.toml)."""

    lane_width_m: float
    minor_lane_width_m: float
    minor_classes: tuple[str, ...]
    median_close_m: float
    pedestrian_classes: tuple[str, ...]
    no_sidewalk_classes: tuple[str, ...]
    ignored_classes: tuple[str, ...]
    lanes: dict[str, tuple[float, float]]
    nonmotor_lane_m: dict[str, float]


def _num(series: pd.Series | None, n: int) -> np.ndarray:
    if series is None:
        return np.full(n, np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def _text(roads: gpd.GeoDataFrame, col: str) -> np.ndarray:
    if col not in roads:
        return np.full(len(roads), "", dtype=object)
    return roads[col].astype(object).where(roads[col].notna(), "").astype(str).str.lower().to_numpy()


def is_oneway(roads: gpd.GeoDataFrame) -> np.ndarray:
    ow = _text(roads, "oneway")
    hw = _text(roads, "highway")
    return np.isin(ow, ["yes", "true", "1", "-1"]) | ((ow == "") & np.isin(hw, ["motorway"]))


def curb_offsets(roads: gpd.GeoDataFrame, rules: CurbRules) -> np.ndarray:
    """Distance in metres from each centreline to its curb (0 where there is no carriageway)."""
    n = len(roads)
    hw = _text(roads, "highway")
    oneway = is_oneway(roads)
    lane_w = np.where(np.isin(hw, rules.minor_classes), rules.minor_lane_width_m, rules.lane_width_m)
    table = np.array([rules.lanes.get(h, rules.lanes.get("road"))[1 if o else 0]
                      for h, o in zip(hw, oneway)], dtype=float)
    lanes = _num(roads.get("lanes"), n)
    offset = table * lane_w / 2
    offset = np.where(np.isfinite(lanes) & (lanes > 0), lanes * lane_w / 2, offset)
    width = _num(roads.get("width"), n)
    offset = np.where(np.isfinite(width) & (width > 0), width / 2, offset)
    own = _num(roads.get("curb_offset_m"), n)
    offset = np.where(np.isfinite(own) & (own >= 0), own, offset)
    no_carriageway = np.isin(hw, rules.pedestrian_classes) | np.isin(hw, rules.ignored_classes)
    return np.where(no_carriageway, 0.0, offset)


def has_sidewalk(roads: gpd.GeoDataFrame, rules: CurbRules) -> np.ndarray:
    sw = _text(roads, "sidewalk")
    hw = _text(roads, "highway")
    tagged_no = np.isin(sw, ["no", "none"])
    tagged_yes = np.isin(sw, ["both", "left", "right", "yes", "separate"])
    return ~tagged_no & (tagged_yes | ~np.isin(hw, rules.no_sidewalk_classes))


@dataclass
class Streets:
    """Where zones stop, in the roads' metric CRS.

    `stop`: small polygon pieces (carriageway, and red-line corridors under that profile) that
    no frontage zone may enter; `carriageway`: the pieces that are carriageway proper (for the
    public zones of the professional cleaning unit); `cut_lines`: centrelines where zones from
    either side meet; `names`: road name (or class) per centreline, for 四至."""

    stop: np.ndarray
    carriageway: np.ndarray
    cut_lines: np.ndarray
    centrelines: np.ndarray
    names: np.ndarray
    drivable: np.ndarray
    offsets: np.ndarray

    def __post_init__(self):
        self.stop_tree = shapely.STRtree(self.stop)
        self.carriageway_tree = shapely.STRtree(self.carriageway)
        self.cut_tree = shapely.STRtree(self.cut_lines)
        self.centreline_tree = shapely.STRtree(self.centrelines)


def build_streets(roads: gpd.GeoDataFrame, rules: CurbRules, depth_to: str = "curb",
                  no_sidewalk: str = "curb", tile_m: float = 250.0) -> Streets:
    """Carriageways, stop areas and cut lines from centrelines `roads` (metric CRS).

    depth_to: "curb" (zones stop at the curb), "nonmotor_curb" (at the curb between the
    non-motorised and motor lanes), "red_line" (at the road red line where `red_line_width`
    is given, else at the curb). no_sidewalk: "centreline" lets zones run to the centreline
    of roads without sidewalk, "curb" stops them at its curb like any other road."""
    if roads.crs is not None and roads.crs.is_geographic:
        raise ValueError("build_streets needs roads in a metric CRS")
    hw = _text(roads, "highway")
    tunnel = np.isin(_text(roads, "tunnel"), ["yes", "building_passage", "true", "1"])
    geoms = roads.geometry.to_numpy()
    offsets = curb_offsets(roads, rules)
    drivable = (offsets > 0) & ~tunnel
    pedestrian = np.isin(hw, rules.pedestrian_classes) & ~tunnel
    to_centre = drivable & (no_sidewalk == "centreline") & ~has_sidewalk(roads, rules)
    kerbed = drivable & ~to_centre
    oneway = is_oneway(roads)

    def carriageway_of(mask, widths):
        if not mask.any():
            return []
        bufs = shapely.buffer(geoms[mask], widths[mask], quad_segs=4)
        one = mask & oneway
        parts = [bufs[~one[mask]]]
        if one.any():
            # close medians between the halves of dual carriageways
            ow = shapely.union_all(shapely.buffer(geoms[one], widths[one], quad_segs=4))
            d = rules.median_close_m
            parts.append(np.array([shapely.buffer(shapely.buffer(ow, d, quad_segs=4), -d, quad_segs=4)]))
        return list(np.concatenate(parts))

    carriageway = carriageway_of(drivable, offsets)
    if depth_to == "nonmotor_curb":
        nm = np.array([rules.nonmotor_lane_m.get(h, 0.0) for h in hw])
        motor = np.where(offsets - nm >= 1.75, offsets - nm, offsets)
        stop = carriageway_of(kerbed, motor)
    else:
        stop = carriageway_of(kerbed, offsets)
    if depth_to == "red_line":
        red = _num(roads.get("red_line_width"), len(roads)) / 2
        has_red = np.isfinite(red) & (red > offsets) & ~tunnel
        stop += list(shapely.buffer(geoms[has_red], red[has_red], quad_segs=4))
    cut = geoms[pedestrian | to_centre]
    names = roads["name"].astype(object).where(roads["name"].notna(), None).to_numpy() \
        if "name" in roads else np.full(len(roads), None, dtype=object)
    names = np.array([n if n else None for n in names], dtype=object)
    return Streets(stop=tile_polygons(np.array(stop, dtype=object), tile_m),
                   carriageway=tile_polygons(np.array(carriageway, dtype=object), tile_m),
                   cut_lines=np.asarray(cut, dtype=object), centrelines=geoms, names=names,
                   drivable=drivable, offsets=offsets)
