"""The server store: PostgreSQL with PostGIS, through psycopg 3.

Tables follow layers/schema.py with an `fid` key and a typed `geom` column in SRID 4326 with
a GiST index. Rows go in with COPY inside one transaction, so a failure at any row leaves
every table as it was. The schema the tables live in is the first of the connection's
search_path (pass `?options=-csearch_path%3Dmy_schema` in the URL to choose another).

Connections come from a pool (psycopg_pool) that checks each one as it is handed out and
reconnects after PostgreSQL restarts. The pool is opened on first use in each process
(gunicorn forks its workers after the app is made, and a connection must never be shared
by two processes). A read that fails because the server went away is retried once on a
fresh connection; a write transaction is not (the caller decides), and a lost connection
or an empty pool is StoreUnavailable (503, try again).
"""

from __future__ import annotations

import hashlib
import os
import threading
from contextlib import contextmanager

import pandas as pd
import psycopg
import shapely
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import StoreError, StoreUnavailable
from ..schema import LAYERS, TYPES
from .base import (
    CLEARANCE_COLUMN,
    CLEARANCE_LAYERS,
    COUNTERS,
    IN_FORCE_VIEW,
    MERCATOR_COLUMN,
    MERCATOR_LAYERS,
    OPEN_CASES,
    RUN_COLUMN,
    RUNS,
    UNIT_NAME_COLUMN,
    Store,
    Transaction,
    cell_options,
    check_counter,
    check_layer,
    column_type,
    frame_from_rows,
    from_db,
    hides_runs,
    in_force_view_columns,
    in_force_view_sql,
    read_options,
    rows_for,
    shown_runs,
    spatial,
    update_values,
    where_values,
)


def _gone(con: psycopg.Connection) -> bool:
    """The connection itself is lost (server restarted or unreachable), not the statement."""
    return con.closed or con.broken


@contextmanager
def _lost(con: psycopg.Connection):
    """A write whose connection is lost mid-transaction: 503, and the transaction is gone."""
    try:
        yield
    except psycopg.OperationalError as exc:
        if not _gone(con):
            raise
        raise StoreUnavailable(f"the connection to PostgreSQL was lost ({_first_line(exc)}); "
                               "nothing was written, try again shortly") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# Pools a forked child inherited: never used and never closed there (closing would end the
# parent's sessions on the sockets both share), only kept from the garbage collector.
_INHERITED: list[ConnectionPool] = []


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
            with _lost(self.con), self.con.cursor() as cur, cur.copy(
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
        with _lost(self.con):
            self.con.execute(f'UPDATE "{layer}" SET {sets} WHERE fid = %s', [*vals, int(fid)])

    def update_where(self, layer, where, values):
        spec = check_layer(layer)
        cols, vals = update_values(spec, values)
        sets = ", ".join(f'"{c}" = %s' for c in cols)
        sql, params = _where_sql(spec, where)
        with _lost(self.con):
            return self.con.execute(f'UPDATE "{layer}" SET {sets}{sql}', [*vals, *params]).rowcount

    def delete_source(self, layer, source):
        check_layer(layer)
        with _lost(self.con):
            return self.con.execute(f'DELETE FROM "{layer}" WHERE source = %s', (source,)).rowcount

    def start_run(self, run, started):
        with _lost(self.con):
            self.con.execute(f"INSERT INTO {RUNS} (run, started) VALUES (%s, %s)", (run, started))

    def end_run(self, run, layer, keep):
        check_layer(layer)
        with _lost(self.con):
            gone = 0 if keep else self.con.execute(
                f'DELETE FROM "{layer}" WHERE "{RUN_COLUMN}" = %s', (run,)).rowcount
            self.con.execute(f"DELETE FROM {RUNS} WHERE run = %s", (run,))
        return gone

    def runs_before(self, started):
        with _lost(self.con):
            return [r[0] for r in self.con.execute(
                f"SELECT run FROM {RUNS} WHERE started < %s ORDER BY run", (started,))]

    def next_number(self, name, count=1):
        # One statement takes the row lock (or inserts the row) and moves the counter; a
        # concurrent transaction waits on that lock until we commit or roll back.
        check_counter(name, count)
        with _lost(self.con):
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
        with _lost(self.con):
            got = self.con.execute(f'SELECT {names} FROM "{layer}"{sql} ORDER BY fid'
                                   + (" FOR UPDATE" if lock else ""), params).fetchall()
        return [from_db(spec, cols, r) for r in got]


def _where_sql(spec, where, exclude=None, time=None) -> tuple[str, list]:
    """WHERE for equality (`where`), "none of these" (`exclude`) and time ranges (checked by
    read_options)."""
    parts, params = ([shown_runs()] if hides_runs(spec, where) else []), []
    for col, values in where_values(spec, where):
        parts.append(f'"{col}" = ANY(%s)')
        params.append(values)
    for col, values in where_values(spec, exclude):
        known = [v for v in values if v is not None]
        if None in values:
            parts.append(f'"{col}" IS NOT NULL')
        if known:
            parts.append(f'("{col}" IS NULL OR NOT "{col}" = ANY(%s))')
            params.append(known)
    for col, start, end in time or []:
        for bound, op in ((start, ">="), (end, "<")):
            if bound is not None:
                parts.append(f'"{col}" {op} %s')
                params.append(bound)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


_COLLATE = ' COLLATE "C"'


def _order_sql(spec, sort) -> str:
    """ORDER BY the (column, ASC|DESC) pairs, nulls last, then fid. Text by code point
    (COLLATE "C"), as SQLite and Python order it, whatever the database's locale."""
    keys = [f'"{c}"{_COLLATE if column_type(spec, c) == "text" else ""} {d} NULLS LAST' for c, d in sort]
    return " ORDER BY " + ", ".join([*keys, "fid"])


def _page_sql(limit, offset) -> tuple[str, list]:
    return (" LIMIT %s OFFSET %s", [limit, offset]) if limit is not None or offset else ("", [])


def _select(spec, names, where, exclude, span, bbox) -> tuple[str, list]:
    """SELECT `names` with the filters; a bbox meets the geometries themselves (through the
    GiST index), as the GeoPackage's exact test after its R-tree does."""
    sql, params = _where_sql(spec, where, exclude, span)
    if bbox is not None:
        sql += (" AND" if sql else " WHERE") + " ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"
        params = [*params, *map(float, bbox)]
    return f'SELECT {names} FROM "{spec.name}"{sql}', params


def _add_mercator(con, name: str) -> None:
    """Layer `name`'s geometry in EPSG:3857 (base.MERCATOR_COLUMN), which its map tiles are cut from,
    and for polygons its clearance there (base.CLEARANCE_COLUMN): columns PostgreSQL computes on
    every write (insert, COPY, update, whoever writes it), and the geometry's GiST index. A store
    made before them gets them when it is opened (the table is written anew: 18 s for the four
    tables of a city of 100,000 zones and 1,000,000 cases at load 3, reads and writes of the table
    waiting meanwhile). Rows beyond the poles (no Mercator image) get none. One transaction: a
    second process opening the store at the same time waits on the table's lock, then finds the
    columns there."""
    mercator = "CASE WHEN ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90 THEN ST_Transform(geom, 3857) END"
    with con.transaction():
        have = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s", (name,))}
        added = []
        if MERCATOR_COLUMN not in have:
            added.append(f"ADD COLUMN {MERCATOR_COLUMN} geometry(Geometry, 3857) "
                         f"GENERATED ALWAYS AS ({mercator}) STORED")
        if name in CLEARANCE_LAYERS and CLEARANCE_COLUMN not in have:  # ST_IsValid's flags form: no NOTICE a row
            added.append(f"ADD COLUMN {CLEARANCE_COLUMN} double precision GENERATED ALWAYS AS "
                         f"(CASE WHEN ST_IsValid({mercator}, 0) THEN ST_MinimumClearance({mercator}) END) STORED")
        if not added:
            return
        con.execute(f'ALTER TABLE "{name}" ' + ", ".join(added))
        con.execute(f'CREATE INDEX IF NOT EXISTS "{name}_{MERCATOR_COLUMN}_gist" ON "{name}" '
                    f"USING gist ({MERCATOR_COLUMN})")
        con.execute(f'ANALYZE "{name}" ({MERCATOR_COLUMN})')  # the planner's statistics of the new column


_UNIT_NAME_SQL = f"""
CREATE OR REPLACE FUNCTION zonemap_zone_unit_name() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    NEW.{UNIT_NAME_COLUMN} := (SELECT u.name FROM units u WHERE u.unit_id = NEW.primary_unit);
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER zones_unit_name BEFORE INSERT OR UPDATE OF primary_unit ON zones
    FOR EACH ROW EXECUTE FUNCTION zonemap_zone_unit_name();
CREATE OR REPLACE FUNCTION zonemap_units_named() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NOT EXISTS (SELECT 1 FROM changed c JOIN gone g USING (fid)
                       WHERE c.name IS DISTINCT FROM g.name OR c.unit_id IS DISTINCT FROM g.unit_id) THEN
            RETURN NULL;  -- a phone or a person: no zone's name moves
        END IF;
        UPDATE zones z SET {UNIT_NAME_COLUMN} = u.name
            FROM (SELECT unit_id FROM changed UNION SELECT unit_id FROM gone) c LEFT JOIN units u USING (unit_id)
            WHERE z.primary_unit = c.unit_id AND z.{UNIT_NAME_COLUMN} IS DISTINCT FROM u.name;
    ELSE
        UPDATE zones z SET {UNIT_NAME_COLUMN} = u.name
            FROM (SELECT DISTINCT unit_id FROM changed) c LEFT JOIN units u USING (unit_id)
            WHERE z.primary_unit = c.unit_id AND z.{UNIT_NAME_COLUMN} IS DISTINCT FROM u.name;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER units_named_insert AFTER INSERT ON units REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION zonemap_units_named();
CREATE OR REPLACE TRIGGER units_named_update AFTER UPDATE ON units REFERENCING OLD TABLE AS gone
    NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION zonemap_units_named();
CREATE OR REPLACE TRIGGER units_named_delete AFTER DELETE ON units REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION zonemap_units_named();
"""


def _add_unit_names(con) -> None:
    """Each zone's primary unit's name beside it (base.UNIT_NAME_COLUMN), which its map tiles
    read instead of looking the unit up for every zone (~800 in a z16 tile: ~2 ms of its ~10 ms
    statement at load 2.5, ~4.5 at load 7-10). Kept in step by triggers, whoever writes: a
    zone written or given another unit takes the unit's name; a unit added, renamed or deleted
    (one statement's rows at a time, however many) gives its zones the name or NULL. Functions
    and triggers are made anew when a store is opened without them or with another code's
    (_complete); a store made before gets the column filled once (the zones rewritten:
    seconds for a city of 100,000), one transaction."""
    with con.transaction():
        new = not con.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                              "AND table_name = 'zones' AND column_name = %s", (UNIT_NAME_COLUMN,)).fetchone()
        con.execute(f"ALTER TABLE zones ADD COLUMN IF NOT EXISTS {UNIT_NAME_COLUMN} text")
        con.execute(_UNIT_NAME_SQL)
        for fn in ("zonemap_zone_unit_name", "zonemap_units_named"):  # which code made them (_complete)
            con.execute(f"COMMENT ON FUNCTION {fn}() IS '{_FUNCTIONS_TAG}'")
        # a unit's zones by its id, which a rename updates: without it every rename read all the
        # zones (64-200 ms for the bench city's 100,000 at load 5)
        con.execute("CREATE INDEX IF NOT EXISTS zones_primary_unit_hash ON zones USING hash (primary_unit)")
        if new:
            con.execute(f"UPDATE zones z SET {UNIT_NAME_COLUMN} = u.name FROM units u WHERE u.unit_id = z.primary_unit")


# what _create makes beyond the layers' tables and columns: indexes, triggers (the schema's own)
_INDEXES = {"problems_open_geom_gist", f"problems_open_{MERCATOR_COLUMN}_gist", "units_unit_id_hash",
            "zones_primary_unit_hash", *(f"{n}_{MERCATOR_COLUMN}_gist" for n in MERCATOR_LAYERS)}
_TRIGGERS = {"zones_unit_name", "units_named_insert", "units_named_update", "units_named_delete"}
_FUNCTIONS_TAG = "zonemap " + hashlib.sha256(_UNIT_NAME_SQL.encode()).hexdigest()[:16]


def _complete(con) -> bool:
    """Whether the store has every table, column, index and trigger this code makes, with its
    trigger functions as this code writes them: read-only, so that opening a complete store
    takes no lock (an ALTER TABLE on every open took each table's exclusive lock, which waits
    behind a long read and makes every read after it wait too)."""
    have = {(t, c) for t, c in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()")}
    want = {(n, c.name) for n, spec in LAYERS.items() for c in spec.columns}
    want |= {(n, MERCATOR_COLUMN) for n in MERCATOR_LAYERS} | {(n, CLEARANCE_COLUMN) for n in CLEARANCE_LAYERS}
    want |= {("zones", UNIT_NAME_COLUMN), (COUNTERS, "value"), (RUNS, "started")}
    want |= {(IN_FORCE_VIEW, c) for c in in_force_view_columns()}
    if not want <= have:
        return False
    indexes = {r[0] for r in con.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
    triggers = {r[0] for r in con.execute(
        "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND NOT t.tgisinternal")}
    tags = {r[0] for r in con.execute(
        "SELECT obj_description(p.oid, 'pg_proc') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema() AND p.proname IN ('zonemap_zone_unit_name', 'zonemap_units_named')")}
    return indexes >= _INDEXES and triggers >= _TRIGGERS and tags == {_FUNCTIONS_TAG}


def _warm(con) -> None:
    """A new pooled connection's server process made ready for map tiles before any request
    uses it: PostGIS's library (and the GEOS, PROJ and protobuf ones it brings) is loaded into
    a server process at its first PostGIS call, and the EPSG:4326 → 3857 transform is set up
    at its first ST_Transform; the first tile a connection made paid that, 10–35 ms over a
    z16 zones tile's ~15."""
    con.execute("SELECT ST_AsMVT(q, 'warm') FROM (SELECT 1 AS id, ST_AsMVTGeom(ST_Transform("
                "ST_MakeEnvelope(0, 0, 1, 1, 4326), 3857), ST_TileEnvelope(0, 0, 0)) AS geom) q")


class PostGISStore(Store):
    kind = "postgis"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 8, timeout_s: float = 10.0):
        """`min_size`/`max_size`: connections kept open / at most, per process; `timeout_s`:
        how long a request waits for a connection (and a new connection for the server)
        before StoreUnavailable."""
        self.url = url
        self.min_size, self.max_size, self.timeout_s = min_size, max_size, timeout_s
        self._pool: ConnectionPool | None = None
        self._pool_pid: int | None = None
        self._pool_guard = threading.Lock()
        self.init()

    # -- connections ------------------------------------------------------------------------
    def _connect_error(self, exc) -> StoreUnavailable:
        return StoreUnavailable(f"cannot connect to PostGIS at {self.url}: {_first_line(exc)}; "
                                "is PostgreSQL running? Try again shortly")

    def _get_pool(self) -> ConnectionPool:
        with self._pool_guard:
            if self._pool is not None and self._pool_pid == os.getpid():
                return self._pool
            if self._pool is not None:  # made by the process we were forked from
                _INHERITED.append(self._pool)
            pool = ConnectionPool(
                self.url, min_size=self.min_size, max_size=self.max_size, timeout=self.timeout_s,
                check=ConnectionPool.check_connection, configure=_warm, open=False, name="zonemap",
                kwargs={"autocommit": True, "connect_timeout": max(1, round(self.timeout_s))})
            pool.open(wait=False)
            self._pool, self._pool_pid = pool, os.getpid()
            return pool

    def close(self):
        with self._pool_guard:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close(timeout=5)
            self._pool = None

    def _read(self, query, timeout_s: float | None = None):
        """`query(con)` on a pooled connection, once more on a fresh one if the server went
        away under the first (reads change nothing, so trying again is safe). `timeout_s`:
        how long to wait for a connection (default: the store's)."""
        for _ in range(2):
            try:
                with self._get_pool().connection(timeout=timeout_s) as con:
                    try:
                        return query(con)
                    except psycopg.OperationalError as exc:
                        if not _gone(con):
                            raise
                        lost = exc  # the pool drops the broken connection when it comes back
            except PoolTimeout as exc:
                raise self._connect_error(exc) from None
        raise StoreUnavailable(f"PostgreSQL went away twice during a read ({_first_line(lost)}); "
                               "try again shortly")

    def query(self, sql: str, params=()) -> list[tuple]:
        """The rows of one read-only SQL statement (retried once if the server went away)."""
        return self._read(lambda con: con.execute(sql, params).fetchall())

    # -- creating ---------------------------------------------------------------------------
    def init(self):
        try:
            con = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise self._connect_error(exc) from None
        with con:  # one plain connection, closed before any fork: the pool opens on first use
            self._create(con)

    def _create(self, con):
        version = int(con.execute("SHOW server_version_num").fetchone()[0])
        if version < 140000:  # the tiles' fingerprint: hash_record_extended and bit_xor are 14's
            raise StoreError(f"PostgreSQL 14 or later is needed, this server is {version // 10000}; "
                             "upgrade it or use a GeoPackage store")
        if _complete(con):
            return
        # One process at a time makes what is missing (two gunicorn workers, the notice sender,
        # a command): concurrent CREATE OR REPLACE FUNCTION fails with "tuple concurrently
        # updated". A session lock, released when this connection closes.
        con.execute("SELECT pg_advisory_lock(hashtext('zonemap schema ' || current_schema()))")
        if not _complete(con):
            self._make(con)

    def _make(self, con):
        with con.transaction():
            if not con.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone():
                try:
                    con.execute("CREATE EXTENSION postgis")
                except psycopg.Error as exc:
                    raise StoreError("PostGIS is not installed in this database and could not "
                                     f"be created ({exc}); run CREATE EXTENSION postgis") from None
        with con.transaction():
            con.execute(f"CREATE TABLE IF NOT EXISTS {COUNTERS} "
                        "(name text PRIMARY KEY, value bigint NOT NULL)")
            con.execute(f"CREATE TABLE IF NOT EXISTS {RUNS} "
                        "(run text PRIMARY KEY, started timestamptz NOT NULL)")
        existing = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
        for name, spec in LAYERS.items():
            if name in existing:
                with con.transaction():  # columns added to the schema since (nullable)
                    for c in spec.columns:
                        con.execute(f'ALTER TABLE "{name}" ADD COLUMN IF NOT EXISTS "{c.name}" '
                                    f"{TYPES[c.type][1]}")
                continue
            cols = ", ".join(f'"{c.name}" {TYPES[c.type][1]}' for c in spec.columns)
            with con.transaction():
                if spatial(spec):
                    con.execute(f'CREATE TABLE "{name}" (fid bigserial PRIMARY KEY, {cols}, '
                                f"geom geometry({spec.geometry_type}, 4326))")
                    con.execute(f'CREATE INDEX "{name}_geom_gist" ON "{name}" USING gist (geom)')
                else:
                    con.execute(f'CREATE TABLE "{name}" (fid bigserial PRIMARY KEY, {cols})')
                for c in spec.columns:
                    if c.unique:
                        con.execute(f'CREATE UNIQUE INDEX "{name}_{c.name}_uq" ON "{name}" ("{c.name}")')
        for name in MERCATOR_LAYERS:
            _add_mercator(con, name)
        with con.transaction():  # the open cases' own spatial indexes (base.OPEN_CASES); ~1 s each for 1M cases
            for col in ("geom", MERCATOR_COLUMN):
                con.execute(f"CREATE INDEX IF NOT EXISTS problems_open_{col}_gist ON problems USING gist ({col}) "
                            f"WHERE {OPEN_CASES}")
            # a unit's name by its id, as a tile of zones or cases looks up one a feature (~800 in a
            # z16 tile): a hash index compares no text in the database's collation, which the unique
            # btree does at every level (C.UTF-8 is not "C" to PostgreSQL); 3.7 → 2.1 ms for 800
            con.execute("CREATE INDEX IF NOT EXISTS units_unit_id_hash ON units USING hash (unit_id)")
        _add_unit_names(con)
        with con.transaction():  # the zones in force for QGIS and SQL clients (base.IN_FORCE_VIEW)
            con.execute(f'DROP VIEW IF EXISTS "{IN_FORCE_VIEW}"')
            con.execute(f'CREATE VIEW "{IN_FORCE_VIEW}" AS {in_force_view_sql()}')

    # -- reading ----------------------------------------------------------------------------
    def count(self, layer, where=None, bbox=None, *, time=None, exclude=None):
        spec = check_layer(layer)
        *_, span = read_options(spec, self.kind, None, 0, None, time)
        sql, params = _select(spec, "count(*)", where, exclude, span, bbox)
        return self.query(sql, params)[0][0]

    def read(self, layer, bbox=None, where=None, *, limit=None, offset=0, order=None, time=None,
             exclude=None):
        spec = check_layer(layer)
        limit, offset, sort, span = read_options(spec, self.kind, limit, offset, order, time)
        cols = spec.column_names
        names = ", ".join(f'"{c}"' for c in ["fid", *cols])
        page, more = _page_sql(limit, offset)
        if not spatial(spec):
            sql, params = _select(spec, names, where, exclude, span, None)
            rows = self.query(sql + _order_sql(spec, sort) + page, params + more)
            return frame_from_rows(spec, cols, rows, [])
        sql, params = _select(spec, names + ", ST_AsBinary(geom)", where, exclude, span, bbox)
        rows = self.query(sql + _order_sql(spec, sort) + page, params + more)
        return frame_from_rows(spec, cols, [r[:-1] for r in rows],
                               [None if r[-1] is None else bytes(r[-1]) for r in rows])

    def cells(self, layer, size, *, bbox=None, where=None, exclude=None, time=None, flags=None):
        spec = check_layer(layer)
        flagged = cell_options(spec, size, flags)
        *_, spans = read_options(spec, self.kind, None, 0, None, time)
        marks = [f'COALESCE("{col}" <= %s, false)::int AS "{name}"' for name, col, _ in flagged]
        names = (f"floor((ST_X(geom) + 180) / %s)::int, floor((ST_Y(geom) + 90) / %s)::int, "
                 f"{''.join(m + ', ' for m in marks)}count(*)::int, avg(ST_X(geom)), avg(ST_Y(geom))")
        sql, params = _select(spec, names, where, exclude, spans, bbox)
        groups = ", ".join(str(i) for i in range(1, 3 + len(flagged)))
        rows = self.query(f"{sql} GROUP BY {groups}", [size, size, *(t for *_, t in flagged), *params])
        return pd.DataFrame(rows, columns=["ix", "iy", *(f[0] for f in flagged), "n", "lon", "lat"])

    def extent(self, layers=None, *, exact=False):  # ST_Extent is exact whatever `exact` says
        names = [check_layer(n).name for n in layers] if layers else [n for n in LAYERS if spatial(n)]
        union = " UNION ALL ".join(f'SELECT ST_Extent(geom)::geometry AS g FROM "{n}"' for n in names)
        row = self.query(f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                          f"(SELECT ST_Extent(g) AS e FROM ({union}) u) x")[0]
        return None if row[0] is None else tuple(row)

    def has_spatial_index(self, layer):
        row = self.query(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = %s AND indexdef ILIKE %s AND indexdef NOT ILIKE %s",
            (layer, "%USING gist (geom)%", "%WHERE%"))[0]  # the whole layer's, not a part's (open cases)
        return row[0] == 1

    def check(self, timeout_s: float = 2.0) -> dict:
        """Asks the server for real; a health check must answer fast, so it waits `timeout_s`
        for a connection, not the store's full timeout."""
        sql = f"SELECT current_setting('server_version'), (SELECT count(*) FROM {COUNTERS})"
        version, counters = self._read(lambda con: con.execute(sql).fetchall(), timeout_s)[0]
        return {"store": self.kind, "ok": True, "server_version": version, "counters": counters}

    # -- writing ----------------------------------------------------------------------------
    def _begin(self):
        pool = self._get_pool()
        for attempt in (1, 2):  # BEGIN on a connection that died since its check: nothing done yet
            try:
                con = pool.getconn()
            except PoolTimeout as exc:
                raise self._connect_error(exc) from None
            try:
                con.execute("BEGIN")
                return _PgTransaction(con)
            except psycopg.OperationalError as exc:
                pool.putconn(con)
                if not _gone(con) or attempt == 2:
                    raise self._connect_error(exc) from None

    def _commit(self, tx):
        try:
            tx.con.execute("COMMIT")
        except psycopg.Error as exc:
            if _gone(tx.con):  # the server may or may not have committed before it went away
                raise StoreUnavailable(
                    f"the connection to PostgreSQL was lost at COMMIT ({_first_line(exc)}); the "
                    "write may or may not be stored: retry with the same idempotency key") from None
            raise StoreError(f"PostgreSQL refused the COMMIT ({_first_line(exc)}); nothing was written"
                             ) from None
        finally:
            self._get_pool().putconn(tx.con)

    def _rollback(self, tx):
        try:
            if not _gone(tx.con):
                tx.con.execute("ROLLBACK")
        except psycopg.Error:
            pass  # a connection that cannot roll back is broken: the pool drops it on return
        finally:
            self._get_pool().putconn(tx.con)
