"""The public remainder and the check, on small hand-made cells (metres)."""

import numpy as np
import shapely

from geo.coverage import check, public_zones


def test_a_crumb_of_public_ground_is_kept_with_its_neighbour_not_dropped():
    # what no owner claims in this cell: a 5 × 5 m square and, touching its corner, a crumb of
    # 0.0025 m² (below the 0.01 m² a zone must have to stand alone); dropping the crumb left
    # a gap in the stored zones (the 10k synthetic city's 0.011 m² "gap", three such crumbs)
    cell = shapely.box(0, 0, 10, 10)
    crumb = shapely.Polygon([(5, 5), (4.95, 4.9), (4.9, 4.95)])
    claimed = shapely.difference(cell, shapely.union(shapely.box(5, 5, 10, 10), crumb))
    pieces = public_zones(cell, np.array([claimed]), np.array([], dtype=object), np.array([], dtype=object),
                          np.array([cell]))
    public = [g for g, _ in pieces]
    assert len(public) == 1
    assert shapely.area(public[0]) == shapely.area(shapely.box(5, 5, 10, 10)) + shapely.area(crumb)
    res = check(np.array([claimed, public[0]]), np.array([], dtype=object), np.ones(2, dtype=bool), extent=cell)
    assert res["gaps"] == 0 and res["overlaps"] == 0
