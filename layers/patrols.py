"""Patrols (走): grid workers' tracks, from GPX/GeoJSON/KML files or the phone page, and 巡查率,
the share of grid cells (or zones) a track passed within N metres in a period.

Distances are measured in the metric CRS of the data's place (geo.crs.metric_crs); a cell is
patrolled when any track of the period comes within `within_m` of it (15 m by default,
evaluation.toml [patrol]), which takes a track along the street in front of a cell as passing it."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from geo.crs import metric_crs, to_wgs84

from .errors import Forbidden, InputError
from .schema import STORAGE_CRS
from .store import Store
from .zones import current

WORKER_COLUMNS = ("worker", "巡查员", "网格员", "巡查人", "user", "name", "Name", "NAME")
TIME_LIST_COLUMNS = ("times", "coordTimes", "coordinateProperties")
RECORDERS = ("inspector", "admin")
MAX_POINTS = 2000  # an hour at one point every 2 s; keeps a track under the 256 kB JSON limit
# RFC 3339 date-time, the form the API documents (a date alone is not a time of a track point)
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


# ---- metres -----------------------------------------------------------------------------

def to_metric(geoms, crs: str | None = None) -> tuple[np.ndarray, str]:
    """Geometries in EPSG:4326 → the same in the metric CRS of their middle (or `crs`)."""
    s = gpd.GeoSeries(np.asarray(geoms, dtype=object), crs=STORAGE_CRS)
    if crs is None:
        w, so, e, n = s.total_bounds if len(s) and not s.is_empty.all() else (118.78, 32.04, 118.78, 32.04)
        crs = metric_crs((w + e) / 2, (so + n) / 2)
    return s.to_crs(crs).values, crs


def metric_area(geoms) -> np.ndarray:
    return shapely.area(to_metric(geoms)[0])


# ---- reading tracks ---------------------------------------------------------------------

def _times(value) -> list:
    """A feature's per-point times: a JSON list or a list-like of ISO times."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if isinstance(value, dict):  # coordinateProperties: {"times": [...]}
        value = value.get("times", [])
    return [v for v in np.asarray(value, dtype=object).ravel().tolist() if v not in (None, "")]


def _gpx(path: Path) -> gpd.GeoDataFrame:
    """A GPX file's tracks (or routes) with the times of their points."""
    layers = {name for name, _ in pyogrio.list_layers(path)}
    tracks = pyogrio.read_dataframe(path, layer="tracks") if "tracks" in layers else None
    if tracks is None or tracks.empty:
        routes = pyogrio.read_dataframe(path, layer="routes")
        return gpd.GeoDataFrame({"worker": routes.get("name")}, geometry=routes.geometry, crs=routes.crs)
    pts = pyogrio.read_dataframe(path, layer="track_points", columns=["track_fid", "time"])
    t = pd.to_datetime(pts["time"], utc=True)
    span = pd.DataFrame({"fid": pts["track_fid"], "t": t}).groupby("fid")["t"].agg(["min", "max", "size"])
    idx = np.arange(len(tracks))
    return gpd.GeoDataFrame({
        "worker": tracks["name"].to_numpy(),
        "started_at": span["min"].reindex(idx).to_numpy(), "ended_at": span["max"].reindex(idx).to_numpy(),
        "points": span["size"].reindex(idx).to_numpy()}, geometry=tracks.geometry.values, crs=tracks.crs)


def read_lines(path: str | Path, layer: str | None = None, crs: str | None = None) -> gpd.GeoDataFrame:
    """The line features of a GPX, GeoJSON, KML, GeoPackage or Shapefile, in EPSG:4326, with
    worker, started_at, ended_at and points where the file has them. A file without a CRS
    is refused unless `crs` names it (gcj02/bd09 are converted)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        frame = _gpx(path) if path.suffix.lower() == ".gpx" and layer is None else \
            pyogrio.read_dataframe(path, layer=layer)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise InputError(f"{path.name}: cannot read it as GPX, GeoJSON, KML, GeoPackage or Shapefile ({exc})") \
            from None
    frame = frame[frame.geometry.notna()]
    lines = frame.geometry.geom_type.isin(["LineString", "MultiLineString"]).to_numpy()
    if not lines.any():
        raise InputError(f"{path.name}: no line features (a track or route is a LineString)")
    frame = frame[lines]
    named = crs.lower() if crs else None
    if named in ("gcj02", "bd09", "wgs84", "cgcs2000"):
        frame = frame.set_crs(STORAGE_CRS, allow_override=True)
        if named in ("gcj02", "bd09"):
            frame = frame.set_geometry(shapely.transform(
                frame.geometry.values, lambda xy: np.column_stack(to_wgs84(xy[:, 0], xy[:, 1], named))))
    elif crs:
        frame = frame.set_crs(crs, allow_override=True)
    if frame.crs is None:
        raise InputError(f"{path.name} has no CRS; say which with --crs (wgs84, gcj02, bd09, EPSG:…)")
    return frame.to_crs(STORAGE_CRS)


def _column(frame, names) -> pd.Series | None:
    return next((frame[c] for c in names if c in frame.columns), None)


def _track_rows(frame: gpd.GeoDataFrame, source: str, worker: str | None) -> tuple[gpd.GeoDataFrame, list]:
    """The rows to store and the rejected ones ({"row", "reason"})."""
    who = _column(frame, WORKER_COLUMNS)
    lists = _column(frame, TIME_LIST_COLUMNS)
    start, end = _column(frame, ("started_at", "开始时间", "start")), _column(frame, ("ended_at", "结束时间", "end"))
    rows, geoms, rejected = [], [], []
    for i, g in enumerate(frame.geometry.values):
        n = i + 1
        name = worker or (None if who is None else who.iloc[i])
        name = None if name is None or (isinstance(name, float) and math.isnan(name)) else str(name).strip()
        times = _times(lists.iloc[i]) if lists is not None else []
        t0 = start.iloc[i] if start is not None else (times[0] if times else None)
        t1 = end.iloc[i] if end is not None else (times[-1] if times else None)
        try:
            t0, t1 = (None if v is None or v is pd.NaT else pd.Timestamp(v) for v in (t0, t1))
        except (ValueError, TypeError):
            rejected.append({"row": n, "reason": f"feature {n}: its times are not ISO 8601 times"})
            continue
        if not name:
            rejected.append({"row": n, "reason": f"feature {n}: no worker (a worker/巡查员 property, the "
                                                 "GPX track's <name>, or --worker)"})
            continue
        if t0 is None:
            rejected.append({"row": n, "reason": f"feature {n}: no time (GPX point times, started_at/ended_at or "
                                                 "a times list)"})
            continue
        t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
        t1 = t0 if t1 is None else (t1.tz_localize("UTC") if t1.tzinfo is None else t1.tz_convert("UTC"))
        if t1 < t0:
            rejected.append({"row": n, "reason": f"feature {n}: it ends before it starts"})
            continue
        pts = frame["points"].iloc[i] if "points" in frame.columns else None
        pts = int(pts) if pts is not None and not pd.isna(pts) else int(shapely.get_num_coordinates(g))
        rows.append({"worker": name, "started_at": t0, "ended_at": t1, "points": pts,
                     "channel": "file", "source": f"{source}#{n}"})
        geoms.append(g)
    out = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=gpd.GeoSeries(geoms, crs=STORAGE_CRS))
    if len(out):
        out["length_m"] = shapely.length(to_metric(out.geometry.values)[0])
    return out, rejected


def import_tracks(store: Store | None, path: str | Path, *, layer: str | None = None, crs: str | None = None,
                  worker: str | None = None, dry_run: bool = False, skip_invalid: bool = False):
    """Import a file's tracks into `patrols` in one transaction (all or nothing unless
    `skip_invalid`); the importer's Report."""
    from .importer import Report

    path = Path(path)
    frame = read_lines(path, layer, crs)
    rows, rejected = _track_rows(frame, path.name, worker)
    report = Report(file=path.name, layer="patrols", crs="EPSG:4326", rows=len(frame), accepted=len(rows),
                    rejected=rejected, dry_run=dry_run, reader="pyogrio")
    if rejected and not skip_invalid:
        report.error = (f"{len(rejected)} of {len(frame)} tracks are unusable, so nothing was written; fix them, "
                        "or pass --skip-invalid to import the others")
        return report
    if not len(rows):
        report.error = "no usable tracks; nothing was written"
        return report
    if not dry_run:
        if store is None:
            raise ValueError("a store is needed unless dry_run")
        report.written = store.append("patrols", rows)
    return report


def _point_times(times, n: int) -> list[pd.Timestamp]:
    if not isinstance(times, list) or len(times) != n:
        raise InputError(f"field 'properties.times' must list one time per coordinate ({n})")
    out = []
    for i, t in enumerate(times):
        if not isinstance(t, str) or not _DATE_TIME.fullmatch(t):
            raise InputError(f"field 'properties.times' [{i}]: {t!r} is not an ISO 8601 time with offset "
                             "(2026-11-02T09:00:00+08:00)")
        try:
            out.append(pd.Timestamp(t).tz_convert("UTC"))
        except ValueError:
            raise InputError(f"field 'properties.times' [{i}]: {t!r} is not a real time") from None
    if any(b < a for a, b in itertools.pairwise(out)):
        raise InputError("field 'properties.times': times must not go backwards")
    return out


def _coordinates(geometry) -> list:
    if not isinstance(geometry, dict) or geometry.get("type") != "LineString" or \
            set(geometry) - {"type", "coordinates"}:
        raise InputError("field 'geometry' must be a GeoJSON LineString {\"type\": \"LineString\", \"coordinates\": …}")
    coords = geometry.get("coordinates")
    if not isinstance(coords, list) or not 2 <= len(coords) <= MAX_POINTS:
        raise InputError(f"field 'geometry.coordinates' must list 2 to {MAX_POINTS} [lon, lat] positions")
    for i, c in enumerate(coords):
        ok = isinstance(c, list) and len(c) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in c)
        if not ok or not (-180 <= c[0] <= 180 and -90 <= c[1] <= 90):
            raise InputError(f"field 'geometry.coordinates' [{i}] must be [lon, lat] in degrees")
    return coords


def record_track(store: Store, feature, user, *, origin: str | None = None, area=None) -> dict:
    """One track from the phone page: a GeoJSON Feature whose LineString has one time per point
    (properties.times) and optionally properties.crs (wgs84, gcj02, bd09, cgcs2000). The worker is
    the signed-in user (inspector or admin); every point must lie in the service `area` (422)."""
    from . import audit

    if user.role not in RECORDERS:
        raise Forbidden(f"role {user.role!r} may not record patrols; inspectors (grid workers) and admins may")
    if not isinstance(feature, dict) or feature.get("type") != "Feature" or set(feature) - {"type", "geometry",
                                                                                             "properties"}:
        raise InputError("send a GeoJSON Feature: {\"type\": \"Feature\", \"geometry\": {\"type\": \"LineString\", "
                         "…}, \"properties\": {\"times\": […]}}")
    props = feature.get("properties")
    if not isinstance(props, dict) or set(props) - {"times", "crs"}:
        raise InputError("field 'properties' must be an object with times (and crs)")
    coords = _coordinates(feature.get("geometry"))
    times = _point_times(props.get("times"), len(coords))
    system = props.get("crs", "wgs84")
    if system not in ("wgs84", "gcj02", "bd09", "cgcs2000"):
        raise InputError("field 'properties.crs' is one of wgs84, gcj02, bd09, cgcs2000")
    xy = np.asarray(coords, float)
    if system in ("gcj02", "bd09"):
        xy = np.column_stack(to_wgs84(xy[:, 0], xy[:, 1], system))
    if area is not None and area.shape is not None:
        outside = np.flatnonzero(~shapely.covers(area.shape, shapely.points(xy)))
        if len(outside):
            area.check(*xy[outside[0]])
    line = shapely.linestrings(xy)
    length = float(shapely.length(to_metric([line])[0][0]))
    if not math.isfinite(length):
        raise InputError("field 'geometry': the track cannot be measured in metres (is it near a pole?)")
    row = gpd.GeoDataFrame({"worker": [user.name], "started_at": [times[0]], "ended_at": [times[-1]],
                            "points": [len(coords)], "channel": ["api"], "length_m": [length],
                            "source": ["api"]}, geometry=[line], crs=STORAGE_CRS)
    with store.transaction() as tx:
        audit.record(tx, actor=user.name, role=user.role, action="patrol:record", target=user.name,
                     detail={"points": len(coords)}, origin=origin)
        tx.append("patrols", row)
    return {"worker": user.name, "started_at": times[0].isoformat(), "ended_at": times[-1].isoformat(),
            "points": len(coords), "length_m": round(float(row["length_m"].iloc[0]), 1)}


# ---- 巡查率 --------------------------------------------------------------------------------

def tracks_in(store: Store, period) -> gpd.GeoDataFrame:
    """Tracks that overlap the period."""
    t = store.read("patrols")
    if t.empty:
        return t
    t0 = pd.to_datetime(t["started_at"], utc=True)
    t1 = pd.to_datetime(t["ended_at"], utc=True).fillna(t0)
    return t[((t0 < period.end) & (t1 >= period.start)).fillna(False).to_numpy(bool)]


def cells_of(store: Store, of: str, period) -> gpd.GeoDataFrame:
    """What is patrolled: grid cells (code, name, street, community) or the zones in force on the
    period's last day (code, kind, unit)."""
    if of == "grid":
        g = store.read("grid")
        if g.empty:
            raise InputError("no grid cells in the store: import the unit grid (import FILE --as grid) or "
                             "measure zones (--of zones)")
        return g[["code", "name", "street", "community", "geometry"]].reset_index(drop=True)
    if of == "zones":
        z = current(store.read("zones"), period.last_day)
        if z.empty:
            raise InputError(f"no zones in force on {period.last_day}")
        return z[["code", "kind", "primary_unit", "street", "geometry"]].reset_index(drop=True)
    raise InputError(f"--of {of!r}: grid or zones")


def passes(cells: gpd.GeoDataFrame, tracks: gpd.GeoDataFrame, within_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(cell index, track index) of every cell a track comes within `within_m` of."""
    if cells.empty or tracks.empty:
        return np.empty(0, int), np.empty(0, int)
    cm, crs = to_metric(cells.geometry.values)
    tm, _ = to_metric(tracks.geometry.values, crs)
    ti, ci = shapely.STRtree(cm).query(tm, predicate="dwithin", distance=within_m)
    return ci, ti


def _share(frame: pd.DataFrame, key: str) -> list[dict]:
    g = frame.groupby(frame[key].fillna("—").astype(str))["patrolled"].agg(["size", "sum"])
    return [{key: k, "cells": int(r["size"]), "patrolled": int(r["sum"]), "rate": float(r["sum"] / r["size"])}
            for k, r in g.iterrows()]


def coverage(store: Store, period: str | None = None, *, of: str = "grid", within_m: float | None = None,
             target: float | None = None, tz=None) -> dict:
    """巡查率 of the period: overall, per street and community (grid) or unit (zones), per worker
    (the share of all cells each one passed), against the target, with every cell not patrolled."""
    from .cases import Rules
    from .evaluate import load_formula, parse_period

    formula = load_formula()
    within_m = formula.patrol_within_m if within_m is None else within_m
    target = formula.patrol_target if target is None else target
    if not (0 <= within_m <= 1000 and 0 <= target <= 1):
        raise InputError("--within is 0–1000 m and --target 0–1 (0.95 is 95 %)")
    per = parse_period(period, tz or Rules().tz)
    cells = cells_of(store, of, per)
    tracks = tracks_in(store, per)
    ci, ti = passes(cells, tracks, within_m)
    cells = cells.assign(patrolled=np.isin(np.arange(len(cells)), ci))
    workers = pd.DataFrame({"worker": tracks["worker"].to_numpy()[ti] if len(tracks) else [], "cell": ci})
    by_worker = [{"worker": w, "cells": int(g["cell"].nunique()), "rate": g["cell"].nunique() / len(cells),
                  "tracks": int((tracks["worker"] == w).sum())} for w, g in workers.groupby("worker")]
    rate = float(cells["patrolled"].mean())
    groups = ("street", "community") if of == "grid" else ("primary_unit",)
    missing = cells[~cells["patrolled"]].drop(columns=["geometry", "patrolled"])
    return {"period": per.label, "of": of, "within_m": within_m, "target": target, "cells": len(cells),
            "patrolled": int(cells["patrolled"].sum()), "rate": rate, "meets_target": rate >= target,
            "tracks": len(tracks), "by_worker": by_worker, **{f"by_{k}": _share(cells, k) for k in groups},
            "not_patrolled": [{k: (None if pd.isna(v) else v) for k, v in r.items()}
                              for r in missing.to_dict("records")]}


def coverage_by(store: Store, period, by: str, within_m: float) -> dict:
    """巡查率 per evaluation subject (grid, street, community over grid cells; zone, unit over
    zones); {} when the period has no tracks or the subject has no cells."""
    of = {"grid": "grid", "street": "grid", "community": "grid", "zone": "zones", "unit": "zones"}.get(by)
    if of is None:
        return {}
    tracks = tracks_in(store, period)
    if tracks.empty:
        return {}
    try:
        cells = cells_of(store, of, period)
    except InputError:
        return {}
    ci, _ = passes(cells, tracks, within_m)
    key = {"grid": "code", "zone": "code", "unit": "primary_unit"}.get(by, by)
    frame = pd.DataFrame({"k": cells[key].to_numpy(), "p": np.isin(np.arange(len(cells)), ci)}).dropna()
    return frame.groupby(frame["k"].astype(str))["p"].mean().astype(float).to_dict()


__all__ = ["coverage", "coverage_by", "import_tracks", "metric_area", "passes", "read_lines", "record_track",
           "to_metric"]
