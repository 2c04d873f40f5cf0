"""The monthly bulletin (通报) of a month of cases imported from a file (their own times,
deadlines and states) over real Nanjing zones: the PDF's sections and figures read back,
the XLSX opened with openpyxl, the figures counted here from the file itself."""

import datetime as dt
import re

import numpy as np
import openpyxl
import pandas as pd
import pytest
from pypdf import PdfReader

from layers import inspections, zones
from layers.evaluate import evaluate
from layers.hotspots import hotspots
from layers.importer import import_osm
from layers.store import open_store
from layers.users import User
from tests.conftest import run_cli

BBOX = (118.776, 32.038, 118.786, 32.046)
HOSTILE = "<b>甲</b>商店 & <script>"
FORMULA = "=HYPERLINK(\"http://x\",\"点我\")"
SECTIONS = ("一、本月概况", "二、红黑榜", "三、问题热点分布", "四、本月图表", "五、超期案件", "六、奖惩名单",
            "七、单位排名", "八、部门排名")
FAILING = {"clean": 40, "order": 50, "facade": 60, "greening": 70}  # total 49: below the pass mark


def _cases(n: int = 160) -> pd.DataFrame:
    """Cases from 25 October to early December (city time), deadlines two days on, three in
    four closed, some late: the month 2026-11 has cases reported, due, on time and overdue."""
    rng = np.random.default_rng(7)
    rep = pd.Timestamp("2026-10-25") + pd.to_timedelta(rng.uniform(0, 40 * 24, n), unit="h")
    closed = rng.random(n) < 0.75
    took = pd.to_timedelta(rng.uniform(2, 80, n), unit="h")
    return pd.DataFrame({
        "编号": [f"T{i:04d}" for i in range(n)], "类别": rng.choice(["06010", "06007", "07001", "08001"], n),
        "lon": rng.normal(118.7805, 0.0015, n).round(6), "lat": rng.normal(32.0420, 0.0012, n).round(6),
        "上报时间": rep.strftime("%Y-%m-%d %H:%M"), "状态": np.where(closed, "已结案", "处置中"),
        "target_dt": (rep + pd.Timedelta(days=2)).strftime("%Y-%m-%d %H:%M"),
        "closed_dt": [(r + t).strftime("%Y-%m-%d %H:%M") if c else "" for r, t, c in zip(rep, took, closed)]})


def _expected(src: pd.DataFrame) -> dict:
    """The month's figures counted from the file (naive times are the city's)."""
    rep, target = pd.to_datetime(src["上报时间"]), pd.to_datetime(src["target_dt"])
    closed = pd.to_datetime(src["closed_dt"].replace("", None))
    in_nov = lambda t: (t >= "2026-11-01") & (t < "2026-12-01")  # noqa: E731
    due = in_nov(target)
    on_time = due & closed.notna() & (closed <= target)
    return {"reported": int(in_nov(rep).sum()), "due": int(due.sum()), "on_time": int(on_time.sum()),
            "rate": f"{on_time.sum() / due.sum():.1%}", "overdue": int(due.sum() - on_time.sum())}


@pytest.fixture(scope="module")
def month(tmp_path_factory, nanjing_osm):
    tmp = tmp_path_factory.mktemp("bulletin")
    db = str(tmp / "b.gpkg")
    with open_store(db) as s:
        import_osm(s, nanjing_osm, bbox=BBOX)
        zones.generate(s, "beijing-2022", valid_from=dt.date(2026, 1, 1))
    src = _cases()
    src.to_csv(tmp / "cases.csv", index=False)
    run_cli("import", tmp / "cases.csv", "--as", "problems", "--crs", "wgs84", db=db, check=True)
    with open_store(db) as s:
        p = s.read("problems")
        units = s.read("units").set_index("unit_id")
        assert set(p["status"]) == {"closed", "processing"}  # no report was linked as a duplicate
        busiest = p["unit_id"].value_counts().index
        with s.transaction() as tx:  # names a unit of the month's cases may carry
            tx.update("units", int(units.loc[busiest[0], "fid"]), {"name": HOSTILE})
            tx.update("units", int(units.loc[busiest[1], "fid"]), {"name": FORMULA})
        # a failed inspection in November: the 奖惩 rules fine its unit 200 yuan
        zone = p[p["unit_id"] == busiest[2]]["zone_code"].dropna().iloc[0]
        inspections.add(s, {"zone_code": zone, "scores": FAILING, "inspected_at": "2026-11-10T10:00"},
                        User("检查员", "inspector"))
    return db, tmp, _expected(src)


def test_the_bulletin_pdf_has_its_sections_figures_map_and_charts(month):
    db, tmp, want = month
    out = tmp / "通报.pdf"
    done = run_cli("bulletin", "--period", "2026-11", "--out", out, "--json", db=db, check=True)
    assert f'"cases": {want["reported"]}' in done.stdout and f'"overdue": {want["overdue"]}' in done.stdout
    reader = PdfReader(out)
    text = re.sub(r"\s+", "", "".join(page.extract_text() for page in reader.pages))
    for section in SECTIONS:
        assert section in text, section
    assert "城市管理月度通报（2026-11）" in text and "红榜" in text and "黑榜" in text
    # the summary row: 立案数, 应结案数, 按期结案数, 按期结案率, 超期案件数 in that order
    assert f"{want['reported']}{want['due']}{want['on_time']}{want['rate']}{want['overdue']}" in text
    assert re.sub(r"\s+", "", HOSTILE) in text and "未结案" in text
    assert sum(len(page.images) for page in reader.pages) >= 4  # the map and three charts


def _pdf_text(path) -> str:
    return re.sub(r"\s+", "", "".join(page.extract_text() for page in PdfReader(path).pages))


def test_the_ranking_is_the_evaluation_with_grades_sanctions_and_the_hot_cells(month):
    """The 红黑榜 and the ranking are the month's unit evaluation (综合指标值, grade, change), the
    奖惩 list the rules' (a fine for the failed inspection, a reward for the top unit), and the
    map's legend counts the month's significant Gi* hot cells per level."""
    db, tmp, _ = month
    out = tmp / "通报-评价.pdf"
    run_cli("bulletin", "--period", "2026-11", "--out", out, db=db, check=True)
    text = _pdf_text(out)
    with open_store(db) as s:
        units = evaluate(s, "2026-11", by="unit")
        cells = hotspots(s, "gi", since="2026-11-01", until="2026-11-30").shown
        sanctions = inspections.sanctions(s, "2026-11", save=False)["rows"]
    red = text[text.index("红榜"):text.index("黑榜（")]
    assert units["red"] and all(r["grade"] in "ABCDE" for r in units["red"])
    for r in units["red"]:  # name, then further on its score and grade side by side
        name = re.sub(r"\s+", "", r["name"])
        assert name in red and f"{r['score']:.1f}{r['grade']}" in red[red.index(name):], r
    ranked = text[text.index("七、单位排名"):text.index("八、部门排名")]
    for r in units["rows"]:
        if r["grade"]:
            assert f"{r['score']:.1f}{r['grade']}" in ranked, r
    kinds = {(r["kind"], r["amount"]) for r in sanctions}
    assert ("fine", 200) in kinds and ("reward", 500) in kinds  # what the rules give for this month
    listed = text[text.index("六、奖惩名单"):text.index("七、单位排名")]
    assert "处罚200检查" in listed and "奖励500月度" in listed and "检查不合格1次" in listed
    hot = cells["spot"].value_counts()
    assert hot.get("hot99", 0) + hot.get("hot95", 0) > 0  # the cases cluster: Gi* finds it
    legend = text[text.index("三、问题热点分布"):text.index("四、本月图表")]
    for level in ("99", "95", "90"):
        assert f"{level}%置信热点{int(hot.get('hot' + level, 0))}" in legend


def test_the_bulletin_xlsx_opens_with_its_tables_and_keeps_names_as_text(month):
    db, tmp, want = month
    out = tmp / "通报.xlsx"
    run_cli("bulletin", "--period", "2026-11", "--out", out, db=db, check=True)
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["概况", "排名", "部门排名", "按类别", "按日", "按街道", "超期案件", "奖惩"]
    summary = {r[0]: r[1] for r in book["概况"].iter_rows(values_only=True)}
    assert summary["本月立案数"] == str(want["reported"]) and summary["按期结案率"] == want["rate"]
    assert book["超期案件"].max_row - 1 == want["overdue"]
    assert sum(r[1] for r in book["按日"].iter_rows(min_row=2, values_only=True)) == want["reported"]
    assert [c.value for c in book["按日"]["A"][1:3]] == ["2026-11-01", "2026-11-02"]
    names = {c.value: c.data_type for c in book["排名"]["B"][1:]}
    assert names[HOSTILE] == "s" and names[FORMULA] == "s"  # a name, never a formula
    assert book["排名"].freeze_panes == "A2"


def test_the_html_bulletin_escapes_names(month):
    db, tmp, _ = month
    out = tmp / "通报.html"
    run_cli("bulletin", "--period", "2026-11", "--out", out, db=db, check=True)
    html = out.read_text("utf-8")
    assert "&lt;b&gt;甲&lt;/b&gt;商店 &amp; &lt;script&gt;" in html and "<script>" not in html


def test_a_month_without_cases_or_a_bad_period_says_so(month):
    db, tmp, _ = month
    done = run_cli("bulletin", "--period", "2025-03", "--out", tmp / "x.pdf", db=db)
    assert done.returncode == 1 and "no case was reported or due in 2025-03" in done.stderr
    assert "2026-10 to 2026-12" in done.stderr
    done = run_cli("bulletin", "--period", "2026-13", "--out", tmp / "x.pdf", db=db)
    assert done.returncode == 1 and "YYYY-MM" in done.stderr
    assert not (tmp / "x.pdf").exists()
