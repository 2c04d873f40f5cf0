import numpy as np
import shapely

from geo.routing import FALLBACK, NEAREST, ZONE, ZoneIndex


def test_inside_nearest_and_fallback():
    idx = ZoneIndex(np.array([shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)], dtype=object))
    zone, method, dist = idx.route(np.array([5, 15, 22, 40, 10]), np.array([5, 5, 5, 5, 5]), tolerance_m=5)
    assert list(zone) == [0, 1, 1, -1, zone[4]] and zone[4] in (0, 1)  # an edge point gets one zone
    assert list(method) == [ZONE, ZONE, NEAREST, FALLBACK, ZONE]
    assert dist[2] == 2.0 and np.isinf(dist[3])


def test_a_million_points_route_in_one_call():
    rng = np.random.default_rng(1)
    grid = np.array([shapely.box(x, y, x + 10, y + 10) for x in range(0, 1000, 10) for y in range(0, 1000, 10)],
                    dtype=object)
    idx = ZoneIndex(grid)
    x, y = rng.uniform(0, 1000, 1_000_000), rng.uniform(0, 1000, 1_000_000)
    zone, method, _ = idx.route(x, y)
    expect = (np.floor(x / 10) * 100 + np.floor(y / 10)).astype(int)
    interior = (x % 10 > 1e-9) & (y % 10 > 1e-9)
    assert (zone[interior] == expect[interior]).all() and (method == ZONE).all()
