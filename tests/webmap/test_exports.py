"""Downloads under /api/export/: the ledger for staff only, the zones' public variant for
anyone, each a real file (opened with openpyxl, csv, json, GDAL), on both stores."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import openpyxl
import pyogrio
import pytest

from layers.users import add_user, issue_token
from tests.layers.test_cases import city
from webmap.app import create_app

PERSON, PHONE = "王五", "+86 136 1111 2222"


@pytest.fixture
def web(store_url, tmp_path):
    """The small city of the case tests (zones F1 and S1), a person and phone on the shop,
    and a token for each of a planner, a unit user and a public user."""
    s = city(store_url)
    shop = s.read("units", where={"unit_id": "U-SHOP"})
    with s.transaction() as tx:
        tx.update("units", int(shop["fid"].iloc[0]), {"person": PERSON, "phone": PHONE})
    tokens = {}
    for name, role, unit in (("planner1", "planner", None), ("shop1", "unit", "U-SHOP"), ("citizen", "public", None)):
        add_user(s, name, role, "correct horse 42", unit)
        tokens[role] = {"Authorization": f"Bearer {issue_token(s, name)}"}
    s.close()
    app = create_app({"db": store_url, "photos": str(tmp_path / "photos"), "access_log": False, "TESTING": True})
    return app.test_client(), tokens


def test_staff_download_the_ledger_as_xlsx_and_csv(web):
    client, tokens = web
    got = client.get("/api/export/ledger.xlsx", headers=tokens["planner"])
    assert got.status_code == 200 and got.mimetype.endswith("spreadsheetml.sheet")
    assert 'filename="ledger-' in got.headers["Content-Disposition"]
    ws = openpyxl.load_workbook(io.BytesIO(got.data)).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    head = rows[0]
    body = {r[0]: dict(zip(head, r)) for r in rows[1:]}
    assert set(body) == {"F1", "S1"} and ws.freeze_panes == "A2"
    assert body["F1"]["责任单位"] == "<b>甲</b>商店" and body["F1"]["责任人"] == PERSON
    assert body["F1"]["联系电话"] == PHONE and body["S1"]["类型"] == "施工现场"
    got = client.get("/api/export/ledger.csv?period=2026-01&as_of=2026-01-15", headers=tokens["planner"])
    assert got.status_code == 200 and got.data.startswith(b"\xef\xbb\xbf")
    table = list(csv.DictReader(got.data.decode("utf-8-sig").splitlines()))
    assert {r["责任区编号"] for r in table} == {"F1", "S1"} and {r["按期整改率"] for r in table} == {"—"}


def test_the_ledger_is_refused_to_the_public_and_to_units(web):
    client, tokens = web
    assert client.get("/api/export/ledger.xlsx").status_code == 401
    assert client.get("/api/export/ledger.csv", headers=tokens["unit"]).status_code == 403
    assert client.get("/api/export/ledger.csv", headers=tokens["public"]).status_code == 403
    assert client.get("/api/export/ledger.xlsx?public=1").status_code == 401  # no public ledger
    assert client.get("/api/export/zones.gpkg").status_code == 401
    assert client.get("/api/export/zones.geojson", headers=tokens["unit"]).status_code == 403


def test_anyone_downloads_the_public_zones_and_staff_the_full_ones(web, tmp_path):
    client, tokens = web
    got = client.get("/api/export/zones.geojson?public=1")
    assert got.status_code == 200 and got.mimetype == "application/geo+json"
    doc = json.loads(got.data)
    assert {f["properties"]["code"] for f in doc["features"]} == {"F1", "S1"}
    assert {f["properties"]["unit_name"] for f in doc["features"]} == {"<b>甲</b>商店", "乙建设工程公司"}
    assert PHONE not in got.get_data(as_text=True) and PERSON not in got.get_data(as_text=True)
    got = client.get("/api/export/zones.gpkg", headers=tokens["planner"])
    assert got.status_code == 200 and got.data.startswith(b"SQLite format 3\x00")
    path = tmp_path / "z.gpkg"
    path.write_bytes(got.data)
    assert pyogrio.read_info(path, layer="zones")["features"] == 2


def test_bad_values_are_400_and_a_date_before_any_zone_404(web):
    client, tokens = web
    for query in ("as_of=2026-13-01", "as_of=yesterday", "period=2026-1", "period=2026-13"):
        got = client.get(f"/api/export/ledger.xlsx?{query}", headers=tokens["planner"])
        assert got.status_code == 400 and got.json["error"], query
    assert client.get("/api/export/zones.geojson?public=yes").status_code == 400
    got = client.get("/api/export/ledger.xlsx?as_of=2025-06-01", headers=tokens["planner"])
    assert got.status_code == 404 and "2025-06-01" in got.json["error"]
    got = client.get("/api/export/ledger.csv?street=没有这条路", headers=tokens["planner"])
    assert got.status_code == 404


def test_the_temporary_file_is_gone_once_sent(web):
    client, tokens = web
    before = set(Path(tempfile.gettempdir()).glob("zonemap-export-*"))
    got = client.get("/api/export/ledger.xlsx", headers=tokens["planner"])
    assert got.status_code == 200 and len(got.data) > 1000
    got.close()
    assert set(Path(tempfile.gettempdir()).glob("zonemap-export-*")) <= before


def test_a_unit_name_that_looks_like_a_formula_stays_text(web, store_url):
    from layers.store import open_store

    with open_store(store_url) as s, s.transaction() as tx:
        site = s.read("units", where={"unit_id": "U-SITE"})
        tx.update("units", int(site["fid"].iloc[0]), {"name": '=HYPERLINK("http://x.example","点我")'})
    client, tokens = web
    got = client.get("/api/export/ledger.xlsx", headers=tokens["planner"])
    ws = openpyxl.load_workbook(io.BytesIO(got.data)).worksheets[0]
    cell = next(r[12] for r in ws.iter_rows(min_row=2) if r[0].value == "S1")
    assert cell.data_type == "s" and cell.value.startswith("=HYPERLINK")  # text, not a formula Excel runs
    got = client.get("/api/export/ledger.csv", headers=tokens["planner"])
    rows = {r["责任区编号"]: r for r in csv.DictReader(got.data.decode("utf-8-sig").splitlines())}
    assert rows["S1"]["责任单位"] == '\'=HYPERLINK("http://x.example","点我")'
    assert rows["F1"]["联系电话"] == PHONE  # a phone's + or digits are data: left alone
