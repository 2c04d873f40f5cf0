"""`zonemap route FILE --out FILE`: route every point of a file.

In memory (the default): a CSV/XLSX/GeoJSON/GeoPackage/GeoParquet file read whole, routed in one
call and written as CSV, XLSX, GeoJSON or GeoParquet. With `engine="dask"`, a file larger than
memory (GeoParquet, or CSV read in blocks) is routed partition by partition on a Dask cluster
(layers/partitioned.py) and written as a GeoParquet folder or CSV parts. Both run `routed`, the
same code over the same `Router`; the dask engine ships the router (the zones in force, their
units, footprints and grid) to each worker once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj

from .errors import InputError
from .partitioned import PARQUET, Output, PointFile, broadcast, cluster, read_in_memory
from .routing import Router
from .store import Store

OUT_SUFFIXES = (".csv", ".xlsx", ".geojson", ".json", ".parquet")
NO_COORDINATES = "no coordinates"
# the columns routing adds, typed so that every partition of a GeoParquet has one schema
ROUTED = {"lon_wgs84": "float64", "lat_wgs84": "float64", "zone_code": "str", "zone_kind": "str",
          "zone_version": "Int64", "unit_id": "str", "unit_name": "str", "method": "str",
          "distance_m": "float64", "grid_code": "str"}


def route_file(store: Store, path, out, *, system: str | None = None, x: str | None = None,
               y: str | None = None, as_of: dt.date | None = None, engine: str = "memory",
               scheduler: str | None = None, workers: int = 2) -> dict:
    if engine == "dask":
        return _route_partitioned(store, path, out, system=system, x=x, y=y, as_of=as_of, scheduler=scheduler,
                                  workers=workers)
    if engine != "memory":
        raise InputError(f"engine must be memory or dask, not {engine!r}")
    out = Path(out)
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise InputError(f"--out {out.name}: write .csv, .xlsx, .geojson or .parquet")
    source = read_in_memory(path, x=x, y=y)
    frame = source.frame
    if frame.geometry.isna().all():
        raise InputError(f"{source.path.name} has no coordinates: name the columns with --x and --y")
    system = _system(source.path.name, source.crs, system)
    table = routed(Router(store, as_of), frame, system)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        table.to_csv(out, index=False, encoding="utf-8-sig")  # with BOM, so Excel shows Chinese
    elif suffix == ".xlsx":
        table.to_excel(out, index=False)
    elif suffix in PARQUET:
        _with_points(table, frame, system).to_parquet(out, index=False)
    else:
        _with_points(table, frame, system).to_file(out, driver="GeoJSON")
    return {"file": source.path.name, "out": str(out), "rows": len(table),
            "methods": table["method"].value_counts().to_dict(), "crs": system}


def _system(name: str, crs, system: str | None) -> str:
    """The coordinate system to route in: `--crs`, else WGS 84 for a file in lon/lat."""
    if system is not None:
        return system
    if crs is not None and not pyproj.CRS(crs).is_geographic:
        raise InputError(f"{name} is in a projected CRS; route needs longitude/latitude "
                         "(wgs84, gcj02, bd09 or cgcs2000)")
    return "wgs84"


def routed(router: Router, frame: gpd.GeoDataFrame, system: str) -> pd.DataFrame:
    """`frame`'s columns (without its geometry) and, for each row, the routed columns of
    `ROUTED`; a row without a point gets the method "no coordinates". The whole file in memory
    and each partition of a large one go through here."""
    geoms = frame.geometry
    has = (geoms.notna() & ~geoms.is_empty).to_numpy()
    types = geoms[has].geom_type.unique()
    if len(types) and set(types) != {"Point"}:
        raise InputError(f"route takes points, found {', '.join(types)}")
    res = router.route_arrays(geoms[has].x.to_numpy(), geoms[has].y.to_numpy(), system)
    table = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    for col, dtype in ROUTED.items():
        full = np.full(len(table), None, dtype=object)
        full[has] = res[col]
        table[col] = pd.Series(full, index=table.index, dtype=dtype)
    table.loc[~has, "method"] = NO_COORDINATES
    return table


def _with_points(table: pd.DataFrame, frame: gpd.GeoDataFrame, system: str) -> gpd.GeoDataFrame:
    """The routed rows with the file's own points (their coordinates as given)."""
    return gpd.GeoDataFrame(table, geometry=frame.geometry.values, crs="EPSG:4490" if system == "cgcs2000"
                            else "EPSG:4326")


def _route_part(part: pd.DataFrame, router: Router, coords, system: str, out: Output, partition_info=None):
    """One partition: its points (as the in-memory reader makes them) routed, and written as
    part N of `out` (with the points again for GeoParquet); answers its count per method. A
    bad row is named by its partition."""
    number = partition_info["number"]
    frame = coords.points(part)
    try:
        table = routed(router, frame, system)
    except InputError as exc:
        raise InputError(f"partition {number + 1} (in file order): {exc}") from None
    out.write_part(_with_points(table, frame, system) if out.kind == "parquet" else table, number)
    return table["method"].value_counts().rename_axis("method").reset_index(name="n")


def _route_partitioned(store: Store, path, out, *, system, x, y, as_of, scheduler, workers) -> dict:
    out = Output.to(out)
    source = PointFile.open(path, x, y)
    system = _system(source.name, source.crs, system)
    router = Router(store, as_of)
    counts = pd.DataFrame({"method": pd.Series(dtype="str"), "n": pd.Series(dtype="int64")})
    with cluster(scheduler, workers) as client, out.writing():
        shared = broadcast(client, router)  # the zones reach each worker once, not once per partition
        done = source.frame.map_partitions(_route_part, shared, source.coords, system, out, meta=counts).compute()
        n_workers = len(client.scheduler_info()["workers"])
    methods = done.groupby("method")["n"].sum().sort_values(ascending=False)
    return {"file": source.name, "out": str(out.path), "rows": int(methods.sum()),
            "methods": {str(k): int(v) for k, v in methods.items()}, "crs": system, "engine": "dask",
            "partitions": source.frame.npartitions, "parts": len(out.parts()), "workers": n_workers}
