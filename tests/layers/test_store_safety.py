"""Stores that never lose an acknowledged write: counters, many writers at once, a
PostgreSQL restart, and the GeoPackage read path (sqlite3) against GDAL's."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely

from layers.errors import StoreError
from layers.schema import LAYERS
from layers.store import open_store
from layers.store.base import empty_frame, nulls_as_none

ROOT = Path(__file__).resolve().parents[2]

# ---- counters -----------------------------------------------------------------------------


def _reserve_numbers(url: str, name: str, rounds: int, queue) -> None:
    """A separate process: reserve 1 or 2 numbers per transaction, roll back every third one,
    and report the numbers of the transactions that committed."""
    kept = []
    with open_store(url) as store:
        for i in range(rounds):
            count = 1 + i % 2
            try:
                with store.transaction() as tx:
                    first = tx.next_number(name, count)
                    if i % 3 == 2:
                        raise _Undo
            except _Undo:
                continue
            kept += range(first, first + count)
    queue.put(kept)


class _Undo(Exception):
    pass


def test_counters_start_at_one_and_reserve_consecutive_numbers(store):
    with store.transaction() as tx:
        assert tx.next_number("case:20261130") == 1
        assert tx.next_number("case:20261130", 5) == 2
        assert tx.next_number("case:20261201") == 1
    with store.transaction() as tx:
        assert tx.next_number("case:20261130") == 7


def test_a_rolled_back_transaction_gives_its_numbers_back(store):
    with store.transaction() as tx:
        tx.next_number("n", 3)
    with pytest.raises(_Undo), store.transaction() as tx:
        assert tx.next_number("n", 10) == 4
        raise _Undo
    with store.transaction() as tx:
        assert tx.next_number("n") == 4


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_a_counter_refuses_a_count_that_is_not_a_positive_whole_number(store, bad):
    with pytest.raises(StoreError, match="count"), store.transaction() as tx:
        tx.next_number("n", bad)


def test_counters_from_several_processes_have_no_duplicate_and_no_gap(store_url):
    open_store(store_url).close()  # create the store before the processes race to
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reserve_numbers, args=(store_url, "case:20261130", 30, queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    numbers = sorted(n for kept in got for n in kept)
    assert numbers == list(range(1, len(numbers) + 1))
    # 4 processes x 20 committed transactions, alternately reserving 2 and 1 numbers
    assert len(numbers) == 4 * sum(1 + i % 2 for i in range(30) if i % 3 != 2)


# ---- the GeoPackage read path (sqlite3 + shapely) against GDAL's ---------------------------

_VALUES = {"text": lambda i: f"值 {i} o'k", "integer": lambda i: i * 7, "real": lambda i: i + 0.25,
           "boolean": lambda i: i % 2 == 0, "date": lambda i: dt.date(2026, 1, 1) + dt.timedelta(days=i),
           "datetime": lambda i: dt.datetime(2026, 11, 29, 16, 30, i % 60, 123000, tzinfo=dt.UTC)}


def _every_kind_of_row(spec, n: int) -> list[dict]:
    """Rows with a value of every column type, and a null in each column every fourth row
    (unique columns stay filled)."""
    return [{c.name: None if (i % 4 == 3 and not c.unique) else _VALUES[c.type](i) for c in spec.columns}
            for i in range(n)]


def _geometries(kind: str, n: int) -> list:
    out = []
    for i in range(n):
        x, y = 118.70 + i * 0.01, 32.00 + (i % 7) * 0.01
        if i % 9 == 4:
            out.append(None)
        elif i % 9 == 8:
            out.append(shapely.from_wkt(f"{kind.upper()} EMPTY"))
        elif kind == "Point":
            out.append(shapely.Point(x, y))
        elif kind == "MultiLineString":  # diagonals: their box meets bboxes the line misses
            out.append(shapely.MultiLineString([[(x, y), (x + 0.03, y + 0.03)]]))
        else:
            out.append(shapely.MultiPolygon([shapely.box(x, y, x + 0.004, y + 0.004)]))
    return out


def _gdal_read(path, layer, spec, bbox=None, where=None):
    """What GeoPackageStore.read returned when it read through GDAL."""
    df = pyogrio.read_dataframe(path, layer=layer, bbox=bbox, where=where, fid_as_index=True)
    if df.empty:
        return empty_frame(spec)
    df.index.name = "fid"
    df = df.reset_index()
    df = df.rename_geometry("geometry") if df.geometry.name != "geometry" else df
    return nulls_as_none(spec, df[["fid", *spec.column_names, "geometry"]])


def _assert_same_frame(ours, gdal, spec):
    assert list(ours.columns) == list(gdal.columns)
    assert ours["fid"].tolist() == gdal["fid"].tolist()
    assert len(ours) > 0 or len(gdal) == 0
    for c in spec.columns:
        if c.type == "boolean":  # GDAL gives 0.0/1.0 once a null is in the column
            assert [None if v is None else bool(v) for v in gdal[c.name]] == ours[c.name].tolist()
            continue
        pd.testing.assert_series_equal(ours[c.name], gdal[c.name], check_names=True)
    assert ours.crs == gdal.crs
    assert [None if g is None else g.wkb for g in ours.geometry] == \
        [None if g is None else g.wkb for g in gdal.geometry]


@pytest.mark.parametrize("layer", ["problems", "zones", "roads", "sites"])
def test_the_sqlite3_read_path_returns_what_gdal_reads(gpkg_store, layer):
    spec = LAYERS[layer]
    rows = _every_kind_of_row(spec, 40)
    gpkg_store.append(layer, gpd.GeoDataFrame(rows, geometry=_geometries(spec.geometry_type, 40),
                                              crs="EPSG:4326"))
    path = gpkg_store.path
    text = next(c.name for c in spec.columns if c.type == "text" and not c.unique)
    for bbox in [None, (118.745, 32.005, 118.905, 32.035), (0.0, 0.0, 1.0, 1.0)]:
        for where, sql in [(None, None), ({text: [_VALUES["text"](1), _VALUES["text"](6)]},
                                          f"\"{text}\" IN ('值 1 o''k', '值 6 o''k')")]:
            ours = gpkg_store.read(layer, bbox=bbox, where=where)
            _assert_same_frame(ours, _gdal_read(path, layer, spec, bbox, sql), spec)
    assert len(gpkg_store.read(layer)) == 40


# ---- many writers and readers on one GeoPackage --------------------------------------------

_THREADS, _ROUNDS = 4, 8


def _report_frame(problem_id: str, number: int, i: int) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"problem_id": [problem_id], "category": ["06010"], "status": ["filed"],
                             "description": [f"报告 {problem_id} #{number}"]},
                            geometry=[shapely.Point(118.78 + i * 1e-4, 32.04)], crs="EPSG:4326")


def _write_reports(store, tag: str) -> list[tuple[str, int]]:
    """Threads of one process: each transaction numbers a report, stores it and its first
    step together, then reads it back; returns (problem_id, number) of those that returned."""
    done, errors = [], []

    def work(t: int):
        for i in range(_ROUNDS):
            pid = f"{tag}-{t}-{i}"
            try:
                with store.transaction() as tx:
                    number = tx.next_number("case:20261130")
                    tx.append("problems", _report_frame(pid, number, i))
                    tx.append("case_steps", pd.DataFrame([{
                        "problem_id": pid, "seq": 1, "action": "report", "to_status": "filed",
                        "at": dt.datetime(2026, 11, 30, tzinfo=dt.UTC)}]))
                back = store.read("problems", where={"problem_id": pid})
                assert back["description"].tolist() == [f"报告 {pid} #{number}"]
                store.read("problems", bbox=(118.7799, 32.0399, 118.7805, 32.0401))
                done.append((pid, number))
            except Exception as exc:  # reported to the test below
                errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:3]
    return done


def _writer_process(url_or_store, tag: str, queue) -> None:
    if isinstance(url_or_store, str):  # spawned: opens its own store
        with open_store(url_or_store) as store:
            queue.put(_write_reports(store, tag))
    else:  # forked: uses the store object made (and used) by the parent, as gunicorn does
        queue.put(_write_reports(url_or_store, tag))


def test_threads_and_processes_writing_one_geopackage_lose_nothing(tmp_path):
    path = str(tmp_path / "busy.gpkg")
    store = open_store(path)
    store.read("problems")  # the parent holds an open connection when it forks
    queue = mp.get_context("spawn").Queue()  # forked children inherit it as it is
    procs = [mp.get_context("fork").Process(target=_writer_process, args=(store, f"f{k}", queue))
             for k in range(2)]
    procs += [mp.get_context("spawn").Process(target=_writer_process, args=(path, f"s{k}", queue))
              for k in range(2)]
    for p in procs:
        p.start()
    done = _write_reports(store, "parent")  # and this process writes at the same time
    for _ in procs:
        done += queue.get(timeout=300)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(done) == 5 * _THREADS * _ROUNDS
    stored = store.read("problems")
    assert sorted(stored["problem_id"]) == sorted(pid for pid, _ in done)
    assert dict(zip(stored["problem_id"], stored["description"])) == \
        {pid: f"报告 {pid} #{n}" for pid, n in done}
    steps = store.read("case_steps")
    assert sorted(steps["problem_id"]) == sorted(pid for pid, _ in done)
    assert sorted(n for _, n in done) == list(range(1, len(done) + 1))
    assert store.check()["journal_mode"] == "wal"
    store.close()
    import sqlite3

    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()
    for name, _ in pyogrio.list_layers(path):
        assert len(pyogrio.read_dataframe(path, layer=name)) == (len(done) if name in (
            "problems", "case_steps") else 0)


def test_a_writer_that_cannot_get_the_lock_gets_store_unavailable_and_writes_nothing(tmp_path):
    import sqlite3

    from layers.errors import StoreUnavailable
    from layers.store.gpkg import GeoPackageStore

    path = tmp_path / "locked.gpkg"
    store = GeoPackageStore(path, busy_timeout_s=0.5)
    other = sqlite3.connect(path, isolation_level=None)  # another process's long import
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreUnavailable, match="try again"), store.transaction() as tx:
        tx.append("problems", _report_frame("x-1", 1, 0))
    other.execute("ROLLBACK")
    other.close()
    assert store.count("problems") == 0
    store.append("problems", _report_frame("x-2", 1, 0))  # the lock came back
    assert store.read("problems")["problem_id"].tolist() == ["x-2"]
    store.close()


# ---- a PostgreSQL restart under a live PostGISStore ----------------------------------------

_PG_SERVER = ROOT / "scripts" / "pg-test-server"


class _Cluster:
    """A throw-away PostgreSQL of our own (scripts/pg-test-server), which this test may stop,
    start and restart with its pg_ctl."""

    def __init__(self, base: Path):
        self.dir = base / "pg"
        done = subprocess.run([str(_PG_SERVER), "start", str(self.dir)], capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            _need("a PostgreSQL + PostGIS server", done.stderr.strip() or "pg-test-server failed")
        self.url = done.stdout.strip().splitlines()[-1]
        self.port = self.url.rsplit(":", 1)[1].split("/")[0]
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1]

    def pg_ctl(self, *args: str) -> None:
        cmd = [str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-w", *args]
        if os.getuid() == 0:  # the cluster belongs to the postgres user
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:  # a log file, or the server would hold our stdout pipe open
        self.pg_ctl("-l", str(self.dir / "server.log"), "-o",
                    f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off", "start")

    def restart(self) -> None:
        self.pg_ctl("-l", str(self.dir / "server.log"), "-m", "fast", "restart")

    def stop(self) -> None:
        subprocess.run([str(_PG_SERVER), "stop", str(self.dir)], capture_output=True, timeout=120)


def _need(what: str, why: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI but is missing: {why}")
    pytest.skip(f"{what} not available: {why}")


@pytest.fixture
def cluster():
    if not _PG_SERVER.exists() or not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        _need("PostgreSQL server binaries", "none under /usr/lib/postgresql (scripts/test installs them)")
    base = Path(tempfile.mkdtemp(prefix="zonemap-restart-"))  # not under pytest's 0700 tmp
    c = _Cluster(base)
    yield c
    c.stop()
    shutil.rmtree(base, ignore_errors=True)


def _wait_for(condition, what: str, stop: threading.Event, limit_s: float = 180) -> None:
    """A guard against a hang, not a timing assertion: the limit is far beyond need."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            stop.set()
            pytest.fail(f"waited {limit_s:g} s for {what}")
        time.sleep(0.05)


def _point(pid: str) -> gpd.GeoDataFrame:
    return _report_frame(pid, 0, 0)


def test_a_postgresql_restart_costs_at_most_the_requests_in_flight(cluster):
    from layers.errors import StoreUnavailable

    store = open_store(cluster.url)
    store.append("problems", _point("before"))
    assert store.read("problems")["problem_id"].tolist() == ["before"]
    stop, outcomes, stored = threading.Event(), [], []

    def client(k: int):  # reads and writes while the server restarts under them
        i = 0
        while not stop.is_set():
            i += 1
            pid = f"c{k}-{i}"
            try:
                store.append("problems", _point(pid))
                stored.append(pid)
                store.read("problems", where={"problem_id": pid})
                outcomes.append("ok")
            except StoreUnavailable:
                outcomes.append("503")
            except Exception as exc:  # anything else is what this test is about
                outcomes.append(repr(exc))

    clients = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for t in clients:
        t.start()
    _wait_for(lambda: outcomes.count("ok") >= 10, "the clients to start", stop)
    cluster.restart()
    before = len(outcomes)
    _wait_for(lambda: outcomes[before:].count("ok") >= 10,  # they recover by themselves
              f"the store to serve again after the restart (got {set(outcomes[before:])})", stop)
    stop.set()
    for t in clients:
        t.join(timeout=120)  # a hang would keep a thread alive
        assert not t.is_alive()
    assert set(outcomes) <= {"ok", "503"}, [o for o in outcomes if o not in ("ok", "503")][:3]
    # on the same store object, without reopening it: every acknowledged write is there
    assert set(store.read("problems")["problem_id"]) >= {"before", *stored}
    store.append("problems", _point("after"))
    with store.transaction() as tx:
        assert tx.next_number("case:20261130") == 1
    assert store.check()["ok"] and store.check()["store"] == "postgis"
    store.close()


def test_a_stopped_server_answers_store_unavailable_then_serves_again_when_back(cluster):
    from layers.errors import StoreUnavailable
    from layers.store.postgis import PostGISStore

    store = PostGISStore(cluster.url, timeout_s=2)
    store.append("problems", _point("one"))
    cluster.pg_ctl("-m", "fast", "stop")
    with pytest.raises(StoreUnavailable, match=r"(?i)try again"):
        store.read("problems")
    with pytest.raises(StoreUnavailable, match=r"(?i)try again"):
        store.append("problems", _point("lost"))
    with pytest.raises(StoreUnavailable):
        store.check()
    cluster.start()
    assert store.read("problems")["problem_id"].tolist() == ["one"]  # the same object
    store.append("problems", _point("two"))
    assert store.count("problems") == 2
    store.close()
