"""gzip, ETag and 304 (webmap/tiles.py compress_and_tag, called by app.py's after_request):
a phone downloads a map layer or a tile compressed, and once only while it has not changed."""

import gzip

from layers import tiles
from tests.webmap.test_tiles import app, fetch, middle  # noqa: F401


def test_tiles_and_json_are_gzipped_and_answer_304_to_their_etag(app):  # noqa: F811 - the fixture
    client, _, _ = app
    p = middle(1.5, 1.5)
    x, y = tiles.tile_of(p.x, p.y, 18)  # a big tile: the grid's zones fill it
    plain = fetch(client, "zones", 18, x, y)
    packed = fetch(client, "zones", 18, x, y, **{"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in plain.headers and packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == plain.data and len(packed.data) < len(plain.data)
    assert "max-age" in packed.headers["Cache-Control"] and "Accept-Encoding" in packed.headers["Vary"]
    again = fetch(client, "zones", 18, x, y, **{"If-None-Match": packed.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    geo = client.get("/api/layers/zones.geojson", headers={"Accept-Encoding": "gzip"})
    assert geo.headers["Content-Encoding"] == "gzip" and b"F000001" in gzip.decompress(geo.data)
    same = client.get("/api/layers/zones.geojson", headers={"If-None-Match": geo.headers["ETag"]})
    assert same.status_code == 304
