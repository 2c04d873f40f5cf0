"""Intake a city can trust, on real stores: case numbers from the store's day sequence (also
when threads report at once), idempotent retries (also racing twins, in threads and in
processes), hostile values refused by field, the service area, city time across midnight,
and the audit row written with each write and gone with a rolled-back one."""

import datetime as dt
import json
import multiprocessing as mp
import threading
from concurrent.futures import ThreadPoolExecutor

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from layers import cases
from layers.errors import InputError, OutsideServiceArea, StoreError
from layers.service_area import ServiceArea
from layers.store import open_store
from layers.users import ANONYMOUS, User, add_user, issue_token, revoke_tokens
from tests.layers.test_cases import IN_F1, INSPECTOR, MON, PUBLIC, city

MIDNIGHT = dt.datetime(2026, 11, 29, 16, 30, tzinfo=dt.UTC)  # 00:30 on 30 November in Shanghai
BEIJING = (116.40, 39.90)


@pytest.fixture
def gp(tmp_path):
    s = city(str(tmp_path / "c.gpkg"))
    yield s
    s.close()


def _report(s, user=INSPECTOR, at=MON, where=IN_F1, **kw):
    opts = {k: kw.pop(k) for k in ("idempotency_key", "area", "origin") if k in kw}
    return cases.report_one(s, {"lon": where[0], "lat": where[1], "category": "06010", **kw}, user, "api",
                            now=at.astimezone(dt.UTC), **opts)


def _spread(n, seed=3):
    """n reports far apart in time (no duplicates), around the test city."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"lon": 118.7800 + rng.random(n) * 0.0010, "lat": 32.0400 + rng.random(n) * 0.0005,
                         "category": "06010",
                         "reported_at": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(2 * np.arange(n), "D")})


# ---- case numbers -------------------------------------------------------------------------

def test_a_day_of_imports_is_numbered_once_each_in_sequence(store_url):
    s = city(store_url)
    first = cases.intake(s, _spread(3000), INSPECTOR, "file", now=MON, source_label="a.csv")
    one = _report(s, at=MON + dt.timedelta(hours=1), description="after the import")
    more = cases.intake(s, _spread(500, seed=4), INSPECTOR, "file", now=MON, source_label="b.csv")
    ids = [*first["problem_id"], one["problem_id"], *more["problem_id"]]
    assert ids == [f"ZM20261130-{k:06d}" for k in range(1, 3502)]
    assert sorted(s.read("problems")["problem_id"]) == sorted(ids)
    s.close()


def test_a_file_keeps_its_own_ids_and_a_number_past_999999_grows_a_digit(gp):
    got = cases.intake(gp, _spread(2).assign(problem_id=["BOS-1", None]), INSPECTOR, "file", now=MON)
    assert got["problem_id"].tolist() == ["BOS-1", "ZM20261130-000001"]
    assert cases.case_number(dt.date(2026, 11, 30), 1_234_567) == "ZM20261130-1234567"


def test_four_threads_reporting_at_once_get_distinct_numbers(store_url):
    s = city(store_url)
    start = threading.Barrier(4)

    def reporter(k):
        start.wait()
        return [_report(s, at=MON + dt.timedelta(minutes=8 * k + m))["problem_id"] for m in range(8)]

    with ThreadPoolExecutor(4) as pool:
        ids = [i for got in pool.map(reporter, range(4)) for i in got]
    assert len(set(ids)) == 32
    assert sorted(ids) == [f"ZM20261130-{k:06d}" for k in range(1, 33)]
    assert s.count("problems") == 32
    s.close()


# ---- idempotency ------------------------------------------------------------------------

def test_a_retry_with_the_same_key_is_the_same_case(gp):
    first = _report(gp, idempotency_key="k-1", description="boxes")
    again = _report(gp, idempotency_key="k-1", description="boxes")
    assert first["replayed"] is False and again["replayed"] is True
    assert again["problem_id"] == first["problem_id"] and again["unit_id"] == first["unit_id"] == "U-SHOP"
    assert (again["zone_kind"], again["stage_deadline"]) == (first["zone_kind"], first["stage_deadline"])
    assert gp.count("problems") == 1 and gp.count("case_steps") == 1
    # the key is scoped by user: another user (or the public) with the same key makes its own case
    other = _report(gp, user=User("insp2", "inspector"), idempotency_key="k-1", at=MON + dt.timedelta(days=2))
    anon = _report(gp, user=ANONYMOUS, idempotency_key="k-1", at=MON + dt.timedelta(days=4))
    assert len({first["problem_id"], other["problem_id"], anon["problem_id"]}) == 3
    assert _report(gp, user=ANONYMOUS, idempotency_key="k-1")["problem_id"] == anon["problem_id"]
    assert gp.count("problems") == 3


def test_bad_idempotency_keys_are_refused(gp):
    for key, msg in [("x" * 201, "limit is 200"), ("a\nb", "control character"), ("", "non-empty"),
                     ("\ud800", "not valid Unicode")]:
        with pytest.raises(InputError, match=msg):
            _report(gp, idempotency_key=key)
    _report(gp, idempotency_key="x" * 200)
    assert gp.count("problems") == 1


def test_racing_twins_make_one_case(store_url):
    s = city(store_url)
    def twin(key, at, start):
        with open_store(store_url) as mine:  # a connection of its own, as another worker has
            start.wait()
            return _report(mine, idempotency_key=key, at=at)

    for round_ in range(3):
        start = threading.Barrier(4)
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(twin, [f"race-{round_}"] * 4, [MON + dt.timedelta(days=3 * round_)] * 4,
                                [start] * 4))
        assert len({g["problem_id"] for g in got}) == 1
        assert sorted(g["replayed"] for g in got) == [False, True, True, True]
    assert s.count("problems") == 3 and s.count("case_steps") == 3
    s.close()


def _process_twin(url, key, barrier, out):
    with open_store(url) as s:
        barrier.wait()
        got = _report(s, idempotency_key=key)
    out.put((got["problem_id"], got["replayed"]))


def test_racing_twins_in_two_processes_make_one_case(store_url):
    city(store_url).close()
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_process_twin, args=(store_url, "proc-key", barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert got[0][0] == got[1][0] and sorted(r for _, r in got) == [False, True]
    with open_store(store_url) as s:
        assert s.count("problems") == 1


# ---- hostile values -----------------------------------------------------------------------

@pytest.mark.parametrize("field, value, msg", [
    ("lon", True, "'lon': True is a boolean"),
    ("lat", False, "'lat': False is a boolean"),
    ("description", "bags\x00 and boxes", "'description' holds a NUL"),
    ("address", "中山路\x00 1 号", "'address' holds a NUL"),
    ("description", "broken \ud800 text", "field 'description' is not valid Unicode"),
    ("contact", "\udfff", "field 'contact' is not valid Unicode"),
    ("address", "路" * 501, "'address' is 501 characters; the limit is 500"),
    ("contact", "1" * 201, "'contact' is 201 characters; the limit is 200"),
    ("description", "x" * 4001, "'description' is 4001 characters; the limit is 4000"),
    ("description", {"a": 1}, "'description' must be text"),
])
def test_hostile_values_are_refused_by_field(gp, field, value, msg):
    data = {"lon": IN_F1[0], "lat": IN_F1[1], "category": "06010", field: value}
    with pytest.raises(InputError, match=msg) as err:
        cases.report_one(gp, data, INSPECTOR, "api")
    assert err.value.status == 400
    assert gp.count("problems") == 0 and gp.count("audit") == 0


def test_text_at_its_limit_is_kept_whole_and_numbers_may_be_form_strings(gp):
    address, contact = "路" * 500, "1" * 200
    got = _report(gp, lon="118.78045", description="第一行\n第二行 ✓", address=address, contact=contact)
    row = gp.read("problems").iloc[0]
    assert (row["address"], row["contact"], row["description"]) == (address, contact, "第一行\n第二行 ✓")
    assert got["unit_id"] == "U-SHOP"


def test_a_transition_note_is_checked_like_report_text(gp):
    pid = _report(gp)["problem_id"]
    for note, msg in [("ok\x00", "'note' holds a NUL"), ("\ud800", "'note' is not valid Unicode"),
                      ("n" * 2001, "'note' is 2001 characters; the limit is 2000")]:
        with pytest.raises(InputError, match=msg):
            cases.transition(gp, pid, "file", INSPECTOR, note=note)
    assert cases.get_case(gp, pid, INSPECTOR)["status"] == "reported"


# ---- the service area ---------------------------------------------------------------------

def test_the_service_area_is_the_zones_extent_plus_a_margin(gp):
    area = ServiceArea.from_store(gp)
    assert _report(gp, area=area)["unit_id"] == "U-SHOP"
    east_1500m = (118.7810 + 1500 / 94_300, 32.0402)  # 1.5 km beyond the zones: within the margin
    assert _report(gp, area=area, where=east_1500m, at=MON + dt.timedelta(days=2))["routed_by"] == "fallback"
    for where in (BEIJING, (0.0, 0.0), (118.7810 + 2500 / 94_300, 32.0402)):
        with pytest.raises(OutsideServiceArea) as err:
            _report(gp, area=area, where=where)
        assert err.value.status == 422
        assert "does not take reports from that place" in str(err.value)
    msg = str(err.value)
    assert "serves 118.76–118.80 E, 32.02–32.06 N (the zones' extent plus 2 km)" in msg
    with pytest.raises(OutsideServiceArea, match=r"\(116\.4, 39\.9\) is outside it"):
        _report(gp, area=area, where=BEIJING)
    assert gp.count("problems") == 2
    # a narrower margin is a parameter; GCJ-02 input is checked after conversion to WGS 84
    tight = ServiceArea.from_store(gp, margin_m=100)
    with pytest.raises(OutsideServiceArea, match="plus 100 m"):
        _report(gp, area=tight, where=east_1500m)


def test_with_no_zones_every_place_is_served(tmp_path):
    with open_store(str(tmp_path / "empty.gpkg")) as s:
        area = ServiceArea.from_store(s)
        area.check(*BEIJING)
        area.check(0.0, 0.0)
        assert "everywhere" in area.label


def test_a_boundary_file_is_the_service_area(gp, tmp_path):
    path = tmp_path / "秦淮区.geojson"
    gpd.GeoDataFrame({"name": ["秦淮区"]}, geometry=[shapely.box(118.77, 32.03, 118.79, 32.05)],
                     crs="EPSG:4326").to_file(path)
    area = ServiceArea.from_store(gp, boundary=path)
    assert _report(gp, area=area)["unit_id"] == "U-SHOP"
    with pytest.raises(OutsideServiceArea, match=r"the area of 秦淮区\.geojson"):
        _report(gp, area=area, where=(118.795, 32.04))
    with pytest.raises(InputError, match="no polygon"):
        pts = tmp_path / "points.geojson"
        gpd.GeoDataFrame(geometry=[shapely.Point(118.78, 32.04)], crs="EPSG:4326").to_file(pts)
        ServiceArea.from_store(gp, boundary=pts)


def test_file_imports_are_not_held_to_the_service_area(gp):
    far = pd.DataFrame({"lon": [BEIJING[0]], "lat": [BEIJING[1]], "category": ["06010"]})
    got = cases.intake(gp, far, INSPECTOR, "file", now=MON)
    assert got["routed_by"].iloc[0] == "fallback"


# ---- city time ----------------------------------------------------------------------------

def test_a_report_at_half_past_midnight_in_shanghai_is_that_city_day(store_url):
    s = city(store_url)
    got = _report(s, at=MIDNIGHT, user=PUBLIC)
    assert got["problem_id"] == "ZM20261130-000001"
    assert got["stage_deadline"].endswith("+08:00")
    case = cases.get_case(s, got["problem_id"], INSPECTOR)
    assert case["reported_at"] == "2026-11-30T00:30:00+08:00"
    assert [st["at"] for st in case["steps"]] == ["2026-11-30T00:30:00+08:00"] * 2

    def found(**kw):
        return [c["problem_id"] for c in cases.list_cases(s, INSPECTOR, **kw)["cases"]]
    assert found(since="2026-11-30") == [got["problem_id"]]
    assert found(until="2026-11-29") == []
    assert found(until="2026-11-30") == [got["problem_id"]]
    assert found(since="2026-11-30T00:31") == []             # city time without an offset
    assert found(since="2026-11-29T16:30:00Z") == [got["problem_id"]]  # an offset is taken as given
    assert found(until="2026-11-29T16:29:59+00:00") == []
    s.close()


def test_on_time_rates_still_compare_stored_times(gp):
    pid = _report(gp)["problem_id"]
    for a in ("file", "dispatch", "accept", "feed_back", "check", "close"):
        cases.transition(gp, pid, a, User("admin1", "admin"), now=MON.astimezone(dt.UTC) + dt.timedelta(hours=1))
    rates = cases.on_time_rates(gp)
    assert rates["closed"].sum() == 1 and rates["on_time"].sum() == 1


# ---- the audit log ------------------------------------------------------------------------

def test_each_report_and_move_has_its_audit_row(store_url):
    s = city(store_url)
    pid = _report(s, origin="203.0.113.9")["problem_id"]
    cases.transition(s, pid, "file", INSPECTOR, origin="203.0.113.10", now=MON.astimezone(dt.UTC))
    cases.intake(s, _spread(20), INSPECTOR, "file", now=MON, source_label="reports.csv")
    log = s.read("audit")
    assert log[["actor", "role", "action", "target", "origin"]].values.tolist() == [
        ["insp1", "inspector", "report", pid, "203.0.113.9"],
        ["insp1", "inspector", "transition:file", pid, "203.0.113.10"],
        ["insp1", "inspector", "import:problems", "reports.csv", "cli"]]
    assert json.loads(log["detail"].iloc[1]) == {"from": "reported", "to": "filed", "unit_id": "U-SHOP"}
    assert json.loads(log["detail"].iloc[2])["rows"] == 20
    s.close()


def test_a_rolled_back_intake_leaves_no_audit_row(store_url):
    s = city(store_url)
    clash = _spread(3).assign(problem_id=["A-1", "A-2", "A-1"])  # the third row breaks the unique id
    with pytest.raises(StoreError):
        cases.intake(s, clash, INSPECTOR, "file", now=MON, source_label="clash.csv")
    assert s.count("audit") == 0 and s.count("problems") == 0 and s.count("case_steps") == 0
    s.close()


def test_user_and_token_changes_are_audited_without_secrets(gp):
    add_user(gp, "grid01", "inspector", "a-long-password")
    token = issue_token(gp, "grid01")
    assert revoke_tokens(gp, "grid01") == 1
    with pytest.raises(InputError):
        add_user(gp, "grid01", "inspector", "another-password")  # refused: no row for it
    log = gp.read("audit")
    assert log["action"].tolist() == ["users:add", "token:issue", "token:revoke"]
    assert set(log["target"]) == {"grid01"} and set(log["origin"]) == {"cli"}
    text = log.to_json(date_format="iso")
    token_hash = gp.read("tokens")["token_hash"].iloc[0]
    assert token not in text and token_hash not in text and "a-long-password" not in text
