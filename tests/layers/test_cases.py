"""The case workflow on a real store: every allowed and every refused move, roles, stage
deadlines across a weekend and a holiday, duplicates just inside and just outside their
window, and the category routing rules."""

import datetime as dt
import itertools

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from layers import cases
from layers.cases import Forbidden, Refused, Rules
from layers.deadlines import WorkingCalendar
from layers.store import open_store
from layers.users import User
from layers.workflow import ACTIONS, LINKED, MOVES, ROLES, STATES, find_move

SH = dt.timezone(dt.timedelta(hours=8))
MON = dt.datetime(2026, 11, 30, 10, 0, tzinfo=SH)  # a Monday, 10:00 in Shanghai
F1 = shapely.box(118.7800, 32.0400, 118.7805, 32.0405)   # a shop's frontage zone
S1 = shapely.box(118.7806, 32.0400, 118.7810, 32.0405)   # a construction site ~9 m east of it
IN_F1 = (118.78045, 32.04025)                             # ~14 m from the site

ADMIN = User("admin1", "admin")
INSPECTOR = User("insp1", "inspector")
DISPATCHER = User("disp1", "dispatcher")
PUBLIC = User("citizen1", "public")
SHOP = User("shop1", "unit", "U-SHOP")
PLANNER = User("plan1", "planner")


def city(url):
    s = open_store(url)
    zones = gpd.GeoDataFrame(
        {"code": ["F1", "S1"], "kind": ["frontage", "site"], "primary_unit": ["U-SHOP", "U-SITE"],
         "valid_from": [dt.date(2026, 1, 1)] * 2, "version": [1, 1]},
        geometry=[F1, S1], crs="EPSG:4326")
    units = gpd.GeoDataFrame({"unit_id": ["U-SHOP", "U-SITE"], "name": ["<b>甲</b>商店", "乙建设工程公司"]},
                             geometry=gpd.GeoSeries([None, None]), crs="EPSG:4326")
    with s.transaction() as tx:
        tx.append("zones", zones)
        tx.append("units", units)
    return s


@pytest.fixture
def gp(tmp_path):
    s = city(str(tmp_path / "c.gpkg"))
    yield s
    s.close()


def report(s, user=INSPECTOR, at=MON, category="06010", where=IN_F1, **kw):
    return cases.report_one(s, {"lon": where[0], "lat": where[1], "category": category, **kw}, user, "api",
                            now=at.astimezone(dt.UTC))


def move(s, pid, action, user=ADMIN, at=MON, **kw):
    return cases.transition(s, pid, action, user, now=at.astimezone(dt.UTC), **kw)


# how to bring a fresh case into each state (public reports start in verifying)
PATHS = {"reported": [], "filed": ["file"], "dispatched": ["file", "dispatch"],
         "processing": ["file", "dispatch", "accept"], "returned": ["file", "dispatch", "return"],
         "extended": ["file", "dispatch", "accept", "extend"],
         "shelved": ["file", "dispatch", "accept", "shelve"],
         "fed_back": ["file", "dispatch", "accept", "feed_back"],
         "checking": ["file", "dispatch", "accept", "feed_back", "check"],
         "rework": ["file", "dispatch", "accept", "feed_back", "check", "rework"],
         "closed": ["file", "dispatch", "accept", "feed_back", "check", "close"],
         "voided": ["void"]}


def case_in(s, state, n=[0]):  # noqa: B006 - a counter spreading cases apart in time
    n[0] += 1
    at = MON + dt.timedelta(days=3 * n[0])  # far apart, so no report is another's duplicate
    if state == "verifying":
        return report(s, PUBLIC, at=at)["problem_id"]
    pid = report(s, at=at)["problem_id"]
    for a in PATHS[state]:
        move(s, pid, a, at=at)
    assert cases.get_case(s, pid, ADMIN)["status"] == state
    return pid


def test_every_state_is_reachable_and_every_action_is_allowed_or_refused(gp):
    assert set(PATHS) | {"verifying"} == set(STATES)
    for state in STATES:
        held = case_in(gp, state)  # a refusal changes nothing, so one case takes them all
        steps = len(cases.get_case(gp, held, ADMIN)["steps"])
        for action in ACTIONS:
            m = find_move(action, state)
            if m is None:
                with pytest.raises(Refused, match=f"cannot {action} a case that is {state}"):
                    move(gp, held, action)
                after = cases.get_case(gp, held, ADMIN)
                assert after["status"] == state and len(after["steps"]) == steps  # nothing changed
            else:
                pid = case_in(gp, state)
                after = move(gp, pid, action, note=f"{action} from {state}")
                assert after["status"] == m.target
                last = after["steps"][-1]
                assert (last["from_status"], last["to_status"], last["action"], last["note"]) == \
                    (state, m.target, action, f"{action} from {state}")


def test_roles_may_do_only_their_moves(gp):
    for m in MOVES:
        held = case_in(gp, m.sources[0])  # a refusal changes nothing: one case for the refused roles
        for role in ROLES:
            user = SHOP if role == "unit" else User(f"u-{role}", role)
            if role in m.roles:
                pid = case_in(gp, m.sources[0])
                assert move(gp, pid, m.action, user)["status"] == m.target
            else:
                with pytest.raises(Forbidden, match=f"role '{role}' may not {m.action}"):
                    move(gp, held, m.action, user)
        assert cases.get_case(gp, held, ADMIN)["status"] == m.sources[0]


def test_a_unit_answers_only_its_own_cases(gp):
    pid = case_in(gp, "dispatched")
    other = User("site1", "unit", "U-SITE")
    with pytest.raises(cases.NotFound):  # another unit's case: it may not even see it
        move(gp, pid, "accept", other)
    assert cases.list_cases(gp, other)["total"] == 0
    with pytest.raises(cases.NotFound):
        cases.get_case(gp, pid, other)
    mine = cases.list_cases(gp, SHOP)
    assert [c["problem_id"] for c in mine["cases"]] == [pid] and mine["cases"][0]["actions"] == ["accept", "return"]
    assert move(gp, pid, "accept", SHOP)["status"] == "processing"


def test_a_whole_life_on_record_on_both_stores(store_url):
    s = city(store_url)
    first = report(s, PUBLIC, contact="138-0000-0000", description="门口<script>alert(1)</script>垃圾")
    assert first["status"] == "verifying" and first["unit_id"] == "U-SHOP" and first["zone_code"] == "F1"
    pid = first["problem_id"]
    t = MON
    for user, action in [(INSPECTOR, "verify"), (DISPATCHER, "dispatch"), (SHOP, "accept"), (SHOP, "extend"),
                         (DISPATCHER, "approve_extension"), (SHOP, "feed_back"), (INSPECTOR, "check"),
                         (INSPECTOR, "rework"), (SHOP, "accept"), (SHOP, "feed_back"), (INSPECTOR, "check"),
                         (INSPECTOR, "close")]:
        t += dt.timedelta(minutes=20)
        c = move(s, pid, action, user, at=t, note=f"{user.name}: {action}")
    assert c["status"] == "closed" and c["rework_count"] == 1 and c["extension_count"] == 1
    assert c["on_time"] is True and c["light"] is None
    assert c["description"] == "门口<script>alert(1)</script>垃圾"  # kept verbatim; pages escape it
    steps = c["steps"]
    assert [x["to_status"] for x in steps] == [
        "reported", "verifying", "filed", "dispatched", "processing", "extended", "processing", "fed_back",
        "checking", "rework", "processing", "fed_back", "checking", "closed"]
    assert [x["seq"] for x in steps] == list(range(1, 15))
    assert steps[-1]["actor"] == "insp1" and steps[-1]["role"] == "inspector"
    assert all(a["to_status"] == b["from_status"] for a, b in itertools.pairwise(steps[1:]))
    assert "contact" not in c  # the reporter's phone is never in a case view
    assert s.read("problems", where={"problem_id": pid}).iloc[0]["contact"] == "138-0000-0000"
    s.close()


def test_stage_deadlines_cross_a_weekend_and_a_holiday(gp):
    rules = Rules()
    rules.calendar = WorkingCalendar(WorkingCalendar.load().periods, frozenset({dt.date(2026, 12, 7)}))
    fri = dt.datetime(2026, 12, 4, 16, 0, tzinfo=SH)  # Friday 16:00; Monday 7th is a holiday
    pid = cases.report_one(gp, {"lon": IN_F1[0], "lat": IN_F1[1], "category": "06012"}, INSPECTOR, "api",
                           now=fri.astimezone(dt.UTC), rules=rules)["problem_id"]
    cases.transition(gp, pid, "file", INSPECTOR, now=fri.astimezone(dt.UTC), rules=rules)
    c = cases.transition(gp, pid, "dispatch", DISPATCHER, now=fri.astimezone(dt.UTC), rules=rules)
    # 06012 道路不洁: 5 working hours = Fri 16:00–17:30 (1.5 h), Tue 08:30–12:00 (3.5 h)
    assert pd.Timestamp(c["target_at"]) == pd.Timestamp("2026-12-08T12:00:00+08:00")
    for at, want in [("2026-12-05T12:00", "green"),   # Saturday: the clock stands still
                     ("2026-12-07T15:00", "green"),   # the holiday too
                     ("2026-12-08T11:00", "yellow"),  # 4 of 5 hours
                     ("2026-12-08T13:00", "yellow"),  # lunch: still exactly 5 of 5
                     ("2026-12-08T14:30", "red")]:
        now = pd.Timestamp(at).tz_localize("Asia/Shanghai").to_pydatetime()
        assert cases.get_case(gp, pid, ADMIN, now=now, rules=rules)["light"] == want, at
    # 06010 暴露垃圾, 1 working day from Friday 16:00 → Tuesday 16:00 (weekend, holiday skipped)
    pid2 = cases.report_one(gp, {"lon": 118.7801, "lat": 32.0401, "category": "06010"}, INSPECTOR, "api",
                            now=fri.astimezone(dt.UTC), rules=rules)["problem_id"]
    cases.transition(gp, pid2, "file", INSPECTOR, now=fri.astimezone(dt.UTC), rules=rules)
    c = cases.transition(gp, pid2, "dispatch", DISPATCHER, now=fri.astimezone(dt.UTC), rules=rules)
    assert pd.Timestamp(c["target_at"]) == pd.Timestamp("2026-12-08T16:00:00+08:00")


def test_duplicates_within_and_just_outside_the_window(gp):
    first = report(gp)
    pid = first["problem_id"]
    lon, lat = IN_F1
    m = 1 / 94_300  # degrees of longitude per metre at 32° N, about
    inside = report(gp, at=MON + dt.timedelta(hours=23), where=(lon + 25 * m, lat))
    assert inside["status"] == LINKED and inside["duplicate_of"] == pid
    far = report(gp, at=MON + dt.timedelta(hours=1), where=(lon - 35 * m, lat))
    late = report(gp, at=MON + dt.timedelta(hours=25), where=(lon, lat))
    other = report(gp, at=MON + dt.timedelta(hours=1), category="06036")
    assert far["duplicate_of"] is None and far["status"] == "reported"
    assert late["duplicate_of"] is None and other["duplicate_of"] is None
    # both directions: the case lists its duplicates, the duplicate names its case
    assert cases.get_case(gp, pid, ADMIN)["duplicates"] == [inside["problem_id"]]
    assert cases.get_case(gp, inside["problem_id"], ADMIN)["duplicate_of"] == pid
    with pytest.raises(Refused, match="duplicate report linked to"):
        move(gp, inside["problem_id"], "file")
    # construction reports have a wider window (workflow.toml: 100 m, 72 h)
    site = report(gp, category="08004", at=MON + dt.timedelta(days=20))
    again = report(gp, category="08004", at=MON + dt.timedelta(days=22), where=(lon + 90 * m, lat))
    assert again["duplicate_of"] == site["problem_id"]
    # a closed case takes no more duplicates
    for a in PATHS["closed"]:
        move(gp, pid, a, at=MON + dt.timedelta(hours=2))
    assert report(gp, at=MON + dt.timedelta(hours=3))["duplicate_of"] != pid


def test_category_rules_send_construction_to_the_site_and_road_damage_to_its_department(gp):
    dust = report(gp, category="08004")
    assert (dust["unit_id"], dust["routed_by"], dust["zone_code"]) == ("U-SITE", "category", "S1")
    assert 10 < dust["distance_m"] < 20
    litter = report(gp, category="06010", at=MON + dt.timedelta(days=5))
    assert (litter["unit_id"], litter["routed_by"]) == ("U-SHOP", "zone")
    hole = report(gp, category="06013")
    assert (hole["unit_id"], hole["routed_by"], hole["unit_name"]) == ("DEPT-ROADS", "category", "市政道路养护管理部门")
    assert hole["zone_code"] == "F1"  # the place is still recorded
    assert gp.read("units", where={"unit_id": "DEPT-ROADS"}).iloc[0]["name"] == "市政道路养护管理部门"
    far = report(gp, category="08004", where=(118.7790, 32.0402), at=MON + dt.timedelta(days=9))
    assert far["unit_id"] != "U-SITE"  # > 50 m from the site: the ordinary routing


def test_bad_reports_say_what_to_fix(gp):
    for data, msg in [({"lat": 32.04, "category": "06010"}, "'lon'"),
                      ({"lon": "x", "lat": 32.04, "category": "06010"}, "not a number"),
                      ({"lon": 32.04, "lat": 118.78, "category": "06010"}, "swapped"),
                      ({"lon": 118.78, "lat": 32.04, "category": "99999"}, "category table"),
                      ({"lon": 118.78, "lat": 32.04}, "'category' is required"),
                      ({"lon": 118.78, "lat": 32.04, "category": "06010", "crs": "wgs72"}, "'crs'")]:
        with pytest.raises(cases.InputError, match=msg):
            cases.report_one(gp, data, INSPECTOR, "api")
    with pytest.raises(Forbidden):
        cases.report_one(gp, {"lon": 118.78, "lat": 32.04, "category": "06010"}, PLANNER, "api")
    assert gp.count("problems") == 0 and gp.count("case_steps") == 0


def test_fallback_goes_down_the_grid_to_the_community_or_street_office(gp):
    grid = gpd.GeoDataFrame(
        {"code": ["320106001001001", "320106001002001"], "street": ["华侨路街道", "华侨路街道"],
         "community": ["石鼓路社区", "无名社区"]},
        geometry=[shapely.box(118.7790, 32.0390, 118.7800, 32.0400), shapely.box(118.7810, 32.0390, 118.7820, 32.0400)],
        crs="EPSG:4326")
    offices = gpd.GeoDataFrame({"unit_id": ["SQ-SGL", "JD-HQL"], "name": ["石鼓路社区", "华侨路街道"]},
                               geometry=gpd.GeoSeries([None, None]), crs="EPSG:4326")
    with gp.transaction() as tx:
        tx.append("grid", grid)
        tx.append("units", offices)
    in_community = report(gp, where=(118.7795, 32.0395))
    in_street = report(gp, where=(118.7815, 32.0395), at=MON + dt.timedelta(days=3))
    nowhere = report(gp, where=(118.7900, 32.0300), at=MON + dt.timedelta(days=6))
    in_zone = report(gp, at=MON + dt.timedelta(days=9))
    assert (in_community["routed_by"], in_community["unit_id"], in_community["grid_code"]) == \
        ("fallback", "SQ-SGL", "320106001001001")
    assert (in_street["unit_id"], in_street["grid_code"]) == ("JD-HQL", "320106001002001")
    assert (nowhere["unit_id"], nowhere["grid_code"]) == ("FALLBACK-JD", None)
    assert in_zone["unit_id"] == "U-SHOP"  # a zone answers before any grid cell


def test_urgent_categories_are_filed_and_dispatched_sooner(gp):
    bbq = report(gp, category="06029")  # 露天烧烤: urgent, 2 clock hours to handle
    heap = report(gp, category="06036", at=MON + dt.timedelta(days=2))
    assert pd.Timestamp(bbq["stage_deadline"]) - pd.Timestamp(MON) == pd.Timedelta(minutes=10)
    assert pd.Timestamp(heap["stage_deadline"]) - pd.Timestamp(MON + dt.timedelta(days=2)) == pd.Timedelta(minutes=30)
    move(gp, bbq["problem_id"], "file")
    c = move(gp, bbq["problem_id"], "dispatch")
    assert pd.Timestamp(c["target_at"]) - pd.Timestamp(MON) == pd.Timedelta(hours=2)


def test_two_people_moving_one_case_at_once_do_not_both_win(store_url):
    from concurrent.futures import ThreadPoolExecutor

    s = city(store_url)
    pid = report(s)["problem_id"]
    move(s, pid, "file")

    def dispatch(unit):
        with open_store(store_url) as mine:
            try:
                return cases.transition(mine, pid, "dispatch", DISPATCHER, unit_id=unit)["unit_id"]
            except Refused:
                return "refused"

    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(dispatch, ["U-SHOP", "U-SITE", "U-SHOP", "U-SITE"]))
        winners = [g for g in got if g != "refused"]
        assert got.count("refused") == 3 and winners[0] in ("U-SHOP", "U-SITE")
        c = cases.get_case(s, pid, ADMIN)
        assert c["status"] == "dispatched" and c["unit_id"] == winners[0]
        assert [x["action"] for x in c["steps"]].count("dispatch") == _ + 1
        move(s, pid, "return")
    s.close()
