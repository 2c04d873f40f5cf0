"""The Flask app through its test client, on a GeoPackage store with real Nanjing data."""

import pytest

from webmap.app import create_app
from webmap.assets import LEAFLET_DIST


@pytest.fixture
def client(nanjing_gpkg):
    return create_app({"DB": nanjing_gpkg}).test_client()


def test_page_shows_attribution_local_leaflet_and_chinese_labels(client):
    html = client.get("/").get_data(as_text=True)
    assert "© OpenStreetMap contributors" in html
    assert "城市管理责任区地图" in html and "建筑物" in html and 'lang="zh-CN"' in html
    if (LEAFLET_DIST / "leaflet.js").exists():
        assert 'src="vendor/leaflet/leaflet.js"' in html and "cdn.jsdelivr" not in html
    assert '"features"' not in html  # data is fetched by the browser, never embedded


def test_english_switch(client):
    html = client.get("/?lang=en").get_data(as_text=True)
    assert "city responsibility map" in html and "Buildings" in html and 'lang="en"' in html


def test_layer_api_filters_by_bbox(client):
    everything = client.get("/api/layers/pois.geojson").get_json()
    box = client.get("/api/layers/pois.geojson?bbox=118.776,32.038,118.786,32.044").get_json()
    assert len(everything["features"]) == 259
    assert 0 < len(box["features"]) < 259
    for f in box["features"]:
        x, y = f["geometry"]["coordinates"]
        assert 118.776 <= x <= 118.786 and 32.038 <= y <= 32.044
    assert "中央商场" in {f["properties"]["name"] for f in box["features"]}
    limited = client.get("/api/layers/buildings.geojson?limit=10").get_json()
    assert len(limited["features"]) == 10 and limited["truncated"] is True


def test_layer_list_and_errors_are_json(client):
    info = client.get("/api/layers").get_json()
    assert {i["name"]: i["count"] for i in info["layers"]}["roads"] == 384
    w, s, e, n = info["extent"]
    assert 118.7 < w < e < 118.9 and 32.0 < s < n < 32.1
    for url, code in [("/api/layers/shops.geojson", 404), ("/api/layers/pois.geojson?bbox=1,2", 400),
                      ("/api/layers/pois.geojson?bbox=5,5,1,1", 400),
                      ("/api/layers/pois.geojson?limit=many", 400)]:
        r = client.get(url)
        assert r.status_code == code and r.get_json()["error"]


def test_empty_store_page_says_what_to_do(tmp_path):
    html = create_app({"DB": str(tmp_path / "e.gpkg")}).test_client().get("/").get_data(as_text=True)
    assert "scripts/zonemap demo" in html
