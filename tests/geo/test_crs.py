import numpy as np
import pyproj
import pytest
import shapely

from geo import crs

# Published reference pairs (wandergis/coordtransform README, the implementation most Chinese
# map code follows): input (116.404, 39.915) in each direction.
REF_WGS_TO_GCJ = (116.41024449916938, 39.91640428150164)
REF_GCJ_TO_BD = (116.41036949371029, 39.92133699351021)
REF_BD_TO_GCJ = (116.39762729119315, 39.90865673957631)
REF_WGS_TO_BD = (116.41662724378733, 39.922699552216216)

_GEOD = pyproj.Geod(ellps="WGS84")


def metres(a, b):
    return _GEOD.inv(a[0], a[1], b[0], b[1])[2]


def test_forward_transforms_match_published_values():
    assert np.allclose(crs.wgs84_to_gcj02(116.404, 39.915), REF_WGS_TO_GCJ, rtol=0, atol=1e-12)
    assert np.allclose(crs.gcj02_to_bd09(116.404, 39.915), REF_GCJ_TO_BD, rtol=0, atol=1e-12)
    assert np.allclose(crs.wgs84_to_bd09(116.404, 39.915), REF_WGS_TO_BD, rtol=0, atol=1e-12)


def test_inverses_recover_the_published_inputs():
    # GCJ-02 → WGS 84 of the published forward value gives back the original point
    back = crs.gcj02_to_wgs84(*REF_WGS_TO_GCJ)
    assert metres(back, (116.404, 39.915)) < 0.01
    assert metres(crs.bd09_to_wgs84(*REF_WGS_TO_BD), (116.404, 39.915)) < 0.01
    # Baidu's own one-step inverse is within a few cm of ours
    assert metres(crs.bd09_to_gcj02(116.404, 39.915), REF_BD_TO_GCJ) < 0.5


def test_round_trips_over_china_are_better_than_half_a_metre():
    lon, lat = np.meshgrid(np.arange(73.7, 135.0, 0.37), np.arange(18.2, 53.5, 0.29))
    lon, lat = lon.ravel(), lat.ravel()
    inside = crs.in_china(lon, lat)
    assert inside.sum() > 10_000
    for fwd, inv in [(crs.wgs84_to_gcj02, crs.gcj02_to_wgs84), (crs.wgs84_to_bd09, crs.bd09_to_wgs84)]:
        back = inv(*fwd(lon, lat))
        err = _GEOD.inv(lon, lat, back[0], back[1])[2]
        assert err.max() < 0.5, f"{inv.__name__}: worst {err.max():.3f} m"
        shift = _GEOD.inv(lon, lat, *fwd(lon, lat))[2]
        assert shift[inside].min() > 10  # the offset really is applied (tens to hundreds of metres)


def test_points_outside_china_are_not_shifted():
    lon, lat = crs.wgs84_to_gcj02(-71.06, 42.36)
    assert (float(lon), float(lat)) == (-71.06, 42.36)
    assert np.allclose(crs.to_wgs84(-71.06, 42.36, "gcj02"), (-71.06, 42.36))


@pytest.mark.parametrize("lon,lat,expected", [
    (118.78, 32.04, "EPSG:4549"),   # Nanjing: CM 120E
    (116.35, 40.00, "EPSG:4548"),   # Beijing Haidian: CM 117E
    (117.22, 28.30, "EPSG:4548"),   # Guixi
    (-71.06, 42.36, "EPSG:32619"),  # Boston: UTM 19N
    (26.95, 60.53, "EPSG:32635"),   # the demo city in Finland: UTM 35N
    (151.2, -33.9, "EPSG:32756"),   # southern hemisphere
])
def test_metric_crs(lon, lat, expected):
    assert crs.metric_crs(lon, lat) == expected
    # and it really measures metres: a 0.001° square has the geodesic area there, within 0.5 %
    sq = shapely.box(lon, lat, lon + 0.001, lat + 0.001)
    t = pyproj.Transformer.from_crs(4326, expected, always_xy=True)
    area = shapely.transform(sq, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))).area
    geodesic = abs(_GEOD.geometry_area_perimeter(sq)[0])
    assert abs(area - geodesic) / geodesic < 0.005


def test_unknown_system_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="gcj02"):
        crs.to_wgs84(1, 2, "mars")
