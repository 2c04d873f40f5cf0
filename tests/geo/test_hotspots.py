"""geo.hotspots on hand-made cases: a planted cluster is a 99 % hot spot and nothing else is,
a random field has no significant cell once the false discovery rate is held, density keeps
its mass, repeat spots and peaks in city time."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geo import hotspots as H

CRS = "EPSG:4547"  # CGCS2000 / 3-degree Gauss-Kruger CM 114E: metres
X0, Y0 = 500_000.0, 3_500_000.0  # a 2 km square starts here (a multiple of 100 m)


def _points(xy, crs=CRS, **cols) -> gpd.GeoDataFrame:
    xy = np.asarray(xy, float).reshape(-1, 2)
    return gpd.GeoDataFrame(cols, geometry=shapely.points(xy[:, 0], xy[:, 1]), crs=crs)


def _random_field(n=800, seed=1, size=2000.0):
    rng = np.random.default_rng(seed)
    return np.column_stack([X0 + rng.uniform(0, size, n), Y0 + rng.uniform(0, size, n)])


CLUSTER = (X0 + 1250.0, Y0 + 750.0)  # the centre of one 100 m cell


def _with_cluster(seed=1, n=150):
    """The random field with a 300 m blob of reports on the 3 × 3 cells around CLUSTER."""
    rng = np.random.default_rng(seed + 100)
    blob = np.column_stack([CLUSTER[0] + rng.uniform(-145, 145, n), CLUSTER[1] + rng.uniform(-145, 145, n)])
    return _points(np.vstack([_random_field(seed=seed), blob]))


@pytest.mark.parametrize("permutations,correction", [(0, "fdr"), (999, "none")])
def test_a_planted_cluster_is_a_99_percent_hot_spot_and_the_field_around_it_is_not(permutations, correction):
    cells = H.hot_spots(_with_cluster(), cell_m=100, permutations=permutations, seed=7, correction=correction)
    assert cells.crs == CRS and len(cells) == 400  # 20 × 20 cells of 100 m, empty ones too
    centre = cells[cells.contains(shapely.Point(CLUSTER))].iloc[0]
    assert centre["spot"] == "hot99" and centre["gi_z"] > 3 and centre["gi_p"] < 0.01
    hot = cells[cells["spot"].str.startswith("hot")]
    # every hot cell is the blob's or touches it (queen neighbours share its count)
    assert hot.distance(shapely.Point(CLUSTER)).max() <= 213
    assert set(cells["spot"]) <= {"hot99", "hot95", "hot90", "cold99", "cold95", "cold90", "ns"}


def test_random_fields_have_no_significant_cells_when_the_false_discovery_rate_is_held():
    """Ten seeded fields of 2,000 reports placed at random: tested cell by cell, chance alone
    makes about one cell in ten "significant at 90 %"; held at each level's false discovery
    rate, next to none is, and none at 99 %."""
    tested = found = alone = 0
    for seed in range(1, 11):
        field = _points(_random_field(n=2000, seed=seed))
        cells = H.hot_spots(field, cell_m=100)
        assert cells["count"].sum() == 2000
        assert not cells["spot"].isin(["hot99", "cold99"]).any(), seed
        tested, found = tested + len(cells), found + int((cells["spot"] != "ns").sum())
        alone += int((H.hot_spots(field, cell_m=100, correction="none")["spot"] != "ns").sum())
    assert found / tested < 0.01 and alone / tested > 0.05
    same = _points([(X0 + 50 + 100 * i, Y0 + 50 + 100 * j) for i in range(10) for j in range(10)])
    assert (H.hot_spots(same, cell_m=100)["spot"] == "ns").all()  # one report in every cell


def test_empty_stretches_of_a_sparse_field_are_not_cold_spots_by_ties():
    """Most cells of a sparse field hold 0; a permutation test that counted those ties as
    extreme would call most of the map a 99 % cold spot."""
    cells = H.hot_spots(_points(_random_field(n=120, seed=5)), cell_m=100, permutations=999, seed=1,
                        correction="none")
    assert (cells["count"] == 0).mean() > 0.6
    assert cells["spot"].str.startswith("cold").mean() < 0.02


def test_a_hole_in_a_dense_field_is_a_cold_spot():
    rng = np.random.default_rng(9)
    xy = np.column_stack([X0 + rng.uniform(0, 2000, 20000), Y0 + rng.uniform(0, 2000, 20000)])
    hole = (np.abs(xy[:, 0] - X0 - 1000) < 250) & (np.abs(xy[:, 1] - Y0 - 1000) < 250)
    cells = H.hot_spots(_points(xy[~hole]), cell_m=100)
    middle = cells[cells.contains(shapely.Point(X0 + 1050, Y0 + 1050))].iloc[0]
    assert middle["spot"] == "cold99" and middle["count"] == 0
    assert not cells["spot"].str.startswith("hot").any()


def test_cells_are_where_their_points_are_in_degrees_too():
    lonlat = [(118.7801, 32.0412), (118.7803, 32.0413), (118.7901, 32.0455)]
    pts = _points(lonlat, crs="EPSG:4326")
    cells = H.count_cells(pts, cell_m=50)
    assert cells.crs == "EPSG:4549"  # Gauss–Krüger CM 120E for Nanjing (118.78°E)
    assert cells["count"].sum() == 3
    inside = gpd.sjoin(pts.to_crs(cells.crs), cells[cells["count"] > 0], predicate="within")
    assert len(inside) == 3  # each point lies in a cell that counted it (rows run north to south)
    lattice = cells.attrs["lattice"]
    assert lattice.transform[1] == 50 and lattice.transform[5] == -50


def test_counts_in_unit_grid_polygons_keep_their_codes():
    grid = gpd.GeoDataFrame({"code": ["320102001001001", "320102001001002"]},
                            geometry=[shapely.box(X0, Y0, X0 + 100, Y0 + 100),
                                      shapely.box(X0 + 100, Y0, X0 + 200, Y0 + 100)], crs=CRS)
    pts = _points([(X0 + 10, Y0 + 10), (X0 + 20, Y0 + 20), (X0 + 150, Y0 + 50), (X0 + 100, Y0 + 50),
                   (X0 + 900, Y0 + 900)])
    cells = H.count_cells(pts, cells=grid.to_crs("EPSG:4326"))  # any CRS in, the points' metric CRS out
    assert dict(zip(cells["cell_id"], cells["count"])) == {"320102001001001": 3, "320102001001002": 1}
    # the point on the shared edge counts once; the one outside every cell nowhere


def test_kernel_density_keeps_the_mass_and_peaks_at_the_cluster():
    pts = _with_cluster()
    surface = H.kernel_density(pts, cell_m=50, bandwidth_m=100)
    per_cell_km2 = 50 * 50 / 1e6
    assert surface.density.sum() * per_cell_km2 == pytest.approx(len(pts), rel=1e-6)
    cells = surface.cells()
    peak = cells.loc[cells["density"].idxmax()]
    assert peak.geometry.distance(shapely.Point(CLUSTER)) < 100
    assert surface.transform[0] % 50 == 0 and surface.lattice.crs == CRS


def test_repeat_spots_of_one_zone_and_category_within_the_window():
    day = pd.Timestamp("2026-11-01T02:00Z")
    rows = [("Z1", "06010", 0), ("Z1", "06010", 10), ("Z1", "06010", 20), ("Z1", "06010", 50),
            ("Z1", "09006", 1), ("Z1", "09006", 2),  # another category: only twice
            ("Z2", "06010", 0), ("Z2", "06010", 40), ("Z2", "06010", 80)]  # never 3 within 30 days
    xy = [(X0 + 5 * i, Y0) for i in range(len(rows))]
    reports = _points(xy, zone_code=[r[0] for r in rows], category=[r[1] for r in rows],
                      reported_at=[day + pd.Timedelta(days=r[2]) for r in rows])
    spots = H.repeat_spots(reports, k=3, days=30)
    assert len(spots) == 1
    s = spots.iloc[0]
    assert (s["place"], s["category"], s["count"], s["total"]) == ("Z1", "06010", 3, 4)
    assert s["first"] == day and s["last"] == day + pd.Timedelta(days=20)
    assert len(H.repeat_spots(reports, k=2, days=30)) == 2  # the 09006 pair too


def test_without_a_zone_the_same_place_is_a_30_m_square():
    day = pd.Timestamp("2026-11-01T02:00Z")
    bx, by = 500_010.0, 3_500_010.0  # a corner of the 30 m squares (multiples of 30 m)
    near = [(bx + 3, by + 3), (bx + 12, by + 9), (bx + 25, by + 20)]
    apart = [(bx + 300, by), (bx + 400, by), (bx + 500, by)]
    reports = _points(near + apart, zone_code=[None] * 6, category=["06010"] * 6,
                      reported_at=[day + pd.Timedelta(hours=h) for h in range(6)])
    spots = H.repeat_spots(reports, k=3, days=1)
    assert list(spots["place"]) == ["cell:E500010N3500010"] and spots.iloc[0]["count"] == 3
    assert spots.geometry.iloc[0].distance(shapely.Point(bx + 13, by + 11)) < 1


def test_peaks_count_hours_and_weekdays_in_city_time_across_midnight():
    # 16:30 UTC on Sunday 29 November is 00:30 on Monday the 30th in Shanghai
    times = pd.to_datetime(["2026-11-29T16:30Z", "2026-11-29T16:45Z", "2026-11-30T01:00Z"])
    peaks = H.time_peaks(times, "Asia/Shanghai")
    assert peaks["by_hour"][0] == 2 and peaks["by_hour"][9] == 1 and sum(peaks["by_hour"]) == 3
    assert peaks["by_weekday"] == [3, 0, 0, 0, 0, 0, 0]  # all on Monday
    assert peaks["peak_hour"] == 0 and peaks["peak_weekday"] == 0 and peaks["matrix"][0][0] == 2
    utc = H.time_peaks(times, "UTC")
    assert utc["peak_hour"] == 16 and utc["by_weekday"][6] == 2  # Sunday in UTC
    assert H.time_peaks([], "Asia/Shanghai")["peak_hour"] is None


def test_counts_by_zone_and_bad_parameters_say_what_to_do():
    cases = pd.DataFrame({"zone_code": ["A", "A", "B", None], "category": ["06010", "09006", "06010", "06010"]})
    table = H.counts_by(cases, "zone_code")
    assert table.to_dict("records")[0] == {"zone_code": "A", "count": 2, "categories": 2,
                                           "top_category": "06010"}
    assert list(table["zone_code"]) == ["A", "B"]
    with pytest.raises(ValueError, match="stray point"):
        H.count_cells(_points([(X0, Y0), (X0 + 400_000, Y0 + 400_000)]), cell_m=100)
    with pytest.raises(ValueError, match="positive"):
        H.kernel_density(_with_cluster(), bandwidth_m=0)
