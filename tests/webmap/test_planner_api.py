"""The planner's API (webmap/planner_api.py) through the real app on both stores: a zone's
panel, search, map and QA layers; edits that route at once with no restart; a stale save's
409 naming who and when; trims previewed then saved; a swallow refused; history with who,
when and why; units listed, filled in and merged; a hostile unit name kept as text; and
every write and planner read refused to unit users."""

import pytest
import shapely
from shapely.geometry import mapping

from layers import zones
from layers.store import open_store
from layers.users import add_user, issue_token
from tests.layers.test_zone_edit import XSS, box, grid_city
from webmap.app import create_app

PASSWORD = "correct horse 42"


@pytest.fixture
def api(store_url, tmp_path):
    with grid_city(store_url) as s:
        tokens = {}
        for name, role, unit in [("plan", "planner", None), ("plan2", "planner", None), ("insp", "inspector", None),
                                 ("shop", "unit", "U-A"), ("pub", "public", None)]:
            add_user(s, name, role, PASSWORD, unit)
            tokens[name] = issue_token(s, name)
    app = create_app({"db": store_url, "secret_key": "k" * 40, "photos": str(tmp_path / "photos")})
    client = app.test_client()

    def call(method, path, who="plan", **kw):
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
        return client.open(path, method=method, headers=headers, **kw)

    return call, store_url


def middle(x, y):
    """A lon/lat point at grid cell coordinates."""
    return box(x, y, x, y).centroid


def test_a_point_routes_to_the_new_unit_right_after_the_edit(api):
    call, _ = api
    p = middle(0.5, 0.5)  # inside F000001
    before = call("GET", f"/api/route?lon={p.x}&lat={p.y}", who=None).json
    assert (before["zone_code"], before["unit_id"], before["zone_version"]) == ("F000001", "U-A", 1)
    r = call("POST", "/api/planner/zones/F000001/assign", json={"unit_id": "U-B", "note": "换人", "base_version": 1})
    assert r.status_code == 200 and r.json["version"] == 2 and r.json["unit"]["name"] == XSS
    after = call("GET", f"/api/route?lon={p.x}&lat={p.y}", who=None).json
    assert (after["zone_code"], after["unit_id"], after["zone_version"]) == ("F000001", "U-B", 2)
    # a redrawn zone too: the middle zone takes half of its east neighbour
    r = call("POST", "/api/planner/zones/F000005/geometry",
             json={"geometry": mapping(box(1, 1, 2.5, 2)), "base_version": 1, "note": "扩展"})
    q = middle(2.25, 1.5)
    hit = call("GET", f"/api/route?lon={q.x}&lat={q.y}", who=None).json
    assert (hit["zone_code"], hit["unit_id"]) == ("F000005", "U-B")


def test_a_stale_save_gets_409_naming_who_changed_the_zone_and_when(api):
    call, _ = api
    assert call("POST", "/api/planner/zones/F000005/assign", who="plan2",
                json={"unit_id": "U-A", "base_version": 1}).status_code == 200
    r = call("POST", "/api/planner/zones/F000005/geometry",
             json={"geometry": mapping(box(1, 1, 1.5, 2)), "base_version": 1})
    assert r.status_code == 409
    assert "changed by plan2 at " in r.json["error"] and r.json["at"].endswith("+08:00")
    assert (r.json["status"], r.json["current_version"], r.json["by"]) == (409, 2, "plan2")
    assert call("POST", "/api/planner/zones/F000005/assign", json={"unit_id": "U-A"}).status_code == 400


def test_trims_are_shown_by_a_dry_run_then_saved_and_a_swallow_is_refused(api):
    call, url = api
    grown = {"geometry": mapping(box(1, 1, 2.5, 2)), "base_version": 1, "note": "扩展"}
    preview = call("POST", "/api/planner/zones/F000005/geometry", json=grown | {"dry_run": True}).json
    assert preview["dry_run"] is True and [t["code"] for t in preview["trimmed"]] == ["F000006"]
    assert preview["zone"]["version"] == 2 and preview["zone"]["area_m2"] > 600
    assert [h["version"] for h in call("GET", "/api/planner/zones/F000006/history").json] == [1]  # nothing written
    saved = call("POST", "/api/planner/zones/F000005/geometry", json=grown).json
    assert saved["dry_run"] is False and saved["trimmed"] == preview["trimmed"]
    assert call("GET", "/api/planner/zones/F000006").json["version"] == 2
    swallow = call("POST", "/api/planner/zones/F000005/geometry",
                   json={"geometry": mapping(box(1, 1, 3, 2.0)), "base_version": 2})
    assert swallow.status_code == 409 and [c["code"] for c in swallow.json["conflicts"]] == ["F000006"]
    assert swallow.json["conflicts"][0]["geometry"]["type"] == "MultiPolygon"
    with open_store(url) as s:
        res = zones.check(s)
        assert res["overlaps"] == 0 and zones.current(s.read("zones"))["code"].is_unique


def test_create_split_merge_restore_and_history_with_who_when_and_why(api):
    call, url = api
    made = call("POST", "/api/planner/zones", json={"geometry": mapping(box(3, 0, 4, 1)), "kind": "frontage",
                                                   "unit_id": "U-A", "note": "新店"})
    assert made.status_code == 201 and made.json["zone"]["code"] == "F000010"
    line = {"type": "LineString", "coordinates": [list(middle(3.5, -0.5).coords[0]), list(middle(3.5, 1.5).coords[0])]}
    split = call("POST", "/api/planner/zones/F000010/split", json={"line": line, "base_version": 1}).json
    assert [z["code"] for z in split["zones"]] == ["F000010", "F000011"]
    merged = call("POST", "/api/planner/zones/merge", json={"codes": ["F000010", "F000011"],
                                                           "base_versions": {"F000010": 2, "F000011": 1}})
    assert merged.status_code == 200 and merged.json["version"] == 3
    back = call("POST", "/api/planner/zones/F000010/restore", json={"version": 1, "base_version": 3, "note": "撤销"})
    assert back.status_code == 200 and back.json["version"] == 4
    hist = call("GET", "/api/planner/zones/F000010/history").json
    assert [(h["version"], h["change"], h["by"]) for h in hist] == [
        (1, "create", "plan"), (2, "split", "plan"), (3, "merge", "plan"), (4, "restore", "plan")]
    assert hist[0]["note"] == "新店" and hist[3]["note"] == "撤销" and all(h["at"].endswith("+08:00") for h in hist)
    assert call("GET", "/api/planner/zones/F000011").status_code == 404  # merged away, its history kept
    assert len(call("GET", "/api/planner/zones/F000011/history").json) == 1
    with open_store(url) as s:
        assert zones.check(s)["overlaps"] == 0


def test_panel_search_map_and_qa_carry_a_hostile_unit_name_as_text(api):
    call, _ = api
    panel = call("GET", "/api/planner/zones/F000002")
    assert panel.mimetype == "application/json" and panel.json["unit"]["name"] == XSS
    assert panel.json["kind_zh"] == "门前三包责任区" and panel.json["unit"]["person"] is None
    found = call("GET", "/api/planner/search?q=img").json
    assert {z["code"] for z in found["zones"]} == {"F000002", "F000005", "F000008"}
    assert found["units"] == [{"unit_id": "U-B", "name": XSS, "zones": ["F000002", "F000005", "F000008"]}]
    fc = call("GET", f"/api/planner/zones.geojson?bbox={box(0, 0, 1, 1).bounds[0]},{box(0, 0, 1, 1).bounds[1]},"
                     f"{box(0, 0, 1, 1).bounds[2]},{box(0, 0, 1, 1).bounds[3]}&color=unit").json
    assert {f["properties"]["code"] for f in fc["features"]} >= {"F000001"}
    assert call("GET", "/api/planner/zones.geojson?color=nope").status_code == 400
    qa = call("GET", "/api/planner/qa").json
    placeholders = [f for f in qa["features"] if f["properties"]["kind"] == "placeholder_unit"]
    assert sorted(f["properties"]["codes"][0] for f in placeholders) \
        == ["F000003", "F000006", "F000009"]
    units = call("GET", "/api/units?q=img").json
    assert units["total"] == 1 and units["units"][0]["name"] == XSS


def test_units_filled_in_and_a_placeholder_merged(api):
    call, _ = api
    listed = call("GET", "/api/units?placeholder=1").json
    assert [u["unit_id"] for u in listed["units"]] == ["U-P"] and listed["units"][0]["zones"] == 3
    r = call("POST", "/api/units/U-P", json={"name": "乙便利店", "person": "李四", "phone": None, "note": "走访"})
    assert r.status_code == 200
    assert (r.json["name"], r.json["placeholder"], r.json["person"]) == ("乙便利店", False, "李四")
    assert "person" not in call("GET", "/api/units?q=乙便利店", who="insp").json["units"][0]  # for planners only
    merged = call("POST", "/api/units/U-P/merge", json={"into": "U-A", "note": "同一商户"})
    assert merged.status_code == 200 and merged.json["zones_moved"] == ["F000003", "F000006", "F000009"]
    assert call("GET", "/api/planner/zones/F000006").json["unit"]["unit_id"] == "U-A"
    assert call("POST", "/api/units/U-P/merge", json={"into": "U-A"}).status_code == 409


@pytest.mark.parametrize("who, status", [("shop", 403), ("pub", 403), (None, 401)])
def test_unit_users_and_the_public_may_not_write_or_read_the_planners_data(api, who, status):
    call, url = api
    geometry = mapping(box(1, 1, 1.5, 2))
    writes = [("/api/planner/zones/F000001/assign", {"unit_id": "U-B", "base_version": 1}),
              ("/api/planner/zones/F000005/geometry", {"geometry": geometry, "base_version": 1}),
              ("/api/planner/zones", {"geometry": mapping(box(3, 0, 4, 1)), "kind": "frontage", "unit_id": "U-A"}),
              ("/api/planner/zones/F000005/split", {"line": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
                                                    "base_version": 1}),
              ("/api/planner/zones/merge", {"codes": ["F000001", "F000002"]}),
              ("/api/planner/zones/F000001/restore", {"version": 1, "base_version": 1}),
              ("/api/units/U-P", {"name": "x"}), ("/api/units/U-P/merge", {"into": "U-A"})]
    for path, body in writes:
        assert call("POST", path, who=who, json=body).status_code == status, path
    for path in ("/api/planner/zones/F000001", "/api/planner/zones/F000001/history", "/api/planner/search?q=F",
                 "/api/planner/zones.geojson", "/api/planner/qa", "/api/units"):
        assert call("GET", path, who=who).status_code == status, path
    with open_store(url) as s:
        assert s.count("zones") == 9 and s.read("units", where={"unit_id": "U-P"})["name"].iloc[0] != "x"
    assert call("GET", "/api/planner/zones/F000001", who="insp").status_code == 200  # staff may read
    assert call("POST", "/api/planner/zones/F000001/assign", who="insp",
                json={"unit_id": "U-B", "base_version": 1}).status_code == 403


def test_bad_shapes_are_400_naming_the_field(api):
    call, _ = api
    for body, words in [({"geometry": {"type": "Point", "coordinates": [1, 2]}, "base_version": 1}, "Polygon"),
                        ({"geometry": mapping(box(0, 0, 0.01, 0.01)), "base_version": 1}, "smaller than"),
                        ({"geometry": {"type": "Polygon", "coordinates": [[[500, 1], [501, 1], [501, 2], [500, 1]]]},
                          "base_version": 1}, "longitude"),
                        ({"geometry": mapping(box(1, 1, 1.5, 2)), "base_version": "1"}, "base_version")]:
        r = call("POST", "/api/planner/zones/F000005/geometry", json=body)
        assert r.status_code == 400 and words in r.json["error"], r.json
    line = {"type": "LineString", "coordinates": [list(middle(0.2, 0.2).coords[0]), list(middle(0.3, 0.3).coords[0])]}
    r = call("POST", "/api/planner/zones/F000001/split", json={"line": line, "base_version": 1})
    assert r.status_code == 400 and "does not cut" in r.json["error"]
    assert shapely.geometry.shape(call("GET", "/api/planner/zones/F000001").json["geometry"]).equals(box(0, 0, 1, 1))
