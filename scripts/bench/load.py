#!/usr/bin/env python3
"""Load and fault test of the real server (run by hand: `.venv/bin/python scripts/bench/load.py`).

Starts `scripts/zonemap --db STORE serve` (gunicorn, as a user would) on a free port of
127.0.0.1, runs N route clients (GET /api/route) and M report clients (POST /api/problems,
each report with its own Idempotency-Key, retried once with the same key after a connection
error or a 5xx) for T seconds, then checks what a city would check:

- every acknowledged report (201) reads back (GET /api/cases/{id}, as an inspector) with ITS
  OWN description, its steps in order and ending in its state; no two 201s share a case id;
- the store holds exactly the reports that were acknowledged: what is there beyond them (a
  500 or a timeout that was stored anyway, a retry stored twice) is listed, and so are
  case_steps rows whose case does not exist;
- on a GeoPackage, `PRAGMA integrity_check` once the server has stopped;
- with `--restart-pg-at S --pg-dir DIR`, PostgreSQL is stopped (-m fast) S seconds into the
  run, /health is asked while it is down, it is started again, and the same zonemap server
  must answer again (and /health say ok) without being restarted. Requests that overlap the
  restart may fail; any failure outside it counts.

Exit 1 when a report is lost or mismatched, a 5xx or a dropped connection happened outside
the restart, the store holds reports nobody acknowledged, integrity fails, or the server did
not come back. A store without zones is prepared first (the real Nanjing extract and the
zones of a few blocks of 新街口, else the demo city); reports are added to the store.

    scripts/bench/load.py                                   # 60 s, 16 route + 8 report clients, var/zonemap.gpkg
    scripts/bench/load.py --db /tmp/load.gpkg --seconds 10 --json
    scripts/pg-test-server start /tmp/pg-load               # prints URL
    scripts/bench/load.py --db URL --restart-pg-at 30 --pg-dir /tmp/pg-load
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"  # every request of this test goes to the loopback, nowhere else
ZONEMAP = ROOT / "scripts" / "zonemap"
DEFAULT_DB = ROOT / "var" / "zonemap.gpkg"
NANJING = ROOT.parent / "shared" / "data" / "nanjing_xinjiekou_osm" / "nanjing_xinjiekou_2021-06.osm.gz"
NANJING_BBOX = (118.7620, 32.0347, 118.7968, 32.0522)
ZONE_BBOX = (118.776, 32.038, 118.786, 32.044)  # a few blocks of 新街口: their zones take about 2 s
MAX_REQUESTS_PER_CLIENT = 100_000  # a bound besides the clock
FAILED = "failed"  # no HTTP answer: refused, reset or timed out


class LoadError(Exception):
    """The test could not be set up or run (not a finding about the server)."""


@dataclass
class Config:
    db: str = str(DEFAULT_DB)
    route_clients: int = 16
    report_clients: int = 8
    seconds: float = 60.0
    restart_pg_at: float | None = None
    pg_dir: str | None = None
    workers: int = 2
    threads: int = 4
    timeout: float = 30.0  # per request
    prepare: str = "auto"  # auto | nanjing | demo | none
    log: str | None = None  # the server's log file; default: a temporary one
    seed: int = 8
    baseline_seconds: float = 5.0  # the route clients alone first: the throughput to compare with
    # the clients all come from 127.0.0.1 and stand for many phones: the per-client report limit
    # (ZONEMAP_REPORT_RATE_LIMIT) is lifted unless this is None (then the server's own applies)
    report_rate_limit: str | None = "1000000/minute"


@dataclass
class Call:
    endpoint: str
    start: float  # seconds since the load started
    end: float
    status: int | None  # None: no HTTP answer (see error)
    error: str | None = None


@dataclass
class Report:
    key: str
    description: str
    category: str
    attempts: list[dict] = field(default_factory=list)  # status, case_id, error, start, end

    def acknowledged(self) -> str | None:
        """The case id of the attempt that the server acknowledged (2xx with a case id)."""
        for a in self.attempts:
            if a["case_id"]:
                return a["case_id"]
        return None


# ---- processes: the zonemap command line, the server, PostgreSQL ------------------------------

def _env() -> dict:
    env = dict(os.environ)
    env.pop("ZONEMAP_DB", None)  # --db says which store, always
    return env


def zonemap(db: str, *args, stdin: str | None = None, timeout: float = 600) -> str:
    """Run `scripts/zonemap --db DB ARGS…` as a user would; its stdout, or LoadError."""
    done = subprocess.run([str(ZONEMAP), "--db", db, *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=timeout, env=_env())
    if done.returncode != 0:
        raise LoadError(f"zonemap {' '.join(map(str, args))} failed ({done.returncode}): "
                        f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


def store_counts(db: str) -> dict:
    from layers.store import open_store

    if "://" not in db:
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    with open_store(db) as s:
        return {"empty": s.is_empty(), "zones": s.count("zones"), "problems": s.count("problems")}


def prepare_store(db: str, how: str = "auto") -> str:
    """Make sure the store has zones, so that routing is real. Returns what was done."""
    if how == "none":
        return "used as it was"
    if how == "auto":
        counts = store_counts(db)
        if counts["zones"]:
            return f"used as it was ({counts['zones']} zones, {counts['problems']} problems)"
        if not counts["empty"]:
            raise LoadError(f"{db} has data but no zones: run `scripts/zonemap --db {db} zones generate` "
                            "first, or give another store")
        how = "nanjing" if NANJING.exists() else "demo"
    if how == "nanjing":
        zonemap(db, "import-osm", NANJING, "--bbox", *NANJING_BBOX)
        zonemap(db, "zones", "generate", "--bbox", *ZONE_BBOX)
        return f"loaded the Nanjing extract and generated the zones of {ZONE_BBOX}"
    zonemap(db, "demo")
    return "loaded the demo city and its zones"


def inspector_token(db: str) -> str:
    """A fresh inspector and its token, made with the command line before the server starts."""
    name = f"load-inspector-{uuid.uuid4().hex[:8]}"
    zonemap(db, "users", "add", name, "--role", "inspector", stdin=f"{uuid.uuid4().hex}\n")
    return zonemap(db, "token", name).strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`scripts/zonemap serve` in its own process group; stop() sends SIGTERM, then SIGKILL."""

    def __init__(self, db: str, log: Path, workers: int = 2, threads: int = 4, env: dict | None = None):
        self.db, self.log, self.workers, self.threads, self.env = db, log, workers, threads, env or {}
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(ZONEMAP), "--db", self.db, "serve", "--host", HOST, "--port", str(self.port),
                 "--workers", str(self.workers), "--threads", str(self.threads)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**_env(), **self.env},
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LoadError(f"the server exited with {self.proc.returncode}: {self.log_tail()}")
            if call(self.port, "GET", "/health", timeout=2).status is not None:
                return
            time.sleep(0.2)
        self.stop()
        raise LoadError(f"the server did not answer within {timeout:.0f} s: {self.log_tail()}")

    def worker_pids(self) -> list[int]:
        """The gunicorn workers now (a changed list means a worker died and was replaced)."""
        try:
            return sorted(int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
                          .read_text().split())
        except OSError:
            return []

    def stop(self, timeout: float = 20) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            return {"exit": None if self.proc is None else self.proc.returncode, "killed": False}
        self.proc.send_signal(signal.SIGTERM)
        killed = False
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group we started: master and its workers
            self.proc.wait(10)
            killed = True
        return {"exit": self.proc.returncode, "killed": killed}

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def pg_data_dir(pg_dir: str) -> Path:
    """The cluster's data directory: DIR itself or DIR/data (scripts/pg-test-server's layout)."""
    for d in (Path(pg_dir), Path(pg_dir) / "data"):
        if (d / "PG_VERSION").exists():
            return d
    raise LoadError(f"--pg-dir {pg_dir}: no PostgreSQL data directory there (no PG_VERSION); give the "
                    "directory given to scripts/pg-test-server start, or its data/")


def pg_ctl(data: Path, *args) -> None:
    """pg_ctl of the cluster's own version, as the cluster's owner (postgres when we are root)."""
    version = (data / "PG_VERSION").read_text().strip()
    binary = Path(f"/usr/lib/postgresql/{version}/bin/pg_ctl")
    cmd = [str(binary if binary.exists() else shutil.which("pg_ctl") or "pg_ctl"), "-D", str(data), *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise LoadError(f"pg_ctl {' '.join(args)} failed: {(done.stderr or done.stdout).strip()[-600:]}")


# ---- HTTP ---------------------------------------------------------------------------------------

def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30, t0: float = 0.0, endpoint: str = "") -> Call:
    """One request on its own connection (no keep-alive: a server closing an idle connection
    must not look like a failure). The answer's body is in `.body`."""
    start = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        got = Call(endpoint, start - t0, time.monotonic() - t0, resp.status)
    except (OSError, http.client.HTTPException) as exc:
        got, data = Call(endpoint, start - t0, time.monotonic() - t0, None, f"{type(exc).__name__}: {exc}"), b""
    finally:
        conn.close()
    got.body = data  # type: ignore[attr-defined]  # kept off the dataclass: records stay small
    return got


def json_of(got: Call):
    try:
        return json.loads(got.body)  # type: ignore[attr-defined]
    except ValueError:
        return None


def _walk_coords(coords, xs: list, ys: list) -> None:
    if coords and isinstance(coords[0], (int, float)):
        xs.append(coords[0])
        ys.append(coords[1])
        return
    for c in coords or ():
        _walk_coords(c, xs, ys)


def target_box(port: int) -> tuple[float, float, float, float]:
    """Where to send points: the zones' box, shrunk by 10 % on each side (so that routing finds
    zones, and a service area drawn around the zones takes them); else the store's extent."""
    got = call(port, "GET", "/api/layers/zones.geojson?limit=20000", timeout=60)
    xs: list[float] = []
    ys: list[float] = []
    if got.status == 200:
        for f in (json_of(got) or {}).get("features", []):
            _walk_coords((f.get("geometry") or {}).get("coordinates"), xs, ys)
    if xs:
        w, s, e, n = min(xs), min(ys), max(xs), max(ys)
    else:
        extent = (json_of(call(port, "GET", "/api/layers", timeout=60)) or {}).get("extent")
        if not extent:
            raise LoadError("the server names no zones and no extent: the store has no data")
        w, s, e, n = extent
    dx, dy = (e - w) * 0.1, (n - s) * 0.1
    return w + dx, s + dy, e - dx, n - dy


# ---- the run ------------------------------------------------------------------------------------

class Run:
    """What the clients share: the clock, the server's port, and every answer."""

    def __init__(self, cfg: Config, port: int, box, categories: list[str], token: str, seconds: float):
        self.cfg, self.port, self.box, self.categories, self.token = cfg, port, box, categories, token
        self.tag = f"LOAD-{uuid.uuid4().hex[:10]}"  # in every description of this run
        self.calls: list[Call] = []
        self.reports: list[Report] = []
        self.t0 = time.monotonic()
        self.deadline = self.t0 + seconds

    def running(self, n: int) -> bool:
        return time.monotonic() < self.deadline and n < MAX_REQUESTS_PER_CLIENT

    def now(self) -> float:
        return time.monotonic() - self.t0

    def point(self, rng: random.Random) -> tuple[float, float]:
        w, s, e, n = self.box
        return round(rng.uniform(w, e), 7), round(rng.uniform(s, n), 7)

    def send(self, method: str, path: str, endpoint: str, body: bytes | None = None,
             headers: dict | None = None) -> Call:
        got = call(self.port, method, path, body, headers, self.cfg.timeout, self.t0, endpoint)
        self.calls.append(got)  # list.append is atomic under the GIL
        return got


def route_client(run: Run, seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    while run.running(n):
        lon, lat = run.point(rng)
        run.send("GET", f"/api/route?lon={lon}&lat={lat}", "GET /api/route")
        n += 1


def report_client(run: Run, seed: int, client: int) -> None:
    rng = random.Random(seed)
    n = 0
    while run.running(n):
        key = str(uuid.uuid4())
        lon, lat = run.point(rng)
        # unique per report: the run's tag, the key, and Chinese text a phone would send
        rep = Report(key, f"{run.tag} {key} 第{client}-{n}件:人行道井盖松动,踩上去晃,请尽快处理",
                     rng.choice(run.categories))
        body = json.dumps({"lon": lon, "lat": lat, "crs": "wgs84", "category": rep.category,
                           "description": rep.description}, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key}
        for _ in range(2):  # the first try, and one retry with the same key
            got = run.send("POST", "/api/problems", "POST /api/problems", body, headers)
            answer = json_of(got) if got.status is not None and 200 <= got.status < 300 else None
            rep.attempts.append({"status": got.status, "error": got.error, "start": got.start, "end": got.end,
                                 "case_id": (answer or {}).get("problem_id")})
            if got.status is not None and got.status < 500:
                break
        run.reports.append(rep)
        n += 1


def restart_postgres(run: Run, data: Path, at: float, stop_event: threading.Event) -> dict:
    """Stop PostgreSQL `at` s into the run, ask /health while it is down (giving the answer at
    most a second before starting PostgreSQL again, as a quick restart would), then wait for
    the same zonemap server to say it is healthy."""
    if stop_event.wait(max(0.0, at - run.now())):
        return {"done": False}
    out: dict = {"at": round(run.now(), 2)}
    begin = run.now()
    pg_ctl(data, "stop", "-m", "fast", "-w")
    down_at = run.now()
    probe: list[Call] = []
    asking = threading.Thread(target=lambda: probe.append(call(run.port, "GET", "/health", timeout=15, t0=run.t0)))
    asking.start()
    asking.join(1.0)
    started_at = run.now()  # PostgreSQL was surely down until here (it may be up before pg_ctl returns)
    # restart reuses the options the cluster was started with (postmaster.opts)
    pg_ctl(data, "restart", "-m", "fast", "-w", "-l", str(data.parent / "server.log"))
    out["begin"], out["end"] = round(begin, 3), round(run.now(), 3)
    asking.join()
    down = probe[0]
    out["health_while_down"] = {"status": down.status, "error": down.error, "body": json_of(down),
                                "asked_at": round(down_at, 3), "answered_at": round(down.end, 3),
                                "while_surely_down": down.end < started_at}
    deadline = time.monotonic() + 30
    while True:
        health = call(run.port, "GET", "/health", timeout=5, t0=run.t0)
        body = json_of(health)
        if health.status == 200 and isinstance(body, dict) and body.get("ok") is not False:
            out["health_after"] = {"status": 200, "body": body, "after_s": round(run.now() - out["end"], 2)}
            break
        if time.monotonic() > deadline:
            out["health_after"] = {"status": health.status, "error": health.error, "body": body}
            break
        time.sleep(0.2)
    out["done"] = True
    return out


def read_back(run: Run, reports: list[Report]) -> dict:
    """GET every acknowledged case once (as the inspector) and compare it with what was sent."""
    headers = {"Authorization": f"Bearer {run.token}"}

    def one(rep: Report) -> tuple[Report, Call]:
        cid = rep.acknowledged()
        for _ in range(2):  # a read that fails is asked again once: a lost read is not a lost report
            got = call(run.port, "GET", f"/api/cases/{cid}", headers=headers, timeout=run.cfg.timeout)
            if got.status is not None and got.status < 500:
                break
        return rep, got

    lost, mismatched, unreadable, bad_steps = [], [], [], []
    with ThreadPoolExecutor(8) as pool:
        for rep, got in pool.map(one, reports):
            cid = rep.acknowledged()
            body = json_of(got)
            if got.status == 404:
                lost.append({"case_id": cid, "key": rep.key, "answer": body})
            elif got.status != 200 or not isinstance(body, dict):
                unreadable.append({"case_id": cid, "status": got.status, "error": got.error or body})
            elif (body.get("description"), body.get("category")) != (rep.description, rep.category):
                mismatched.append({"case_id": cid, "sent": [rep.description, rep.category],
                                   "got": [body.get("description"), body.get("category")]})
            else:
                problem = steps_problem(body)
                if problem:
                    bad_steps.append({"case_id": cid, "problem": problem})
    return {"lost": lost, "mismatched": mismatched, "unreadable": unreadable, "bad_steps": bad_steps}


def steps_problem(case: dict) -> str | None:
    """A new case's steps are numbered 1…n and the last one ends in the case's state."""
    steps = case.get("steps")
    if not steps:
        return "no steps"
    seqs = [s.get("seq") for s in steps]
    if seqs != list(range(1, len(steps) + 1)):
        return f"steps numbered {seqs}"
    last = steps[-1].get("to_status")
    if last != case.get("status"):
        return f"last step ends in {last!r}, the case is {case.get('status')!r}"
    return None


def store_check(db: str, run: Run, acked: dict[str, Report], before: int) -> dict:
    """After the server stopped: what the store holds against what was acknowledged."""
    from layers.store import open_store

    with open_store(db) as s:
        problems = s.read("problems")
        steps = s.read("case_steps")
    ours = problems[problems["description"].astype(str).str.startswith(run.tag, na=False)]
    by_key = {rep.key: rep for rep in run.reports}
    stored_ids = set(problems["problem_id"])
    unacked = []  # stored, but the client never got a case number for it (or got another one)
    for pid, desc in zip(ours["problem_id"], ours["description"]):
        rep = by_key.get(desc.split(" ")[1]) if len(desc.split(" ")) > 1 else None
        if pid not in acked:
            unacked.append({"case_id": pid, "key": rep.key if rep else None,
                            "answers": [a["status"] or a["error"] for a in rep.attempts] if rep else None})
    orphans = sorted(set(steps["problem_id"]) - stored_ids)
    return {"problems_before": before, "problems_after": len(problems), "ours_stored": len(ours),
            "missing_from_store": sorted(set(acked) - stored_ids), "stored_unacknowledged": unacked,
            "orphan_steps": orphans}


def integrity(db: str) -> str:
    """SQLite's own check of the GeoPackage file ('ok' when sound)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:  # a file too damaged to check is the worst answer
        return f"{type(exc).__name__}: {exc}"
    finally:
        con.close()
    return "ok" if rows == ["ok"] else "; ".join(rows[:20])


# ---- figures ------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def in_window(c: Call, window: tuple[float, float] | None) -> bool:
    return window is not None and c.start <= window[1] and c.end >= window[0]


def endpoint_stats(calls: list[Call], seconds: float, window) -> dict:
    out = {}
    for name in sorted({c.endpoint for c in calls}):
        mine = [c for c in calls if c.endpoint == name]
        ok = [c for c in mine if c.status is not None and c.status < 400]
        ms = [(c.end - c.start) * 1000 for c in ok]
        bad = [c for c in mine if c.status is None or c.status >= 500]
        outside = [c for c in bad if not in_window(c, window)]
        out[name] = {
            "requests": len(mine), "per_s": round(len(mine) / seconds, 1),
            "statuses": dict(sorted(Counter(str(c.status or FAILED) for c in mine).items())),
            "p50_ms": _r(percentile(ms, 50)), "p95_ms": _r(percentile(ms, 95)), "p99_ms": _r(percentile(ms, 99)),
            "failed_5xx_or_no_answer": len(bad), "failed_outside_restart": len(outside),
            "first_failures_outside_restart": [asdict(c) for c in outside[:10]],
            "errors": dict(Counter(c.error.split(":")[0] for c in mine if c.error).most_common(5)),
        }
    return out


def _r(v):
    return None if v is None else round(v, 1)


def server_errors(log: Path) -> dict:
    """The distinct errors in the server's log, counted: exception lines and gunicorn's own."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return {}
    found = Counter()
    for line in text.splitlines():
        line = line.strip()
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Warning)(: |$)", line) or "[CRITICAL]" in line \
                or ("[ERROR]" in line and "Traceback" not in line):
            found[re.sub(r"\[\d+\]|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}", "", line)[:200]] += 1
    return dict(found.most_common(15))


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def run_load(cfg: Config) -> dict:
    """Prepare the store, start the server, load it, check everything; the result as a dict
    (`failures(result)` says what went wrong)."""
    if cfg.restart_pg_at is not None and not cfg.db.startswith(("postgresql://", "postgres://")):
        raise LoadError("--restart-pg-at needs a PostgreSQL store (--db postgresql://…)")
    if cfg.restart_pg_at is not None and not cfg.pg_dir:
        raise LoadError("--restart-pg-at needs --pg-dir: the directory of the cluster to restart")
    pg_data = pg_data_dir(cfg.pg_dir) if cfg.restart_pg_at is not None else None
    result: dict = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "commit": git_commit(),
                    "store": "postgis" if "://" in cfg.db else "gpkg", "config": asdict(cfg)}
    result["prepared"] = prepare_store(cfg.db, cfg.prepare)
    token = inspector_token(cfg.db)
    before = store_counts(cfg.db)["problems"]
    log = Path(cfg.log) if cfg.log else Path(tempfile.mkdtemp(prefix="zonemap-load-")) / "server.log"
    result["server_log"] = str(log)
    env = {"ZONEMAP_REPORT_RATE_LIMIT": cfg.report_rate_limit} if cfg.report_rate_limit else {}
    server = Server(cfg.db, log, cfg.workers, cfg.threads, env)
    server.start()
    try:
        result |= _load(cfg, server, token, pg_data, before)
    finally:
        result["server_stop"] = server.stop()
    result["server_errors"] = server_errors(log)
    if result["store"] == "gpkg":
        result["integrity"] = integrity(cfg.db)
    try:
        result["store_check"] = store_check(cfg.db, result.pop("_run"), result.pop("_acked"), before)
    except Exception as exc:  # a store that cannot be read back is a finding, not a crash
        result["store_check"] = {"unreadable": f"{type(exc).__name__}: {str(exc)[:300]}"}
    result["failures"] = failures(result)
    return result


def _load(cfg: Config, server: Server, token: str, pg_data: Path | None, before: int) -> dict:
    categories = [c["code"] for c in json_of(call(server.port, "GET", "/api/categories")) or []]
    if not categories:
        raise LoadError("GET /api/categories named no category")
    box = target_box(server.port)
    workers_before = server.worker_pids()
    baseline = route_baseline(cfg, server.port, box, categories, token)
    run = Run(cfg, server.port, box, categories, token, cfg.seconds)
    stop_event = threading.Event()
    restart: dict = {}
    threads = [threading.Thread(target=route_client, args=(run, cfg.seed * 1000 + i), daemon=True)
               for i in range(cfg.route_clients)]
    threads += [threading.Thread(target=report_client, args=(run, cfg.seed * 2000 + i, i), daemon=True)
                for i in range(cfg.report_clients)]
    if pg_data is not None:
        def restarter():
            try:
                restart.update(restart_postgres(run, pg_data, cfg.restart_pg_at, stop_event))
            except LoadError as exc:
                restart.update({"done": False, "error": str(exc)})
        threads.append(threading.Thread(target=restarter, daemon=True))
    for t in threads:
        t.start()
    for t in threads[: cfg.route_clients + cfg.report_clients]:
        t.join()
    elapsed = run.now()
    stop_event.set()
    for t in threads[cfg.route_clients + cfg.report_clients:]:
        t.join(180)
    window = (restart["begin"], restart["end"]) if restart.get("end") is not None else None
    if window:  # the same server answering after the restart (nobody restarted zonemap)
        restart["answered_after"] = dict(Counter(c.endpoint for c in run.calls
                                                 if c.start > window[1] and c.status is not None and c.status < 400))
        restart["run_after_s"] = round(elapsed - window[1], 1)

    acked: dict[str, Report] = {}
    shared = []  # one case id acknowledged to two different reports
    for rep in run.reports:
        cid = rep.acknowledged()
        if cid and cid in acked:
            shared.append({"case_id": cid, "keys": [acked[cid].key, rep.key]})
        elif cid:
            acked[cid] = rep
    retried = [r for r in run.reports if len(r.attempts) > 1]
    back = read_back(run, list(acked.values()))
    alive = call(server.port, "GET", "/health", timeout=10)
    return {
        "_run": run, "_acked": acked, "seconds": round(elapsed, 1), "target_box": box, "baseline": baseline,
        "requests_per_s": round(len(run.calls) / elapsed, 1),
        "endpoints": endpoint_stats(run.calls, elapsed, window),
        "reports": {
            "sent": len(run.reports), "acknowledged": len(acked), "shared_case_ids": shared,
            "retried": len(retried),
            "retry_outcomes": dict(Counter(" → ".join(str(a["status"] or FAILED) for a in r.attempts)
                                           for r in retried)),
            "failed_in_restart": sum(1 for r in run.reports if not r.acknowledged()
                                     and all(in_window(Call("", a["start"], a["end"], None), window)
                                             for a in r.attempts)),
            "unacknowledged": sum(1 for r in run.reports if not r.acknowledged()),
            **back,
        },
        "restart": restart or None,
        "workers": {"before": workers_before, "after": server.worker_pids()},
        "health_at_end": {"status": alive.status, "error": alive.error, "body": json_of(alive)},
    }


def route_baseline(cfg: Config, port: int, box, categories: list[str], token: str) -> dict | None:
    """The route clients alone for a few seconds: what routing does without reports beside it."""
    if cfg.baseline_seconds <= 0 or cfg.route_clients == 0:
        return None
    run = Run(cfg, port, box, categories, token, cfg.baseline_seconds)
    threads = [threading.Thread(target=route_client, args=(run, cfg.seed * 3000 + i), daemon=True)
               for i in range(cfg.route_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return endpoint_stats(run.calls, run.now(), None)["GET /api/route"] | {"seconds": round(run.now(), 1)}


def failures(result: dict) -> list[str]:
    """Why the run fails, in words (empty: it passed)."""
    out = []
    rep = result["reports"]
    for name in ("lost", "mismatched", "unreadable", "bad_steps", "shared_case_ids"):
        if rep[name]:
            out.append(f"{len(rep[name])} acknowledged reports {name.replace('_', ' ')}: {rep[name][:3]}")
    baseline = {"GET /api/route (alone)": result["baseline"]} if result["baseline"] else {}
    for name, e in (result["endpoints"] | baseline).items():
        if e["failed_outside_restart"]:
            out.append(f"{name}: {e['failed_outside_restart']} answers 5xx or none outside the restart: "
                       f"{e['statuses']}")
    if rep["acknowledged"] == 0:
        out.append("no report was acknowledged: the run measured no intake")
    if not result["endpoints"].get("GET /api/route", {}).get("statuses", {}).get("200"):
        out.append("no route was answered: the run measured no routing")
    out += store_failures(result["store_check"], rep["acknowledged"])
    if result.get("integrity", "ok") != "ok":
        out.append(f"integrity_check: {result['integrity'][:300]}")
    out += restart_failures(result)
    if result["health_at_end"]["status"] != 200:
        out.append(f"/health at the end answered {result['health_at_end']}")
    return out


def store_failures(sc: dict, acknowledged: int) -> list[str]:
    if "unreadable" in sc:
        return [f"the store could not be read after the run: {sc['unreadable']}"]
    out = []
    if sc["missing_from_store"]:
        out.append(f"{len(sc['missing_from_store'])} acknowledged cases are not in the store: "
                   f"{sc['missing_from_store'][:5]}")
    if sc["stored_unacknowledged"]:
        out.append(f"{len(sc['stored_unacknowledged'])} reports stored without an acknowledgement "
                   f"(failed answers stored anyway, or retries stored twice): {sc['stored_unacknowledged'][:3]}")
    if sc["problems_after"] != sc["problems_before"] + acknowledged:
        out.append(f"the store has {sc['problems_after']} problems; expected {sc['problems_before']} before "
                   f"+ {acknowledged} acknowledged")
    if sc["orphan_steps"]:
        out.append(f"{len(sc['orphan_steps'])} cases have steps but no problem row: {sc['orphan_steps'][:5]}")
    return out


def restart_failures(result: dict) -> list[str]:
    r = result["restart"]
    if r is None:
        return ["PostgreSQL was not restarted"] if result["config"]["restart_pg_at"] is not None else []
    if not r.get("done"):
        return [f"PostgreSQL restart did not happen: {r.get('error') or 'the run ended before it'}"]
    out = []
    after = r["health_after"]
    if after["status"] != 200:
        out.append(f"after the PostgreSQL restart /health did not come back within 30 s: {after}")
    if r["run_after_s"] >= 3 and len(r["answered_after"]) < 2:
        out.append(f"after the PostgreSQL restart the server answered only {r['answered_after']} "
                   f"in {r['run_after_s']} s")
    down = r["health_while_down"]
    if down["status"] == 200 and down["while_surely_down"]:
        out.append(f"/health answered 200 while PostgreSQL was down: {down['body']}")
    return out


def summary(result: dict) -> str:
    lines = [f"zonemap load test, {result['date']}, commit {result['commit']}, store {result['store']} "
             f"({result['config']['db']})",
             f"{result['config']['route_clients']} route + {result['config']['report_clients']} report clients, "
             f"{result['seconds']} s, gunicorn {result['config']['workers']}×{result['config']['threads']}, "
             f"report limit {result['config']['report_rate_limit'] or 'as served'}; "
             f"store {result['prepared']}", ""]
    lines.append(f"{'endpoint':<20}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
                 f"{'5xx/none':>10}{'outside':>9}  statuses")
    for name, e in result["endpoints"].items():
        lines.append(f"{name:<20}{e['requests']:>9}{e['per_s']:>8}{_s(e['p50_ms']):>9}{_s(e['p95_ms']):>9}"
                     f"{_s(e['p99_ms']):>9}{e['failed_5xx_or_no_answer']:>10}{e['failed_outside_restart']:>9}  "
                     f"{e['statuses']}" + (f" errors {e['errors']}" if e["errors"] else ""))
    base, mixed = result["baseline"], result["endpoints"].get("GET /api/route")
    if base and mixed:
        lines.append(f"{'GET /api/route alone':<20}{base['requests']:>9}{base['per_s']:>8}{_s(base['p50_ms']):>9}"
                     f"{_s(base['p95_ms']):>9}{_s(base['p99_ms']):>9}{base['failed_5xx_or_no_answer']:>10}"
                     f"{base['failed_outside_restart']:>9}  (first {base['seconds']} s, no reports): under the "
                     f"report load routing keeps {mixed['per_s'] / base['per_s']:.2f}× its requests/s")
    rep, sc = result["reports"], result["store_check"]
    lines += ["", f"reports: {rep['sent']} sent, {rep['acknowledged']} acknowledged, {rep['unacknowledged']} "
              f"not ({rep['failed_in_restart']} of them during the restart); {rep['retried']} retried "
              f"{rep['retry_outcomes']}",
              f"read back: lost {len(rep['lost'])}, mismatched {len(rep['mismatched'])}, unreadable "
              f"{len(rep['unreadable'])}, bad steps {len(rep['bad_steps'])}, case ids shared "
              f"{len(rep['shared_case_ids'])}",
              f"store: unreadable after the run: {sc['unreadable']}" if "unreadable" in sc else
              f"store: {sc['problems_before']} problems before, {sc['problems_after']} after (expected "
              f"{sc['problems_before'] + rep['acknowledged']}); stored without acknowledgement "
              f"{len(sc['stored_unacknowledged'])}; acknowledged but not stored {len(sc['missing_from_store'])}; "
              f"orphan steps {len(sc['orphan_steps'])}"]
    if "integrity" in result:
        lines.append(f"integrity_check: {result['integrity'][:500]}")
    if result["restart"]:
        r = result["restart"]
        lines.append(f"PostgreSQL restart: {json.dumps(r, ensure_ascii=False, default=str)[:600]}")
    w = result["workers"]
    lines.append(f"gunicorn workers: {w['before']} → {w['after']}"
                 + ("  (a worker was replaced)" if w["before"] != w["after"] else ""))
    if result["server_errors"]:
        lines.append(f"server log ({result['server_log']}):")
        lines += [f"  {n:>5} × {line}" for line, n in result["server_errors"].items()]
    lines += ["", "PASS" if not result["failures"] else "FAIL:"] + [f"  - {f}" for f in result["failures"]]
    return "\n".join(lines)


def _s(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default=str(DEFAULT_DB), help="GeoPackage path or postgresql:// URL (reports are added)")
    p.add_argument("--route-clients", type=int, default=16)
    p.add_argument("--report-clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--restart-pg-at", type=float, metavar="SECONDS", help="restart PostgreSQL this far into the run")
    p.add_argument("--pg-dir", help="the cluster's directory (as given to scripts/pg-test-server start)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--baseline-seconds", type=float, default=5.0,
                   help="run the route clients alone this long first, to compare with (0: no baseline)")
    p.add_argument("--prepare", choices=["auto", "nanjing", "demo", "none"], default="auto",
                   help="auto: load Nanjing (else the demo city) into an empty store; never touch one with zones")
    p.add_argument("--log", help="the server's log file (default: a temporary file, named in the summary)")
    p.add_argument("--keep-rate-limit", action="store_true",
                   help="keep the server's per-client report limit (by default lifted: one address, many phones)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    cfg = Config(db=a.db, route_clients=a.route_clients, report_clients=a.report_clients, seconds=a.seconds,
                 restart_pg_at=a.restart_pg_at, pg_dir=a.pg_dir, workers=a.workers, threads=a.threads,
                 timeout=a.timeout, prepare=a.prepare, log=a.log, baseline_seconds=a.baseline_seconds,
                 report_rate_limit=None if a.keep_rate_limit else Config.report_rate_limit)
    try:
        result = run_load(cfg)
    except LoadError as exc:
        print(f"load test could not run: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False, indent=1, default=str) if a.json else summary(result))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
