"""Vector tiles (GET /tiles/{layer}/{z}/{x}/{y}.pbf) through the real app on both stores,
decoded with mapbox_vector_tile as a map client would: a zone is in the tile of its place with
who answers by name, far and zoomed-out tiles are empty, a zone edit shows in the next tile
(the GeoPackage's tile cache follows the store's version) and no private column reaches any tile."""

import mapbox_vector_tile
import pytest

from layers import tiles, units_edit, zone_edit
from layers.store import open_store
from layers.users import add_user, issue_token
from tests.layers.test_zone_edit import XSS, box, grid_city
from webmap.app import create_app

PHONE = "13912345678"
PERSON = "张秘密"


@pytest.fixture
def app(store_url, tmp_path):
    with grid_city(store_url) as s:
        add_user(s, "insp", "inspector", "correct horse 42")
        token = issue_token(s, "insp")
        units_edit.edit(s, "U-A", {"phone": PHONE, "person": PERSON})
    app = create_app({"db": store_url, "secret_key": "k" * 40, "photos": str(tmp_path / "photos")})
    return app.test_client(), store_url, token


def middle(x, y):
    return box(x, y, x, y).centroid


def fetch(client, layer, z, x, y, token=None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(f"/tiles/{layer}/{z}/{x}/{y}.pbf", headers=headers)


def features_at(client, layer, point, z=16, token=None) -> list[dict]:
    x, y = tiles.tile_of(point.x, point.y, z)
    r = fetch(client, layer, z, x, y, token)
    assert r.status_code == 200 and r.mimetype == "application/vnd.mapbox-vector-tile"
    return mapbox_vector_tile.decode(r.data).get(layer, {}).get("features", [])


def by_code(features) -> dict:
    return {f["properties"]["code"]: f for f in features}


def test_a_zone_is_in_the_tile_of_its_place_with_its_unit_by_name(app):
    client, _, _ = app
    found = by_code(features_at(client, "zones", middle(0.5, 0.5)))
    zone = found["F000001"]
    assert zone["properties"]["unit_name"] == "甲商店" and zone["properties"]["kind"] == "frontage"
    assert zone["geometry"]["type"] in ("Polygon", "MultiPolygon")
    # its corner lands where the tile math puts it (tile units, y up as the decoder gives them)
    xs = [p[0] for p in zone["geometry"]["coordinates"][0]]
    assert 0 - tiles.BUFFER <= min(xs) < max(xs) <= tiles.EXTENT + tiles.BUFFER


def test_tiles_without_zones_are_empty_and_small(app):
    client, _, _ = app
    far = fetch(client, "zones", 16, 100, 100)  # the Pacific off Alaska
    assert far.status_code == 200 and len(far.data) < 50
    assert mapbox_vector_tile.decode(far.data) == {}


def test_below_the_minimum_zoom_a_tile_is_empty(app):
    client, _, _ = app
    p = middle(1.5, 1.5)
    assert features_at(client, "zones", p, z=tiles.MIN_ZOOM["zones"])  # drawn from its minimum zoom
    x, y = tiles.tile_of(p.x, p.y, tiles.MIN_ZOOM["zones"] - 1)
    r = fetch(client, "zones", tiles.MIN_ZOOM["zones"] - 1, x, y)
    assert r.status_code == 200 and r.data == b""


def test_an_unknown_layer_or_tile_is_404(app):
    client, _, _ = app
    assert fetch(client, "users", 16, 1, 1).status_code == 404
    assert fetch(client, "zones", 3, 8, 1).status_code == 404


def test_a_zone_edit_shows_in_the_next_tile(app):
    client, url, _ = app
    p = middle(0.5, 0.5)
    assert by_code(features_at(client, "zones", p))["F000001"]["properties"]["unit_name"] == "甲商店"
    with open_store(url) as s:
        zone_edit.assign(s, "F000001", "U-B", note="换人")
    after = by_code(features_at(client, "zones", p))["F000001"]["properties"]
    assert after["unit_name"] == XSS and after["primary_unit"] == "U-B" and after["version"] == 2


def test_no_private_column_reaches_a_tile(app):
    client, url, token = app
    with open_store(url) as s:
        zone_edit.assign(s, "F000002", "U-A", note=f"联系 {PHONE}")  # a planner's note: staff only
    p = middle(1.5, 1.5)
    for layer in ("zones", "buildings", "roads", "problems"):
        for z in range(12, 19):
            x, y = tiles.tile_of(p.x, p.y, z)
            body = fetch(client, layer, z, x, y).data
            assert PHONE.encode() not in body and PERSON.encode() not in body
    public = by_code(features_at(client, "zones", p))
    staff = by_code(features_at(client, "zones", p, token=token))
    assert "change_note" not in public["F000002"]["properties"]
    assert staff["F000002"]["properties"]["change_note"] == f"联系 {PHONE}"  # staff see more
