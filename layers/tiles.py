"""Vector tiles (Mapbox Vector Tile, the XYZ scheme of web maps) for the map layers, so that a
map never downloads a whole layer: tile math, the layer's version, the GeoPackage encoder
(the maintained `mapbox-vector-tile`) with its cache, and PostGIS's own `ST_AsMVT`.

A tile is `EXTENT` units square with `BUFFER` units of margin, so that a polygon's edge on the
tile border is drawn by neither tile's stroke. Below a layer's minimum zoom a tile is empty
(zero bytes, a valid MVT with no layers): at city scale a zoomed-out tile would hold every
zone of the city, which is exactly the weight this module exists to avoid.

Why the two paths differ: PostGIS clips, projects and encodes in C in ~1–5 ms a tile at z15–16,
so it answers each request fresh; Python takes 10–50 ms, so GeoPackage tiles are kept in an
in-process LRU keyed by the layer's version, which every write to the layer changes."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

import geopandas as gpd
import mapbox_vector_tile
import numpy as np
import pandas as pd
import shapely

from .errors import NotFound
from .schema import LAYERS
from .store import Store

EXTENT = 4096  # tile units a side (the MVT default, and what Leaflet.VectorGrid expects)
BUFFER = 64  # tile units of margin kept around a tile
MAX_ZOOM = 22
MIN_ZOOM = {"zones": 13, "buildings": 15, "roads": 12, "problems": 14}
UNIT_OF = {"zones": "primary_unit", "problems": "unit_id"}  # who answers, named in `unit_name`
_R = 6378137.0  # the Web Mercator (EPSG:3857) sphere
ORIGIN = math.pi * _R  # half the world's width in metres


# ---- tile math ----------------------------------------------------------------------------

def check_tile(layer: str, z: int, x: int, y: int) -> None:
    """NotFound (404) for a layer without tiles or an address outside the tile pyramid."""
    if layer not in MIN_ZOOM:
        raise NotFound(f"no tiles for {layer!r}; tiled layers: {', '.join(MIN_ZOOM)}")
    if not 0 <= z <= MAX_ZOOM or not (0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise NotFound(f"no tile {z}/{x}/{y}: zoom is 0–{MAX_ZOOM} and x, y are 0–2^zoom−1")


def shown(layer: str, z: int) -> bool:
    """Whether `layer` is drawn at zoom `z` (below its minimum zoom its tiles are empty)."""
    return z >= MIN_ZOOM[layer]


def tile_bounds(z: int, x: int, y: int, margin: float = 0.0) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of tile z/x/y in EPSG:3857 metres, `margin` tile units wider."""
    size = 2 * ORIGIN / 2 ** z
    pad = size * margin / EXTENT
    minx, maxy = -ORIGIN + x * size, ORIGIN - y * size
    return minx - pad, maxy - size - pad, minx + size + pad, maxy + pad


def to_mercator(lon, lat):
    """EPSG:4326 degrees → EPSG:3857 metres (numpy arrays or floats); latitudes held inside
    the Mercator square so a pole does not become infinity."""
    lat = np.clip(lat, -85.05112878, 85.05112878)
    return np.radians(lon) * _R, np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * _R


def to_lonlat(x, y):
    return np.degrees(np.asarray(x) / _R), np.degrees(2 * np.arctan(np.exp(np.asarray(y) / _R)) - np.pi / 2)


def lonlat_bbox(z: int, x: int, y: int, margin: float = BUFFER) -> tuple[float, float, float, float]:
    """The tile (with `margin`) as a (W, S, E, N) box in degrees, for the store's index."""
    minx, miny, maxx, maxy = tile_bounds(z, x, y, margin)
    (w, e), (s, n) = to_lonlat([minx, maxx], [miny, maxy])
    return float(w), float(s), float(e), float(n)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The (x, y) of the zoom-`z` tile holding a point."""
    mx, my = to_mercator(lon, lat)
    size = 2 * ORIGIN / 2 ** z
    return int((mx + ORIGIN) // size), int((ORIGIN - my) // size)


# ---- the layer's version --------------------------------------------------------------------

def _last_fid(store: Store, layer: str) -> int:
    got = store.read(layer, order=[("fid", "desc")], limit=1)
    return int(got["fid"].iloc[0]) if len(got) else 0


def layer_version(store: Store, layer: str) -> tuple:
    """What changes whenever `layer`'s tiles may change: zones and unit names bump the
    "zones:versions" counter (every zone and unit writer does); a case's move adds a
    case_steps row and a report a problems row; base data is re-imported (delete, append),
    which changes its count or its last fid. A few indexed reads: cheap next to a tile."""
    from .zone_edit import change_count  # zone_edit imports the store layer; keep this module light

    if layer == "zones":
        return (change_count(store),)
    if layer == "problems":
        return change_count(store), _last_fid(store, "problems"), _last_fid(store, "case_steps")
    return store.count(layer), _last_fid(store, layer)


class TileCache:
    """A thread-safe LRU of encoded tiles. Keys carry the layer's version, so a write makes
    the old tiles unreachable (they age out) instead of being served stale."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._tiles: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> bytes | None:
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key, tile: bytes) -> None:
        with self._lock:
            self._tiles[key] = tile
            self._tiles.move_to_end(key)
            while len(self._tiles) > self.size:
                self._tiles.popitem(last=False)


# ---- GeoPackage: encoded in Python ------------------------------------------------------------

def in_force(layer: str, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Zones: only the versions in force (closed versions stay in the store for history)."""
    if layer == "zones" and not frame.empty:
        return frame[frame["valid_to"].isna()]
    return frame


def tile_geometries(geoms: np.ndarray, z: int, x: int, y: int) -> np.ndarray:
    """Degrees → tile units (y down), clipped to the tile and its buffer and snapped to the
    integer grid the tile stores (done here, vectorised, so the encoder does no work of its
    own and what it receives is valid after rounding)."""
    minx, _, maxx, maxy = tile_bounds(z, x, y)
    scale = EXTENT / (maxx - minx)

    def project(coords):
        mx, my = to_mercator(coords[:, 0], coords[:, 1])
        return np.column_stack([(mx - minx) * scale, (maxy - my) * scale])

    local = shapely.transform(geoms, project)
    clipped = shapely.clip_by_rect(local, -BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
    return shapely.set_precision(clipped, 1.0)


def _value(v, tz):
    """A property as MVT can hold it: no nulls; dates as ISO text, times (stored in UTC) as
    ISO 8601 in the city's time zone `tz` with the offset, as the rest of the API gives them."""
    if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, dt.datetime):
        t = pd.Timestamp(v)
        return (t.tz_localize("UTC") if t.tzinfo is None else t).tz_convert(tz).isoformat(timespec="seconds")
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def encode(layer: str, frame: gpd.GeoDataFrame, columns: list[str], z: int, x: int, y: int,
           labels: dict[str, Callable] | None = None, tz="UTC") -> bytes:
    """The tile z/x/y of `frame` (EPSG:4326 rows of `layer`) with `columns` as properties
    (times in zone `tz`); `labels` adds a property per name computed from the row's dict
    (unit_name…)."""
    frame = in_force(layer, frame)
    if frame.empty:
        return b""
    geoms = tile_geometries(frame.geometry.to_numpy(), z, x, y)
    keep = ~(shapely.is_empty(geoms) | shapely.is_missing(geoms))
    records = frame.loc[keep, columns].to_dict("records")
    features = []
    for geom, row in zip(geoms[keep], records):
        props = {k: v for k, v in ((k, _value(v, tz)) for k, v in row.items()) if v is not None}
        for name, label in (labels or {}).items():
            props[name] = label(row)
        features.append({"geometry": geom, "properties": props})
    if not features:
        return b""
    return mapbox_vector_tile.encode(
        [{"name": layer, "features": features}],
        default_options={"extents": EXTENT, "y_coord_down": True, "check_winding_order": True,
                         "on_invalid_geometry": mapbox_vector_tile.encoder.on_invalid_geometry_make_valid})


# ---- PostGIS: ST_AsMVT --------------------------------------------------------------------------

def _prop_sql(layer: str, column: str) -> str:
    """A column as an MVT property: times as ISO 8601 text in the session's (the city's)
    time zone, like the rest of the API; others as they are."""
    kind = LAYERS[layer].column(column).type
    if kind == "datetime":
        return f'to_char(t."{column}", \'YYYY-MM-DD"T"HH24:MI:SSOF":"TZM\') AS "{column}"'
    if kind == "date":
        return f'to_char(t."{column}", \'YYYY-MM-DD\') AS "{column}"'
    return f't."{column}"'


def postgis_sql(layer: str, columns: Iterable[str]) -> str:
    """The one query of a tile: rows meeting the tile (+ buffer) found by the GiST index in
    EPSG:4326, transformed to EPSG:3857 before ST_AsMVTGeom clips and quantises them.
    Parameters: z, x, y (thrice, named) and `names` (jsonb of unit names the units table
    does not hold: the 属地兜底 fallbacks and category rules' units)."""
    props = [_prop_sql(layer, c) for c in columns]
    joins, where = "", ""
    if layer in UNIT_OF:
        col = UNIT_OF[layer]
        props.append(f'COALESCE(u.name, %(names)s::jsonb ->> t."{col}", t."{col}") AS unit_name')
        joins = f'LEFT JOIN units u ON u.unit_id = t."{col}"'  # unit_id is unique
    if layer == "zones":
        where = " AND t.valid_to IS NULL"
    margin = BUFFER / EXTENT
    return f"""
WITH box AS (SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS env,
                    ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => {margin}), 4326) AS big),
rows AS (
  SELECT ST_AsMVTGeom(ST_Transform(t.geom, 3857), box.env, {EXTENT}, {BUFFER}, true) AS geom,
         {", ".join(props)}
  FROM "{layer}" t CROSS JOIN box {joins}
  WHERE t.geom && box.big{where})
SELECT ST_AsMVT(rows.*, '{layer}', {EXTENT}, 'geom') FROM rows WHERE geom IS NOT NULL"""


def postgis_tile(store, layer: str, columns: list[str], z: int, x: int, y: int,
                 names: dict[str, str], tz: str) -> bytes:
    """Tile z/x/y of `layer` from PostGIS (`store` a PostGISStore), times in zone `tz`."""
    sql = postgis_sql(layer, columns)
    params = {"z": z, "x": x, "y": y, "names": json.dumps(names, ensure_ascii=False)}

    def query(con):
        with con.transaction():  # SET LOCAL: the time zone ends with the transaction
            con.execute("SELECT set_config('TimeZone', %s, true)", (tz,))
            row = con.execute(sql, params).fetchone()
        return bytes(row[0]) if row and row[0] is not None else b""

    return store._read(query)


__all__ = ["BUFFER", "EXTENT", "MIN_ZOOM", "TileCache", "check_tile", "encode", "layer_version",
           "lonlat_bbox", "postgis_tile", "shown", "tile_bounds", "tile_of"]
