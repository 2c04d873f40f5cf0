"""The case API and Open311 over HTTP, on a real store: tokens and roles, a report with a
photo, a case driven through its life, paging and filters, and Open311 answers checked
against the GeoReport v2 field names and types."""

import datetime as dt
import io
import json
import re
from zoneinfo import ZoneInfo

import pytest

from layers.store import open_store
from layers.users import add_user, issue_token
from tests.conftest import run_cli
from tests.layers.test_cases import IN_F1, city
from webmap.app import create_app

PASSWORD = "correct horse 42\n"


@pytest.fixture
def server(tmp_path):
    db = str(tmp_path / "c.gpkg")
    city(db).close()
    # the inspector the way an admin adds one, on the command line; the others the same way in-process
    run_cli("users", "add", "insp", "--role", "inspector", db=db, stdin=PASSWORD, check=True)
    tokens = {"insp": run_cli("token", "insp", db=db, check=True).stdout.strip()}
    with open_store(db) as s:
        for name, role, unit in [("disp", "dispatcher", None), ("pub", "public", None), ("shop", "unit", "U-SHOP"),
                                 ("site", "unit", "U-SITE"), ("plan", "planner", None)]:
            add_user(s, name, role, PASSWORD.strip(), unit)
            tokens[name] = issue_token(s, name)
    app = create_app({"DB": db, "PHOTOS": str(tmp_path / "photos"), "TESTING": True})
    return app.test_client(), tokens, db, tmp_path


def auth(tokens, name):
    return {"Authorization": f"Bearer {tokens[name]}"}


def test_users_and_tokens_are_kept_hashed(server):
    client, tokens, db, _ = server
    with open_store(db) as s:
        users = s.read("users").set_index("name")
        stored = s.read("tokens")
    assert users.loc["shop", "role"] == "unit" and users.loc["shop", "unit_id"] == "U-SHOP"
    hashed = users.loc["insp", "password_hash"]
    assert hashed.startswith("scrypt:") and "horse" not in hashed
    assert tokens["insp"] not in set(stored["token_hash"]) and len(stored) == 6
    assert client.get("/api/me", headers=auth(tokens, "disp")).json == {"name": "disp", "role": "dispatcher",
                                                                        "unit_id": None}
    bad = run_cli("users", "add", "x2", "--role", "unit", db=db, stdin=PASSWORD)
    assert bad.returncode == 1 and "--unit" in bad.stderr
    short = run_cli("users", "add", "x3", "--role", "admin", db=db, stdin="abc\n")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    run_cli("token", "insp", "--revoke", db=db, check=True)
    r = client.get("/api/cases", headers=auth(tokens, "insp"))
    assert r.status_code == 401 and "revoked" in r.json["error"]
    assert client.get("/api/cases", headers={"Authorization": "Basic abc"}).status_code == 401


def test_report_with_a_photo_then_drive_the_case_through_its_life(server):
    client, tokens, db, tmp = server
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 2048
    r = client.post("/api/problems", headers=auth(tokens, "pub"), content_type="multipart/form-data",
                    data={"lon": str(IN_F1[0]), "lat": str(IN_F1[1]), "crs": "wgs84", "category": "06010",
                          "description": "<img src=x onerror=alert(1)>", "contact": "13800000000",
                          "photo": (io.BytesIO(jpeg), "p.jpg")})
    assert r.status_code == 201, r.json
    got = r.json
    assert (got["status"], got["zone_code"], got["unit_id"], got["routed_by"]) == ("verifying", "F1", "U-SHOP", "zone")
    assert got["unit_name"] == "<b>甲</b>商店"  # JSON carries text; pages set it as text
    pid = got["problem_id"]
    with open_store(db) as s:  # kept under a name of its own, never one a client chose
        (photo,) = s.read("problems", where={"problem_id": pid})["photo"]
    assert photo.endswith(".jpg") and pid not in photo and (tmp / "photos" / photo).read_bytes() == jpeg
    flow = [("insp", "verify"), ("disp", "dispatch"), ("shop", "accept"), ("shop", "feed_back"),
            ("insp", "check"), ("insp", "rework"), ("shop", "accept"), ("shop", "feed_back"), ("insp", "check"),
            ("insp", "close")]
    for who, action in flow:
        r = client.post(f"/api/cases/{pid}/transition", headers=auth(tokens, who),
                        json={"action": action, "note": f"{who} {action}"})
        assert r.status_code == 200, (action, r.json)
    case = r.json
    assert case["status"] == "closed" and case["rework_count"] == 1 and case["on_time"] is True
    assert [s["action"] for s in case["steps"]] == ["report", "await_verification"] + [a for _, a in flow]
    assert [s["actor"] for s in case["steps"][2:]] == [w for w, _ in flow]
    r = client.post(f"/api/cases/{pid}/transition", headers=auth(tokens, "disp"), json={"action": "dispatch"})
    assert r.status_code == 409 and "closed" in r.json["error"]
    # the reporter sees their own report; the contact is nowhere in the answers
    mine = client.get("/api/cases", headers=auth(tokens, "pub")).json
    assert [c["problem_id"] for c in mine["cases"]] == [pid]
    assert "13800000000" not in json.dumps(mine) and "13800000000" not in client.get(
        "/api/layers/problems.geojson").get_data(as_text=True)


def test_refusals_say_why_with_the_right_status(server):
    client, tokens, _, _ = server
    pid = client.post("/api/problems", headers=auth(tokens, "insp"),
                      json={"lon": IN_F1[0], "lat": IN_F1[1], "category": "06036"}).json["problem_id"]
    def act(who, action, **kw):
        return client.post(f"/api/cases/{pid}/transition", headers=auth(tokens, who), json={"action": action, **kw})
    r = act("disp", "accept")
    assert r.status_code == 409 and "from reported it can: file, void" in r.json["error"]
    r = act("shop", "file")
    assert r.status_code == 403 and "role 'unit' may not file" in r.json["error"]
    assert act("insp", "file").status_code == 200
    assert act("disp", "dispatch", unit_id="U-SITE").json["unit_id"] == "U-SITE"  # 改派 at dispatch
    r = act("shop", "accept")
    assert r.status_code == 404  # no longer the shop's case: it may not even see it
    assert act("site", "accept").json["status"] == "processing"
    assert act("insp", "fly").status_code == 409
    assert client.post(f"/api/cases/{pid}/transition", json={"action": "file"}).status_code == 401
    assert client.post(f"/api/cases/{pid}/transition", headers=auth(tokens, "insp"), data="x").status_code == 400
    assert client.post("/api/cases/nope/transition", headers=auth(tokens, "insp"),
                       json={"action": "file"}).status_code == 404
    forged = client.post("/api/problems", json={"lon": IN_F1[0], "lat": IN_F1[1], "category": "06010",
                                                "photo": "../../etc/passwd", "problem_id": "MINE", "attrs": "x"})
    assert forged.status_code == 201 and forged.json["problem_id"] != "MINE"
    with open_store(server[2]) as s:
        row = s.read("problems", where={"problem_id": forged.json["problem_id"]}).iloc[0]
    assert row["photo"] is None and row["attrs"] is None
    r = client.post("/api/problems", headers=auth(tokens, "plan"), json={"lon": 118.78, "lat": 32.04,
                                                                        "category": "06010"})
    assert r.status_code == 403
    r = client.post("/api/problems", json={"lon": 118.78, "lat": 32.04, "category": "99999"})
    assert r.status_code == 400 and "category" in r.json["error"]
    r = client.post("/api/problems", content_type="multipart/form-data",
                    data={"lon": "118.78", "lat": "32.04", "category": "06010",
                          "photo": (io.BytesIO(b"GIF89a" + b"0" * 64), "x.gif")})
    assert r.status_code == 400 and "not a JPEG, PNG or WebP" in r.json["error"]


def test_case_list_pages_and_filters(server):
    client, tokens, _, _ = server
    ids = []
    for i, cat in enumerate(["06010", "06036", "06010", "09005", "06010"]):
        r = client.post("/api/problems", headers=auth(tokens, "insp"),
                        json={"lon": 118.7801 + i * 0.0008, "lat": 32.0401, "category": cat})
        ids.append(r.json["problem_id"])
    h = auth(tokens, "disp")
    p1 = client.get("/api/cases?per_page=2&page=1", headers=h).json
    p3 = client.get("/api/cases?per_page=2&page=3", headers=h).json
    assert p1["total"] == 5 and len(p1["cases"]) == 2 and len(p3["cases"]) == 1
    seen = [c["problem_id"] for p in (1, 2, 3) for c in
            client.get(f"/api/cases?per_page=2&page={p}", headers=h).json["cases"]]
    assert sorted(seen) == sorted(ids)
    assert client.get("/api/cases?category=06010", headers=h).json["total"] == 3
    assert client.get("/api/cases?category=06010,09005", headers=h).json["total"] == 4
    assert client.get("/api/cases?category=06010,09005&unit=U-SHOP", headers=h).json["total"] == 1
    assert client.get("/api/cases?bbox=118.7800,32.0400,118.7806,32.0405", headers=h).json["total"] == 1
    assert client.get("/api/cases?status=reported", headers=h).json["total"] == 5
    assert client.get("/api/cases?status=closed", headers=h).json["total"] == 0
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()  # dates are the city's
    assert client.get(f"/api/cases?since={today}&until={today}", headers=h).json["total"] == 5
    assert client.get(f"/api/cases?until={today - dt.timedelta(days=1)}", headers=h).json["total"] == 0
    assert client.get("/api/cases?status=lost", headers=h).status_code == 400
    assert client.get("/api/cases?per_page=100000", headers=h).status_code == 400
    assert client.get("/api/cases?bbox=1,2", headers=h).status_code == 400
    assert all(c["light"] == "green" for c in p1["cases"])


# Open311 GeoReport v2: field → type(s) (None allowed where the spec makes it optional)
W3C = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
SERVICE = {"service_code": str, "service_name": str, "description": str, "metadata": bool, "type": str,
           "keywords": str, "group": str}
REQUEST = {"service_request_id": str, "status": str, "status_notes": (str, None), "service_name": (str, None),
           "service_code": str, "description": (str, None), "agency_responsible": (str, None),
           "service_notice": (str, None), "requested_datetime": "w3c", "updated_datetime": ("w3c", None),
           "expected_datetime": ("w3c", None), "address": (str, None), "address_id": (str, None),
           "zipcode": (str, None), "lat": (float, None), "long": (float, None), "media_url": (str, None)}


def conforms(obj: dict, spec: dict):
    assert set(obj) == set(spec), set(obj) ^ set(spec)
    for k, want in spec.items():
        options = want if isinstance(want, tuple) else (want,)
        v = obj[k]
        ok = any((o is None and v is None) or (o == "w3c" and isinstance(v, str) and W3C.match(v))
                 or (isinstance(o, type) and isinstance(v, o) and not (o is float and isinstance(v, bool)))
                 for o in options)
        assert ok, (k, v)


def test_open311_answers_follow_the_spec(server):
    client, tokens, _, _ = server
    services = client.get("/open311/v2/services.json").json
    assert len(services) >= 90
    for s in services:
        conforms(s, SERVICE)
        assert s["type"] in ("realtime", "batch", "blackbox")
    assert {"06010", "08004", "09006"} <= {s["service_code"] for s in services}
    definition = client.get("/open311/v2/services/06010.json").json
    assert definition == {"service_code": "06010", "attributes": []}
    err = client.get("/open311/v2/services/00000.json")
    assert err.status_code == 404 and set(err.json[0]) == {"code", "description"}

    r = client.post("/open311/v2/requests.json", data={
        "service_code": "06010", "lat": str(IN_F1[1]), "long": str(IN_F1[0]), "description": "路边垃圾",
        "address_string": "中山路1号", "email": "a@example.org", "api_key": tokens["insp"]})
    assert r.status_code == 200
    (created,) = r.json
    assert set(created) == {"service_request_id", "service_notice", "account_id"}
    assert isinstance(created["service_request_id"], str) and "<b>甲</b>商店" in created["service_notice"]
    rid = created["service_request_id"]
    (one,) = client.get(f"/open311/v2/requests/{rid}.json").json
    conforms(one, REQUEST)
    assert (one["status"], one["agency_responsible"], one["address"]) == ("open", "<b>甲</b>商店", "中山路1号")
    assert one["lat"] == pytest.approx(IN_F1[1]) and one["long"] == pytest.approx(IN_F1[0])
    assert "a@example.org" not in json.dumps(one)

    dup = client.post("/open311/v2/requests.json", data={"service_code": "06010", "lat": str(IN_F1[1]),
                                                         "long": str(IN_F1[0] + 0.0001)}).json[0]
    assert rid in dup["service_notice"]  # linked to the open case, said so
    other = client.post("/open311/v2/requests.json", data={"service_code": "09006", "lat": "32.0402",
                                                           "long": "118.7808"}).json[0]["service_request_id"]
    h = auth(tokens, "insp")
    for action, who in [("verify", "insp"), ("dispatch", "disp"), ("accept", "site"), ("feed_back", "site"),
                        ("check", "insp"), ("close", "insp")]:
        assert client.post(f"/api/cases/{other}/transition", headers=auth(tokens, who),
                           json={"action": action}).status_code == 200
    listed = client.get("/open311/v2/requests.json").json
    for item in listed:
        conforms(item, REQUEST)
    assert {i["service_request_id"] for i in listed} == {rid, dup["service_request_id"], other}
    closed = client.get("/open311/v2/requests.json?status=closed").json
    assert [i["service_request_id"] for i in closed] == [other]
    assert {i["service_request_id"] for i in client.get("/open311/v2/requests.json?status=open").json} == \
        {rid, dup["service_request_id"]}
    assert [i["service_code"] for i in client.get("/open311/v2/requests.json?service_code=09006").json] == ["09006"]
    both = client.get(f"/open311/v2/requests.json?service_request_id={rid},{other}").json
    assert {i["service_request_id"] for i in both} == {rid, other}
    assert client.get("/open311/v2/requests.json?end_date=2020-01-01T00:00:00Z").json == []
    assert client.get("/open311/v2/requests.json?start_date=nonsense").status_code == 400
    bad = client.post("/open311/v2/requests.json", data={"service_code": "06010"})
    assert bad.status_code == 400 and "lat and long" in bad.json[0]["description"]
    bad = client.post("/open311/v2/requests.json", data={"service_code": "06010", "lat": "1", "long": "2",
                                                         "api_key": "wrong"})
    assert bad.status_code == 403 and bad.json[0]["code"] == 403  # the spec's status for a bad api_key
    assert client.get("/open311/v2/tokens/1.xml").data.startswith(b'<?xml')  # errors in the spec's format
    assert client.get("/open311/v2/services.csv").status_code == 400
    assert h  # the inspector's token also works as a header


def test_a_server_can_refuse_anonymous_reports(server):
    _, tokens, db, tmp = server
    closed = create_app({"DB": db, "PHOTOS": str(tmp / "photos"), "REPORTS_NEED_TOKEN": True}).test_client()
    data = {"lon": IN_F1[0], "lat": IN_F1[1], "category": "06010"}
    r = closed.post("/api/problems", json=data)
    assert r.status_code == 401 and "token" in r.json["error"]
    assert closed.post("/api/problems", json=data, headers=auth(tokens, "pub")).status_code == 201
