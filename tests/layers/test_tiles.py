"""The GeoPackage's tile encoder (layers.tiles.encode_layer, geometry commands by numpy) decodes,
with mapbox_vector_tile's own decoder, to what mapbox_vector_tile's encoder makes of the same
features: polygons with holes, multipolygons, lines, multilines, points, multipoints, repeated
points, rings that rounding collapsed, and every kind of property value. Times come out in city
time however they were written, and the tile cache keeps to its size."""

import mapbox_vector_tile
import numpy as np
import pytest
import shapely

from layers import tiles

SQUARE = shapely.Polygon([(0, 0), (0, 100), (100, 100), (100, 0)], [[(10, 10), (20, 10), (20, 20), (10, 20)]])
CASES = {
    "polygons": [SQUARE, shapely.MultiPolygon([shapely.box(200, 200, 300, 260), shapely.box(400, 0, 450, 40)]),
                 shapely.Polygon([(500, 500), (500, 500), (600, 500), (600, 600), (500, 600)]),  # a repeated point
                 shapely.box(-64, -64, 4160, 4160)],
    "lines": [shapely.LineString([(0, 0), (10, 10), (10, 10), (40, 10)]),
              shapely.MultiLineString([[(100, 100), (200, 100)], [(300, 300), (300, 350), (310, 360)]]),
              shapely.LineString([(5, 5), (5, 5)])],  # nothing left once the repeat is gone
    "points": [shapely.Point(1, 2), shapely.MultiPoint([(10, 10), (20, 30), (4000, 4000)]), shapely.Point(4096, 0)],
}


def decoded(body: bytes) -> list[dict]:
    return mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})["t"]["features"]


def reference(geoms, props) -> list[dict]:
    features = [{"geometry": g, "id": i + 1, "properties": {k: v[i] for k, v in props.items() if v[i] is not None}}
                for i, g in enumerate(geoms)]
    return decoded(mapbox_vector_tile.encode([{"name": "t", "features": features}], default_options={
        "extents": tiles.EXTENT, "y_coord_down": True, "check_winding_order": True}))


@pytest.mark.parametrize("kind", list(CASES))
def test_the_encoder_matches_mapbox_vector_tile(kind):
    geoms = shapely.orient_polygons(np.array(CASES[kind], dtype=object), exterior_cw=False)
    n = len(geoms)
    props = {"name": ["甲", None, "甲"][:n] + ["乙"] * (n - 3), "count": [1, -2, 3][:n] + [0] * (n - 3),
             "share": [0.5, None, 2.25][:n] + [1.0] * (n - 3), "open": [True, False, None][:n] + [True] * (n - 3)}
    ours = decoded(tiles.encode_layer("t", np.arange(1, n + 1), geoms, props))
    assert ours == reference(geoms, props)
    assert ours  # something was encoded


def test_a_layer_with_nothing_left_is_no_tile():
    assert tiles.encode_layer("t", np.array([1]), np.array([shapely.LineString([(5, 5), (5, 5)])]), {}) == b""


def test_tile_geometries_clip_round_and_orient_on_the_grid():
    z, x, y = 16, 54_000, 26_000
    w, s, e, n = tiles.lonlat_bbox(z, x, y, margin=0)
    inside = shapely.box(w + (e - w) * 0.2, s + (n - s) * 0.2, w + (e - w) * 0.4, s + (n - s) * 0.4)
    across = shapely.box(w - (e - w), s, w + (e - w) / 2, n)  # half of it outside the tile
    outside = shapely.box(e + (e - w), s, e + 2 * (e - w), n)
    geoms, keep = tiles.tile_geometries(np.array([inside, across, outside]), z, x, y)
    assert keep.tolist() == [True, True, False]
    coords = shapely.get_coordinates(geoms)
    assert np.array_equal(coords, np.round(coords)) and coords.min() >= -tiles.BUFFER
    assert coords.max() <= tiles.EXTENT + tiles.BUFFER
    assert all(shapely.is_ccw(g.exterior) for g in geoms)  # y down: clockwise on screen, as MVT wants
    assert geoms[0].bounds == pytest.approx((819, 2458, 1638, 3277), abs=1)  # y down: north is 0


def test_a_broken_footprint_is_drawn_repaired_and_a_collapsed_one_is_left_out():
    """OSM has both (the demo city's buildings at z14 did): a self-crossing footprint that the
    grid cannot round as it is, and a ring folded back on itself (no area), which rounding
    turns into a line that a polygon layer cannot hold. The tile is made all the same."""
    z, x, y = 14, 13_500, 6_500
    w, s, e, n = tiles.lonlat_bbox(z, x, y, margin=0)
    dx, dy = (e - w) / 100, (n - s) / 100
    at = lambda i, j: (w + i * dx, s + j * dy)  # noqa: E731
    bowtie = shapely.Polygon([at(10, 10), at(30, 30), at(30, 10), at(10, 30)])
    folded = shapely.Polygon([at(50, 50), at(50.003, 60), at(50, 50)])
    square = shapely.Polygon([at(70, 70), at(70, 80), at(80, 80), at(80, 70)])
    geoms, keep = tiles.tile_geometries(np.array([bowtie, folded, square]), z, x, y)
    assert keep.tolist() == [True, False, True]
    assert shapely.is_valid(geoms).all() and set(shapely.get_type_id(geoms).tolist()) <= {3, 6}
    assert shapely.area(geoms[0]) == pytest.approx(0.5 * 40.96 ** 2 * 400, rel=0.05)  # both wings kept
    assert decoded(tiles.encode_layer("t", np.array([1, 3]), geoms, {}))


def test_the_cache_holds_at_most_its_bytes_dropping_the_least_recently_used():
    cache = tiles.TileCache(max_bytes=250)
    for key in "abc":
        cache.put(key, tiles.Tile((1,), "f", b"x" * 100))
        if key == "b":
            assert cache.get("a") is not None  # a is used again: b is now the oldest
    assert cache.get("b") is None and cache.get("a") and cache.get("c") and cache.bytes == 200
    cache.put("c", tiles.Tile((2,), "g", b"y" * 10))
    assert cache.bytes == 110 and cache.get("c").body == b"y" * 10


def test_a_geopackage_s_times_come_out_in_city_time_however_they_were_written():
    ours, gdal = "2026-07-07T11:02:31.000Z", "2026-07-07T13:02:31+02:00"  # the same instant
    assert tiles._city_times([ours, None], "Europe/Berlin") == ["2026-07-07T13:02:31+02:00", None]
    assert tiles._city_times([gdal, None], "Europe/Berlin") == ["2026-07-07T13:02:31+02:00", None]
    assert tiles._city_times(["2026-01-07T11:02:31.000Z"], "Europe/Berlin") == ["2026-01-07T12:02:31+01:00"]
