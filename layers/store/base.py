"""The Store interface and the value conversions both backends share."""

from __future__ import annotations

import datetime as dt
import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..errors import StoreError
from ..schema import LAYERS, STORAGE_CRS, Layer, get_layer
from ..workflow import FINAL, LINKED


class Transaction(ABC):
    """Writes that land together or not at all (see `Store.transaction`)."""

    @abstractmethod
    def append(self, layer: str, frame: gpd.GeoDataFrame) -> int:
        """Append rows of `frame` (EPSG:4326, columns named as in the schema) to `layer`."""

    @abstractmethod
    def update(self, layer: str, fid: int, values: dict) -> None:
        """Set columns of one row (closing a zone version, a unit's new phone…)."""

    @abstractmethod
    def update_where(self, layer: str, where: dict, values: dict) -> int:
        """Set columns of every row whose columns equal `where`'s values (a list: any of
        them), in one statement; returns how many rows changed."""

    @abstractmethod
    def delete_source(self, layer: str, source: str) -> int:
        """Delete the rows of `layer` whose `source` is `source` (re-imports of base data)."""

    @abstractmethod
    def rows(self, layer: str, where: dict, lock: bool = False) -> list[dict]:
        """The rows (without geometry, with `fid`) of `layer` whose columns equal `where`'s
        values, read inside this transaction; `lock` holds them until it ends (a case's state
        is read and changed with no other writer in between)."""

    @abstractmethod
    def start_run(self, run: str, started: dt.datetime) -> None:
        """List `run` in the runs table: from the commit on, no reader of the store sees a
        row whose `run` column is `run` (see `shown_runs`) until `end_run`."""

    @abstractmethod
    def end_run(self, run: str, layer: str, keep: bool) -> int:
        """Take `run` off the runs table: its rows of `layer` are seen from the commit on
        (`keep`), or deleted (not `keep`); returns how many were deleted. Either way one
        statement on the runs table, whatever the number of rows (`keep`)."""

    @abstractmethod
    def runs_before(self, started: dt.datetime) -> list[str]:
        """The runs listed as started before `started` (a run killed before it ended)."""

    @abstractmethod
    def next_number(self, name: str, count: int = 1) -> int:
        """Reserve `count` consecutive numbers of the counter `name` (e.g. "case:20261130")
        and return the first. Counters start at 1. The reservation is part of this
        transaction: atomic across threads and processes, and undone by a rollback, so the
        numbers of committed transactions have neither duplicates nor gaps."""


class Store(ABC):
    """Where the layers live. Subclasses: GeoPackageStore, PostGISStore."""

    url: str
    kind: str

    @abstractmethod
    def init(self) -> None:
        """Create every missing layer with its columns and spatial index."""

    @abstractmethod
    def count(self, layer: str, where: dict | None = None, bbox=None, *, time=None,
              exclude: dict | None = None) -> int:
        """Number of rows in `layer`, or of those `read` would give with the same filters."""

    @abstractmethod
    def read(self, layer: str, bbox: tuple[float, float, float, float] | None = None,
             where: dict | None = None, *, limit: int | None = None, offset: int = 0,
             order: list[tuple[str, str]] | None = None, time: tuple | None = None,
             exclude: dict | None = None) -> gpd.GeoDataFrame:
        """Rows of `layer` (EPSG:4326), optionally only those that meet the box `bbox`
        (W, S, E, N in degrees; the geometry itself, not only its box), found through the
        spatial index, whose columns equal
        `where`'s values (a list: any of them) and are none of `exclude`'s (a null is none
        of them). `time` = (datetime column, start, end): start <= value < end, each bound
        an aware datetime or None (open); a null time is outside every range; a list of
        such ranges: all of them. `order`:
        [(column, "asc" | "desc"), …], nulls last, text by code point, then fid ascending
        (the default order is fid alone). `limit`/`offset`: one page of that order. All of
        it is done by the database. Has an `fid` column. A table without geometry (users,
        tokens, case_steps) comes back as a plain DataFrame."""

    @abstractmethod
    def cells(self, layer: str, size: float, *, bbox=None, where: dict | None = None,
              exclude: dict | None = None, time=None, flags: dict | None = None) -> pd.DataFrame:
        """How many points of point layer `layer` (with the filters of `read`) fall in each
        square cell of `size` degrees (ix = floor((lon + 180) / size), iy likewise from
        latitude + 90), counted apart by `flags` = {name: (datetime column, instant)}, each
        1 where the column's time is at or before the instant (0 where it is later or
        null). Columns ix, iy, the flags, n, and lon, lat: the mean of the cell's points.
        Grouped by the database, so a city's million reports cost one query."""

    @abstractmethod
    def _begin(self) -> Transaction: ...

    @abstractmethod
    def _commit(self, tx: Transaction) -> None: ...

    @abstractmethod
    def _rollback(self, tx: Transaction) -> None: ...

    @abstractmethod
    def has_spatial_index(self, layer: str) -> bool:
        """True when `layer`'s geometry column has a spatial index."""

    @abstractmethod
    def extent(self, layers: list[str] | None = None, *, exact: bool = False
               ) -> tuple[float, float, float, float] | None:
        """(W, S, E, N) of everything stored (or of `layers`), from the spatial indexes; None
        when empty. A GeoPackage's index keeps float32 boxes rounded outward (~1 m): `exact`
        reads the geometries at its edges for the box PostGIS gives (zones generate's study
        area); a map page's view needs no more than the index's."""

    @abstractmethod
    def check(self) -> dict:
        """A real query to the store: {"store": kind, "ok": True, …} (for /health), or
        StoreUnavailable when it cannot answer now."""

    def close(self) -> None:  # noqa: B027 - optional for backends without connections
        """Release connections."""

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All appends inside the block land together; any exception undoes them all."""
        tx = self._begin()
        try:
            yield tx
        except BaseException:
            self._rollback(tx)
            raise
        self._commit(tx)

    def append(self, layer: str, frame: gpd.GeoDataFrame) -> int:
        with self.transaction() as tx:
            return tx.append(layer, frame)

    def is_empty(self) -> bool:
        return all(self.count(name) == 0 for name in LAYERS)

    def layer_info(self) -> list[dict]:
        """One dict per layer: name, title, geometry type, feature count, CRS."""
        return [{"name": layer.name, "title_zh": layer.title_zh,
                 "geometry_type": layer.geometry_type, "count": self.count(layer.name),
                 "crs": STORAGE_CRS if layer.geometry_type else None} for layer in LAYERS.values()]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- conversions shared by the backends -------------------------------------------------

_MULTI = {"Point": None, "MultiLineString": shapely.multilinestrings,
          "MultiPolygon": shapely.multipolygons}


def promote(geoms: np.ndarray, geometry_type: str | None) -> np.ndarray:
    """Single parts made multi where the layer stores Multi* (None stays None)."""
    make = _MULTI.get(geometry_type or "Point")
    if make is None:
        return geoms
    single = shapely.get_type_id(geoms) == (1 if geometry_type == "MultiLineString" else 3)
    out = geoms.copy()
    if single.any():
        out[single] = [make([g]) for g in geoms[single]]
    return out


def _cell(value, type_: str, column: str, row: int):
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        if type_ == "text":
            return str(value)
        if type_ == "real":
            return float(value)
        if type_ == "integer":
            return int(value)
        if type_ == "boolean":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "y", "是")
            return bool(value)
        if type_ == "date":
            return pd.Timestamp(value).date()
        if type_ == "datetime":
            ts = pd.Timestamp(value)
            return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
                    ).to_pydatetime()
    except (TypeError, ValueError) as exc:
        raise StoreError(f"row {row}: column {column!r} value {value!r} is not a {type_} ({exc})"
                         ) from None
    raise StoreError(f"unknown column type {type_!r}")


def _fast_column(values: np.ndarray, type_: str) -> list | None:
    """A column converted as `_cell` converts each value, in one pass for the common cases
    (text, numbers, dates that are dates already); None when some value needs `_cell` (its
    checks and its message naming the row)."""
    missing = pd.isna(values)
    present = values[~missing]
    if type_ == "text":
        return [None if m else (v if type(v) is str else str(v)) for v, m in zip(values, missing)]
    # the kinds pandas infers in C: only those where `_cell` would do the same (a bool, a
    # decimal or anything else takes the slow path with its checks)
    kind = pd.api.types.infer_dtype(present, skipna=False) if len(present) else "empty"
    if type_ == "real" and kind in ("floating", "integer", "mixed-integer-float", "empty"):
        return [None if m else float(v) for v, m in zip(values, missing)]
    if type_ == "integer" and kind in ("integer", "empty"):
        return [None if m else int(v) for v, m in zip(values, missing)]
    if type_ == "date" and all(type(v) is dt.date for v in present):
        return [None if m else v for v, m in zip(values, missing)]
    return None


def rows_for(layer: Layer, frame: gpd.GeoDataFrame) -> tuple[list[str], list[list], np.ndarray]:
    """Column names, Python row values and geometries (EPSG:4326, promoted to the layer's
    geometry type) of `frame`, ready for either backend."""
    spatial_frame = isinstance(frame, gpd.GeoDataFrame) and layer.geometry_type is not None
    if spatial_frame and frame.crs is not None and not frame.crs.equals(STORAGE_CRS):
        frame = frame.to_crs(STORAGE_CRS)
    geom_name = frame.geometry.name if spatial_frame else None
    unknown = [c for c in frame.columns if c != geom_name and c not in layer.column_names]
    if unknown:
        raise StoreError(f"layer {layer.name!r} has no column(s) {unknown}")
    cols = [c.name for c in layer.columns if c.name in frame.columns]
    types = [layer.column(c).type for c in cols]
    data = frame[cols].astype(object).to_numpy()
    columns = []
    for k, (t, c) in enumerate(zip(types, cols)):
        values = _fast_column(data[:, k], t)
        columns.append(values if values is not None else
                       [_cell(v, t, c, i + 1) for i, v in enumerate(data[:, k])])
    rows = [list(r) for r in zip(*columns)] if columns else [[] for _ in range(len(data))]
    if layer.geometry_type is None:
        return cols, rows, None
    geoms = promote(np.asarray(frame.geometry.values, dtype=object), layer.geometry_type)
    return cols, rows, geoms


def spatial(layer: str | Layer) -> bool:
    return (layer if isinstance(layer, Layer) else LAYERS[layer]).geometry_type is not None


def where_values(layer: Layer, where: dict | None) -> list[tuple[str, list]]:
    """(column, converted values) for an equality filter; a list value means any of them."""
    out = []
    for col, value in (where or {}).items():
        if col not in layer.column_names and col != "fid":
            raise StoreError(f"layer {layer.name!r} has no column {col!r}")
        values = value if isinstance(value, (list, tuple, set)) else [value]
        type_ = "integer" if col == "fid" else layer.column(col).type
        out.append((col, [_cell(v, type_, col, 1) for v in values]))
    return out


# How finely each backend keeps a time: a bound is rounded up to it, so that for stored
# values `start <= v < end` means the same as it does for the bound as given.
RESOLUTION = {"geopackage": "ms", "postgis": "us"}


def _instant(value, name: str, resolution: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, (dt.datetime, pd.Timestamp)) or value.tzinfo is None:
        raise StoreError(f"time range {name}: {value!r} is not an aware datetime (give one with a "
                         "time zone, e.g. datetime(2026, 11, 30, tzinfo=UTC))")
    return pd.Timestamp(value).tz_convert("UTC").ceil(resolution).to_pydatetime()


def read_options(layer: Layer, kind: str, limit, offset, order, time) -> tuple:
    """The paging, order and time-range arguments of `read` checked and normalised:
    (limit or None, offset, [(column, "ASC"|"DESC")], (column, start, end) or None), bounds as
    UTC datetimes rounded up to the backend's resolution. StoreError names a bad argument."""
    for name, value in (("limit", limit), ("offset", offset)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or value < 0):
            raise StoreError(f"read {layer.name!r}: {name} must be a whole number >= 0, not {value!r}")
    sort = []
    for item in order or []:
        if not isinstance(item, (tuple, list)) or len(item) != 2 or str(item[1]).lower() not in ("asc", "desc"):
            raise StoreError(f"read {layer.name!r}: order is a list of (column, 'asc' | 'desc'), "
                             f"not {item!r}")
        if item[0] != "fid" and item[0] not in layer.column_names:
            raise StoreError(f"read {layer.name!r}: cannot order by {item[0]!r}, no such column")
        sort.append((item[0], str(item[1]).upper()))
    spans = []
    ranges = [] if time is None else [time] if isinstance(time, tuple) and isinstance(time[0], str) else time
    for item in ranges:
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise StoreError(f"read {layer.name!r}: time is (column, start, end) or a list of them, "
                             f"not {time!r}")
        col = item[0]
        if col not in layer.column_names or layer.column(col).type != "datetime":
            raise StoreError(f"read {layer.name!r}: time range on {col!r}, which is not a datetime column")
        spans.append((col, _instant(item[1], "start", RESOLUTION[kind]),
                      _instant(item[2], "end", RESOLUTION[kind])))
    return (None if limit is None else int(limit)), int(offset or 0), sort, spans


def cell_options(layer: Layer, size, flags) -> list[tuple[str, str, dt.datetime]]:
    """`cells`' arguments checked: [(flag name, datetime column, UTC instant)]."""
    if layer.geometry_type != "Point":
        raise StoreError(f"cells counts points; {layer.name!r} holds {layer.geometry_type or 'no geometry'}")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < size <= 10:
        raise StoreError(f"cells: size is a cell's side in degrees, 0 < size <= 10, not {size!r}")
    out = []
    for name, (col, instant) in (flags or {}).items():
        if not str(name).isidentifier() or col not in layer.column_names or layer.column(col).type != "datetime":
            raise StoreError(f"cells: flag {name!r} needs a datetime column of {layer.name!r}, not {col!r}")
        out.append((name, col, _instant(instant, name, "us")))
    return out


def column_type(layer: Layer, column: str) -> str:
    return "integer" if column == "fid" else layer.column(column).type


def update_values(layer: Layer, values: dict) -> tuple[list[str], list]:
    """Column names and converted values for an update of `layer`."""
    cols = list(values)
    bad = [c for c in cols if c not in layer.column_names]
    if bad:
        raise StoreError(f"layer {layer.name!r} has no column(s) {bad}")
    return cols, [_cell(values[c], layer.column(c).type, c, 1) for c in cols]


def empty_frame(layer: Layer) -> gpd.GeoDataFrame:
    """A layer's frame with no rows (a copy of one made once per layer: making it takes
    ~30 ms on the wide layers, and every read that finds nothing returns one)."""
    return _empty_frame(layer.name).copy()


@functools.cache
def _empty_frame(name: str) -> gpd.GeoDataFrame:
    layer = get_layer(name)
    if layer.geometry_type is None:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in ["fid", *layer.column_names]})
    return gpd.GeoDataFrame({c: pd.Series([], dtype=object) for c in ["fid", *layer.column_names]},
                            geometry=gpd.GeoSeries([], crs=STORAGE_CRS))


def frame_from_rows(layer: Layer, cols: list[str], rows: list[tuple], wkb: list) -> gpd.GeoDataFrame:
    """Build a GeoDataFrame from backend rows (fid first) and WKB geometries."""
    if not rows:
        return empty_frame(layer)
    df = pd.DataFrame.from_records(rows, columns=["fid", *cols])
    if layer.geometry_type is None:
        return nulls_as_none(layer, df)
    geoms = shapely.from_wkb(np.array(wkb, dtype=object))
    return nulls_as_none(layer, gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms, crs=STORAGE_CRS)))


def _all_none(values: np.ndarray) -> bool:
    """Whether every one of `values` is None (list.count compares in C: a generator of `is`
    tests took ~2 ms for a column of 10,000 nulls, and a read has dozens)."""
    try:
        return values.tolist().count(None) == len(values)
    except TypeError:  # pd.NA refuses to be a truth value
        return False


def nulls_as_none(layer: Layer, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Text and yes/no columns as Python objects with None for null, on both backends
    (pandas would otherwise pick NaN or its own string dtype depending on the values).
    A column that already is so is left alone: setting a column of a GeoDataFrame costs ~1 ms."""
    for c in layer.columns:
        if c.type not in ("text", "boolean"):
            continue
        col = frame[c.name]
        values = col.to_numpy(dtype=object)
        missing = pd.isna(values)
        if col.dtype == object and _all_none(values[missing]):
            continue
        values = values.copy()
        values[missing] = None
        frame[c.name] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def from_db(layer: Layer, cols: list[str], values) -> dict:
    """A row read by SQL as a dict of Python values: datetimes aware (UTC), dates as dates,
    yes/no as bool, whichever way the backend spelled them."""
    out = {}
    for c, v in zip(cols, values):
        type_ = "integer" if c == "fid" else layer.column(c).type
        if v is not None and type_ == "datetime" and not isinstance(v, dt.datetime):
            t = pd.Timestamp(v)
            v = (t.tz_convert("UTC") if t.tzinfo else t.tz_localize("UTC")).to_pydatetime()
        elif v is not None and type_ == "date" and not isinstance(v, dt.date):
            v = dt.date.fromisoformat(str(v)[:10])
        elif v is not None and type_ == "boolean":
            v = bool(v)
        out[c] = v
    return out


COUNTERS = "zonemap_counters"  # name TEXT PRIMARY KEY, value INTEGER: the last number handed out

# Runs of `zones generate` still moving their rows in: run TEXT PRIMARY KEY, started (a time).
# A row of a layer with a RUN_COLUMN whose run is listed here is seen by no reader, router,
# tile or check of zonemap; taking the run off the list shows all its rows at once, in one
# statement however many they are (Transaction.start_run / end_run).
RUNS = "zonemap_runs"
RUN_COLUMN = "run"


# A view of the zones in force, for tools that read the store without zonemap (QGIS, ogr2ogr,
# a SQL client): the current version of each zone, no row of an unfinished run, and none of
# zonemap's private columns. The `zones` table itself also holds closed versions and, while a
# generation moves its rows in, that run's rows.
IN_FORCE_VIEW = "zones_in_force"


def in_force_view_columns() -> list[str]:
    """The view's columns: the zones' own, without the private run column."""
    return [c for c in ["fid", *LAYERS["zones"].column_names, "geom"] if c != RUN_COLUMN]


def in_force_view_sql() -> str:
    """The view's SELECT (both stores): the zones' own columns, for rows in force."""
    cols = ", ".join(f'"{c}"' for c in in_force_view_columns())
    return f'SELECT {cols} FROM "zones" WHERE "valid_to" IS NULL AND {shown_runs()}'


def shown_runs(alias: str = "") -> str:
    """SQL (both stores) true for a row that no unfinished run hides."""
    col = f'{alias}."{RUN_COLUMN}"' if alias else f'"{RUN_COLUMN}"'
    return f"({col} IS NULL OR {col} NOT IN (SELECT run FROM {RUNS}))"


def hides_runs(spec: Layer, where: dict | None) -> bool:
    """Whether a read of `spec` leaves out the rows of unfinished runs: always for a layer
    with a run column, unless the read asks for a run's rows by name (the run itself does)."""
    return RUN_COLUMN in spec.column_names and RUN_COLUMN not in (where or {})

# The open cases, as the problems tiles below z18 ask for them (layers/tiles.py TILED), in the
# same text (for the planners to see that an index of them applies): both stores index them apart,
# so that a tile reads the ~5 % of a city's cases that are open, not every case in its box.
# PostGIS: a partial GiST index; GeoPackage: an R-tree of their boxes alone (OPEN_RTREE), which
# triggers keep in step with the cases whoever writes them.


def open_cases(row: str = "") -> str:
    """The condition that a case is open, on the row `row` ("NEW." in a trigger)."""
    finished = ", ".join(f"'{s}'" for s in (*FINAL, LINKED))
    return f"{row}status IS NULL OR {row}status NOT IN ({finished})"


OPEN_CASES = open_cases()
OPEN_RTREE = "problems_open_rtree"

# The layers a map draws as vector tiles (layers/tiles.py TILED). PostGIS keeps their geometry in
# Web Mercator too (MERCATOR_COLUMN, a generated column with its own GiST index), so that a tile
# is cut from it without transforming every row of the tile again.
MERCATOR_LAYERS = ("zones", "buildings", "roads", "problems")
MERCATOR_COLUMN = "geom_3857"
# and, for the layers of polygons, how far a vertex of that geometry may move before it could
# become invalid (ST_MinimumClearance, in metres; none for an invalid geometry): a tile whose grid
# moves no vertex by half that much keeps the polygon valid without PostGIS's repair
CLEARANCE_COLUMN = "geom_3857_clearance"
CLEARANCE_LAYERS = ("zones", "buildings")
# PostGIS keeps each zone's primary unit's name beside it too (triggers on both tables keep it in
# step with units' renames, whoever writes), so that a zones tile looks up no unit a feature
UNIT_NAME_COLUMN = "primary_unit_name"


def check_counter(name: str, count: int) -> None:
    if not isinstance(name, str) or not name:
        raise StoreError(f"a counter needs a non-empty name, not {name!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise StoreError(f"counter {name!r}: count must be a whole number >= 1, not {count!r}")


def check_layer(name: str) -> Layer:
    try:
        return get_layer(name)
    except KeyError as exc:
        raise StoreError(exc.args[0]) from None


def to_date_text(value) -> str | None:
    """ISO text for the GeoPackage's DATE / DATETIME columns."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
