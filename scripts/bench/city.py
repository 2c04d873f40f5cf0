"""Synthetic cities for the benchmarks (not a benchmark itself; imported by exports.py and web.py).

`make_city(db, n)`: n zones (Voronoi cells of about 400 m², scripts/bench/routing.py's
synthetic_zones, in EPSG:4549 near Nanjing), a unit each (name, credit code, person, phone) and
a few closed cases per hundred zones: what the exports need.

`make_map_city(db, zones, buildings, problems)`: the same zones and units plus what a map
draws: a road grid (a block of 100 m, classed primary / secondary / tertiary / residential by
line, one way per block side, as OSM cuts them), `buildings` footprints laid out in the
blocks (6–11 m rectangles, a few named, some shops) and `problems` cases at random points of
the city, most closed, some voided, the rest spread over the open states with a stage start
and deadline, as a city with a few years of history holds them."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from routing import synthetic_zones

from layers.store import open_store

CRS = 4549  # CGCS2000 / 3-degree Gauss-Kruger CM 120E: metres near Nanjing
BLOCK_M = 100.0
OPEN_STATES = ("filed", "dispatched", "processing", "fed_back", "checking", "extended", "rework")
CATEGORIES = ("06002", "06003", "06004", "06010", "07001", "08001")
NOVEMBER = pd.Timestamp("2026-11-01", tz="Asia/Shanghai")


def zones_and_units(n: int, seed: int = 3) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, tuple]:
    """n synthetic zones in force and their units (EPSG:4326), and (x0, y0, side) of the city
    in EPSG:4549 metres."""
    cells, frame = synthetic_zones(n)
    k = len(cells)
    rng = np.random.default_rng(seed)
    streets = np.array([f"第{i}路" for i in range(200)])
    zones = gpd.GeoDataFrame({
        "code": [f"F{i:06d}" for i in range(k)], "kind": rng.choice(["frontage", "unit", "public"], k, p=[.7, .1, .2]),
        "primary_unit": [f"U{i:06d}" for i in range(k)], "duties": "卫生,容貌,秩序", "profile": "beijing-2022",
        "area_m2": shapely.area(cells), "frontage_len_m": rng.random(k) * 40, "depth_m": rng.random(k) * 10,
        "bounds_text": "东至某路；西至某店；南至某巷；北至某楼", "street": streets[rng.integers(0, 200, k)],
        "valid_from": dt.date(2026, 1, 1), "version": 1}, geometry=gpd.GeoSeries(cells, crs=CRS)).to_crs(4326)
    units = gpd.GeoDataFrame({
        "unit_id": zones["primary_unit"], "name": [f"南京市某某商贸有限公司第{i}店" for i in range(k)],
        "credit_code": [f"91320100MA{i:08d}" for i in range(k)], "person": "张三", "phone": "13912345678",
        "placeholder": False}, geometry=gpd.GeoSeries([None] * k, crs=4326))
    return zones, units, frame


def cases(points: np.ndarray, zones: gpd.GeoDataFrame, pick: np.ndarray, states: np.ndarray,
          seed: int = 5) -> gpd.GeoDataFrame:
    """One case per point (EPSG:4326 shapely points), routed to zone `pick[i]`, in `states[i]`,
    reported in November 2026 (city time); closed ones with a closing time, open ones with their
    stage's start, deadline and light times (a clock day's limit)."""
    m = len(points)
    rng = np.random.default_rng(seed)
    reported = (NOVEMBER + pd.to_timedelta(rng.random(m) * 29, unit="D")).round("s")
    closed = np.isin(states, ("closed", "voided"))
    stage = reported + pd.to_timedelta(rng.random(m) * 2, unit="D")
    return gpd.GeoDataFrame({
        "problem_id": [f"B{i:07d}" for i in range(m)],
        "category": np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), m)],
        "status": states, "channel": "api", "public_report": rng.random(m) < 0.3,
        "zone_code": zones["code"].to_numpy()[pick], "zone_version": 1,
        "unit_id": zones["primary_unit"].to_numpy()[pick], "routed_by": "zone",
        "reported_at": reported, "target_at": reported + pd.Timedelta(days=1),
        "stage_started_at": stage.round("s").where(~closed),
        "stage_deadline": (stage + pd.Timedelta(days=1)).round("s").where(~closed),
        "light_yellow_at": (stage + pd.Timedelta(hours=19.2)).round("s").where(~closed),
        "light_red_after": (stage + pd.Timedelta(days=1)).round("s").where(~closed),
        "closed_at": stage.round("s").where(closed)},
        geometry=gpd.GeoSeries(points, crs=4326))


def make_city(db: str, n: int, cases_per_100: int = 3) -> int:
    """A store of `n` synthetic zones, their units and some closed cases; returns the zones."""
    zones, units, _ = zones_and_units(n)
    k = len(zones)
    m = k * cases_per_100 // 100
    pick = np.random.default_rng(3).integers(0, k, m)
    problems = cases(shapely.point_on_surface(zones.geometry.to_numpy()[pick]), zones, pick,
                     np.full(m, "closed", dtype=object))
    with open_store(db) as store, store.transaction() as tx:
        tx.append("zones", zones)
        tx.append("units", units)
        tx.append("problems", problems)
    return k


def road_grid(frame: tuple) -> gpd.GeoDataFrame:
    """A road every BLOCK_M across the city, both ways, one way per block side; every 10th line
    primary, every 5th secondary, every other tertiary, the rest residential."""
    x0, y0, side = frame
    lines = int(side // BLOCK_M) + 1
    classes = np.array(["residential", "tertiary", "secondary", "primary"])

    def klass(i):
        return classes[3 if i % 10 == 0 else 2 if i % 5 == 0 else 1 if i % 2 == 0 else 0]

    geoms, highway, names = [], [], []
    for i in range(lines):
        for j in range(lines - 1):
            a, b = j * BLOCK_M, (j + 1) * BLOCK_M
            c = i * BLOCK_M
            geoms += [shapely.LineString([(x0 + a, y0 + c), (x0 + (a + b) / 2, y0 + c), (x0 + b, y0 + c)]),
                      shapely.LineString([(x0 + c, y0 + a), (x0 + c, y0 + (a + b) / 2), (x0 + c, y0 + b)])]
            highway += [klass(i)] * 2
            names += [f"东西{i}路", f"南北{i}路"]
    k = len(geoms)
    return gpd.GeoDataFrame({"osm_id": [f"way/{i}" for i in range(k)], "name": names, "highway": highway,
                             "lanes": np.where(np.isin(highway, ["primary", "secondary"]), 4.0, 2.0),
                             "source": "synthetic"},
                            geometry=gpd.GeoSeries(geoms, crs=CRS)).to_crs(4326)


def blocks_of_buildings(frame: tuple, count: int, seed: int = 9) -> gpd.GeoDataFrame:
    """About `count` building footprints: each block between roads holds a square lattice of
    plots, each plot a 6–11 m rectangle set back from the plot's edge."""
    x0, y0, side = frame
    rng = np.random.default_rng(seed)
    blocks = int(side // BLOCK_M) ** 2
    per_side = max(1, round(np.sqrt(count / blocks)))
    plot = (BLOCK_M - 16) / per_side  # 8 m clear of each road line
    bx, by = np.meshgrid(np.arange(int(side // BLOCK_M)), np.arange(int(side // BLOCK_M)))
    px, py = np.meshgrid(np.arange(per_side), np.arange(per_side))
    ox = (x0 + bx.ravel()[:, None] * BLOCK_M + 8 + px.ravel()[None, :] * plot).ravel()
    oy = (y0 + by.ravel()[:, None] * BLOCK_M + 8 + py.ravel()[None, :] * plot).ravel()
    k = len(ox)
    w, h = rng.uniform(6, min(11, plot - 1), k), rng.uniform(6, min(11, plot - 1), k)
    geoms = shapely.box(ox + 0.5, oy + 0.5, ox + 0.5 + w, oy + 0.5 + h)
    named = rng.random(k) < 0.1
    return gpd.GeoDataFrame({
        "osm_id": [f"way/{10**7 + i}" for i in range(k)],
        "name": np.where(named, [f"某某大厦{i}号" for i in range(k)], None),
        "building": rng.choice(["residential", "commercial", "retail", "yes"], k, p=[.5, .2, .1, .2]),
        "levels": rng.integers(1, 30, k).astype(float), "shop": np.where(rng.random(k) < 0.15, "convenience", None),
        "source": "synthetic"}, geometry=gpd.GeoSeries(geoms, crs=CRS)).to_crs(4326)


def make_map_city(db: str, zones: int = 100_000, buildings: int = 150_000, problems: int = 1_000_000,
                  open_share: float = 0.05, batch: int = 200_000) -> dict:
    """A store of a whole synthetic city for the map (see the module's docstring); returns the
    count of each layer. Problems go in batches of `batch` rows (each its own transaction)."""
    zone_frame, units, frame = zones_and_units(zones)
    roads = road_grid(frame)
    houses = blocks_of_buildings(frame, buildings)
    with open_store(db) as store, store.transaction() as tx:
        tx.append("zones", zone_frame)
        tx.append("units", units)
        tx.append("roads", roads)
        tx.append("buildings", houses)
    rng = np.random.default_rng(11)
    x0, y0, side = frame
    pts = gpd.GeoSeries(shapely.points(x0 + rng.random(problems) * side, y0 + rng.random(problems) * side),
                        crs=CRS).to_crs(4326).to_numpy()
    draw = rng.random(problems)
    open_states = np.array(OPEN_STATES, dtype=object)[rng.integers(0, len(OPEN_STATES), problems)]
    states = np.where(draw < open_share, open_states,
                      np.where(draw < open_share + 0.03, "voided", "closed")).astype(object)
    # the zone a point falls in (else a random one: the grid's gaps are a few cm wide)
    tree = shapely.STRtree(zone_frame.geometry.to_numpy())
    where = tree.query(pts, predicate="within")
    pick = rng.integers(0, len(zone_frame), problems)
    pick[where[0]] = where[1]
    with open_store(db) as store:
        for start in range(0, problems, batch):
            part = slice(start, start + batch)
            frame_part = cases(pts[part], zone_frame, pick[part], states[part], seed=start)
            frame_part["problem_id"] = [f"B{i:07d}" for i in range(start, start + len(frame_part))]
            store.append("problems", frame_part)
    return {"zones": len(zone_frame), "units": len(units), "roads": len(roads), "buildings": len(houses),
            "problems": problems}
