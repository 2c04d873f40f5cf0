"""Evaluation against small hand-computed cases: a store holding a few cases and steps with fixed
times, the department formula and grades, the previous period's ranks, a period without due
cases (— and no error), and the Boston 311 monthly on-time rates against the data's own
ontime_status."""

from __future__ import annotations

import csv
import json
from zoneinfo import ZoneInfo

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from layers import evaluate as ev
from layers.errors import InputError
from layers.store import open_store
from tests.conftest import run_cli

SH = ZoneInfo("Asia/Shanghai")
P = (118.7800, 32.0400)


def t(text):  # a city (Shanghai) time, stored as UTC
    return pd.Timestamp(text).tz_localize(SH).tz_convert("UTC")


# problem_id, department, zone, reported, target, closed, status
CASES = [
    ("A1", "A", "Z1", "2026-06-02 09:00", "2026-06-10 18:00", "2026-06-09 10:00", "closed"),      # due, on time
    ("A2", "A", "Z1", "2026-06-05 09:00", "2026-06-12 18:00", "2026-06-15 10:00", "closed"),      # due, late
    ("A3", "A", "Z2", "2026-06-20 09:00", "2026-07-03 18:00", None, "processing"),                # due in July
    ("A4", "A", "Z2", "2026-05-20 09:00", "2026-05-28 18:00", None, "processing"),                # carried over
    ("A5", "A", "Z2", "2026-05-10 09:00", "2026-05-20 18:00", "2026-05-19 10:00", "closed"),      # May only
    ("A6", "A", "Z1", "2026-06-03 09:00", None, None, "linked"),                                  # a duplicate
    ("A7", "A", "Z2", "2026-06-25 09:00", "2026-06-29 18:00", "2026-07-02 10:00", "closed"),      # closed after June
    ("A8", "A", "Z2", "2026-05-03 09:00", "2026-05-08 18:00", "2026-05-07 10:00", "closed"),      # May, on time
    ("B1", "B", "Z3", "2026-06-01 09:00", "2026-06-05 18:00", "2026-06-04 10:00", "closed"),
    ("B0", "B", "Z3", "2026-05-02 09:00", "2026-05-06 18:00", "2026-05-10 10:00", "closed"),      # May, late
    ("C1", "C", "Z3", "2026-06-28 09:00", "2026-07-05 18:00", None, "processing"),                # nothing due
    # 00:30 on 1 July in the city is still 30 June in UTC: a July case all the same
    ("B2", "B", "Z3", "2026-07-01 00:30", "2026-07-03 18:00", None, "processing"),
]
STEPS = [  # problem_id, at, action, to_status
    ("A1", "2026-06-08 10:00", "feed_back", "fed_back"),
    ("A2", "2026-06-07 10:00", "approve_extension", "processing"),
    ("A2", "2026-06-11 10:00", "feed_back", "fed_back"),
    ("A2", "2026-06-12 10:00", "rework", "rework"),
    ("A2", "2026-06-14 10:00", "feed_back", "fed_back"),
    ("B1", "2026-06-04 09:00", "feed_back", "fed_back"),
]


def fill(s):
    rows = [{"problem_id": pid, "category": "06010", "department": dept, "zone_code": zone, "unit_id": f"U-{dept}",
             "reported_at": t(rep), "target_at": t(tgt) if tgt else None, "closed_at": t(cl) if cl else None,
             "status": status, "channel": "file"} for pid, dept, zone, rep, tgt, cl, status in CASES]
    steps = [{"problem_id": pid, "seq": i + 2, "at": t(at), "action": a, "to_status": to, "actor": "x"}
             for i, (pid, at, a, to) in enumerate(STEPS)]
    # Z1: 500 m², 50 m of frontage
    zones = gpd.GeoDataFrame({"code": ["Z1", "Z2", "Z3"], "kind": "frontage", "primary_unit": ["U-A", "U-A", "U-B"],
                              "area_m2": [500.0, 2000.0, 100.0], "frontage_len_m": [50.0, 0.0, 10.0],
                              "valid_from": pd.Timestamp("2026-01-01").date(), "version": 1},
                             geometry=[shapely.box(P[0] + i * 0.001, P[1], P[0] + i * 0.001 + 0.0005, P[1] + 0.0005)
                                       for i in range(3)], crs="EPSG:4326")
    units = gpd.GeoDataFrame({"unit_id": ["U-A", "U-B", "U-C"], "name": ["甲单位", "乙单位", "丙单位"]},
                             geometry=gpd.GeoSeries([None] * 3), crs="EPSG:4326")
    inspections = pd.DataFrame({"inspection_id": ["J1", "J2"], "zone_code": ["Z1", "Z1"], "unit_id": ["U-A"] * 2,
                                "inspected_at": [t("2026-06-10 10:00"), t("2026-06-20 10:00")],
                                "total": [90.0, 60.0], "passed": [True, False]})
    with s.transaction() as tx:
        tx.append("problems", gpd.GeoDataFrame(rows, geometry=[shapely.Point(P)] * len(rows), crs="EPSG:4326"))
        tx.append("case_steps", pd.DataFrame(steps))
        tx.append("zones", zones)
        tx.append("units", units)
        tx.append("inspections", inspections)


@pytest.fixture
def filled(store_url):
    with open_store(store_url) as s:
        fill(s)
        yield s


def rows_of(result):
    return {r["subject"]: r for r in result["rows"]}


def test_department_counts_rates_score_grade_and_rank_change(filled):
    res = ev.evaluate(filled, "2026-06", "department", tz=SH)
    assert res["formula_version"] == "department-gbt30428-1" and res["previous_period"] == "2026-05"
    got = rows_of(res)
    a = got["A"]
    # filed A1 A2 A3 A7 (A6 is a duplicate); due A1 A2 A7 and A4 carried over; closed in June A1 A2
    assert (a["filed"], a["due"], a["closed"], a["on_time"]) == (4, 4, 2, 1)
    assert a["close_rate"] == 0.5 and a["on_time_rate"] == 0.25
    assert (a["fed_back"], a["reworked"], a["rework_rate"]) == (2, 1, 0.5)
    assert a["extension_rate"] == 0.25
    # 立案数 4 → band score 100: 0.1·100 + 0.3·50 + 0.3·25 + 0.3·(1 − 0.5)·100 = 47.5 → D
    assert a["score"] == pytest.approx(47.5) and a["grade"] == "D"
    b = got["B"]
    assert (b["filed"], b["due"], b["closed"], b["on_time"], b["rework_rate"]) == (1, 1, 1, 1, 0.0)
    assert b["score"] == pytest.approx(100) and b["grade"] == "A"
    # C: one case filed, none due: no rate, no score, no rank, no division by zero
    c = got["C"]
    assert c["due"] == 0 and c["close_rate"] is None and c["on_time_rate"] is None and c["score"] is None
    assert c["rank"] is None and c["grade"] is None
    # May: A 3 due, 2 on time, nothing fed back → (10 + 20 + 20) / 0.7 = 71.4 (rank 1); B late → 57.1
    assert a["prev_score"] == pytest.approx(50 / 0.7) and b["prev_score"] == pytest.approx(40 / 0.7)
    assert (b["rank"], b["prev_rank"], b["rank_change"]) == (1, 2, 1)
    assert (a["rank"], a["prev_rank"], a["rank_change"]) == (2, 1, -1)
    assert [r["subject"] for r in res["rows"]] == ["B", "A", "C"]
    assert [r["subject"] for r in res["red"]] == ["B", "A"] and res["black"] == []


def test_zone_density_repeats_and_inspections(filled):
    got = rows_of(ev.evaluate(filled, "2026-06", "zone", tz=SH))
    z1 = got["Z1"]
    # A1 and A2 filed in Z1 (500 m², 50 m); A2 repeats A1 (same zone and category, 3 days before)
    assert z1["filed"] == 2 and z1["per_1000m2"] == pytest.approx(4.0) and z1["per_100m"] == pytest.approx(4.0)
    assert z1["repeat_rate"] == 0.5
    assert z1["inspections"] == 2 and z1["inspection_pass_rate"] == 0.5
    assert got["Z2"]["per_100m"] is None  # no frontage: no density per metre of it
    by_unit = rows_of(ev.evaluate(filled, "2026-06", "unit", tz=SH))
    assert by_unit["U-A"]["name"] == "甲单位" and by_unit["U-A"]["per_1000m2"] == pytest.approx(4 / 2.5)


def test_a_period_without_cases_is_dashes_not_an_error(filled, tmp_path):
    empty = ev.evaluate(filled, "2026-01", "department", tz=SH)
    assert empty["rows"] == [] and "no cases" in ev.text(empty)
    out = ev.write(ev.evaluate(filled, "2026-06", "department", tz=SH), tmp_path / "r.csv")
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads the Chinese headers
    table = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    head = table[0]
    assert head[:3] == ["排名", "对象", "名称"] and "结案率" in head and "综合指标值" in head
    c = next(r for r in table[1:] if r[1] == "C")
    assert c[head.index("结案率")] == "—" and c[head.index("综合指标值")] == "—" and c[head.index("排名")] == "—"
    a = next(r for r in table[1:] if r[1] == "A")
    assert a[head.index("结案率")] == "50.0%" and a[head.index("名次变化")] == "-1"


def test_the_cli_evaluates_writes_xlsx_and_shows_dashes(store_url, tmp_path):
    with open_store(store_url) as s:
        fill(s)
    out = tmp_path / "rank.xlsx"
    done = run_cli("evaluate", "--period", "2026-06", "--by", "department", "--out", out, "--json", db=store_url,
                   check=True)
    res = json.loads(done.stdout)
    assert [r["subject"] for r in res["rows"]] == ["B", "A", "C"] and res["rows"][2]["close_rate"] is None
    from openpyxl import load_workbook

    ws = load_workbook(out).active
    assert ws.freeze_panes == "A2" and ws["B1"].value == "对象"
    text = run_cli("evaluate", "--period", "2026-06", db=store_url, check=True).stdout
    assert "红榜" in text and "—" in text
    bad = run_cli("evaluate", "--period", "June", db=store_url)
    assert bad.returncode == 1 and "YYYY-MM" in bad.stderr


def test_a_citys_own_formula_is_loaded_and_checked(filled, tmp_path, monkeypatch):
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (ev.Path(ev.__file__).parent / "rules" / "evaluation.toml").read_text("utf-8")
    rework = 'indicator = "rework_rate"\nscore = "bad_rate"\nweight = '
    own = text.replace('version = "department-gbt30428-1"', 'version = "city-2"').replace(
        rework + "0.30", rework + "0")
    (rules / "evaluation.toml").write_text(own, "utf-8")
    monkeypatch.setenv("ZONEMAP_RULES", str(rules))
    res = ev.evaluate(filled, "2026-06", "department", tz=SH)
    assert res["formula_version"] == "city-2"
    # without the rework term: (10 + 15 + 7.5) / 0.7
    assert rows_of(res)["A"]["score"] == pytest.approx(32.5 / 0.7) and rows_of(res)["A"]["grade"] == "D"
    (rules / "evaluation.toml").write_text(own.replace('"on_time_rate"', '"happiness"'), "utf-8")
    with pytest.raises(InputError, match=r"evaluation.toml.*indicator 'happiness'"):
        ev.load_formula()


def test_periods_are_city_months_quarters_and_years():
    p = ev.parse_period("2026-07", SH)
    assert p.start == pd.Timestamp("2026-06-30T16:00Z") and p.previous().label == "2026-06"
    assert ev.parse_period("2026-01", SH).previous().label == "2025-12"
    assert ev.parse_period("2026-Q1", SH).previous().label == "2025-Q4"
    assert ev.parse_period("2026", SH).after.isoformat() == "2027-01-01"
    with pytest.raises(InputError):
        ev.parse_period("2026-13", SH)


@pytest.fixture(scope="module")
def boston_store(tmp_path_factory, shared_data):
    """The Boston 311 file imported once (the import's own test checks it on both stores)."""
    from layers.importer import import_file

    path = shared_data / "boston_311_sanitation_2015" / "boston_311_sanitation_2015.gpkg"
    db = str(tmp_path_factory.mktemp("boston") / "b.gpkg")
    with open_store(db) as s:
        rep = import_file(s, path, "problems", tz="America/New_York")
        assert rep.written == 10293
    return db, gpd.read_file(path, layer="reports")


def test_boston_monthly_on_time_rates_match_the_datas_own_ontime_status(boston_store):
    db, src = boston_store
    ny = ZoneInfo("America/New_York")
    with open_store(db) as s:
        got = rows_of(ev.evaluate(s, "2015-06", "department", tz=ny))
    target = pd.to_datetime(src["target_dt"])
    closed_at = pd.to_datetime(src["closed_dt"])
    june = (target >= "2015-06-01") & (target < "2015-07-01")
    carried = (target < "2015-06-01") & (closed_at.isna() | (closed_at >= "2015-06-01"))
    due = src[june | carried]
    closed = due[(due["case_status"] == "Closed") & (closed_at[due.index] < "2015-07-01")]
    for dept, grp in due.groupby("department"):
        on_time = int((closed.loc[closed["department"] == dept, "ontime_status"] == "ONTIME").sum())
        r = got[dept]
        assert (r["due"], r["on_time"]) == (len(grp), on_time), dept
        assert r["on_time_rate"] == pytest.approx(on_time / len(grp)), dept
        assert r["closed"] == int((closed["department"] == dept).sum()), dept


def test_the_shipped_formula_is_the_department_formula():
    # the shipped file loads and carries the domain's department formula and grades
    f = ev.load_formula()
    assert [(x.indicator, x.weight) for x in f.terms] == [("filed", 0.1), ("close_rate", 0.3),
                                                         ("on_time_rate", 0.3), ("rework_rate", 0.3)]
    assert [f.grade(s) for s in (90, 89.9, 75, 60, 40, 39.9)] == ["A", "B", "B", "C", "D", "E"]
    assert f.value(f.terms[0], 51) == 90 and f.value(f.terms[0], 1000) == 0
