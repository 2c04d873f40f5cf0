"""The embedded store: one GeoPackage file that QGIS opens as it is.

GDAL (through pyogrio) creates the file, its tables and their R-tree spatial indexes, and
reads. Writes go through Python's sqlite3 in one SQLite transaction, so that an import into
several layers lands whole or not at all; the R-tree triggers GDAL installed call the
GeoPackage SQL functions ST_IsEmpty/ST_MinX/…, which are registered on our connection.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from ..errors import StoreError
from ..schema import LAYERS, STORAGE_CRS, TYPES
from .base import (
    COUNTERS,
    Store,
    Transaction,
    check_counter,
    check_layer,
    empty_frame,
    from_db,
    nulls_as_none,
    rows_for,
    spatial,
    to_date_text,
    update_values,
    where_values,
)

_SRS_ID = 4326
# GeoPackage binary header: "GP", version 0, flags = little-endian + [minx,maxx,miny,maxy] envelope.
_HEADER = b"GP\x00\x03" + struct.pack("<i", _SRS_ID)
_EMPTY_FLAG = 0x10


def gpkg_blobs(geoms: np.ndarray) -> list:
    """GeoPackage geometry blobs (header, envelope, ISO WKB) for an array of shapely geometries."""
    wkb = shapely.to_wkb(geoms, flavor="iso", byte_order=1)
    bounds = shapely.bounds(geoms)
    out = []
    for g, w, b in zip(geoms, wkb, bounds):
        if g is None:
            out.append(None)
        elif shapely.is_empty(g):
            out.append(b"GP\x00\x11" + struct.pack("<i", _SRS_ID) + w)
        else:
            out.append(_HEADER + struct.pack("<4d", b[0], b[2], b[1], b[3]) + w)
    return out


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
        for i, (row, blob) in enumerate(zip(rows, blobs), start=1):
            try:
                self.con.execute(sql, [to_date_text(v) for v in row] + list(blob))
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"row {i} of layer {layer!r} breaks a constraint ({exc}); "
                                 "nothing was written") from None
        return len(rows)

    def update(self, layer, fid, values):
        cols, vals = update_values(check_layer(layer), values)
        sets = ", ".join(f'"{c}" = ?' for c in cols)
        self.con.execute(f'UPDATE "{layer}" SET {sets} WHERE fid = ?', [*map(to_date_text, vals), int(fid)])

    def delete_source(self, layer, source):
        check_layer(layer)
        return self.con.execute(f'DELETE FROM "{layer}" WHERE source = ?', (source,)).rowcount

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


def _literal(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(to_date_text(v)).replace("'", "''") + "'"


def _where_text(spec, where) -> str:
    """The same filter as SQL text with quoted literals (pyogrio takes no parameters)."""
    return " AND ".join(f'"{col}" IN ({", ".join(map(_literal, values))})'
                        for col, values in where_values(spec, where))


def _where_sql(spec, where) -> tuple[str, list]:
    parts, params = [], []
    for col, values in where_values(spec, where):
        parts.append(f'"{col}" IN ({", ".join("?" * len(values))})')
        params += [to_date_text(v) for v in values]
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


class GeoPackageStore(Store):
    kind = "geopackage"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.url = str(self.path)
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    raise StoreError(f"{self.path} is not a GeoPackage (not an SQLite file); "
                                     "give another --db path")
        self.init()

    # -- connections --------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        con.create_function("ST_IsEmpty", 1, _is_empty, deterministic=True)
        for i, name in enumerate(["ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"]):
            con.create_function(name, 1, _env_part(i), deterministic=True)
        return con

    def _existing(self) -> set[str]:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return set()
        with self._connect() as con:
            try:
                rows = con.execute("SELECT table_name FROM gpkg_contents").fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path} is not a GeoPackage ({exc})") from None
        return {r[0] for r in rows}

    def init(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existing = self._existing()
        missing = [n for n in LAYERS if n not in existing]
        self._add_new_columns([n for n in LAYERS if n in existing])
        for name in missing:
            spec = LAYERS[name]
            if not spatial(spec):
                self._create_table(spec)
                continue
            empty = gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=STORAGE_CRS))
            pyogrio.write_dataframe(empty, self.path, layer=name, driver="GPKG",
                                    geometry_type=spec.geometry_type, append=False,
                                    layer_options={"SPATIAL_INDEX": "YES"})
            con = self._connect()
            try:
                con.execute("BEGIN")
                for c in spec.columns:
                    con.execute(f'ALTER TABLE "{name}" ADD COLUMN "{c.name}" {TYPES[c.type][0]}')
                    if c.unique:
                        con.execute(f'CREATE UNIQUE INDEX "{name}_{c.name}_uq" ON "{name}"("{c.name}")')
                con.execute("COMMIT")
            finally:
                con.close()
        self._create_counters()  # after GDAL made the file a GeoPackage

    def _create_counters(self) -> None:
        """A plain SQLite table, not registered in gpkg_contents: GDAL and QGIS do not list it
        (the file registers its other attribute tables), and the GeoPackage spec allows it."""
        con = self._connect()
        try:
            con.execute(f"CREATE TABLE IF NOT EXISTS {COUNTERS} "
                        "(name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)")
        finally:
            con.close()

    def _create_table(self, spec) -> None:
        """A table without geometry: a GeoPackage 'attributes' table, which QGIS lists too."""
        cols = ", ".join(f'"{c.name}" {TYPES[c.type][0]}' for c in spec.columns)
        con = self._connect()
        try:
            con.execute("BEGIN")
            con.execute(f'CREATE TABLE "{spec.name}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, {cols})')
            for c in spec.columns:
                if c.unique:
                    con.execute(f'CREATE UNIQUE INDEX "{spec.name}_{c.name}_uq" ON "{spec.name}"("{c.name}")')
            con.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, description) "
                        "VALUES (?, 'attributes', ?, ?)", (spec.name, spec.name, spec.doc))
            con.execute("COMMIT")
        finally:
            con.close()

    def _add_new_columns(self, names: list[str]) -> None:
        """Columns added to the schema since the file was made (nullable, so always safe)."""
        con = self._connect()
        try:
            for name in names:
                have = {r[1] for r in con.execute(f'PRAGMA table_info("{name}")')}
                for c in LAYERS[name].columns:
                    if c.name not in have:
                        con.execute(f'ALTER TABLE "{name}" ADD COLUMN "{c.name}" {TYPES[c.type][0]}')
        finally:
            con.close()

    # -- reading ------------------------------------------------------------------------
    def count(self, layer: str) -> int:
        check_layer(layer)
        con = self._connect()
        try:
            return con.execute(f'SELECT count(*) FROM "{layer}"').fetchone()[0]
        finally:
            con.close()

    def read(self, layer, bbox=None, where=None):
        spec = check_layer(layer)
        if self.count(layer) == 0:
            return empty_frame(spec)
        sql, params = _where_sql(spec, where)
        if not spatial(spec):
            cols = ["fid", *spec.column_names]
            names = ", ".join(f'"{c}"' for c in cols)
            con = self._connect()
            try:
                got = con.execute(f'SELECT {names} FROM "{layer}"{sql} ORDER BY fid', params).fetchall()
            finally:
                con.close()
            if not got:
                return empty_frame(spec)
            return nulls_as_none(spec, pd.DataFrame([from_db(spec, cols, r) for r in got], columns=cols))
        text_where = _where_text(spec, where) if where else None
        df = pyogrio.read_dataframe(self.path, layer=layer, bbox=bbox, fid_as_index=True, where=text_where)
        if df.empty:
            return empty_frame(spec)
        df.index.name = "fid"
        df = df.reset_index()
        df = df.rename_geometry("geometry") if df.geometry.name != "geometry" else df
        return nulls_as_none(spec, df[["fid", *spec.column_names, "geometry"]])

    def extent(self):
        con = self._connect()
        try:
            boxes = [con.execute(f'SELECT min(minx), min(miny), max(maxx), max(maxy) '
                                 f'FROM "rtree_{name}_geom"').fetchone() for name in LAYERS if spatial(name)]
        finally:
            con.close()
        boxes = [b for b in boxes if b[0] is not None]
        if not boxes:
            return None
        return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes))

    def has_spatial_index(self, layer: str) -> bool:
        con = self._connect()
        try:
            row = con.execute("SELECT count(*) FROM gpkg_extensions WHERE table_name = ? "
                              "AND extension_name = 'gpkg_rtree_index'", (layer,)).fetchone()
            return row[0] == 1
        finally:
            con.close()

    # -- writing ------------------------------------------------------------------------
    def _begin(self):
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        return _GpkgTransaction(con)

    def _commit(self, tx):
        try:
            tx.con.execute("COMMIT")
        finally:
            tx.con.close()

    def _rollback(self, tx):
        try:
            tx.con.execute("ROLLBACK")
        finally:
            tx.con.close()
