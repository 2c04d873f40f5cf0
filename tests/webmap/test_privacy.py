"""Privacy by construction: plant secrets (a reporter's login and phone, a unit person's name
and phone, a phone number typed into a description) and walk every public endpoint of the
app, in every format, without a token: none of them may show up. Staff see what their role
allows."""

import re

import pytest
from flask import url_for

from layers.store import open_store
from layers.tiles import tile_of
from layers.users import add_user, issue_token
from tests.layers.test_cases import IN_F1, city
from webmap.app import create_app

SECRETS = {
    "reporter login": "secret-reporter-7731",
    "reporter phone": "13912345678",
    "reporter e-mail": "whistle.blower@example.org",
    "unit person": "张秘密人",
    "unit phone": "025-86661234",
    "typed phone": "18677778888",
    "planner login": "secret-planner-5521",
}


@pytest.fixture
def planted(tmp_path):
    db = str(tmp_path / "p.gpkg")
    city(db).close()
    with open_store(db) as s:
        with s.transaction() as tx:
            shop = s.read("units", where={"unit_id": "U-SHOP"})
            tx.update("units", int(shop["fid"].iloc[0]), {"person": SECRETS["unit person"],
                                                          "phone": SECRETS["unit phone"]})
            zone = s.read("zones", where={"code": "F1"})
            tx.update("zones", int(zone["fid"].iloc[0]), {"changed_by": SECRETS["planner login"],
                                                          "change_note": "应店主要求改派"})
        add_user(s, SECRETS["reporter login"], "inspector", "correct horse 42")
        token = issue_token(s, SECRETS["reporter login"])
    client = create_app({"db": db, "photos": str(tmp_path / "photos"), "TESTING": True}).test_client()
    r = client.post("/api/problems", headers={"Authorization": f"Bearer {token}"}, json={
        "lon": IN_F1[0], "lat": IN_F1[1], "category": "06010", "address": "中山路1号",
        "contact": f"{SECRETS['reporter phone']} {SECRETS['reporter e-mail']}",
        "description": f"门口垃圾成堆, 老板电话 {SECRETS['typed phone']}"})
    assert r.status_code == 201, r.json
    o = client.post("/open311/v2/requests.json", data={
        "service_code": "09006", "lat": str(IN_F1[1] + 0.0003), "long": str(IN_F1[0]), "api_key": token,
        "email": SECRETS["reporter e-mail"], "phone": SECRETS["reporter phone"], "description": "占道"})
    assert o.status_code == 200, o.json
    return client, token, r.json["problem_id"]


def public_urls(app, case_id) -> list[str]:
    """Every GET route of the app, its parameters filled with real values."""
    fill = {"name": [n for n in ("buildings", "roads", "pois", "areas", "sites", "units", "zones", "grid",
                                 "problems")],
            "fmt": ["json", "xml"], "code": ["06010"], "request_id": [case_id], "problem_id": [case_id],
            "layer": ["zones", "problems", "buildings", "roads"], "z": [16], "key": ["F1", case_id, "1"],
            "x": [tile_of(*IN_F1, 16)[0]], "y": [tile_of(*IN_F1, 16)[1]]}
    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint.startswith("assets."):
                continue
            options = [{}]
            for arg in rule.arguments:
                options = [o | {arg: v} for o in options for v in fill[arg]]
            urls += [url_for(rule.endpoint, **o) for o in options]
    return urls


def test_no_public_answer_shows_a_contact_a_login_or_a_phone(planted):
    client, _, case_id = planted
    urls = public_urls(client.application, case_id)
    assert any("problems.geojson" in u for u in urls) and any("requests.xml" in u for u in urls)
    assert len(urls) >= 20
    for url in urls:
        for query in ("", "?status=open,closed&start_date=2000-01-01T00:00:00Z", "?public=1"):
            r = client.get(url + query)
            body = r.get_data()  # bytes: a GeoPackage download is walked too
            for what, secret in SECRETS.items():
                assert secret.encode() not in body, f"{what} shown by {url}{query} ({r.status_code})"
    listed = client.get("/open311/v2/requests.json?start_date=2000-01-01T00:00:00Z").json
    assert any("门口垃圾成堆" in (i["description"] or "") and "***" in i["description"] for i in listed)
    layer = client.get("/api/layers/units.geojson").json
    assert {"person", "phone"}.isdisjoint(layer["features"][0]["properties"])


def test_staff_see_what_their_role_allows(planted):
    client, token, case_id = planted
    h = {"Authorization": f"Bearer {token}"}
    units = client.get("/api/layers/units.geojson", headers=h).json["features"]
    assert any(f["properties"].get("phone") == SECRETS["unit phone"] for f in units)
    case = client.get(f"/api/cases/{case_id}", headers=h).json
    assert SECRETS["typed phone"] in case["description"]  # the inspector reads the report as written
    assert "contact" not in case  # a reporter's contact is never in an answer
    problems = client.get("/api/layers/problems.geojson", headers=h).json["features"]
    assert all("contact" not in f["properties"] and "photo" not in f["properties"] for f in problems)


def test_times_on_the_map_are_city_time(planted):
    client, _, _ = planted
    props = client.get("/api/layers/problems.geojson").json["features"][0]["properties"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", props["reported_at"])


def test_the_map_names_who_answers_not_their_id(planted):
    client, _, case_id = planted
    zones = client.get("/api/layers/zones.geojson").json["features"]
    assert {f["properties"]["code"]: f["properties"]["unit_name"] for f in zones} == \
        {"F1": "<b>甲</b>商店", "S1": "乙建设工程公司"}  # as text: the page sets it with textContent
    case = next(f["properties"] for f in client.get("/api/layers/problems.geojson").json["features"]
                if f["properties"]["problem_id"] == case_id)
    assert (case["unit_name"], case["category_name"]) == ("<b>甲</b>商店", "暴露垃圾")
