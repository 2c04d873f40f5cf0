"""`zonemap route FILE --out FILE`: route every point of a CSV/XLSX/GeoJSON file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj

from .errors import InputError
from .readers import read_file
from .routing import Router
from .store import Store

OUT_SUFFIXES = (".csv", ".xlsx", ".geojson", ".json")


def route_file(store: Store, path, out, *, system: str | None = None, x: str | None = None,
               y: str | None = None, as_of: dt.date | None = None) -> dict:
    out = Path(out)
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise InputError(f"--out {out.name}: write .csv, .xlsx or .geojson")
    source = read_file(path, x=x, y=y)
    frame = source.frame
    geoms = frame.geometry
    if geoms.isna().all():
        raise InputError(f"{source.path.name} has no coordinates: name the columns with --x and --y")
    if system is None:
        if source.crs is not None and not pyproj.CRS(source.crs).is_geographic:
            raise InputError(f"{source.path.name} is in a projected CRS; route needs longitude/latitude "
                             "(wgs84, gcj02, bd09 or cgcs2000)")
        system = "wgs84"
    has = geoms.notna().to_numpy()
    types = geoms[has].geom_type.unique()
    if len(types) and set(types) != {"Point"}:
        raise InputError(f"{source.path.name}: route takes points, found {', '.join(types)}")
    router = Router(store, as_of)
    res = router.route(geoms[has].x.to_numpy(), geoms[has].y.to_numpy(), system)
    table = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    for col in res.columns:
        full = np.full(len(table), None, dtype=object)
        full[has] = res[col].to_numpy()
        table[col] = full
    table.loc[~has, "method"] = "no coordinates"
    suffix = out.suffix.lower()
    if suffix == ".csv":
        table.to_csv(out, index=False, encoding="utf-8-sig")  # with BOM, so Excel shows Chinese
    elif suffix == ".xlsx":
        table.to_excel(out, index=False)
    else:
        gpd.GeoDataFrame(table, geometry=geoms.values, crs="EPSG:4326" if system != "cgcs2000" else "EPSG:4490"
                         ).to_file(out, driver="GeoJSON")
    return {"file": source.path.name, "out": str(out), "rows": len(table),
            "methods": table["method"].value_counts().to_dict(), "crs": system}
