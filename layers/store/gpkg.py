"""The embedded store: one GeoPackage file that QGIS opens as it is.

One SQLite library per file while serving. Two copies of SQLite in one process (Python's
sqlite3 and the one GDAL bundles in pyogrio) break each other's POSIX locks: closing a file
in one drops the locks the other holds, which is how reports answered 201 were lost and
files ended "malformed". So every read and write goes through Python's sqlite3: features are
decoded from the GeoPackage geometry blob (header, optional envelope, ISO WKB) with shapely,
bbox queries use the layer's R-tree table. GDAL only creates missing layers in `init()`
(before serving, with none of our connections open), because it writes the GeoPackage
metadata and R-tree triggers QGIS expects. The triggers call the GeoPackage SQL functions
ST_IsEmpty/ST_MinX/…, which are registered on every connection.

Writes: the file is in WAL mode (readers never wait for the writer), every connection has a
busy timeout, every write transaction starts with BEGIN IMMEDIATE (it takes the write lock
at once, so it can never fail half-way on a lock), and threads of one process queue on an
in-process lock first. A writer that cannot get the lock in time gets StoreUnavailable
(503, "try again"); an error at COMMIT is raised, never swallowed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import struct
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from ..errors import StoreError, StoreUnavailable
from ..schema import LAYERS, STORAGE_CRS, TYPES
from .base import (
    COUNTERS,
    IN_FORCE_VIEW,
    OPEN_RTREE,
    RUN_COLUMN,
    RUNS,
    Store,
    Transaction,
    cell_options,
    check_counter,
    check_layer,
    column_type,
    empty_frame,
    from_db,
    hides_runs,
    in_force_view_sql,
    nulls_as_none,
    open_cases,
    read_options,
    rows_for,
    shown_runs,
    spatial,
    to_date_text,
    update_values,
    where_values,
)

_SRS_ID = 4326
# GeoPackage binary header: "GP", version 0, flags = little-endian + [minx,maxx,miny,maxy] envelope.
_HEADER = b"GP\x00\x03" + struct.pack("<i", _SRS_ID)
_EMPTY_FLAG = 0x10


# Appends of at least this many rows go around GDAL's per-row triggers (_bulk), which drops and
# makes them again: a schema change, which a reader on another connection at that moment may
# get as "database schema has changed". A report or an edit (a few rows) never does that.
BULK_ROWS = 1000

# The R-tree of the open cases' boxes (base.OPEN_RTREE), for the problems tiles below z18: a
# z16 tile's ~350 open cases from it in 4.7 ms, where the fids of the ~7,000 cases in its box
# from the layer's R-tree, checked against a partial index of the open ones, took 16.3 (the
# bench city's 1,000,000 cases, docs/web.md). Kept by triggers, as GDAL keeps the layer's own
# R-tree, so that every writer (QGIS too, whose GDAL has the same SQL functions) keeps it true.
_OPEN_BOX = "NEW.fid, ST_MinX(NEW.geom), ST_MaxX(NEW.geom), ST_MinY(NEW.geom), ST_MaxY(NEW.geom)"
_OPEN_NEW = f"NEW.geom IS NOT NULL AND NOT ST_IsEmpty(NEW.geom) AND ({open_cases('NEW.')})"
OPEN_TRIGGERS = {
    f"{OPEN_RTREE}_insert": f'CREATE TRIGGER "{OPEN_RTREE}_insert" AFTER INSERT ON problems WHEN {_OPEN_NEW} '
                            f'BEGIN INSERT OR REPLACE INTO "{OPEN_RTREE}" VALUES ({_OPEN_BOX}); END',
    f"{OPEN_RTREE}_update": f'CREATE TRIGGER "{OPEN_RTREE}_update" AFTER UPDATE OF fid, geom, status ON problems '
                            f'BEGIN DELETE FROM "{OPEN_RTREE}" WHERE id = OLD.fid; '
                            f'INSERT OR REPLACE INTO "{OPEN_RTREE}" SELECT {_OPEN_BOX} WHERE {_OPEN_NEW}; END',
    f"{OPEN_RTREE}_delete": f'CREATE TRIGGER "{OPEN_RTREE}_delete" AFTER DELETE ON problems '
                            f'BEGIN DELETE FROM "{OPEN_RTREE}" WHERE id = OLD.fid; END',
}


def _fill_open_rtree(con: sqlite3.Connection, first: int | None = None, last: int | None = None) -> None:
    """The open cases' boxes (fids `first`..`last`, else all) into OPEN_RTREE, from the layer's
    own R-tree."""
    span = "" if first is None else f" AND r.id BETWEEN {int(first)} AND {int(last)}"
    con.execute(f'INSERT OR REPLACE INTO "{OPEN_RTREE}" SELECT r.id, r.minx, r.maxx, r.miny, r.maxy '
                f'FROM "rtree_problems_geom" r JOIN problems t ON t.fid = r.id WHERE ({open_cases("t.")}){span}')


def gpkg_blobs(geoms: np.ndarray) -> list:
    """GeoPackage geometry blobs (header, envelope, ISO WKB) for an array of shapely geometries."""
    wkb = shapely.to_wkb(geoms, flavor="iso", byte_order=1)
    b = shapely.bounds(geoms)
    env = np.ascontiguousarray(b[:, [0, 2, 1, 3]], dtype="<f8").tobytes()  # minx maxx miny maxy
    empty = shapely.is_empty(geoms)
    head_empty = b"GP\x00\x11" + struct.pack("<i", _SRS_ID)
    return [None if w is None else head_empty + w if e else _HEADER + env[32 * i:32 * i + 32] + w
            for i, (w, e) in enumerate(zip(wkb, empty))]


def _envelope(blob: bytes) -> tuple[float, float, float, float] | None:
    """(minx, maxx, miny, maxy) of a GeoPackage blob, from its header or its WKB."""
    if blob is None or blob[3] & _EMPTY_FLAG:
        return None
    if (blob[3] >> 1) & 0x07:
        return struct.unpack_from("<4d" if blob[3] & 1 else ">4d", blob, 8)
    g = shapely.from_wkb(blob[8:])
    x0, y0, x1, y1 = g.bounds
    return x0, x1, y0, y1


def _is_empty(blob):
    return 1 if blob is None or _envelope(bytes(blob)) is None else 0


def _env_part(i):
    def f(blob):
        env = _envelope(bytes(blob)) if blob is not None else None
        return None if env is None else env[i]
    return f


class _GpkgTransaction(Transaction):
    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def append(self, layer: str, frame: gpd.GeoDataFrame) -> int:
        spec = check_layer(layer)
        cols, rows, geoms = rows_for(spec, frame)
        if geoms is None:
            names = ", ".join(f'"{c}"' for c in cols)
            marks = ", ".join("?" * len(cols))
            blobs = [()] * len(rows)
        else:
            names = ", ".join(f'"{c}"' for c in [*cols, "geom"])
            marks = ", ".join("?" * (len(cols) + 1))
            blobs = [(b,) for b in gpkg_blobs(geoms)]
        sql = f'INSERT INTO "{layer}" ({names}) VALUES ({marks})'
        dates = [k for k, c in enumerate(cols) if spec.column(c).type in ("date", "datetime")]
        for row in rows:  # only date and time columns need text
            for k in dates:
                row[k] = to_date_text(row[k])
        values = [row + list(blob) for row, blob in zip(rows, blobs)]
        self.con.execute("SAVEPOINT zm_append")
        try:
            if geoms is None or len(values) < BULK_ROWS or not self._bulk(layer, names, marks, values, geoms):
                self.con.executemany(sql, values)  # one statement for all rows (100k zones: ~1 s, not 25)
        except sqlite3.IntegrityError:
            self.con.execute("ROLLBACK TO zm_append")  # again row by row, to name the row
            for i, row in enumerate(values, start=1):
                try:
                    self.con.execute(sql, row)
                except sqlite3.IntegrityError as exc:
                    raise StoreError(f"row {i} of layer {layer!r} breaks a constraint ({exc}); "
                                     "nothing was written") from None
        finally:
            self.con.execute("RELEASE zm_append")
        return len(rows)

    def _bulk(self, layer, names, marks, values, geoms) -> bool:
        """Insert `values` with their R-tree boxes and feature count written in one go,
        without GDAL's per-row triggers (an R-tree insert through five SQL function calls
        per row, and a count update per row: 3/4 of an append's time). The triggers are
        dropped and made again from their own SQL inside the append's savepoint, so other
        connections never see them missing, and a failure brings them back. False when the
        layer's triggers are not GDAL's (then the caller inserts through them)."""
        con = self.con
        names_t = (f"rtree_{layer}_geom_insert", f"trigger_insert_feature_count_{layer}")
        sqls = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN (?, ?)",
                                names_t).fetchall())
        if set(sqls) != set(names_t):
            return False
        top = con.execute(f'SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?), 0), '
                          f'coalesce((SELECT max(fid) FROM "{layer}"), 0))', (layer,)).fetchone()[0]
        fids = range(top + 1, top + 1 + len(values))
        own = {}  # and the open cases' insert trigger (their R-tree filled below instead)
        if layer == "problems":
            own = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                                   (f"{OPEN_RTREE}_insert",)).fetchall())
        for name in [*names_t, *own]:
            con.execute(f'DROP TRIGGER "{name}"')
        con.executemany(f'INSERT INTO "{layer}" (fid, {names}) VALUES (?, {marks})',
                        [[f, *v] for f, v in zip(fids, values)])
        b = shapely.bounds(geoms)
        boxed = ~np.isnan(b[:, 0])
        con.executemany(f'INSERT INTO "rtree_{layer}_geom" VALUES (?, ?, ?, ?, ?)',
                        [(f, x0, x1, y0, y1) for f, (x0, y0, x1, y1) in
                         zip(np.asarray(fids)[boxed].tolist(), b[boxed].tolist())])
        con.execute("UPDATE gpkg_ogr_contents SET feature_count = feature_count + ? "
                    "WHERE lower(table_name) = lower(?)", (len(values), layer))
        if own:  # the open cases' boxes, from the layer's R-tree just written
            _fill_open_rtree(con, fids.start, fids.stop - 1)
        for sql in (*sqls.values(), *own.values()):
            con.execute(sql)
        return True

    def update(self, layer, fid, values):
        cols, vals = update_values(check_layer(layer), values)
        sets = ", ".join(f'"{c}" = ?' for c in cols)
        self.con.execute(f'UPDATE "{layer}" SET {sets} WHERE fid = ?', [*map(to_date_text, vals), int(fid)])

    def update_where(self, layer, where, values):
        spec = check_layer(layer)
        cols, vals = update_values(spec, values)
        sets = ", ".join(f'"{c}" = ?' for c in cols)
        sql, params = _where_sql(spec, where)
        return self.con.execute(f'UPDATE "{layer}" SET {sets}{sql}', [*map(to_date_text, vals), *params]).rowcount

    def delete_source(self, layer, source):
        check_layer(layer)
        return self.con.execute(f'DELETE FROM "{layer}" WHERE source = ?', (source,)).rowcount

    def start_run(self, run, started):
        self.con.execute(f"INSERT INTO {RUNS} (run, started) VALUES (?, ?)", (run, to_date_text(started)))

    def end_run(self, run, layer, keep):
        check_layer(layer)
        gone = 0 if keep else self.con.execute(
            f'DELETE FROM "{layer}" WHERE "{RUN_COLUMN}" = ?', (run,)).rowcount
        self.con.execute(f"DELETE FROM {RUNS} WHERE run = ?", (run,))
        return gone

    def runs_before(self, started):
        return [r[0] for r in self.con.execute(
            f"SELECT run FROM {RUNS} WHERE julianday(started) < julianday(?) ORDER BY run",
            (to_date_text(started),))]

    def next_number(self, name, count=1):
        # BEGIN IMMEDIATE holds SQLite's write lock, so no other connection reads or moves the
        # counter between this statement and our COMMIT.
        check_counter(name, count)
        last = self.con.execute(
            f"INSERT INTO {COUNTERS} (name, value) VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET value = value + excluded.value RETURNING value", (name, count)).fetchone()[0]
        return last - count + 1

    def rows(self, layer, where, lock=False):  # BEGIN IMMEDIATE already holds the write lock
        spec = check_layer(layer)
        cols = ["fid", *spec.column_names]
        sql, params = _where_sql(spec, where)
        names = ", ".join(f'"{c}"' for c in cols)
        got = self.con.execute(f'SELECT {names} FROM "{layer}"{sql} ORDER BY fid', params).fetchall()
        return [from_db(spec, cols, r) for r in got]


def _where_sql(spec, where, exclude=None, time=None) -> tuple[str, list]:
    """WHERE for equality (`where`), "none of these" (`exclude`) and time ranges (checked by
    read_options). Times compare through julianday(): the text a GeoPackage holds may come
    from QGIS or GDAL with another offset or precision than ours, and julianday reads them all."""
    parts, params = ([shown_runs()] if hides_runs(spec, where) else []), []
    for col, values in where_values(spec, where):
        parts.append(f'"{col}" IN ({", ".join("?" * len(values))})')
        params += [to_date_text(v) for v in values]
    for col, values in where_values(spec, exclude):
        known = [to_date_text(v) for v in values if v is not None]
        if None in values:
            parts.append(f'"{col}" IS NOT NULL')
        if known:
            parts.append(f'("{col}" IS NULL OR "{col}" NOT IN ({", ".join("?" * len(known))}))')
            params += known
    for col, start, end in time or []:
        for bound, op in ((start, ">="), (end, "<")):
            if bound is not None:
                parts.append(f'julianday("{col}") {op} julianday(?)')
                params.append(to_date_text(bound))
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


def _sort_key(spec, column: str) -> str:
    quoted = f'"{column}"'
    return f"julianday({quoted})" if column_type(spec, column) == "datetime" else quoted


def _order_sql(spec, sort) -> str:
    """ORDER BY the (column, ASC|DESC) pairs, nulls last, then fid. Text compares by code
    point (SQLite's BINARY collation on UTF-8), times by instant."""
    keys = [f"{_sort_key(spec, c)} {d} NULLS LAST" for c, d in sort]
    return " ORDER BY " + ", ".join([*keys, "fid"])


def _page_sql(limit, offset) -> tuple[str, list]:
    if limit is None and not offset:
        return "", []
    return " LIMIT ? OFFSET ?", [-1 if limit is None else limit, offset]


# ---- decoding what we read ----------------------------------------------------------------

# Bytes of the envelope after the 8-byte header, by the header's envelope indicator (flags
# bits 1-3): none, [minx maxx miny maxy], +[minz maxz], +[minm maxm], +z+m.
_ENVELOPE_BYTES = (0, 32, 48, 48, 64, 0, 0, 0)


def geoms_from_blobs(blobs) -> np.ndarray:
    """Shapely geometries (None for NULL) of GeoPackage geometry blobs: the WKB after each
    header and envelope, decoded in one vectorised call."""
    wkb = np.empty(len(blobs), dtype=object)
    wkb[:] = [None if b is None else b[8 + _ENVELOPE_BYTES[(b[3] >> 1) & 7]:] for b in blobs]
    return shapely.from_wkb(wkb)


def _column(type_: str, values: tuple) -> np.ndarray | pd.Series:
    """One column as pyogrio gives it: numbers as float64 (int64 when an integer column has
    no null), dates as datetime64[ms], times as datetime64[ms, UTC], text and yes/no as
    Python objects with None for null (a Series of dtype object, so that pandas does not
    infer its string dtype only for nulls_as_none to undo it, ~1 ms a column)."""
    if type_ == "real":
        return np.array(values, dtype=float)
    if type_ == "integer":
        return np.array(values, dtype=float if None in values else np.int64)
    if type_ == "boolean":
        return pd.Series([None if v is None else bool(v) for v in values], dtype=object)
    if type_ == "date":
        return pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601").astype("datetime64[ms]")
    if type_ == "datetime":
        return pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601", utc=True
                              ).astype("datetime64[ms, UTC]")
    return pd.Series(values, dtype=object)


def _features(spec, rows: list[tuple], bbox) -> gpd.GeoDataFrame:
    """The frame of a spatial layer from rows (fid, columns…, geom blob); with a bbox, only
    the geometries that really meet it (the R-tree gave their boxes), as GDAL does."""
    geoms = geoms_from_blobs([r[-1] for r in rows])
    if bbox is not None:
        keep = shapely.intersects(geoms, shapely.box(*bbox))
        geoms, rows = geoms[keep], [r for r, k in zip(rows, keep) if k]
    if not rows:
        return empty_frame(spec)
    columns = list(zip(*rows))
    data = {"fid": np.array(columns[0], dtype=np.int64)}
    for c, values in zip(spec.columns, columns[1:-1]):
        data[c.name] = _column(c.type, values)
    frame = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs=STORAGE_CRS))
    return nulls_as_none(spec, frame)


# ---- connections ----------------------------------------------------------------------------

# Threads of one process queue here before asking SQLite for the write lock (SQLite's busy
# handler polls with sleeps; a lock wakes the next writer at once). One lock per file, shared
# by every store object on it; fresh after a fork, where a lock held by a parent's thread
# would stay held forever.
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()
# Connections a forked child inherited from its parent: never used, and never closed either
# (closing one in the child could checkpoint or unlock the parent's file), only kept.
_INHERITED: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    global _WRITE_LOCKS_GUARD
    _WRITE_LOCKS.clear()
    _WRITE_LOCKS_GUARD = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _write_lock(path: Path) -> threading.Lock:
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(str(path.resolve()), threading.Lock())


def _open(path: Path, busy_s: float) -> sqlite3.Connection:
    # isolation_level=None: we say BEGIN ourselves; check_same_thread=False only so that
    # close() may close every thread's connection (each is used by its own thread alone).
    con = sqlite3.connect(path, isolation_level=None, timeout=busy_s, check_same_thread=False)
    con.execute(f"PRAGMA busy_timeout = {int(busy_s * 1000)}")
    con.create_function("ST_IsEmpty", 1, _is_empty, deterministic=True)
    for i, name in enumerate(["ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"]):
        con.create_function(name, 1, _env_part(i), deterministic=True)
    return con


class _Connections:
    """One connection per thread, per process: reused across calls (opening one costs a
    schema parse), never shared by threads, and never used after a fork by the child."""

    def __init__(self, path: Path, busy_s: float):
        self.path, self.busy_s = path, busy_s
        self._local = threading.local()
        self._open: list[tuple[int, sqlite3.Connection]] = []
        self._guard = threading.Lock()
        self._generation = 0  # close_all() makes every thread open a new one

    def get(self) -> sqlite3.Connection:
        mine = getattr(self._local, "con", None)
        if mine is not None:
            pid, generation, con = mine
            if pid == os.getpid() and generation == self._generation:
                return con
            if pid != os.getpid():
                _INHERITED.append(con)
        con = _open(self.path, self.busy_s)
        with self._guard:
            self._open = [(p, c) for p, c in self._open if p == os.getpid()]
            self._open.append((os.getpid(), con))
            self._local.con = (os.getpid(), self._generation, con)
        return con

    def close_all(self) -> None:
        with self._guard:
            self._generation += 1
            here = [c for p, c in self._open if p == os.getpid()]
            _INHERITED.extend(c for p, c in self._open if p != os.getpid())
            self._open = []
        for con in here:
            con.close()


def _busy(exc: sqlite3.Error) -> bool:
    """A wait that ran out, or a schema changed under the statement by another connection (a
    bulk append's triggers, see BULK_ROWS): a 503 to try again, nothing written."""
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc) or "schema has changed" in str(exc))


_TEMPLATE: dict[str, Path] = {}
_TEMPLATE_GUARD = threading.Lock()


def _template() -> Path:
    """An empty store of this schema, made once per process in a temporary folder (removed
    when the process that made it exits, not when a forked worker does)."""
    with _TEMPLATE_GUARD:
        if "path" not in _TEMPLATE:
            folder = Path(tempfile.mkdtemp(prefix="zonemap-empty-store-"))
            made_by = os.getpid()
            atexit.register(lambda: os.getpid() == made_by and shutil.rmtree(folder, ignore_errors=True))
            GeoPackageStore(folder / "empty.gpkg", from_template=False).close()
            _TEMPLATE["path"] = folder / "empty.gpkg"
        return _TEMPLATE["path"]


def _copy_template(path: Path) -> None:
    """Start a new store at `path` as a copy of the empty one. Creating the layers through
    GDAL and SQLite takes ~1.3 s (ten GDAL writes, ~200 schema changes); a copy takes
    milliseconds. The copy is linked into place, which fails if another process made the
    file meanwhile (then theirs is used); where links cannot be made, init() creates the
    layers as before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    try:
        shutil.copyfile(_template(), part)
        os.link(part, path)
    except OSError:
        pass  # made meanwhile by another process, or no links here: init() sees to it
    finally:
        part.unlink(missing_ok=True)


def _view_sql() -> str:
    return f'CREATE VIEW "{IN_FORCE_VIEW}" AS {in_force_view_sql()}'


def _make_in_force_view(con) -> None:
    """The zones in force as a layer of their own (base.IN_FORCE_VIEW), registered as the
    GeoPackage standard allows a view to be, so that QGIS lists it beside `zones`: made again
    whenever the schema changes, so it has the zones' columns."""
    con.execute(f'DROP VIEW IF EXISTS "{IN_FORCE_VIEW}"')
    con.execute(_view_sql())
    con.execute("INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) "
                "VALUES (?, 'features', ?, ?, 4326)",
                (IN_FORCE_VIEW, IN_FORCE_VIEW, "责任区 in force: the current version of each zone, "
                 "without the rows of a generation still running (zonemap's own reads show these)"))
    con.execute("INSERT OR IGNORE INTO gpkg_geometry_columns (table_name, column_name, geometry_type_name, "
                "srs_id, z, m) VALUES (?, 'geom', 'MULTIPOLYGON', 4326, 0, 0)", (IN_FORCE_VIEW,))


def _extent(con, name: str, exact: bool) -> tuple[float, float, float, float] | None:
    """(W, S, E, N) of layer `name` from its R-tree; `exact`: as PostGIS gives it. The R-tree
    keeps boxes in float32, rounded outward (~1 m at China's longitudes), which would move the
    study area and the tile grid of `zones generate` by that much against a PostGIS store's;
    so the rows whose R-tree box lies within a few float32 steps of an edge are read, and the
    edge taken from their blobs' own (double) envelopes."""
    rough = con.execute(f'SELECT min(minx), min(miny), max(maxx), max(maxy) FROM "rtree_{name}_geom"').fetchone()
    if rough[0] is None or not exact:
        return None if rough[0] is None else tuple(rough)
    tol = [4 * float(np.spacing(np.float32(abs(v)))) for v in rough]
    w, s, e, n = rough
    got = con.execute(f'SELECT t.geom FROM "{name}" t JOIN "rtree_{name}_geom" r ON r.id = t.fid '
                      "WHERE r.minx <= ? OR r.miny <= ? OR r.maxx >= ? OR r.maxy >= ?",
                      (w + tol[0], s + tol[1], e - tol[2], n - tol[3])).fetchall()
    envs = np.array([env for (blob,) in got if blob is not None
                     and (env := _envelope(bytes(blob))) is not None], dtype=float).reshape(-1, 4)
    if not len(envs):
        return tuple(rough)
    return (float(envs[:, 0].min()), float(envs[:, 2].min()), float(envs[:, 1].max()), float(envs[:, 3].max()))


class GeoPackageStore(Store):
    kind = "geopackage"

    def __init__(self, path: str | Path, busy_timeout_s: float = 10.0, *, from_template: bool = True):
        """`busy_timeout_s`: how long a writer waits for the write lock (and a reader for a
        checkpoint) before the store answers StoreUnavailable. `from_template`: a new file
        starts as a copy of an empty store made once per process (see _copy_template)."""
        self.path = Path(path)
        self.url = str(self.path)
        self.busy_timeout_s = busy_timeout_s
        if self.path.exists() and self.path.stat().st_size > 0:
            # asked through SQLite, never by opening the file ourselves: closing any other
            # descriptor of the file drops every POSIX lock this process's SQLite holds on it
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                con.execute("PRAGMA schema_version").fetchone()
            except sqlite3.DatabaseError:
                raise StoreError(f"{self.path} is not a GeoPackage (not an SQLite file); "
                                 "give another --db path") from None
            finally:
                con.close()
        self._cons = _Connections(self.path, busy_timeout_s)
        self._write_lock = _write_lock(self.path)
        if from_template and not self.path.exists():
            _copy_template(self.path)
        self.init()

    def close(self) -> None:
        self._cons.close_all()

    @contextmanager
    def _reading(self):
        """The thread's connection; a lock held past the busy timeout is a 503, not a 500."""
        try:
            yield self._cons.get()
        except sqlite3.Error as exc:
            if _busy(exc):
                raise StoreUnavailable(f"the GeoPackage {self.path.name} is busy ({exc}); "
                                       "try again shortly") from None
            raise StoreError(f"the GeoPackage {self.path} cannot be read: {exc}") from None

    # -- creating ---------------------------------------------------------------------------
    def _existing(self) -> set[str]:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return set()
        con = _open(self.path, self.busy_timeout_s)
        try:
            return {r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a GeoPackage ({exc})") from None
        finally:
            con.close()

    def init(self) -> None:
        """Create what is missing. GDAL writes new spatial layers while none of this
        store's sqlite3 connections is open (see the module's docstring); everything else
        is one BEGIN IMMEDIATE transaction, so processes opening the store at once agree."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cons.close_all()
        existing = self._existing()
        new_spatial = [n for n in LAYERS if n not in existing and spatial(n)]
        for name in new_spatial:
            empty = gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=STORAGE_CRS))
            pyogrio.write_dataframe(empty, self.path, layer=name, driver="GPKG",
                                    geometry_type=LAYERS[name].geometry_type, append=False,
                                    layer_options={"SPATIAL_INDEX": "YES"})
        if self._missing():
            with self.transaction() as tx:
                for name in LAYERS:
                    have = {r[1] for r in tx.con.execute(f'PRAGMA table_info("{name}")')}
                    if not have:
                        self._create_table(tx.con, LAYERS[name])
                    else:  # columns of a new layer, or added to the schema since (nullable)
                        self._add_columns(tx.con, LAYERS[name], have)
                tx.con.execute(f"CREATE TABLE IF NOT EXISTS {COUNTERS} "
                               "(name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)")
                tx.con.execute(f"CREATE TABLE IF NOT EXISTS {RUNS} "
                               "(run TEXT PRIMARY KEY NOT NULL, started DATETIME NOT NULL)")
                if not tx.con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (OPEN_RTREE,)).fetchone():
                    tx.con.execute(f'CREATE VIRTUAL TABLE "{OPEN_RTREE}" USING rtree(id, minx, maxx, miny, maxy)')
                    _fill_open_rtree(tx.con)
                for name, sql in OPEN_TRIGGERS.items():
                    tx.con.execute(f'DROP TRIGGER IF EXISTS "{name}"')
                    tx.con.execute(sql)
                tx.con.execute('DROP INDEX IF EXISTS "problems_open_fid"')  # what the tiles read before
                _make_in_force_view(tx.con)
        with self._reading() as con:  # persistent: set once for the file, kept by QGIS too
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode = WAL")

    def _missing(self) -> bool:
        """Whether a table, column or index is missing (read first: opening a complete store takes
        no write lock, so it never waits for a running import)."""
        with self._reading() as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if COUNTERS not in tables or RUNS not in tables or any(n not in tables for n in LAYERS):
                return True
            triggers = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall())
            if OPEN_RTREE not in tables or any(triggers.get(n) != sql for n, sql in OPEN_TRIGGERS.items()):
                return True
            if con.execute("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?",
                           (IN_FORCE_VIEW,)).fetchone() != (_view_sql(),):
                return True
            return any({c.name for c in spec.columns} - {r[1] for r in con.execute(f'PRAGMA table_info("{n}")')}
                       for n, spec in LAYERS.items())

    @staticmethod
    def _add_columns(con, spec, have: set[str]) -> None:
        for c in spec.columns:
            if c.name not in have:
                con.execute(f'ALTER TABLE "{spec.name}" ADD COLUMN "{c.name}" {TYPES[c.type][0]}')
                if c.unique:
                    con.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{spec.name}_{c.name}_uq" '
                                f'ON "{spec.name}"("{c.name}")')

    @staticmethod
    def _create_table(con, spec) -> None:
        """A table without geometry: a GeoPackage 'attributes' table, which QGIS lists too.
        (The counters table is not registered: GDAL and QGIS leave unregistered tables out
        when a file registers its attribute tables, and the spec allows extra tables.)"""
        cols = ", ".join(f'"{c.name}" {TYPES[c.type][0]}' for c in spec.columns)
        con.execute(f'CREATE TABLE "{spec.name}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, {cols})')
        for c in spec.columns:
            if c.unique:
                con.execute(f'CREATE UNIQUE INDEX "{spec.name}_{c.name}_uq" ON "{spec.name}"("{c.name}")')
        con.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, description) "
                    "VALUES (?, 'attributes', ?, ?)", (spec.name, spec.name, spec.doc))

    # -- reading ----------------------------------------------------------------------------
    def count(self, layer, where=None, bbox=None, *, time=None, exclude=None):
        spec = check_layer(layer)
        if bbox is not None and spec.geometry_type != "Point":  # boxes are not shapes: read them
            return len(self.read(layer, bbox, where, time=time, exclude=exclude))
        *_, span = read_options(spec, self.kind, None, 0, None, time)
        sql, params = self._select(spec, "count(*)", where, exclude, span, bbox)
        with self._reading() as con:
            return con.execute(sql, params).fetchone()[0]

    def _select(self, spec, names, where, exclude, span, bbox) -> tuple[str, list]:
        """SELECT `names` with the filters; a bbox goes through the layer's R-tree."""
        sql, params = _where_sql(spec, where, exclude, span)
        if bbox is not None:
            w, s, e, n = map(float, bbox)
            sql += (" AND " if sql else " WHERE ") + (
                f'fid IN (SELECT id FROM "rtree_{spec.name}_geom" '
                "WHERE minx <= ? AND maxx >= ? AND miny <= ? AND maxy >= ?)")
            params = [*params, e, w, n, s]
        return f'SELECT {names} FROM "{spec.name}"{sql}', params

    def read(self, layer, bbox=None, where=None, *, limit=None, offset=0, order=None, time=None,
             exclude=None):
        spec = check_layer(layer)
        limit, offset, sort, span = read_options(spec, self.kind, limit, offset, order, time)
        cols = ["fid", *spec.column_names]
        names = ", ".join(f'"{c}"' for c in cols)
        if not spatial(spec):
            sql, params = self._select(spec, names, where, exclude, span, None)
            page, more = _page_sql(limit, offset)
            with self._reading() as con:
                got = con.execute(sql + _order_sql(spec, sort) + page, params + more).fetchall()
            if not got:
                return empty_frame(spec)
            records = [from_db(spec, cols, r) for r in got]
            frame = pd.DataFrame({c: pd.Series([r[c] for r in records], dtype=object)
                                  if c != "fid" and spec.column(c).type in ("text", "boolean")
                                  else [r[c] for r in records] for c in cols})
            return nulls_as_none(spec, frame)
        sql, params = self._select(spec, names + ", geom", where, exclude, span, bbox)
        # The R-tree holds boxes: a line or polygon whose box meets the bbox may not, so
        # such a page is cut after the exact test (a point's box is the point itself).
        exact_later = bbox is not None and spec.geometry_type != "Point"
        page, more = ("", []) if exact_later else _page_sql(limit, offset)
        with self._reading() as con:
            got = con.execute(sql + _order_sql(spec, sort) + page, params + more).fetchall()
        frame = _features(spec, got, bbox) if got else empty_frame(spec)
        if exact_later and (limit is not None or offset):
            frame = frame.iloc[offset: None if limit is None else offset + limit].reset_index(drop=True)
        return frame

    def cells(self, layer, size, *, bbox=None, where=None, exclude=None, time=None, flags=None):
        spec = check_layer(layer)
        flagged = cell_options(spec, size, flags)
        *_, spans = read_options(spec, self.kind, None, 0, None, time)
        sql, params = _where_sql(spec, where, exclude, spans)
        sql += (" AND " if sql else " WHERE ") + "r.id = t.fid"
        if bbox is not None:
            w, s, e, n = map(float, bbox)
            sql += " AND r.minx <= ? AND r.maxx >= ? AND r.miny <= ? AND r.maxy >= ?"
            params = [*params, e, w, n, s]
        # a point's R-tree box is the point, widened to float32: its middle is within centimetres
        x, y = "(r.minx + r.maxx) / 2", "(r.miny + r.maxy) / 2"
        marks = [f'COALESCE(julianday(t."{col}") <= julianday(?), 0) AS "{name}"' for name, col, _ in flagged]
        groups = ", ".join(str(i) for i in range(1, 3 + len(flagged)))
        query = (f"SELECT CAST(({x} + 180) / ? AS INTEGER), CAST(({y} + 90) / ? AS INTEGER), "
                 f"{''.join(m + ', ' for m in marks)}count(*), avg({x}), avg({y}) "
                 f'FROM "{layer}" t, "rtree_{layer}_geom" r{sql} GROUP BY {groups}')
        args = [size, size, *(to_date_text(t) for *_, t in flagged), *params]
        with self._reading() as con:
            rows = con.execute(query, args).fetchall()
        return pd.DataFrame(rows, columns=["ix", "iy", *(f[0] for f in flagged), "n", "lon", "lat"])

    def query(self, sql: str, params: dict | tuple = ()) -> list[tuple]:
        """The rows of one read-only SQL statement on this thread's connection, for a read path
        that needs less than `read` gives (a vector tile: a few columns and the blobs, through
        the R-tree); a lock held past the busy timeout is StoreUnavailable, as for `read`."""
        with self._reading() as con:
            return con.execute(sql, params).fetchall()

    def extent(self, layers=None, *, exact=False):
        names = [check_layer(n).name for n in layers] if layers else [n for n in LAYERS if spatial(n)]
        with self._reading() as con:
            boxes = [_extent(con, name, exact) for name in names]
        boxes = [b for b in boxes if b is not None]
        if not boxes:
            return None
        return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes))

    def has_spatial_index(self, layer: str) -> bool:
        with self._reading() as con:
            row = con.execute("SELECT count(*) FROM gpkg_extensions WHERE table_name = ? "
                              "AND extension_name = 'gpkg_rtree_index'", (layer,)).fetchone()
        return row[0] == 1

    def check(self) -> dict:
        with self._reading() as con:
            mode = con.execute("PRAGMA journal_mode").fetchone()[0]
            counters = con.execute(f"SELECT count(*) FROM {COUNTERS}").fetchone()[0]
        return {"store": self.kind, "ok": True, "journal_mode": mode, "counters": counters}

    # -- writing ----------------------------------------------------------------------------
    def _unavailable(self, why) -> StoreUnavailable:
        return StoreUnavailable(
            f"the GeoPackage {self.path.name} is busy with another writer for more than "
            f"{self.busy_timeout_s:g} s ({why}); nothing was written, try again shortly")

    def _begin(self):
        if not self._write_lock.acquire(timeout=self.busy_timeout_s):
            raise self._unavailable("other threads of this process are writing")
        try:
            con = self._cons.get()
            if con.in_transaction:
                raise StoreError("a write transaction is already open in this thread; "
                                 "nest the writes in one `with store.transaction()` block")
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._write_lock.release()
            if _busy(exc):
                raise self._unavailable(exc) from None
            raise StoreError(f"cannot write the GeoPackage {self.path}: {exc}") from None
        except BaseException:
            self._write_lock.release()
            raise
        return _GpkgTransaction(con)

    def _commit(self, tx):
        try:
            tx.con.execute("COMMIT")
        except sqlite3.Error as exc:
            # A failed COMMIT may leave the transaction open: undo it, and say nothing landed.
            self._end(tx)
            raise StoreError(f"the GeoPackage {self.path} could not commit ({exc}); "
                             "nothing was written") from None
        self._write_lock.release()

    def _rollback(self, tx):
        self._end(tx)

    def _end(self, tx):
        try:
            if tx.con.in_transaction:
                tx.con.execute("ROLLBACK")
        finally:
            self._write_lock.release()
