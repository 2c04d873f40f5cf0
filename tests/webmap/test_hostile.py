"""Hostile and broken requests get a clear 4xx, never a 500, and nothing is half-written;
every answer carries the security headers; the access log never holds a secret."""

import json
import logging

import pytest

from layers.store import open_store
from layers.users import add_user, issue_token
from tests.layers.test_cases import IN_F1, city
from webmap.app import create_app

GOOD = {"lon": IN_F1[0], "lat": IN_F1[1], "category": "06010", "description": "垃圾"}


@pytest.fixture
def web(tmp_path):
    db = str(tmp_path / "h.gpkg")
    city(db).close()
    with open_store(db) as s:
        add_user(s, "insp", "inspector", "correct horse 42")
        token = issue_token(s, "insp")
    app = create_app({"db": db, "photos": str(tmp_path / "photos"), "max_body_mb": 1,
                      "report_rate_limit": "1000/minute", "TESTING": True})
    return app.test_client(), db, token


def problems(db) -> int:
    with open_store(db) as s:
        return s.count("problems")


def post(client, body: bytes | str, **kw):
    return client.post("/api/problems", data=body, content_type="application/json", **kw)


@pytest.mark.parametrize("body, status, says", [
    (b"[" * 100_000 + b"]" * 100_000, 400, "nested deeper"),
    (b'{"a":' * 20_000 + b"1" + b"}" * 20_000, 400, "nested deeper"),
    (json.dumps({**GOOD, "x": json.loads("[" * 25 + "]" * 25)}), 400, "nested deeper"),
    ('{"lon": 118.78, "lat": 32.04, "category": "06010", "description": "\\ud800"}', 400, "not valid Unicode"),
    (json.dumps({**GOOD, "lon": True}), 400, "lon"),
    (json.dumps({**GOOD, "description": "before\u0000after"}), 400, "NUL"),
    (json.dumps({**GOOD, "address": "路" * 5000}), 400, "address"),
    (b"\xff\xfe not json", 400, "not JSON"),
    (b"[1, 2, 3]", 400, "JSON object"),
    (json.dumps({**GOOD, "lon": 0, "lat": 0}), 422, "does not take reports from that place"),
    (json.dumps({**GOOD, "lon": 116.397, "lat": 39.909}), 422, "does not take reports from that place"),
    (json.dumps({**GOOD, "description": "x" * 300_000}), 413, "kB"),
])
def test_hostile_bodies_get_a_clear_4xx_and_write_nothing(web, body, status, says):
    client, db, _ = web
    r = post(client, body)
    assert r.status_code == status, r.get_data(as_text=True)[:300]
    assert says in r.json["error"], r.json
    assert problems(db) == 0


def test_a_body_over_the_size_limit_is_refused_before_it_is_read(web):
    client, db, _ = web
    big = b"x" * (2 * 1024 * 1024)
    r = client.post("/api/problems", data={"photo": (__import__("io").BytesIO(big), "p.jpg"), **GOOD},
                    content_type="multipart/form-data")
    assert r.status_code == 413 and "MB" in r.json["error"]
    assert problems(db) == 0


def test_text_is_kept_whole(web):
    client, _, token = web
    text = "井盖缺失 🚧 " + "很长的描述" * 700  # 3,500 characters with an emoji, under the 4,000 limit
    r = post(client, json.dumps({**GOOD, "description": text}))
    assert r.status_code == 201, r.json
    got = client.get(f"/api/cases/{r.json['problem_id']}", headers={"Authorization": f"Bearer {token}"}).json
    assert got["description"] == text


def test_bad_values_in_query_strings_are_400_not_500(web):
    client, _, token = web
    h = {"Authorization": f"Bearer {token}"}
    for url in ["/api/route?lon=abc&lat=1", "/api/route?lon=nan&lat=1", "/api/layers/zones.geojson?bbox=1,2",
                "/api/layers/zones.geojson?limit=-5", "/api/cases?page=zero", "/api/cases?per_page=100000",
                "/api/cases?since=yesterday", "/open311/v2/requests.json?start_date=nope"]:
        r = client.get(url, headers=h)
        assert r.status_code == 400, (url, r.status_code)
    assert client.get("/api/layers/users.geojson").status_code == 404
    assert client.get("/no/such/page").status_code == 404


def test_security_headers_on_pages_and_api(web):
    client, _, _ = web
    page = client.get("/report")
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self' 'nonce-" in csp and "unsafe-inline" not in \
        csp.split("script-src")[1].split(";")[0]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}"' in page.get_data(as_text=True)
    for r in (page, client.get("/api/categories"), client.get("/api/route?lon=x")):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


def test_the_access_log_never_holds_a_token(web, caplog):
    client, _, token = web
    with caplog.at_level(logging.INFO, logger="zonemap.access"):
        client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        client.post(f"/open311/v2/requests.json?api_key={token}", data={"service_code": "06010"})
        client.get(f"/api/cases?token={token}&page=1")
    lines = [r.getMessage() for r in caplog.records if r.name == "zonemap.access"]
    assert len(lines) == 3 and any("/api/me 200" in line and " insp " in line for line in lines)
    assert all(token not in line for line in lines) and any("api_key=%2A%2A%2A" in line for line in lines)


def test_failed_sign_ins_are_rate_limited(tmp_path):
    db = str(tmp_path / "r.gpkg")
    city(db).close()
    client = create_app({"db": db, "auth_failure_limit": "3/minute", "report_rate_limit": "2/minute"}).test_client()
    bad = {"Authorization": "Bearer zm_wrong"}
    assert [client.get("/api/me", headers=bad).status_code for _ in range(4)] == [401, 401, 401, 429]
    assert client.get("/api/me", headers=bad).status_code == 429


def test_reports_are_rate_limited_per_client(tmp_path):
    db = str(tmp_path / "r.gpkg")
    city(db).close()
    client = create_app({"db": db, "report_rate_limit": "2/minute"}).test_client()
    far = {**GOOD, "lon": IN_F1[0] + 0.001}  # not a duplicate of the first
    assert [post(client, json.dumps(b)).status_code for b in (GOOD, far)] == [201, 201]
    r = post(client, json.dumps(GOOD))
    assert r.status_code == 429 and "try again" in r.json["error"]
    other = post(client, json.dumps(GOOD), environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 201  # another phone is not held back
    assert problems(db) == 3


def test_a_nul_in_an_address_is_400_on_every_route(web):
    client, _, token = web
    h = {"Authorization": f"Bearer {token}"}
    for url in ["/api/cases/a%00b", "/api/cases?category=06%0010", "/open311/v2/requests/a%00.json",
                "/open311/v2/requests.json?service_code=0%00"]:
        r = client.get(url, headers=h)
        assert r.status_code == 400 and "NUL" in r.get_data(as_text=True), url
    long_url = {"service_code": "06010", "lat": str(IN_F1[1]), "long": str(IN_F1[0]), "media_url": "h" * 1001}
    r = client.post("/open311/v2/requests.json", data=long_url)
    assert r.status_code == 400 and "media_url" in r.json[0]["description"]
