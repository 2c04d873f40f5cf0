"""The load and fault test (scripts/bench/load.py) at a small size, on both stores: the real
gunicorn server started with `scripts/zonemap serve`, 8 route and 8 report clients for 10 s
on the real Nanjing data with zones. Every acknowledged report must read back with its own
text, the store must hold exactly the acknowledged reports, no answer may be a 5xx or a
dropped connection, and the GeoPackage must pass SQLite's integrity_check. On PostGIS the
test starts its own PostgreSQL (so it can restart it without hurting other tests) and
restarts it in the middle: only requests in flight may fail, and the same zonemap server
must answer again, /health saying so."""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from scripts.bench import load
from tests.conftest import ROOT, _need

pytestmark = pytest.mark.slow  # gunicorn under load for tens of seconds

# a hung request is cut after 10 s, so that a failing run still ends in reasonable time
SMALL = {"route_clients": 8, "report_clients": 8, "seconds": 10.0, "timeout": 10.0, "prepare": "none",
         "baseline_seconds": 0}


@pytest.fixture(scope="module")
def nanjing_with_zones(nanjing_gpkg):
    """This module's copy of the Nanjing store, with the zones of a few blocks (made once)."""
    load.zonemap(nanjing_gpkg, "zones", "generate", "--bbox", *load.ZONE_BBOX)
    return nanjing_gpkg


@pytest.fixture
def own_postgres():
    """A PostgreSQL + PostGIS cluster of this test's own (scripts/pg-test-server in a fresh
    directory under /tmp, which the postgres user can reach): its URL and directory."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and not shutil.which("initdb"):
        _need("PostgreSQL server binaries", "no initdb under /usr/lib/postgresql (apt-get install postgresql postgis)")
    base = Path(tempfile.mkdtemp(prefix="zonemap-load-pg-"))
    cluster = base / "pg"
    script = ROOT / "scripts" / "pg-test-server"
    done = subprocess.run([str(script), "start", str(cluster)], capture_output=True, text=True, timeout=120)
    try:
        if done.returncode != 0:
            _need("a PostgreSQL + PostGIS cluster of the test's own", done.stderr.strip()[-500:])
        yield done.stdout.strip().splitlines()[-1], cluster
    finally:
        subprocess.run([str(script), "stop", str(cluster)], capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def check(result: dict) -> None:
    """Everything the load test checks, with its whole summary when something failed."""
    assert not result["failures"], load.summary(result)


def test_geopackage_under_load_keeps_every_acknowledged_report(nanjing_with_zones, tmp_path):
    db = tmp_path / "load.gpkg"
    shutil.copy(nanjing_with_zones, db)
    result = load.run_load(load.Config(db=str(db), log=str(tmp_path / "server.log"), **SMALL))
    check(result)
    assert result["integrity"] == "ok"
    assert result["reports"]["acknowledged"] == result["store_check"]["ours_stored"] > 0


def test_postgis_under_load_survives_a_postgresql_restart(own_postgres, shared_data, tmp_path):
    url, cluster = own_postgres
    load.prepare_store(url, "nanjing")  # the same Nanjing data and zones as on GeoPackage
    result = load.run_load(load.Config(db=url, restart_pg_at=3.0, pg_dir=str(cluster),
                                       log=str(tmp_path / "server.log"), **SMALL))
    check(result)
    restart = result["restart"]
    assert restart["done"] and restart["health_after"]["status"] == 200
    down = restart["health_while_down"]
    assert down["status"] != 200 or not down["while_surely_down"]  # /health asks the store
    # the same server answered routes and reports after the restart: nothing restarted zonemap
    after = restart["answered_after"]
    assert after.get("GET /api/route", 0) > 0 and after.get("POST /api/problems", 0) > 0, load.summary(result)
    assert result["reports"]["acknowledged"] == result["store_check"]["ours_stored"] > 0
