"""The routes the inspector's and the unit's pages call, over HTTP on a real store: the map
view of cases, today's list, a unit's feed-back with photos before and after and who may see
them, a tile feature's record by its key, and the basemap settings with the pages' CSP."""

import io

import pytest
from PIL import Image

from layers.errors import InputError
from layers.settings import Settings
from layers.store import open_store
from layers.users import add_user, issue_token
from tests.layers.test_cases import IN_F1, city
from webmap.app import create_app

NAMES = [("insp", "inspector", None), ("disp", "dispatcher", None), ("shop", "unit", "U-SHOP"),
         ("site", "unit", "U-SITE"), ("pub", "public", None)]


@pytest.fixture
def web(tmp_path):
    db = str(tmp_path / "c.gpkg")
    city(db).close()
    tokens = {}
    with open_store(db) as s:
        for name, role, unit in NAMES:
            add_user(s, name, role, "a-long-password", unit)
            tokens[name] = {"Authorization": "Bearer " + issue_token(s, name)}
    app = create_app({"db": db, "photos": str(tmp_path / "photos"), "access_log": False})
    return app.test_client(), tokens, tmp_path / "photos"


def report(client, tokens, at=IN_F1, category="06010"):
    r = client.post("/api/problems", json={"lon": at[0], "lat": at[1], "category": category},
                    headers=tokens["insp"])
    assert r.status_code == 201, r.json
    return r.json["problem_id"]


def jpeg(size=(400, 200), orientation=None) -> bytes:
    """A real photo as a phone sends it: landscape pixels, turned upright by its EXIF tag."""
    img = Image.new("RGB", size, (200, 30, 30))
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    img.save(out, "JPEG", exif=exif)
    return out.getvalue()


def test_the_map_view_and_todays_list_need_a_session_and_keep_each_to_its_own(web):
    client, tokens, _ = web
    pid = report(client, tokens)
    box = "bbox=118.77,32.03,118.79,32.05"
    assert client.get(f"/api/cases/map?{box}").status_code == 401
    assert client.get("/api/cases/map?zoom=14", headers=tokens["insp"]).status_code == 400  # no view
    view = client.get(f"/api/cases/map?{box}&zoom=16", headers=tokens["insp"]).json
    assert view["mode"] == "points" and [p[0] for p in view["points"]] == [pid]
    assert view["points"][0][1:3] == pytest.approx(list(IN_F1))
    assert client.get(f"/api/cases/map?{box}&light=blue", headers=tokens["insp"]).status_code == 400
    # the case is the shop's: the construction site's unit sees none of it
    assert client.get(f"/api/cases/map?{box}", headers=tokens["site"]).json["total"] == 0
    assert client.get(f"/api/cases/map?{box}", headers=tokens["shop"]).json["total"] == 1
    due = client.get("/api/cases/due?near=118.78,32.04", headers=tokens["insp"])
    assert due.status_code == 200 and due.json["cases"] == []  # a fresh case is green: not due
    bad = client.get("/api/cases/due?near=north", headers=tokens["insp"])
    assert bad.status_code == 400 and "near=lon,lat" in bad.json["error"]


def test_a_unit_feeds_back_with_photos_that_staff_and_the_unit_see_and_nobody_else(web):
    client, tokens, folder = web
    pid = report(client, tokens)
    for action in ("file", "dispatch"):
        assert client.post(f"/api/cases/{pid}/transition", json={"action": action},
                           headers=tokens["disp"]).status_code == 200
    assert client.post(f"/api/cases/{pid}/transition", json={"action": "accept"},
                       headers=tokens["shop"]).status_code == 200
    # a refused move keeps no photo: the shop cannot close its own case
    refused = client.post(f"/api/cases/{pid}/transition", headers=tokens["shop"],
                          data={"action": "close", "before": (io.BytesIO(jpeg()), "a.jpg")})
    assert refused.status_code in (403, 409) and not list(folder.glob("*.jpg"))
    done = client.post(f"/api/cases/{pid}/transition", headers=tokens["shop"], data={
        "action": "feed_back", "note": "已清理",
        "before": (io.BytesIO(jpeg(orientation=6)), "before.jpg"), "after": (io.BytesIO(jpeg()), "after.jpg")})
    assert done.status_code == 200, done.json
    photos = done.json["photos"]
    assert [p["kind"] for p in photos] == ["before", "after"] and done.json["status"] == "fed_back"
    for who in ("insp", "disp", "shop"):
        full = client.get(photos[0]["url"], headers=tokens[who])
        assert full.status_code == 200 and full.mimetype == "image/jpeg" and len(full.data) > 500
    thumb = Image.open(io.BytesIO(client.get(photos[0]["thumb"], headers=tokens["insp"]).data))
    assert max(thumb.size) <= 320 and thumb.size[1] > thumb.size[0]  # the phone held it upright
    assert client.get(photos[0]["url"], headers=tokens["site"]).status_code == 404  # not its case
    assert client.get(photos[0]["url"]).status_code == 401
    shown = client.get(f"/api/cases/{pid}", headers=tokens["site"])
    assert shown.status_code == 404
    assert client.get(f"/api/cases/{pid}/photos/nope.jpg", headers=tokens["insp"]).status_code == 404
    assert client.get(f"/api/cases/{pid}/photos/..%2Fc.gpkg", headers=tokens["insp"]).status_code == 404
    # the public reporter of a case sees its state, never a photo
    pub = client.post("/api/problems", json={"lon": IN_F1[0] + 0.001, "lat": IN_F1[1], "category": "06012"},
                      headers=tokens["pub"]).json["problem_id"]
    mine = client.get(f"/api/cases/{pub}", headers=tokens["pub"]).json
    assert mine["photos"] == []


def test_a_clicked_tile_feature_gets_its_record_by_key_with_the_roles_columns(web):
    client, tokens, _ = web
    pid = report(client, tokens)
    zone = client.get("/api/layers/zones/F1.geojson")
    assert zone.status_code == 200 and zone.mimetype == "application/geo+json"
    props = zone.json["properties"]
    assert props["code"] == "F1" and props["unit_name"] == "<b>甲</b>商店"
    assert zone.json["geometry"]["type"] == "MultiPolygon"  # zones are kept as multipolygons
    problem = client.get(f"/api/layers/problems/{pid}.geojson").json["properties"]
    assert problem["unit_name"] == "<b>甲</b>商店" and "reporter" not in problem and "description" not in problem
    assert problem["reported_at"].endswith("+08:00")
    staff = client.get(f"/api/layers/problems/{pid}.geojson", headers=tokens["insp"]).json["properties"]
    assert staff["reporter"] == "insp"
    assert client.get("/api/layers/zones/NOPE.geojson").status_code == 404
    assert client.get("/api/layers/users/1.geojson").status_code == 404
    assert client.get("/api/layers/buildings/abc.geojson").status_code == 404


def test_the_basemap_setting_sets_the_pages_image_hosts(tmp_path):
    db = str(tmp_path / "b.gpkg")
    city(db).close()
    for basemap, host in (("none", None), ("osm", "https://tile.openstreetmap.org"),
                          ("amap", "https://*.is.autonavi.com")):
        page = create_app({"db": db, "basemap": basemap}).test_client().get("/")
        csp = page.headers["Content-Security-Policy"]
        images = next(p for p in csp.split("; ") if p.startswith("img-src"))
        assert images.split()[1:4] == ["'self'", "data:", "blob:"]
        assert (host in images) if host else images == "img-src 'self' data: blob:"
        assert ('"shift": "gcj02"' in page.get_data(as_text=True)) == (basemap == "amap")
    with pytest.raises(InputError, match="ZONEMAP_TIANDITU_KEY"):
        Settings.load({"basemap": "tianditu"})
    with pytest.raises(InputError, match="use none, osm, tianditu or amap"):
        Settings.load({"basemap": "google"})
    app = create_app({"db": db, "basemap": "tianditu", "tianditu_key": "abc123"})
    page = app.test_client().get("/").get_data(as_text=True)
    assert "tk=abc123" in page and "tianditu.gov.cn" in page
