"""Hotspots of the stored problems: reads problems, the unit grid, zones and units from the
store, hands them to `geo.hotspots`, and gives back layers in EPSG:4326 with times in city time.

One entry, `hotspots(store, method, …)`, for the command line (`zonemap hotspots`), the API
(GET /api/hotspots) and the GeoPackage layer `--out` writes. Methods:
- gi: Getis–Ord Gi* per cell (单元网格 cells when the store has them, else squares of
  `cell_m`), with z, p and hot/cold at 90/95/99 %;
- kde: a Gaussian kernel density surface (reports per km²) on squares of `cell_m`;
- counts: reports per cell, per zone and per unit;
- repeats: the same zone (or ~30 m spot) and category reported ≥ k times within N days;
- peaks: reports by hour of day and day of week, in the city's time zone.
What is counted: every located report in the period, except duplicates linked to an open
case (the same problem again) and voided ones.

The reports are the store's, or a file's (`file=`: CSV, GeoJSON, GeoPackage, GeoParquet…, with
the same columns where it has them: reported_at, category, status, zone_code, unit_id). A file
larger than memory is counted partition by partition on a Dask cluster (`engine="dask"`,
layers/partitioned.py) and the counts summed before the same statistics run on them: gi, kde,
counts and peaks give the in-memory answers; repeats do not scale out."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo import hotspots as geo_hotspots

from .cases import Rules, parse_time
from .errors import InputError
from .partitioned import HotspotParts, PointFile, cluster, read_in_memory
from .schema import STORAGE_CRS
from .store import Store
from .zones import current

METHODS = ("gi", "kde", "counts", "repeats", "peaks")
CELLS = ("auto", "grid", "square")
ENGINES = ("memory", "dask")
TRUE = {"true", "1", "1.0", "yes", "y", "t", "是"}  # a placeholder flag written as text (CSV)
NOT_COUNTED = ("linked", "voided")  # a duplicate is the same problem again; a voided one was none
CELL_M_RANGE = (10.0, 5000.0)
KDE_MIN_SHARE = 0.01  # the density surface is shown where it reaches 1 % of its peak


@dataclass
class Hotspots:
    """The answer of one method: `layer` holds every cell or spot with its statistics
    (EPSG:4326; what `--out` writes), `shown` what a map shows (significant cells, the dense
    part of the surface, cells with reports, the spots), most notable first; `summary` is
    JSON-able; `extra` holds further layers for the GeoPackage (counts per zone and unit)."""

    method: str
    params: dict
    summary: dict
    layer: gpd.GeoDataFrame | None = None
    shown: gpd.GeoDataFrame | None = None
    extra: dict = field(default_factory=dict)


def problems_for(store: Store, since=None, until=None, category=None, tz=None) -> gpd.GeoDataFrame:
    """The located problems reported in [since, until] (city dates or ISO times, read in `tz`)
    of the given categories (a comma-separated text or a list), without linked duplicates and
    voided ones. EPSG:4326."""
    frame = store.read("problems")
    return frame if frame.empty else select(frame, *_window(since, until, tz), _categories(category))


def _window(since, until, tz):
    return parse_time(since, "since", tz=tz), parse_time(until, "until", tz=tz, end=True)


def select(frame: gpd.GeoDataFrame, t0=None, t1=None, wanted=(), naive_tz="UTC", name="the store"):
    """The rows of `frame` that count: a point, not a placeholder location, not linked or
    voided, reported in [t0, t1], of the `wanted` categories; each test where the frame has
    its column (a file may lack some; a filter on a missing column is refused). `reported_at`
    comes back as UTC instants, text without an offset read in `naive_tz` (the store's are
    UTC, a file's in city time). The same test for the store, a file and each of its parts."""
    geoms = frame.geometry
    keep = geoms.notna().to_numpy() & ~geoms.is_empty.to_numpy()
    if "location_placeholder" in frame:
        keep &= ~frame["location_placeholder"].astype(str).str.strip().str.lower().isin(TRUE).to_numpy()
    if "status" in frame:
        keep &= ~frame["status"].isin(NOT_COUNTED).to_numpy()
    if "reported_at" in frame:
        at = _instants(frame["reported_at"], naive_tz, name)
        frame = frame.assign(reported_at=at)
        if t0 is not None:
            keep &= (at >= t0).to_numpy()
        if t1 is not None:
            keep &= (at <= t1).to_numpy()
    elif t0 is not None or t1 is not None:
        raise InputError(f"{name} has no reported_at column: --since/--until need one")
    if wanted:
        if "category" not in frame:
            raise InputError(f"{name} has no category column: --category needs one")
        keep &= frame["category"].isin(wanted).to_numpy()
    return frame[keep].reset_index(drop=True)


def _instants(values: pd.Series, naive_tz, name: str) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    text = values.astype(str).str.strip()
    given = values.notna().to_numpy() & (text != "").to_numpy()  # a row without a time counts in no period
    aware = given & text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True).to_numpy()
    naive = given & ~aware
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    try:
        if aware.any():
            out[aware] = pd.to_datetime(text[aware], utc=True, format="ISO8601")
        if naive.any():
            out[naive] = pd.to_datetime(text[naive], format="ISO8601").dt.tz_localize(naive_tz).dt.tz_convert("UTC")
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name}: a reported_at is not a time ({exc}); write ISO 8601 (2026-11-30T09:30+08:00)") \
            from None
    return out


def _categories(category) -> list[str]:
    if not category:
        return []
    values = category.split(",") if isinstance(category, str) else list(category)
    return [str(v).strip() for v in values if str(v).strip()]


def hotspots(store: Store, method: str = "gi", *, since=None, until=None, category=None, cell_m: float = 100.0,
             cells: str = "auto", band_m: float | None = None, permutations: int = 0, seed: int = 0,
             correction: str = "fdr", bandwidth_m: float | None = None, k: int = 3, days: float = 30.0,
             tz: str | None = None, rules: Rules | None = None, file=None, x: str | None = None,
             y: str | None = None, engine: str = "memory", scheduler: str | None = None,
             workers: int = 2) -> Hotspots:
    """Run one method over the stored problems, or the reports of `file` (see the module's
    docstring; `x`/`y` its coordinate columns, WGS 84 unless the file says otherwise). `tz`:
    the time zone dates and hours are read and shown in (default: the city's, workflow.toml);
    a file's times without an offset are read in it too. `engine="dask"` counts the file
    partition by partition on the cluster at `scheduler`, else on a LocalCluster of `workers`."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if cells not in CELLS:
        raise InputError(f"cells must be one of {', '.join(CELLS)}, not {cells!r}")
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "dask" and file is None:
        raise InputError("--engine dask counts the reports of a file (--file); the store's are counted in memory")
    low, high = CELL_M_RANGE
    if not (isinstance(cell_m, (int, float)) and math.isfinite(cell_m) and low <= cell_m <= high):
        raise InputError(f"cell_m must be {low:g}–{high:g} metres, not {cell_m!r}")
    zone = _zone(tz or (rules or Rules()).tz)
    params = {"since": since, "until": until, "category": _categories(category) or None, "tz": str(zone)}
    run = partial({"gi": _gi, "kde": _kde, "counts": _counts, "repeats": _repeats, "peaks": _peaks}[method],
                  cell_m=cell_m, cells=cells, band_m=band_m, permutations=permutations, seed=seed,
                  correction=correction, bandwidth_m=bandwidth_m, k=k, days=days)
    try:
        if file is None:
            return run(store, InMemory(problems_for(store, since, until, category, tz=zone)), params)
        name = Path(str(file)).name
        params["file"] = name
        t0, t1 = _window(since, until, zone)
        pick = partial(select, t0=t0, t1=t1, wanted=tuple(_categories(category)), naive_tz=zone, name=name)
        if engine == "memory":
            frame = read_in_memory(file, x=x, y=y).frame
            return run(store, InMemory(pick(frame if frame.crs is not None else frame.set_crs(STORAGE_CRS))),
                       params)
        params |= {"engine": "dask"}
        with cluster(scheduler, workers) as client:
            parts = HotspotParts(client, PointFile.open(file, x, y, default_crs=STORAGE_CRS), pick)
            params["partitions"] = parts.source.frame.npartitions
            return run(store, parts, params)
    except ValueError as exc:  # geo's checks of sizes and parameters: the user's values
        raise InputError(str(exc)) from None


class InMemory:
    """Points in memory: geo.hotspots' functions on the whole frame (`HotspotParts`, in
    layers/partitioned.py, answers the same questions for a file in partitions)."""

    def __init__(self, frame: gpd.GeoDataFrame):
        self.frame, self.columns = frame, list(frame.columns)

    def __len__(self) -> int:
        return len(self.frame)

    def count_cells(self, cell_m: float, cells=None) -> gpd.GeoDataFrame:
        return geo_hotspots.count_cells(self.frame, cell_m=cell_m, cells=cells)

    def kernel_density(self, cell_m: float, bandwidth_m: float) -> geo_hotspots.Surface:
        return geo_hotspots.kernel_density(self.frame, cell_m=cell_m, bandwidth_m=bandwidth_m)

    def counts_by(self, key: str) -> pd.DataFrame:
        return geo_hotspots.counts_by(self.frame, key)

    def time_peaks(self, tz: str) -> dict:
        return geo_hotspots.time_peaks(self.frame["reported_at"] if len(self.frame) else [], tz)

    def repeat_spots(self, k: int, days: float) -> gpd.GeoDataFrame:
        return geo_hotspots.repeat_spots(self.frame, k=k, days=days)


def _needs(points, method: str, *columns: str) -> None:
    missing = [c for c in columns if c not in points.columns]
    if missing:
        raise InputError(f"{method} needs the reports' {' and '.join(missing)}; the file has no such column")


def _zone(tz):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(tz, str):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"time zone {tz!r} is not known; use an IANA name such as Asia/Shanghai") from None


def _grid(store: Store, cells: str):
    """The 单元网格 polygons to count in, or None for squares."""
    if cells == "square":
        return None
    grid = store.read("grid")
    if grid.empty and cells == "grid":
        raise InputError("the store has no 单元网格 (grid layer); import one "
                         "(`zonemap import FILE --as grid`) or use square cells")
    return None if grid.empty else grid


def _cell_params(grid, cell_m) -> dict:
    return {"cells": "grid", "cell_count": len(grid)} if grid is not None else {"cells": "square", "cell_m": cell_m}


def _empty(method: str, params: dict, points) -> Hotspots:
    return Hotspots(method, params, {"problems": len(points), "note": "no located problems in the period"})


def _gi(store, points, params, *, cell_m, cells, band_m, permutations, seed, correction, **_):
    grid = _grid(store, cells)
    params |= _cell_params(grid, cell_m) | {
        "weights": f"distance band {band_m:g} m" if band_m else "queen contiguity",
        "p_values": f"{permutations} permutations, seed {seed}" if permutations else "analytic (normal)",
        "correction": correction}
    if not 0 <= permutations <= 9999:
        raise InputError("permutations must be 0 (analytic p-values) to 9999")
    if not len(points):
        return _empty("gi", params, points)
    out = geo_hotspots.gi_cells(points.count_cells(cell_m, grid), band_m=band_m, permutations=permutations,
                                seed=seed, correction=correction)
    layer = _storage(out.drop(columns=[c for c in ("row", "col") if c in out]))
    shown = layer[layer["spot"] != geo_hotspots.NOT_SIGNIFICANT]
    shown = shown.iloc[np.argsort(-shown["gi_z"].abs().to_numpy(), kind="stable")].reset_index(drop=True)
    spots = layer["spot"].value_counts()
    summary = {"problems": len(points), "cells": len(layer),
               "spots": {s: int(spots.get(s, 0)) for s in _spot_names()}}
    return Hotspots("gi", params, summary, layer, shown)


def _spot_names():
    return [f"{kind}{level}" for kind in ("hot", "cold") for _, level in geo_hotspots.LEVELS]


def _kde(store, points, params, *, cell_m, bandwidth_m, **_):
    bandwidth_m = bandwidth_m or 2 * cell_m
    params |= {"cells": "square", "cell_m": cell_m, "bandwidth_m": bandwidth_m, "min_share": KDE_MIN_SHARE}
    if not len(points):
        return _empty("kde", params, points)
    surface = points.kernel_density(cell_m, bandwidth_m)
    layer = _storage(surface.cells(KDE_MIN_SHARE).drop(columns=["row", "col"]))
    layer = layer.sort_values("density", ascending=False, ignore_index=True)
    summary = {"problems": len(points), "cells": len(layer), "peak_per_km2": float(surface.density.max()),
               "transform": list(surface.transform), "crs": surface.lattice.crs,
               "shape": [surface.lattice.nrows, surface.lattice.ncols]}
    return Hotspots("kde", params, summary, layer, layer)


def _counts(store, points, params, *, cell_m, cells, **_):
    grid = _grid(store, cells)
    params |= _cell_params(grid, cell_m)
    if not len(points):
        return _empty("counts", params, points)
    counted = points.count_cells(cell_m, grid)
    layer = _storage(counted[counted["count"] > 0].drop(columns=[c for c in ("row", "col") if c in counted]))
    layer = layer.sort_values(["count", "cell_id"], ascending=[False, True], ignore_index=True)
    summary = {"problems": len(points), "cells_with_problems": len(layer)}
    extra = {}  # a file without zone_code or unit_id (not routed) is counted per cell only
    for name, key, table in (("zones", "zone_code", _zone_counts), ("units", "unit_id", _unit_counts)):
        if key in points.columns and "category" in points.columns:
            extra[f"{name[:-1]}_counts"] = counted_by = table(store, points)
            summary[name] = _records(counted_by.drop(columns="geometry"))
    return Hotspots("counts", params, summary, layer, layer, extra)


def _zone_counts(store: Store, points) -> gpd.GeoDataFrame:
    """Problems per zone code (the zone each was routed to), with the zone's latest shape."""
    table = points.counts_by("zone_code")
    zones = store.read("zones")
    if not zones.empty:
        latest = current(zones)
        latest = latest.sort_values("version").drop_duplicates("code", keep="last")
        shapes = latest.set_index("code")[["kind", "primary_unit", "geometry"]]
        table = table.join(shapes, on="zone_code")
    return gpd.GeoDataFrame(table, geometry=table.get("geometry", gpd.GeoSeries([None] * len(table))),
                            crs=STORAGE_CRS)


def _unit_counts(store: Store, points) -> gpd.GeoDataFrame:
    """Problems per responsible unit, with its name and location where it has one."""
    table = points.counts_by("unit_id")
    units = store.read("units")
    if not units.empty:
        table = table.join(units.drop_duplicates("unit_id").set_index("unit_id")[["name", "geometry"]], on="unit_id")
    return gpd.GeoDataFrame(table, geometry=table.get("geometry", gpd.GeoSeries([None] * len(table))),
                            crs=STORAGE_CRS)


def _repeats(store, points, params, *, k, days, **_):
    if not (isinstance(k, int) and 2 <= k <= 1000) or not (0 < days <= 3660):
        raise InputError("repeats need k of 2–1000 reports within days of 0–3660")
    params |= {"k": k, "days": days, "place": "zone, else a ~30 m square"}
    _needs(points, "repeats", "reported_at", "category")
    if not len(points):
        return _empty("repeats", params, points)
    spots = _storage(points.repeat_spots(k, days))
    tz = params["tz"]
    for col in ("first", "last"):
        spots[col] = [t.tz_convert(tz).isoformat(timespec="seconds") for t in spots[col]]
    summary = {"problems": len(points), "spots": len(spots), "reports_in_spots": int(spots["count"].sum())}
    return Hotspots("repeats", params, summary, spots, spots)


def _peaks(store, points, params, **_):
    _needs(points, "peaks", "reported_at")
    peaks = points.time_peaks(params["tz"])
    return Hotspots("peaks", params, {"problems": len(points), **peaks})


def _storage(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    out = frame.to_crs(STORAGE_CRS)
    out.attrs = {}
    return out


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if _missing(v) else v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
            for row in frame.to_dict("records")]


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


# ---- output ------------------------------------------------------------------------------

def rows(result: Hotspots, limit: int | None = None) -> list[dict]:
    """The shown cells or spots as plain rows, each with the lon/lat of its centre."""
    if result.shown is None or result.shown.empty:
        return []
    shown = result.shown if limit is None else result.shown.iloc[:limit]
    centre = shapely.centroid(shown.geometry.to_numpy())
    table = shown.drop(columns="geometry").assign(lon=np.round(shapely.get_x(centre), 6),
                                                  lat=np.round(shapely.get_y(centre), 6))
    return _records(table)


def feature_collection(result: Hotspots, limit: int) -> dict:
    """GeoJSON of what a map shows (at most `limit` features, most notable first)."""
    shown = result.shown if result.shown is not None else gpd.GeoDataFrame(geometry=[], crs=STORAGE_CRS)
    geoms = shapely.to_geojson(shown.geometry.iloc[:limit].to_numpy())
    props = _records(shown.drop(columns="geometry").iloc[:limit])
    features = [{"type": "Feature", "properties": p, "geometry": json.loads(g)} for p, g in zip(props, geoms)]
    return {"type": "FeatureCollection", "method": result.method, "params": result.params,
            "summary": result.summary, "features": features, "truncated": len(shown) > limit}


def write_gpkg(result: Hotspots, path: str | Path) -> list[str]:
    """Write the method's layer (named `hotspots_<method>`) and its extra layers to a new
    GeoPackage at `path`; answers the layer names written."""
    if result.layer is None:
        why = "no located problems in the period" if result.method != "peaks" else \
            "peaks are a table by hour and weekday, not a map: use --json"
        raise InputError(f"nothing to write to {path}: {why}")
    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        raise InputError(f"--out {path}: write a GeoPackage (a name ending in .gpkg)")
    if path.exists():
        path.unlink()  # a fresh file: no stale layers from an earlier run
    names = []
    for name, frame in {f"hotspots_{result.method}": result.layer, **result.extra}.items():
        frame.to_file(path, layer=name, driver="GPKG", engine="pyogrio")
        names.append(name)
    return names
