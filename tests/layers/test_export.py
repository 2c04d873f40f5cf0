"""Exports: the 台账 ledger of real Nanjing zones (XLSX and CSV) and GIS files of zones, units
and cases, made by `zonemap export …` on both stores and read back the way an office would:
openpyxl, the csv module, GDAL (pyogrio) and SQLite."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3

import openpyxl
import pandas as pd
import pyogrio
import pytest
import shapely

from layers import export, zones
from layers.errors import InputError
from layers.importer import import_file, import_osm
from layers.schema import LAYERS
from layers.store import open_store
from tests.conftest import run_cli

BBOX = (118.776, 32.038, 118.786, 32.046)  # a few blocks of Xinjiekou: ~330 zones
PERSON, PHONE, CREDIT = "张三丰", "13912345678", "91320100MA1X2Y3Z4Q"
CONTACT, REPORTER = "13800138000", "李四光"
PLANTED = (PERSON, PHONE, CONTACT, REPORTER, "13700001111")


def _plant_unit_and_cases(s, tmp, code: str, unit_name: str, point) -> None:
    """The unit of zone `code` gets a person, phone and credit code; four cases fall in it
    (see test_period_figures_are_hand_computed for what each is)."""
    units = tmp / "责任人.csv"
    units.write_text(f"单位名称,责任人,联系电话,统一社会信用代码\n{unit_name},{PERSON},{PHONE},{CREDIT}\n", "utf-8")
    import_file(s, units, "units", match="name")
    lon, lat = point.x, point.y
    rows = [  # id, category, reported, deadline, closed, state (city time)
        ("A1", "06010", "2026-11-02 09:00", "2026-11-05 10:00", "2026-11-04 16:00", "已结案"),
        ("A2", "06036", "2026-11-03 10:00", "2026-11-06 10:00", "2026-11-08 09:00", "已结案"),
        ("A3", "09005", "2026-11-10 09:00", "2026-12-03 10:00", "", "处置中"),
        ("A4", "06011", "2026-10-20 09:00", "2026-11-02 10:00", "2026-11-01 12:00", "已结案"),
    ]
    lines = ["编号,类别,lon,lat,上报时间,target_dt,closed_dt,状态,描述,联系方式,上报人"]
    lines += [f"{i},{c},{lon},{lat},{r},{t},{d},{st},门口堆物 电话13700001111,{CONTACT},{REPORTER}"
              for i, c, r, t, d, st in rows]
    problems = tmp / "problems.csv"
    problems.write_text("\n".join(lines) + "\n", "utf-8")
    import_file(s, problems, "problems", crs="wgs84")


@pytest.fixture(scope="module")
def city(module_store_url, tmp_path_factory, nanjing_osm):
    """A store of each kind with real zones in two versions (beijing-2022 from 2026-01-01,
    beijing-1999 from 2026-03-01), one unit's person and phone, and four routed cases."""
    tmp, db = tmp_path_factory.mktemp("export"), module_store_url
    with open_store(db) as s:
        import_osm(s, nanjing_osm, bbox=BBOX)
        zones.generate(s, "beijing-2022", bbox=BBOX, valid_from=dt.date(2026, 1, 1))
        zones.generate(s, "beijing-1999", bbox=BBOX, valid_from=dt.date(2026, 3, 1))
        now = zones.current(s.read("zones"))
        units = s.read("units").set_index("unit_id")["name"]
        named = now[now["kind"].eq("frontage") & now["primary_unit"].map(
            lambda u: not str(units.get(u, "")).startswith("建筑"))].iloc[0]
        _plant_unit_and_cases(s, tmp, named["code"], units[named["primary_unit"]],
                              shapely.point_on_surface(named.geometry))
        problems = s.read("problems").set_index("problem_id")
        if "inspections" in LAYERS:  # 2026-11-12 10:00 city time, 92 points: passed
            s.append("inspections", pd.DataFrame({
                "inspection_id": ["I1"], "zone_code": [named["code"]], "inspector": ["检查员甲"], "total": [92.0],
                "inspected_at": [pd.Timestamp("2026-11-12T02:00:00Z")], "passed": [True]}))
    assert (problems["zone_code"] == named["code"]).all(), "the cases must fall in the chosen zone"
    return {"db": db, "tmp": tmp, "code": named["code"], "unit": units[named["primary_unit"]]}


def _export(city, *args, name: str, check: bool = True):
    out = city["tmp"] / name
    done = run_cli("export", *args, "--out", out, db=city["db"], check=check)
    return out, done


def _in_force(city, day=None):
    with open_store(city["db"]) as s:
        return zones.current(s.read("zones"), day)


def _sheet_rows(path):
    book = openpyxl.load_workbook(path)
    return book, {ws.title: list(ws.iter_rows(values_only=True)) for ws in book.worksheets}


def test_the_ledger_xlsx_has_the_headers_one_row_per_zone_and_its_chinese_text(city):
    out, _ = _export(city, "ledger", "--period", "2026-11", name="台账.xlsx")
    book, sheets = _sheet_rows(out)
    ws = book.worksheets[0]
    rows = sheets[ws.title]
    assert list(rows[0]) == list(export.LEDGER_HEADERS)
    for wanted in ("责任区编号", "类型", "街道", "社区", "网格", "东至", "西至", "南至", "北至", "临街长度(m)",
                   "纵深(m)", "面积(m²)", "责任单位", "统一社会信用代码", "责任人", "联系电话", "三包内容",
                   "版本与生效日期", "期内问题数", "按期整改率", "最近检查日期与结果", "备注"):
        assert wanted in rows[0]
    now = _in_force(city)
    body = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert len(rows) - 1 == len(now) and set(body) == set(now["code"])
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == f"A1:V{len(rows)}"
    assert ws.column_dimensions["M"].width > 20  # the unit's name is not squeezed
    kinds = {r["类型"] for r in body.values()}
    assert {"门前三包", "单位卫生责任区"} <= kinds and not kinds & set(export.KIND_ZH)  # never raw codes
    mine = body[city["code"]]
    assert mine["责任单位"] == city["unit"] and mine["责任人"] == PERSON and mine["联系电话"] == PHONE
    z = now.set_index("code").loc[city["code"]]
    assert mine["统一社会信用代码"] == CREDIT and mine["三包内容"] == z["duties"] == "卫生,绿化,秩序"  # beijing-1999
    sides = export.split_bounds(z["bounds_text"])
    assert [mine[k] for k in ("东至", "西至", "南至", "北至")] == list(sides.values()) and any(sides.values())
    assert mine["面积(m²)"] == pytest.approx(z["area_m2"], abs=0.06)
    assert mine["街道"] and mine["街道"] == z["street"]


def test_period_figures_are_hand_computed_and_no_due_case_shows_a_dash(city):
    """A1 (Nov, due Nov, closed in time), A2 (Nov, due Nov, late), A3 (Nov, due 3 Dec, open),
    A4 (reported October, due 2 Nov, closed in time): November has 3 problems, 3 cases due
    and 2 of them on time; December 0 problems and 1 due, not closed; January nothing due."""
    def mine(period, fmt):
        out, _ = _export(city, "ledger", "--format", fmt, "--period", period, name=f"p{period}.{fmt}")
        if fmt == "csv":
            rows = list(csv.DictReader(out.read_text("utf-8-sig").splitlines()))
        else:
            _, sheets = _sheet_rows(out)
            head, *body = next(iter(sheets.values()))
            rows = [dict(zip(head, r)) for r in body]
        return next(r for r in rows if r["责任区编号"] == city["code"]), rows

    nov, _ = mine("2026-11", "csv")
    assert (nov["期内问题数"], nov["按期整改率"]) == ("3", "66.7%")
    nov_x, _ = mine("2026-11", "xlsx")
    assert nov_x["期内问题数"] == 3 and nov_x["按期整改率"] == pytest.approx(2 / 3)
    dec, _ = mine("2026-12", "csv")
    assert (dec["期内问题数"], dec["按期整改率"]) == ("0", "0.0%")
    jan, rows = mine("2027-01", "xlsx")
    assert jan["期内问题数"] == 0 and jan["按期整改率"] == "—"
    assert all(r["按期整改率"] == "—" for r in rows)  # no case due anywhere: no division by zero


def test_the_csv_ledger_has_a_bom_and_reads_back_the_same_rows(city):
    x, _ = _export(city, "ledger", "--period", "2026-11", name="same.xlsx")
    c, _ = _export(city, "ledger", "--period", "2026-11", name="same.csv")  # the format from the suffix
    raw = c.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    got = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    _, sheets = _sheet_rows(x)
    want = next(iter(sheets.values()))
    assert got[0] == list(want[0]) and len(got) == len(want)
    text_cols = [i for i, (_, kind, _) in enumerate(export.LEDGER_COLUMNS) if kind == "text"]
    for g, w in zip(got[1:], want[1:]):
        assert [g[i] for i in text_cols] == [w[i] or "" for i in text_cols]


def test_street_keeps_only_that_street_and_sheets_by_street_split_the_rest(city):
    now = _in_force(city)
    street = now["street"].dropna().str.split("、").explode().value_counts().index[0]
    out, _ = _export(city, "ledger", "--street", street, name="street.xlsx")
    _, sheets = _sheet_rows(out)
    head, *body = next(iter(sheets.values()))
    on_it = now["street"].fillna("").map(lambda s: street in s.split("、"))
    assert len(body) == on_it.sum() and all(street in r[head.index("街道")].split("、") for r in body)
    out, _ = _export(city, "ledger", "--sheets-by-street", name="sheets.xlsx")
    _, sheets = _sheet_rows(out)
    assert len(sheets) > 5 and sum(len(rows) - 1 for rows in sheets.values()) == len(now)
    assert all(rows[0] == tuple(export.LEDGER_HEADERS) for rows in sheets.values())
    _, done = _export(city, "ledger", "--street", "没有这条路", name="none.xlsx", check=False)
    assert done.returncode == 1 and "没有这条路" in done.stderr


def test_as_of_an_earlier_date_gives_the_earlier_version(city):
    jan, apr = _in_force(city, dt.date(2026, 1, 15)), _in_force(city, dt.date(2026, 4, 1))
    changed = sorted(set(jan["code"]) & set(apr[apr["version"] == 2]["code"]))
    assert changed, "the second profile must change some zones"
    for day, frame, version in (("2026-01-15", jan, "v1，2026-01-01 起，2026-03-01 止"),
                                ("2026-04-01", apr, "v2，2026-03-01 起")):
        out, _ = _export(city, "ledger", "--format", "csv", "--as-of", day, name=f"asof{day}.csv")
        rows = {r["责任区编号"]: r for r in csv.DictReader(out.read_text("utf-8-sig").splitlines())}
        assert set(rows) == set(frame["code"])
        assert rows[changed[0]]["版本与生效日期"] == version
        area = frame.set_index("code").loc[changed[0], "area_m2"]
        assert float(rows[changed[0]]["面积(m²)"]) == pytest.approx(area, abs=0.06)
    _, done = _export(city, "ledger", "--as-of", "2025-06-01", name="early.xlsx", check=False)
    assert done.returncode == 1 and "no zones in force on 2025-06-01" in done.stderr


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_a_shapefile_keeps_chinese_names_in_its_encoding_and_says_it_in_the_cpg(city, encoding):
    out, done = _export(city, "zones", "--format", "shp", "--encoding", encoding, "--json",
                        name=f"zones_{encoding}.shp")
    assert json.loads(done.stdout)["rows"] == len(_in_force(city))
    assert out.with_suffix(".cpg").read_text().strip() == {"gbk": "GBK", "utf-8": "UTF-8"}[encoding]
    assert city["unit"].encode(encoding) in out.with_suffix(".dbf").read_bytes()  # really in that encoding
    back = pyogrio.read_dataframe(out, encoding=encoding.upper())
    assert city["unit"] in set(back["unit_name"]) and "门前三包" in set(back["kind_zh"])
    assert all(len(c) <= 10 for c in back.columns)
    fields = out.with_name(out.stem + ".fields.txt").read_text("utf-8")
    assert "prim_unit\tprimary_unit\t" in fields and "front_len\tfrontage_len_m\t" in fields
    assert len(back) == len(_in_force(city))


def test_gbk_refuses_a_name_it_cannot_hold_naming_the_row(city, tmp_path):
    with open_store(city["db"]) as s:
        frame = export.gis_frame(s, "units")
    frame.loc[3, "name"] = "咖啡馆☕"
    with pytest.raises(InputError, match=r"row 4, field 'name'.*GBK"):
        export.write_gis(frame, tmp_path / "u.shp", "shp", layer="units", encoding="gbk")
    assert not (tmp_path / "u.shp").exists()


def test_public_exports_of_units_and_cases_hold_no_person_phone_or_contact(city):
    for what in ("units", "cases"):
        for fmt in ("geojson", "gpkg"):
            out, _ = _export(city, what, "--public", name=f"public_{what}.{fmt}")
            raw = out.read_bytes()
            leaked = [p for p in PLANTED if p.encode() in raw]
            assert not leaked, (what, fmt, leaked)
            back = pyogrio.read_dataframe(out)
            assert not {"person", "phone", "contact", "reporter", "description", "address"} & set(back.columns)
    staff, _ = _export(city, "units", name="staff_units.geojson")  # staff see the person: the test can fail
    assert PERSON.encode() in staff.read_bytes() and PHONE.encode() in staff.read_bytes()
    cases, _ = _export(city, "cases", name="staff_cases.geojson")
    assert CONTACT.encode() not in cases.read_bytes()  # a reporter's contact goes to nobody


def test_geopackage_and_kml_read_back_with_the_same_count(city):
    now = _in_force(city)
    gpkg, _ = _export(city, "zones", name="zones.gpkg")
    info = pyogrio.read_info(gpkg, layer="zones")
    assert info["driver"] == "GPKG" and info["features"] == len(now) and info["crs"] == "EPSG:4326"
    with sqlite3.connect(gpkg) as con:  # what QGIS checks before it opens a GeoPackage
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT data_type FROM gpkg_contents WHERE table_name='zones'").fetchone()[0] == "features"
    back = pyogrio.read_dataframe(gpkg)
    assert back.geometry.is_valid.all() and set(back["code"]) == set(now["code"])
    kml, _ = _export(city, "zones", name="zones.kml")
    assert len(pyogrio.read_dataframe(kml)) == len(now)
    cases, _ = _export(city, "cases", "--format", "kml", name="cases.kml")
    assert len(pyogrio.read_dataframe(cases)) == 4


def test_cases_carry_names_city_times_and_their_state_as_of_a_date(city):
    out, _ = _export(city, "cases", "--as-of", "2026-11-05", name="cases.geojson")
    feats = {f["properties"]["problem_id"]: f["properties"]
             for f in json.loads(out.read_text("utf-8"))["features"]}
    assert set(feats) == {"A1", "A2", "A4"}  # A3 was reported on the 10th
    a1, a2 = feats["A1"], feats["A2"]
    assert a1["status"] == "closed" and a1["status_zh"] == "已结案" and a1["closed_at"] == "2026-11-04T16:00:00+08:00"
    assert a2["status"] == "processing" and a2["closed_at"] is None  # closed on the 8th, after the date
    assert a1["category_name"] == "暴露垃圾" and a1["unit_name"] == city["unit"]
    assert a1["reported_at"] == "2026-11-02T09:00:00+08:00"


def test_bad_options_say_what_to_do(city):
    for args, words in ((("units", "--as-of", "2026-01-01"), "units have no versions"),
                        (("zones", "--format", "gpkg", "--encoding", "gbk"), "--encoding is for Shapefiles"),
                        (("ledger", "--format", "csv", "--sheets-by-street"), "needs --format xlsx"),
                        (("ledger", "--period", "2026-13"), "YYYY-MM"),
                        (("ledger", "--period", "2026-11", "--since", "2026-11-01"), "either --period")):
        _, done = _export(city, *args, name="bad.gpkg" if args[0] != "ledger" else "bad.xlsx", check=False)
        assert done.returncode == 1 and words in done.stderr + done.stdout, (args, done.stderr)


def test_the_last_inspection_by_the_date_is_shown(city):
    if "inspections" not in LAYERS:
        pytest.skip("this schema has no inspections layer")
    for day, want in (("2026-11-30", "2026-11-12 合格 92分"), ("2026-11-11", "")):
        out, _ = _export(city, "ledger", "--format", "csv", "--as-of", day, name=f"insp{day}.csv")
        rows = {r["责任区编号"]: r for r in csv.DictReader(out.read_text("utf-8-sig").splitlines())}
        assert rows[city["code"]]["最近检查日期与结果"] == want
        assert sum(1 for r in rows.values() if r["最近检查日期与结果"]) == (1 if want else 0)
