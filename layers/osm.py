"""OpenStreetMap extracts (.osm, .osm.gz, .osm.bz2, .osm.pbf) → buildings, roads, pois, areas.

GDAL's OSM driver (through pyogrio) assembles ways and multipolygon relations; tags it does
not expose as columns come in its `other_tags` hstore text and are parsed here. Features are
kept when they meet the study box (`bbox`, else the file's <bounds>, else everything); road
centrelines are clipped to the box grown by `margin_m` metres so that roads just outside the
box, which still bound its buildings' frontages, are kept.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyogrio.errors import DataLayerError, DataSourceError

from .errors import InputError
from .schema import LAYERS, STORAGE_CRS

_HSTORE = re.compile(r'"((?:[^"\\]|\\.)*)"=>"((?:[^"\\]|\\.)*)"')
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")
_POI_KEYS = ("shop", "amenity", "office", "craft", "tourism", "leisure", "healthcare")
_AREA_KEYS = ("landuse", "amenity", "leisure", "tourism", "shop", "office")
# OSM tag → layer column where the names differ
_RENAMED = {"building:levels": "levels", "addr:street": "addr_street",
            "addr:housenumber": "addr_housenumber", "name:en": "name_en"}


def _gdal_path(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".osm.gz"):
        return f"/vsigzip/{path}"
    if name.endswith(".osm.bz2"):
        return f"/vsibzip2/{path}"  # GDAL has no bzip2 reader: reported below
    return str(path)


def file_bounds(path: Path) -> tuple[float, float, float, float] | None:
    """The <bounds> element of an OSM XML file (W, S, E, N), if it has one."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    if path.name.lower().endswith(".pbf"):
        return None
    with opener(path, "rb") as fh:
        head = fh.read(4096).decode("utf-8", "replace")
    m = re.search(r"<bounds\s+([^>]*)/?>", head)
    if not m:
        return None
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    try:
        return (float(attrs["minlon"]), float(attrs["minlat"]),
                float(attrs["maxlon"]), float(attrs["maxlat"]))
    except (KeyError, ValueError):
        return None


def _tags(frame: pd.DataFrame) -> list[dict]:
    """All tags of each feature: GDAL's columns plus the parsed other_tags."""
    cols = [c for c in frame.columns if c not in ("geometry", "other_tags", "osm_id", "osm_way_id",
                                                   "z_order")]
    records = frame[cols].to_dict("records")
    out = []
    for rec, other in zip(records, frame["other_tags"] if "other_tags" in frame else [None] * len(frame)):
        tags = {k: v for k, v in rec.items() if isinstance(v, str)}
        if isinstance(other, str):
            for k, v in _HSTORE.findall(other):
                tags.setdefault(k.replace('\\"', '"'), v.replace('\\"', '"'))
        out.append(tags)
    return out


def _number(text):
    if text is None:
        return None
    m = _NUMBER.match(str(text))
    return float(m.group(1)) if m else None


def _to_layer(name: str, frame: gpd.GeoDataFrame, tags: list[dict], ids: pd.Series,
              extra: dict | None = None) -> gpd.GeoDataFrame:
    spec = LAYERS[name]
    wanted = [c for c in spec.column_names if c not in ("source", "attrs", "raw_x", "raw_y", "raw_crs")]
    by_tag = {c: c for c in wanted}
    by_tag.update({k: v for k, v in _RENAMED.items() if v in wanted})
    rows = []
    for t, osm_id in zip(tags, ids):
        row = {c: None for c in wanted}
        for tag, col in by_tag.items():
            if tag in t:
                row[col] = t[tag]
        row["osm_id"] = osm_id
        rest = {k: v for k, v in t.items() if k not in by_tag}
        row["attrs"] = json.dumps(rest, ensure_ascii=False) if rest else None
        row["source"] = "osm"
        rows.append(row)
    df = pd.DataFrame(rows, columns=[*wanted, "attrs", "source"])
    for col in wanted:
        if spec.column(col).type == "real":
            df[col] = [_number(v) for v in df[col]]
    for k, v in (extra or {}).items():
        df[k] = v
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(frame.geometry.values, crs=STORAGE_CRS))


def read_osm(path: str | Path, bbox: tuple[float, float, float, float] | None = None,
             margin_m: float = 200.0) -> dict[str, gpd.GeoDataFrame]:
    """Layers buildings, roads, pois and areas (EPSG:4326) from an OSM extract."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes): download the extract again")
    if not re.search(r"\.(osm|osm\.gz|osm\.pbf|pbf)$", path.name.lower()):
        raise InputError(f"{path.name}: import-osm reads .osm, .osm.gz and .osm.pbf files; "
                         "for other formats use `zonemap import FILE --as LAYER`")
    src = _gdal_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read = {layer: pyogrio.read_dataframe(src, layer=layer, on_invalid="ignore")
                    for layer in ("points", "lines", "multipolygons")}
    except (DataSourceError, DataLayerError, OSError, EOFError) as exc:
        raise InputError(f"{path.name} is not a readable OSM extract: {exc}") from None
    if bbox is None:
        bbox = file_bounds(path)
    if bbox is not None:
        w, s, e, n = bbox
        if not (w < e and s < n and w >= -180 and e <= 180 and s >= -90 and n <= 90):
            raise InputError(f"--bbox {w} {s} {e} {n} is not W S E N in degrees (W<E, S<N)")
    for k, df in read.items():
        read[k] = df[df.geometry.notna() & ~df.geometry.is_empty]
    pts, lines, mp = read["points"], read["lines"], read["multipolygons"]
    aoi = shapely.box(*bbox) if bbox is not None else None
    # ~metres → degrees of latitude: the margin only decides which road pieces are kept
    aoi_margin = aoi.buffer(margin_m / 111_000.0, join_style="mitre") if aoi is not None else None

    ltags = _tags(lines)
    is_road = np.array(["highway" in t for t in ltags], dtype=bool)
    if aoi is not None:
        is_road &= lines.intersects(aoi).to_numpy()
    roads = lines[is_road].copy()
    rtags = [t for t, keep in zip(ltags, is_road) if keep]
    if aoi_margin is not None:
        roads["geometry"] = roads.geometry.intersection(aoi_margin)
    roads = _to_layer("roads", roads, rtags, roads["osm_id"])
    roads = roads[~roads.geometry.is_empty].explode(index_parts=False)
    roads = roads[roads.geom_type == "LineString"].reset_index(drop=True)

    if aoi is not None:
        mp = mp[mp.intersects(aoi).to_numpy()]
    mtags = _tags(mp)
    mp_ids = mp["osm_way_id"].where(mp["osm_way_id"].notna(), mp["osm_id"])
    osm_type = np.where(mp["osm_way_id"].notna(), "way", "relation")
    is_building = np.array(["building" in t for t in mtags], dtype=bool)
    is_area = ~is_building & np.array([any(k in t for k in _AREA_KEYS) for t in mtags], dtype=bool)
    buildings = _to_layer("buildings", mp[is_building], [t for t, k in zip(mtags, is_building) if k],
                          mp_ids[is_building])
    areas = _to_layer("areas", mp[is_area], [t for t, k in zip(mtags, is_area) if k],
                      mp_ids[is_area], {"osm_type": osm_type[is_area]})

    if aoi is not None:
        pts = pts[pts.within(aoi).to_numpy()]
    ptags = _tags(pts)
    is_poi = np.array([any(k in t for k in _POI_KEYS) for t in ptags], dtype=bool)
    pois = _to_layer("pois", pts[is_poi], [t for t, k in zip(ptags, is_poi) if k], pts["osm_id"][is_poi])
    pois["raw_x"] = pois.geometry.x
    pois["raw_y"] = pois.geometry.y
    pois["raw_crs"] = "EPSG:4326"
    return {"buildings": buildings, "roads": roads, "pois": pois, "areas": areas}
