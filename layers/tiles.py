"""Vector tiles (Mapbox Vector Tile 2.1, the XYZ scheme of web maps) of the map layers, so that
a map never downloads a whole layer: what each layer's tiles hold and from which zoom, the tile
math, one query per tile on either store, the GeoPackage's encoder, and the cache both share.

What a tile holds. A map needs to colour, label and click a feature; everything else comes
from GET /api/layers/{layer}/{fid}.geojson when a feature is clicked (the MVT feature id is the
row's fid). So a tile has a few columns per layer (`TILED`), those the caller's role may see
(layers/privacy.py), plus `unit_name` for zones and problems. Zones are the versions in force.
A case carries the two times its light turns at (`light_yellow_at`, `light_red_after`, city
time), not the light: a map tells it at any moment as layers.deadlines.light_at does (red after
the second, yellow from the first, else green), and the tile stays the same while time passes.

From which zoom. A tile holds every feature that meets it, so a layer starts at the zoom where a
tile of a dense city stays small: 100,000 zones of ~400 m² put ~800 zones in a z16 tile, ~3,200 in
a z15 one. Roads and problems are thinned by class instead of cut off: main roads from z12,
tertiary from z14, the rest from z15; open cases from z15, closed, voided and linked ones (most of
a city's history) from z18. Below its first zoom a layer's tile is empty: zero bytes, a valid MVT
with no layers.

Two ways to encode, one query. PostGIS clips, quantises and encodes in C (`ST_AsMVTGeom`,
`ST_AsMVT`) from the EPSG:3857 copy of the geometries the store keeps for the tiled layers
(store.base.MERCATOR_COLUMN, with its own index); a polygon wholly in the tile whose clearance
(store.base.CLEARANCE_COLUMN) rounding cannot close is put on the grid without
`ST_AsMVTGeom`'s repair (`TileQuery._pg_geometry`). The GeoPackage's rows come
from SQLite through the R-tree (geometry blobs and the tile's columns only, unit names joined by
SQLite), are projected, clipped, rounded to the tile grid and oriented by shapely on whole
arrays, and encoded by `encode_layer`: geometry commands computed with numpy, written through
mapbox-vector-tile's protobuf classes. (mapbox-vector-tile's own `encode` takes ~60 ms for the
800 zones of a z16 tile on this 2-core machine, over the 50 ms budget on its own; its decoder
checks ours in tests/webmap/test_tiles.py.)

The cache (`TileCache`, both stores). A tile is kept with the layer's version (`layer_version`:
one or three indexed reads) and a fingerprint of what it was made from: the fid and tile columns
of every row in it. When the version has moved (a write somewhere in the layer), the fingerprint
is read again (the same query without geometries, a few ms) and only a tile whose rows changed is
made again: an edit in one street leaves the rest of the city's tiles as they were."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import itertools
import math
import pickle
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import shapely
from mapbox_vector_tile.Mapbox import vector_tile_pb2

from geo._tiles import polygonal
from geo.crs import gcj02_to_wgs84, wgs84_to_gcj02

from .errors import NotFound
from .schema import LAYERS
from .store import Store
from .store.base import CLEARANCE_COLUMN, CLEARANCE_LAYERS, MERCATOR_COLUMN, OPEN_RTREE, UNIT_NAME_COLUMN, shown_runs
from .workflow import FINAL, LINKED

EXTENT = 4096  # tile units a side (the MVT default, and what Leaflet.VectorGrid expects)
BUFFER = 64  # tile units of margin kept around a tile, so a border's stroke is in neither tile
MAX_ZOOM = 22
_R = 6378137.0  # the Web Mercator (EPSG:3857) sphere
ORIGIN = math.pi * _R  # half the world's width in metres

MAIN_ROADS = ("motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link",
              "secondary", "secondary_link")
FINISHED = (*FINAL, LINKED)  # cases a map shows only close up (the stores index the others apart)


@dataclass(frozen=True)
class TileLayer:
    """What the tiles of one layer hold: `columns` (before the role's allow-list), from
    `min_zoom`; the features whose `by` column has a value in `zoom_of` from that value's zoom
    instead; `unit` names the column whose unit's name is added as `unit_name`; `early_rtree`,
    a GeoPackage R-tree of the boxes of the rows shown before every `zoom_of` value is, read
    instead of the layer's (PostgreSQL picks its partial index itself)."""
    name: str
    columns: tuple[str, ...]
    min_zoom: int
    unit: str | None = None
    by: str | None = None
    zoom_of: Mapping[str, int] = field(default_factory=dict)
    early_rtree: str | None = None

    @property
    def first_zoom(self) -> int:
        return min([self.min_zoom, *self.zoom_of.values()])

    def where(self, z: int) -> list[str]:
        """SQL conditions (the same text for SQLite and PostgreSQL) on `t`, the layer's rows,
        for the features drawn at zoom `z`."""
        out = [IN_FORCE] if self.name == "zones" else []
        if self.by:
            col = f't."{self.by}"'
            later = [v for v, m in self.zoom_of.items() if m > z]
            if z < self.min_zoom:
                out.append(f"{col} IN ({_literals(v for v, m in self.zoom_of.items() if m <= z)})")
            elif later:
                out.append(f"({col} IS NULL OR {col} NOT IN ({_literals(later)}))")
        return out


# the zones a map draws: in force, and of no run of `zones generate` still moving in
IN_FORCE = "t.valid_to IS NULL AND " + shown_runs("t")

TILED = {layer.name: layer for layer in (
    TileLayer("zones", ("code", "kind", "primary_unit"), 16, unit="primary_unit"),
    TileLayer("buildings", ("name", "building"), 16),
    TileLayer("roads", ("name", "highway"), 15, by="highway",
              zoom_of={**dict.fromkeys(MAIN_ROADS, 12), "tertiary": 14, "tertiary_link": 14}),
    TileLayer("problems", ("problem_id", "category", "status", "light_yellow_at", "light_red_after"), 16,
              unit="unit_id", by="status", zoom_of=dict.fromkeys(FINISHED, 18), early_rtree=OPEN_RTREE),
)}
MIN_ZOOM = {name: layer.first_zoom for name, layer in TILED.items()}
# A city sparse enough draws these before their zoom: from the first zoom at which no tile holds
# more than TILE_FEATURES_MAX of them (a district's first view shows its zones; a dense city's
# 100,000 stay at z16, where a tile holds ~800)
SPARSE_ZOOM = {"zones": 13, "buildings": 14}
TILE_FEATURES_MAX = 1500
_CENTRES = {  # each row's box centre: the R-tree's, or the geometry's box
    "geopackage": 'SELECT (r.minx + r.maxx) / 2, (r.miny + r.maxy) / 2 FROM "rtree_{n}_geom" r '
                  'JOIN "{n}" t ON t.fid = r.id{w}',
    "postgis": 'SELECT (ST_XMin(t.geom) + ST_XMax(t.geom)) / 2, (ST_YMin(t.geom) + ST_YMax(t.geom)) / 2 '
               'FROM "{n}" t{w}'}


def _literals(values) -> str:
    """SQL string literals of our own constants (class names, states)."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def tile_columns(layer: str, visible: list[str]) -> list[str]:
    """The columns of `layer`'s tiles a caller who may see `visible` gets."""
    return [c for c in TILED[layer].columns if c in visible]


# ---- tile math ----------------------------------------------------------------------------

def check_tile(layer: str, z: int, x: int, y: int) -> None:
    """NotFound (404) for a layer without tiles or an address outside the tile pyramid."""
    if layer not in TILED:
        raise NotFound(f"no tiles for {layer!r}; tiled layers: {', '.join(TILED)}")
    if not 0 <= z <= MAX_ZOOM or not (0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise NotFound(f"no tile {z}/{x}/{y}: zoom is 0–{MAX_ZOOM} and x, y are 0–2^zoom−1")


def shown(layer: str, z: int) -> bool:
    """Whether any of `layer` is drawn at zoom `z` in every city (below its first zoom its
    tiles are empty; a sparse city's may start earlier: TileCache.first_zoom)."""
    return z >= MIN_ZOOM[layer]


def _first_zoom(store: Store, name: str, early: int) -> int:
    where = f" WHERE {IN_FORCE}" if name == "zones" else ""
    rows = store.query(_CENTRES[store.kind].format(n=name, w=where), ())
    if not rows:
        return early
    lonlat = np.asarray(rows, dtype=float)
    mx, my = to_mercator(lonlat[:, 0], lonlat[:, 1])
    last = TILED[name].min_zoom
    size = 2 * ORIGIN / 2 ** last
    ix, iy = ((mx + ORIGIN) // size).astype(np.int64), ((ORIGIN - my) // size).astype(np.int64)
    for z in range(early, last):
        shift = last - z
        _, counts = np.unique((ix >> shift) * (1 << z) + (iy >> shift), return_counts=True)
        if counts.max() <= TILE_FEATURES_MAX:
            return z
    return last


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


# ---- the layer's version and the cache ----------------------------------------------------

def _version_sql(layer: str) -> str:
    """The SELECT of `layer_version` (the same text for SQLite and PostgreSQL)."""
    from .zone_edit import CHANGE_COUNT  # zone_edit imports the store layer; keep this module light

    def fids(*names):  # the first and last fid of each (indexed reads on both stores)
        return [f'(SELECT {f}(fid) FROM "{n}")' for n in names for f in ("min", "max")]

    if layer == "zones":
        return f"SELECT {CHANGE_COUNT}"
    if layer == "problems":
        return f"SELECT {', '.join([CHANGE_COUNT, *fids('problems', 'case_steps')])}"
    return f"SELECT {', '.join(fids(layer))}"


def layer_version(store: Store, layer: str) -> tuple:
    """What changes whenever `layer`'s tiles may change: zones and unit names bump the
    "zones:versions" counter (every zone and unit writer does); a case's move adds a case_steps
    row and a report a problems row; base data is re-imported (delete, append), which moves its
    first or last fid. Indexed reads only (a count of 150,000 buildings would take 10–30 ms)."""
    return tuple(store.query(_version_sql(layer), ())[0])


@dataclass
class Tile:
    """An encoded tile as cached: the layer's version and the fingerprint of the rows it was
    made at, its bytes, their tag, and (asked for once) their gzip."""
    version: tuple
    fingerprint: str
    body: bytes
    etag: str = ""
    _gzipped: bytes | None = field(default=None, repr=False)

    def __post_init__(self):
        self.etag = self.etag or hashlib.blake2b(self.body, digest_size=12).hexdigest()

    def gzipped(self, level: int) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=level)
        return self._gzipped


class TileCache:
    """A thread-safe LRU of encoded tiles with the version and fingerprint each was made at,
    holding at most `max_bytes` of tiles (plain; their gzip adds about a third): a z16 view of
    a dense city's zones is ~5 MB plain."""

    def __init__(self, max_bytes: int = 192 * 2**20):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._tiles: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.made = 0  # tiles encoded (a miss, or rows that changed): what an edit costs
        self.kept = 0  # tiles whose version moved but whose rows did not
        self._first: dict = {}  # (store url, layer) → first_zooms' memo

    def first_zooms(self, store: Store) -> dict[str, int]:
        """The first zoom of each tiled layer in `store` (first_zoom's)."""
        return {name: self.first_zoom(store, name) for name in MIN_ZOOM}

    def first_zoom(self, store: Store, name: str) -> int:
        """The first zoom of layer `name` in `store`: MIN_ZOOM's, earlier for a layer of
        SPARSE_ZOOM where the city is sparse enough (no tile over TILE_FEATURES_MAX features at
        that zoom). Counted from every row's box centre (~2 s for 100,000 zones and their
        buildings; once, and again when a write changed the layer's size by a tenth: an edit in
        one street changes no tile's density, a new district's import may)."""
        if name not in SPARSE_ZOOM:
            return MIN_ZOOM[name]
        key, version = (store.url, name), layer_version(store, name)
        with self._lock:
            got = self._first.get(key)  # (layer version, first zoom, rows counted at)
        if got is None or got[0] != version:
            rows = store.count(name)
            if got is None or abs(rows - got[2]) > 0.1 * max(got[2], 1):
                got = (version, _first_zoom(store, name, SPARSE_ZOOM[name]), rows)
            else:
                got = (version, got[1], got[2])
            with self._lock:
                self._first[key] = got
        return got[1]

    def get(self, key) -> Tile | None:
        with self._lock:
            entry = self._tiles.get(key)
            if entry is not None:
                self._tiles.move_to_end(key)
            return entry

    def put(self, key, entry: Tile) -> None:
        with self._lock:
            old = self._tiles.pop(key, None)
            self.bytes += len(entry.body) - (len(old.body) if old is not None else 0)
            self._tiles[key] = entry
            while self.bytes > self.max_bytes and len(self._tiles) > 1:
                self.bytes -= len(self._tiles.popitem(last=False)[1].body)

    def tile(self, store: Store, layer: str, cols: list[str], z: int, x: int, y: int,
             names: Mapping[str, str], tz, shift: str | None = None) -> Tile:
        """Tile z/x/y of `layer` from `store` with `cols`, `names` for the units the units table
        does not hold, times in zone `tz`, shifted onto a GCJ-02 basemap when `shift` is
        "gcj02": from the cache while it is current."""
        key = (store.url, layer, z, x, y, tuple(cols), str(tz), tuple(sorted(names.items())), shift)
        query = TileQuery(store.kind, layer, tuple(cols), z, tuple(sorted(names.items())), shift)
        entry = self.get(key)
        if entry is not None:
            version = layer_version(store, layer)
            if entry.version == version:
                return entry
            if entry.fingerprint == query.fingerprint(store, x, y, tz):
                self.kept += 1
                entry.version = version
                self.put(key, entry)
                return entry
        self.made += 1  # a new tile: its version is read with its rows (on PostGIS in one round trip)
        entry = Tile(*query.make(store, x, y, tz))
        self.put(key, entry)
        return entry


# ---- one query per tile, on either store ---------------------------------------------------

@dataclass(frozen=True)
class TileQuery:
    """The SQL of `layer`'s tile at zoom `z` on a store of `kind`: the rows meeting the tile
    (+ buffer) through the spatial index, the columns `cols`, the unit's name (the units table,
    else `names`, else the id). Parameters: z, x, y (PostGIS) or the box w, s, e, n (SQLite, and
    PostGIS when shifted). `shift` "gcj02": the tile of a GCJ-02 basemap (AMap), our WGS 84
    features moved onto it by geo/crs.py; PostGIS then gives rows and Python encodes them (the
    shift is no PostGIS function)."""
    kind: str
    layer: str
    cols: tuple[str, ...]
    z: int
    names: tuple[tuple[str, str], ...] = ()
    shift: str | None = None

    @property
    def _in_sql(self) -> bool:
        """Whether PostGIS makes the whole tile."""
        return self.kind == "postgis" and self.shift is None

    @property
    def spec(self) -> TileLayer:
        return TILED[self.layer]

    def _unit_name(self) -> str:
        """Who answers, by name: the units table's, else the rules' and fallbacks', else the id."""
        col = f't."{self.spec.unit}"'
        known = f"(SELECT u.name FROM units u WHERE u.unit_id = {col})"
        if self.kind == "postgis" and self.layer == "zones":  # kept beside the zone (store.base)
            known = f't."{UNIT_NAME_COLUMN}"'
        if not self.names:
            return f"COALESCE({known}, {col}) AS unit_name"
        cases = " ".join(f"WHEN {_literals([k])} THEN {_literals([v])}" for k, v in self.names)
        return f"COALESCE({known}, CASE {col} {cases} END, {col}) AS unit_name"

    def _select(self, geometry: str | None, props: list[str]) -> str:
        if self.spec.unit is not None:
            props = [*props, self._unit_name()]
        if self._in_sql:
            box = f"t.{MERCATOR_COLUMN} && ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => {BUFFER / EXTENT})"
        elif self.kind == "postgis":
            box = "t.geom && ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326)"
        else:
            spec, rtree = self.spec, f"rtree_{self.layer}_geom"
            if spec.early_rtree and spec.min_zoom <= self.z < max(spec.zoom_of.values()):
                rtree = spec.early_rtree
            box = (f't.fid IN (SELECT id FROM "{rtree}" '
                   "WHERE minx <= :e AND maxx >= :w AND miny <= :n AND maxy >= :s)")
        where = " AND ".join([box, *self.spec.where(self.z)])
        select = ", ".join(["t.fid", *([geometry] if geometry else []), *props])
        return f'SELECT {select} FROM "{self.layer}" t WHERE {where}'

    def _params(self, x: int, y: int) -> dict:
        if self._in_sql:  # and the affine map from EPSG:3857 onto the tile's grid (y down)
            minx, _, maxx, maxy = tile_bounds(self.z, x, y)
            k = EXTENT / (maxx - minx)
            return {"z": self.z, "x": x, "y": y, "k": k, "dx": -minx * k, "dy": maxy * k}
        w, s, e, n = lonlat_bbox(self.z, x, y)
        if self.shift:  # the WGS 84 box whose GCJ-02 image holds the tile (the shift varies little)
            lon, lat = gcj02_to_wgs84(np.array([w, e, e, w]), np.array([s, s, n, n]))
            pad = (e - w) / 100
            w, s, e, n = lon.min() - pad, lat.min() - pad, lon.max() + pad, lat.max() + pad
        return {"w": float(w), "s": float(s), "e": float(e), "n": float(n)}

    @property
    def _names(self) -> list[str]:
        return [*self.cols, *(["unit_name"] if self.spec.unit else [])]

    def fingerprint(self, store: Store, x: int, y: int, tz) -> str:
        """A digest of the fid and tile columns of every row meeting the tile (what `make`
        digests too, without reading a geometry)."""
        if self._in_sql:
            props = [_pg_prop(self.layer, c) for c in self.cols]
            sql = f"WITH r AS MATERIALIZED ({self._select(None, props)}) SELECT {self._pg_digest()} FROM r"
            return self._pg(store, sql, x, y, tz)[0]
        return _digest(self._rows(store, None, x, y, tz))

    def _rows(self, store: Store, geometry: str | None, x: int, y: int, tz) -> list[tuple]:
        """The tile's rows (fid, [geometry,] columns…) in fid order, for Python to encode."""
        if self.kind == "postgis":  # times formatted by PostgreSQL in the city's time zone
            sql = self._select(geometry, [_pg_prop(self.layer, c) for c in self.cols]) + " ORDER BY t.fid"
            return self._pg(store, sql, x, y, tz, every=True)
        return store.query(self._select(geometry, [f't."{c}"' for c in self.cols]) + " ORDER BY t.fid",
                           self._params(x, y))

    def make(self, store: Store, x: int, y: int, tz) -> tuple[tuple, str, bytes]:
        """(the layer's version, read before the rows; the fingerprint; the encoded tile, b"" when
        nothing of the layer is in it)."""
        if self._in_sql:
            props = [_pg_prop(self.layer, c) for c in self.cols]
            rows = self._select(f"{self._pg_geometry()} AS geom", props)
            # MATERIALIZED: else the outer filter is pushed down and ST_AsMVTGeom runs twice a row
            sql = (f"WITH r AS MATERIALIZED ({rows}) SELECT {self._pg_digest()}, "
                   f"ST_AsMVT(r.*, '{self.layer}', {EXTENT}, 'geom', 'fid') FILTER (WHERE r.geom IS NOT NULL) FROM r")
            version, (digest, body) = self._pg(store, sql, x, y, tz, version=True)
            return version, digest, bytes(body) if body is not None else b""
        version = layer_version(store, self.layer)
        pg = self.kind == "postgis"
        rows = self._rows(store, "ST_AsBinary(t.geom)" if pg else "t.geom", x, y, tz)
        digest = _digest([(r[0], *r[2:]) for r in rows])
        if not rows:
            return version, digest, b""
        from .store.gpkg import geoms_from_blobs

        fids, blobs, *values = (list(c) for c in zip(*rows))
        decoded = shapely.from_wkb(np.array([bytes(b) for b in blobs], dtype=object)) if pg else geoms_from_blobs(blobs)
        geoms, keep = tile_geometries(decoded, self.z, x, y, self.shift)
        if not keep.any():
            return version, digest, b""
        at = np.flatnonzero(keep)
        props = {n: [v[i] for i in at] if pg else _values(self.layer, n, [v[i] for i in at], tz)
                 for n, v in zip(self._names, values)}
        return version, digest, encode_layer(self.layer, np.asarray(fids)[keep], geoms, props)

    def _pg_geometry(self) -> str:
        """A row's geometry on the tile's grid, in SQL: `ST_AsMVTGeom` (clip, project, round,
        and repair what rounding made invalid: wagyu, for every polygon, ~2 ms of a z16 zones
        tile's ~10 ms statement); for a polygon that needs no cut (4 m inside the tile's buffer)
        and whose clearance is at least two tile units (rounding moves a vertex at most 0.71 of
        one, so no two parts of it can meet), the same without the repair: the affine map,
        `ST_SnapToGrid` to whole units (which drops repeated points) and the outer rings
        clockwise on screen (counter-clockwise in the grid's numbers, y pointing down). The two
        give the same shapes (35,068 zones of the bench city's z16 view compared)."""
        # the envelopes as sub-selects: PostgreSQL computes each once for the statement (an
        # InitPlan), where the bare call ran for every row (~1 ms of a z16 zones tile's ~10)
        tile = "(SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s))"
        cut = f"ST_AsMVTGeom(t.{MERCATOR_COLUMN}, {tile}, {EXTENT}, {BUFFER}, true)"
        if self.layer not in CLEARANCE_LAYERS:
            return cut
        # `@` compares boxes of 32-bit floats, each rounded outwards by up to 2 m (a float's step
        # at 2e7 m): the box taken 4 m in, so that what passes is inside the tile and its buffer
        whole = (f"t.{MERCATOR_COLUMN} @ (SELECT ST_Expand(ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => "
                 f"{BUFFER / EXTENT}), -4)) AND t.{CLEARANCE_COLUMN} * %(k)s >= 2")
        grid = (f"ST_ForcePolygonCCW(ST_SnapToGrid(ST_Affine(t.{MERCATOR_COLUMN}, %(k)s, 0, 0, -%(k)s, "
                "%(dx)s, %(dy)s), 1))")
        return f"CASE WHEN {whole} THEN {grid} ELSE {cut} END"

    def _pg_digest(self) -> str:
        """The rows' fingerprint in SQL: the exclusive or of each row's 64-bit hash, which
        needs neither the rows as text nor their order (an md5 of the sorted rows' text took
        ~0.6 ms more of a z16 zones tile's ~12 ms statement)."""
        row = ", ".join(["r.fid", *(f'r."{n}"' for n in self._names)])
        return f"coalesce(bit_xor(hash_record_extended(ROW({row}), 0)), 0)::text"

    def _pg(self, store, sql: str, x: int, y: int, tz, every: bool = False, version: bool = False):
        """The one row of `sql` (`every`: all its rows; `version`: (the layer's version, read
        first, and that)) set for tiles: the city's time zone for the times; no parallel workers
        and no JIT, whose start costs more than a tile (the PostGIS functions' high costs make
        the planner want both). Sent as one pipeline, so one round trip to the server (BEGIN,
        the settings, the statement, COMMIT one at a time took four, ~1 ms each at load 6): its
        statements are one implicit transaction until the pipeline's Sync, which the settings
        (set_config's is_local) end with."""
        def query(con):
            with con.pipeline():
                got = con.execute(_version_sql(self.layer)) if version else None
                con.execute("SELECT set_config('TimeZone', %s, true), set_config('jit', 'off', true), "
                            "set_config('max_parallel_workers_per_gather', '0', true)", (str(tz),))
                rows = con.execute(sql, self._params(x, y))
            result = rows.fetchall() if every else rows.fetchone()
            return (tuple(got.fetchone()), result) if version else result

        return store._read(query)


def _digest(rows: list[tuple]) -> str:
    """A tile's rows' fingerprint, compared only in this process (pickled: a third of repr's time)."""
    return hashlib.blake2b(pickle.dumps(rows, protocol=5), digest_size=16).hexdigest()


def _pg_prop(layer: str, column: str) -> str:
    """A column as a PostGIS MVT property: times as ISO 8601 text in the session's (the city's)
    time zone, like the rest of the API; dates as ISO text; others as they are."""
    kind = LAYERS[layer].column(column).type
    if kind == "datetime":
        return f'to_char(t."{column}", \'YYYY-MM-DD"T"HH24:MI:SSOF":"TZM\') AS "{column}"'
    if kind == "date":
        return f'to_char(t."{column}", \'YYYY-MM-DD\') AS "{column}"'
    return f't."{column}"'


def _values(layer: str, column: str, values: list, tz) -> list:
    """One column of SQLite values as MVT properties: times (stored as UTC text) as ISO 8601 in
    zone `tz` with the offset, yes/no as booleans, the rest as they are; None stays None."""
    kind = "text" if column == "unit_name" else LAYERS[layer].column(column).type
    if kind == "datetime":
        return _city_times(values, tz)
    if kind == "boolean":
        return [None if v is None else bool(v) for v in values]
    return values


def _city_times(values: list, tz) -> list:
    """UTC times as the GeoPackage holds them (ours: "…T01:30:00.000Z") → ISO 8601 text in zone
    `tz` with its offset, to the second, as the API writes them; vectorised (pandas' own
    formatting took ~7 ms for a tile's 350 times). Times written by others (another offset or
    precision) are read by pandas."""
    if all(v is None or (isinstance(v, str) and v.endswith("Z")) for v in values):
        utc = np.array(["NaT" if v is None else v[:-1] for v in values], dtype="datetime64[ms]")
    else:
        utc = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601").dt.tz_localize(None)
        utc = utc.to_numpy(dtype="datetime64[ms]")
    naive = pd.DatetimeIndex(utc)
    local = naive.tz_localize("UTC").tz_convert(tz).tz_localize(None)
    offsets = np.nan_to_num((local - naive).total_seconds().to_numpy() // 60).astype(np.int64)
    text = np.datetime_as_string(local.to_numpy(dtype="datetime64[s]"), unit="s").tolist()
    return [None if missing else f"{t}{'-' if o < 0 else '+'}{abs(o) // 60:02d}:{abs(o) % 60:02d}"
            for t, o, missing in zip(text, offsets.tolist(), np.isnat(utc).tolist())]


# ---- the GeoPackage's encoder ---------------------------------------------------------------

def tile_geometries(geoms: np.ndarray, z: int, x: int, y: int, shift: str | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """EPSG:4326 geometries → tile units (y down), clipped to the tile and its buffer, rounded
    to the integer grid the tile stores (a polygon that rounding made invalid is repaired on
    the grid), polygons' outer rings clockwise on screen as MVT wants. Returns the geometries
    that are left and the mask of which input each is. `shift` "gcj02": for a GCJ-02 basemap."""
    minx, _, maxx, maxy = tile_bounds(z, x, y)
    scale = EXTENT / (maxx - minx)

    def project(coords):
        lon, lat = coords[:, 0], coords[:, 1]
        if shift == "gcj02":  # onto a GCJ-02 basemap
            lon, lat = wgs84_to_gcj02(lon, lat)
        mx, my = to_mercator(lon, lat)
        return np.column_stack([(mx - minx) * scale, (maxy - my) * scale])

    local = shapely.clip_by_rect(shapely.transform(geoms, project), -BUFFER, -BUFFER,
                                 EXTENT + BUFFER, EXTENT + BUFFER)
    areal = np.isin(shapely.get_type_id(local), (3, 6))
    grid = shapely.transform(local, _to_grid)
    bad = areal & ~shapely.is_valid(grid)
    if bad.any():
        try:
            grid[bad] = shapely.set_precision(local[bad], 1.0)
        except shapely.errors.GEOSException:  # an invalid footprint (OSM has them): repaired first
            grid[bad] = shapely.set_precision(polygonal(local[bad]), 1.0)
    grid[areal & (shapely.get_dimensions(grid) < 2)] = None  # thinner than a tile unit: not drawn
    keep = ~(shapely.is_empty(grid) | shapely.is_missing(grid))
    grid = grid[keep]
    if areal.any():
        grid = shapely.orient_polygons(grid, exterior_cw=False)  # y points down: this is clockwise on screen
    return grid, keep


def _to_grid(coords: np.ndarray) -> np.ndarray:
    """Coordinates rounded to whole tile units, halves up, as GEOS's pointwise precision
    reduction rounds them (`set_precision(mode="pointwise")`, which took 3.6 ms of a z16 zones
    tile where this takes 1.3)."""
    return np.floor(coords + 0.5)


_POINT, _LINE, _POLYGON = 1, 2, 3
_MOVE_TO, _LINE_TO, _CLOSE = 1, 2, 7


def _command(cmd: int, count) -> np.ndarray | int:
    return (np.asarray(count, dtype=np.int64) << 3) | cmd


def _zigzag(d: np.ndarray) -> np.ndarray:
    return (d << 1) ^ (d >> 63)


def geometry_commands(geoms: np.ndarray) -> tuple[int, list[list[int]]]:
    """The MVT geometry type and each geometry's command integers (geometries of one kind, in
    integer tile units). Repeated points are left out; a ring of fewer than 3 points, a line of
    fewer than 2, and the holes of a dropped ring leave nothing (that feature gets [])."""
    kinds = set(np.unique(shapely.get_type_id(geoms)).tolist())
    if kinds <= {0, 4}:
        coords, owner = shapely.get_coordinates(geoms, return_index=True)
        counts = np.bincount(owner, minlength=len(geoms))
        return _POINT, _point_commands(coords.astype(np.int64), owner, counts)
    if kinds <= {1, 5}:
        paths, owner = shapely.get_parts(geoms, return_index=True)
        return _LINE, _path_commands(paths, owner, None, len(geoms))
    if kinds <= {3, 6}:
        polygons, owner = shapely.get_parts(geoms, return_index=True)
        rings, part = shapely.get_rings(polygons, return_index=True)
        return _POLYGON, _path_commands(rings, owner[part], part, len(geoms))
    raise ValueError(f"a tile layer holds one kind of geometry, not the shapely type ids {sorted(kinds)}")


def _point_commands(coords, owner, counts) -> list[list[int]]:
    prev = np.vstack([[0, 0], coords[:-1]])
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    prev[starts[counts > 0]] = 0  # each feature's cursor starts at the origin
    zz = _zigzag(coords - prev)
    out = np.empty(len(coords) * 2 + np.count_nonzero(counts), dtype=np.int64)
    offsets = np.r_[0, np.cumsum(np.where(counts > 0, 2 * counts + 1, 0))]
    rank = np.arange(len(coords)) - starts[owner]
    pos = offsets[owner] + 1 + 2 * rank
    out[pos], out[pos + 1] = zz[:, 0], zz[:, 1]
    has = counts > 0
    out[offsets[:-1][has]] = _command(_MOVE_TO, counts[has])
    return _split(out.tolist(), offsets)


def _path_commands(paths, path_feature, path_part, n) -> list[list[int]]:
    """Lines (path_part None) or polygon rings (path_part: the polygon each ring belongs to,
    its first ring the outer one)."""
    closed = path_part is not None
    coords, path = shapely.get_coordinates(paths, return_index=True)
    coords = coords.astype(np.int64)
    last = np.r_[path[1:] != path[:-1], True]
    first = np.r_[True, path[1:] != path[:-1]]
    keep = ~last if closed else np.ones(len(path), bool)  # a ring's closing point is implied
    keep &= first | np.r_[True, np.any(coords[1:] != coords[:-1], axis=1)]
    coords, path = coords[keep], path[keep]
    counts = np.bincount(path, minlength=len(paths))
    ok = counts >= (3 if closed else 2)
    if closed:  # a polygon whose outer ring is gone loses its holes too
        outer = np.r_[True, path_part[1:] != path_part[:-1]]
        part_ok = np.zeros(path_part.max() + 1 if len(path_part) else 0, bool)
        part_ok[path_part[outer]] = ok[outer]
        ok &= part_ok[path_part]
    used = ok[path]
    coords, path = coords[used], path[used]
    # the cursor runs on through a feature's paths and starts at the origin for each feature
    feature = path_feature[path]
    prev = np.vstack([[0, 0], coords[:-1]]) if len(coords) else coords
    new_feature = np.r_[True, feature[1:] != feature[:-1]] if len(coords) else np.zeros(0, bool)
    prev[new_feature] = 0
    zz = _zigzag(coords - prev)
    lengths = np.where(ok, 2 * counts + (3 if closed else 2), 0)
    offsets = np.r_[0, np.cumsum(lengths)]
    path_start = np.r_[0, np.cumsum(np.where(ok, counts, 0))][:-1]
    rank = np.arange(len(coords)) - path_start[path]
    pos = offsets[path] + 1 + 2 * rank + (rank > 0)
    out = np.empty(offsets[-1], dtype=np.int64)
    out[pos], out[pos + 1] = zz[:, 0], zz[:, 1]
    starts = offsets[:-1][ok]
    out[starts] = _command(_MOVE_TO, 1)
    out[starts + 3] = _command(_LINE_TO, counts[ok] - 1)
    if closed:
        out[starts + lengths[ok] - 1] = _command(_CLOSE, 1)
    per_feature = np.bincount(path_feature, weights=lengths, minlength=n).astype(np.int64)
    return _split(out.tolist(), np.r_[0, np.cumsum(per_feature)])


def _split(flat: list[int], offsets: np.ndarray) -> list[list[int]]:
    bounds = offsets.tolist()
    return [flat[a:b] for a, b in itertools.pairwise(bounds)]


def encode_layer(name: str, fids, geoms: np.ndarray, props: Mapping[str, list]) -> bytes:
    """One MVT layer `name`: a feature per geometry (tile units, see `tile_geometries`) with id
    `fids[i]` and the non-null `props[column][i]` (text, numbers, booleans); b"" when no
    feature has geometry left."""
    kind, commands = geometry_commands(geoms)
    tile = vector_tile_pb2.tile()
    layer = tile.layers.add()
    layer.name, layer.version, layer.extent = name, 2, EXTENT
    keys = list(props)
    layer.keys.extend(keys)
    index: dict = {}  # a value's key: text as itself, the rest as (type, value): 1, 1.0 and True differ
    columns = []
    for values in props.values():
        if all(type(v) is str for v in values):  # most columns: text, none missing
            columns.append([index.setdefault(v, len(index)) for v in values])
            continue
        col = []
        for v in values:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                col.append(None)
                continue
            if isinstance(v, dt.date):
                v = v.isoformat()
            elif isinstance(v, np.generic):
                v = v.item()
            col.append(index.setdefault(v if type(v) is str else (type(v), v), len(index)))
        columns.append(col)
    for key in index:
        kind_of, v = (str, key) if type(key) is str else key
        value = layer.values.add()
        if kind_of is bool:
            value.bool_value = v
        elif kind_of is int:
            value.int_value = v
        elif kind_of is float:
            value.double_value = v
        else:
            value.string_value = str(v)
    if not columns:
        tags = [[] for _ in commands]
    elif not any(None in col for col in columns):  # every feature has every key: (key, value) pairs by numpy
        pairs = np.empty((len(commands), 2 * len(columns)), dtype=np.int64)
        pairs[:, 0::2] = np.arange(len(columns))
        pairs[:, 1::2] = np.array(columns, dtype=np.int64).T
        tags = pairs.tolist()
    else:
        tags = [[t for k, vi in enumerate(row) if vi is not None for t in (k, vi)] for row in zip(*columns)]
    for fid, geometry, tag in zip(np.asarray(fids).tolist(), commands, tags):
        if not geometry:
            continue
        f = layer.features.add()
        f.id, f.type = fid, kind
        f.tags.extend(tag)
        f.geometry.extend(geometry)
    if not layer.features:
        return b""
    return tile.SerializeToString()


__all__ = ["BUFFER", "EXTENT", "MIN_ZOOM", "TILED", "Tile", "TileCache", "TileLayer", "TileQuery", "check_tile",
           "encode_layer", "geometry_commands", "layer_version", "lonlat_bbox", "shown", "tile_bounds",
           "tile_columns", "tile_geometries", "tile_of"]
