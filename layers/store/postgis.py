"""The server store: PostgreSQL with PostGIS, through psycopg 3.

Tables follow layers/schema.py with an `fid` key and a typed `geom` column in SRID 4326 with
a GiST index. Rows go in with COPY inside one transaction, so a failure at any row leaves
every table as it was. The schema the tables live in is the first of the connection's
search_path (pass `?options=-csearch_path%3Dmy_schema` in the URL to choose another).
"""

from __future__ import annotations

import psycopg
import shapely

from ..errors import StoreError
from ..schema import LAYERS, TYPES
from .base import (
    COUNTERS,
    Store,
    Transaction,
    check_counter,
    check_layer,
    frame_from_rows,
    from_db,
    rows_for,
    spatial,
    update_values,
    where_values,
)


class _PgTransaction(Transaction):
    def __init__(self, con: psycopg.Connection):
        self.con = con

    def append(self, layer, frame):
        spec = check_layer(layer)
        cols, rows, geoms = rows_for(spec, frame)
        if geoms is None:
            names = ", ".join(f'"{c}"' for c in cols)
            tails = [[]] * len(rows)
        else:
            ewkb = shapely.to_wkb(geoms, hex=True, include_srid=False, flavor="extended")
            names = ", ".join(f'"{c}"' for c in [*cols, "geom"])
            tails = [[None if g is None else "SRID=4326;" + g] for g in ewkb]
        try:
            with self.con.cursor() as cur, cur.copy(
                    f'COPY "{layer}" ({names}) FROM STDIN') as copy:
                for row, tail in zip(rows, tails):
                    copy.write_row([*row, *tail])
        except psycopg.errors.IntegrityError as exc:
            where = (exc.diag.context or "").strip().splitlines()
            raise StoreError(f"layer {layer!r}: {exc.diag.message_primary}"
                             f" ({exc.diag.message_detail or ''} {where[-1] if where else ''}); "
                             "nothing was written") from None
        except psycopg.errors.DataError as exc:
            raise StoreError(f"layer {layer!r}: {exc.diag.message_primary}; nothing was written"
                             ) from None
        return len(rows)

    def update(self, layer, fid, values):
        cols, vals = update_values(check_layer(layer), values)
        sets = ", ".join(f'"{c}" = %s' for c in cols)
        self.con.execute(f'UPDATE "{layer}" SET {sets} WHERE fid = %s', [*vals, int(fid)])

    def delete_source(self, layer, source):
        check_layer(layer)
        return self.con.execute(f'DELETE FROM "{layer}" WHERE source = %s', (source,)).rowcount

    def next_number(self, name, count=1):
        # One statement takes the row lock (or inserts the row) and moves the counter; a
        # concurrent transaction waits on that lock until we commit or roll back.
        check_counter(name, count)
        last = self.con.execute(
            f"INSERT INTO {COUNTERS} (name, value) VALUES (%s, %s) ON CONFLICT (name) "
            f"DO UPDATE SET value = {COUNTERS}.value + EXCLUDED.value RETURNING value",
            (name, count)).fetchone()[0]
        return last - count + 1

    def rows(self, layer, where, lock=False):
        spec = check_layer(layer)
        cols = ["fid", *spec.column_names]
        sql, params = _where_sql(spec, where)
        names = ", ".join(f'"{c}"' for c in cols)
        got = self.con.execute(f'SELECT {names} FROM "{layer}"{sql} ORDER BY fid'
                               + (" FOR UPDATE" if lock else ""), params).fetchall()
        return [from_db(spec, cols, r) for r in got]


def _where_sql(spec, where) -> tuple[str, list]:
    parts, params = [], []
    for col, values in where_values(spec, where):
        parts.append(f'"{col}" = ANY(%s)')
        params.append(values)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


class PostGISStore(Store):
    kind = "postgis"

    def __init__(self, url: str):
        self.url = url
        try:
            self.con = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to PostGIS at {url}: {exc}".strip()) from None
        self.init()

    def close(self):
        self.con.close()

    def _tables(self) -> set[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()").fetchall()
        return {r[0] for r in rows}

    def init(self):
        with self.con.transaction():
            if not self.con.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'"
                                    ).fetchone():
                try:
                    self.con.execute("CREATE EXTENSION postgis")
                except psycopg.Error as exc:
                    raise StoreError("PostGIS is not installed in this database and could not "
                                     f"be created ({exc}); run CREATE EXTENSION postgis") from None
        with self.con.transaction():
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {COUNTERS} "
                             "(name text PRIMARY KEY, value bigint NOT NULL)")
        existing = self._tables()
        for name, spec in LAYERS.items():
            if name in existing:
                with self.con.transaction():  # columns added to the schema since (nullable)
                    for c in spec.columns:
                        self.con.execute(f'ALTER TABLE "{name}" ADD COLUMN IF NOT EXISTS "{c.name}" '
                                         f"{TYPES[c.type][1]}")
                continue
            cols = ", ".join(f'"{c.name}" {TYPES[c.type][1]}' for c in spec.columns)
            with self.con.transaction():
                if spatial(spec):
                    self.con.execute(f'CREATE TABLE "{name}" (fid bigserial PRIMARY KEY, {cols}, '
                                     f"geom geometry({spec.geometry_type}, 4326))")
                    self.con.execute(f'CREATE INDEX "{name}_geom_gist" ON "{name}" USING gist (geom)')
                else:
                    self.con.execute(f'CREATE TABLE "{name}" (fid bigserial PRIMARY KEY, {cols})')
                for c in spec.columns:
                    if c.unique:
                        self.con.execute(
                            f'CREATE UNIQUE INDEX "{name}_{c.name}_uq" ON "{name}" ("{c.name}")')

    def count(self, layer):
        check_layer(layer)
        return self.con.execute(f'SELECT count(*) FROM "{layer}"').fetchone()[0]

    def read(self, layer, bbox=None, where=None):
        spec = check_layer(layer)
        cols = spec.column_names
        names = ", ".join(chr(34) + c + chr(34) for c in cols)
        cond, params = _where_sql(spec, where)
        if not spatial(spec):
            rows = self.con.execute(f'SELECT fid, {names} FROM "{layer}"{cond} ORDER BY fid', params).fetchall()
            return frame_from_rows(spec, cols, rows, [])
        sql = f'SELECT fid, {names}, ST_AsBinary(geom) FROM "{layer}"{cond}'
        if bbox is not None:
            sql += (" AND" if cond else " WHERE") + " geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"
            params = [*params, *bbox]
        rows = self.con.execute(sql + " ORDER BY fid", params).fetchall()
        return frame_from_rows(spec, cols, [r[:-1] for r in rows],
                               [None if r[-1] is None else bytes(r[-1]) for r in rows])

    def extent(self):
        union = " UNION ALL ".join(f'SELECT ST_Extent(geom)::geometry AS g FROM "{n}"'
                                   for n in LAYERS if spatial(n))
        row = self.con.execute(f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                               f"(SELECT ST_Extent(g) AS e FROM ({union}) u) x").fetchone()
        return None if row[0] is None else tuple(row)

    def has_spatial_index(self, layer):
        row = self.con.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = %s AND indexdef ILIKE %s", (layer, "%USING gist (geom)%")).fetchone()
        return row[0] == 1

    def _begin(self):
        con = psycopg.connect(self.url, autocommit=False, connect_timeout=10)
        return _PgTransaction(con)

    def _commit(self, tx):
        try:
            tx.con.commit()
        finally:
            tx.con.close()

    def _rollback(self, tx):
        try:
            tx.con.rollback()
        finally:
            tx.con.close()
