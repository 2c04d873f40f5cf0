"""On an AMap (高德) basemap, whose tiles are in GCJ-02, our WGS 84 layers must sit on it: a real
crossing of two Nanjing roads, served in the GCJ-02 tiles (?crs=gcj02) the map page asks for on
that basemap, lands where the published shift puts it (geo/crs.py, itself held to published
values in tests/geo/test_crs.py), within a metre, on both stores."""

import mapbox_vector_tile
import pyproj
import shapely

from geo.crs import wgs84_to_gcj02
from layers import tiles
from layers.importer import import_osm
from layers.store import open_store
from webmap.app import create_app

AROUND = (118.7870, 32.0430, 118.7925, 32.0475)  # 太平北路 × 长江路, Nanjing
GEOD = pyproj.Geod(ellps="WGS84")


def crossing(store, a: str, b: str) -> shapely.Point:
    roads = store.read("roads")
    lines = [shapely.union_all(roads.loc[roads["name"] == n].geometry.to_numpy()) for n in (a, b)]
    point = lines[0].intersection(lines[1])
    assert point.geom_type == "Point", point  # one crossing
    return point


def lonlat_of_tile_point(x: float, y: float, z: int, tx: int, ty: int) -> tuple[float, float]:
    minx, miny, maxx, _ = tiles.tile_bounds(z, tx, ty)
    k = (maxx - minx) / tiles.EXTENT
    lon, lat = tiles.to_lonlat(minx + x * k, miny + y * k)  # mapbox-vector-tile decodes y up
    return float(lon), float(lat)


def test_a_real_crossing_lands_on_the_gcj02_basemaps_crossing_within_a_metre(store_url, nanjing_osm):
    with open_store(store_url) as s:
        import_osm(s, nanjing_osm, bbox=AROUND)
        cross = crossing(s, "太平北路", "长江路")
    client = create_app({"db": store_url, "access_log": False}).test_client()
    glon, glat = (float(v) for v in wgs84_to_gcj02(cross.x, cross.y))  # where AMap draws the crossing
    assert GEOD.inv(cross.x, cross.y, glon, glat)[2] > 300  # the shift is hundreds of metres
    z = 18
    tx, ty = tiles.tile_of(glon, glat, z)
    got = client.get(f"/tiles/roads/{z}/{tx}/{ty}.pbf?crs=gcj02")
    assert got.status_code == 200
    features = mapbox_vector_tile.decode(got.data)["roads"]["features"]
    lines = [shapely.union_all([shapely.geometry.shape(f["geometry"]) for f in features
                                if f["properties"].get("name") == n]) for n in ("太平北路", "长江路")]
    at = lines[0].intersection(lines[1])
    assert at.geom_type == "Point", at
    lon, lat = lonlat_of_tile_point(at.x, at.y, z, tx, ty)
    assert GEOD.inv(lon, lat, glon, glat)[2] < 1.0  # on the basemap's crossing, within a metre
