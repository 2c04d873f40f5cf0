"""Frontage zones on small hand-made streets (metres, a local metric CRS), one rule at a time.

The main road runs west–east along y = 0: a two-way secondary road, 4 lanes × 3.5 m, so its
curbs are at y = ±7 m. Buildings stand north of it with their facade at y = 12 (5 m of
pavement) unless a test says otherwise."""

import dataclasses

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geo.carriageway import build_streets
from geo.frontage import frontage_zones
from layers.rules import load_curb_rules, load_profile

CRS = "EPSG:4549"
X0, Y0 = 500_000.0, 3_550_000.0  # a place inside CGCS2000 GK CM 120E


def at(g):
    return shapely.affinity.translate(g, X0, Y0)


def road(coords, highway="secondary", **tags):
    return {"highway": highway, "geometry": at(shapely.LineString(coords)), **tags}


def run(buildings, roads, profile="beijing-2022", **changes):
    p = dataclasses.replace(load_profile(profile), **changes)
    roads = gpd.GeoDataFrame(roads, crs=CRS)
    streets = build_streets(roads, load_curb_rules(), p.depth_to, p.no_sidewalk)
    owners = gpd.GeoDataFrame({"kind": ["building"] * len(buildings)},
                              geometry=[at(b) for b in buildings], crs=CRS)
    study = at(shapely.box(-200, -200, 200, 200))
    res = frontage_zones(owners, streets, p, study)
    zones = {int(o): shapely.affinity.translate(g, -X0, -Y0) for o, g in zip(res.zones["owner"], res.zones.geometry)}
    carriageway = shapely.affinity.translate(shapely.union_all(streets.carriageway), -X0, -Y0)
    return zones, carriageway, res


MAIN = [road([(-150, 0), (150, 0)])]


def test_a_lone_building_gets_the_strip_to_the_curb():
    zones, cw, _ = run([shapely.box(0, 12, 20, 30)], MAIN)
    z = zones[0]
    x0, y0, x1, y1 = z.bounds
    assert y0 == pytest.approx(7, abs=0.05) and y1 == pytest.approx(12, abs=0.05)  # facade → curb
    assert -10.5 <= x0 <= 0 and 20 <= x1 <= 30.5  # frontage ± the profile's 10 m lateral allowance
    assert shapely.intersection(z, cw).area < 0.01
    assert z.covers(shapely.Point(10, 9.5))


def test_a_gap_between_neighbours_is_split_at_its_midline():
    zones, _, _ = run([shapely.box(0, 12, 20, 30), shapely.box(26, 12, 46, 30)], MAIN)
    a, b = zones[0], zones[1]
    assert a.bounds[2] == pytest.approx(23, abs=0.6) and b.bounds[0] == pytest.approx(23, abs=0.6)
    assert shapely.intersection(a, b).area < 0.01


def test_beijing_1999_keeps_to_the_frontage_and_leaves_the_gap_public():
    zones, _, _ = run([shapely.box(0, 12, 20, 30), shapely.box(26, 12, 46, 30)], MAIN, "beijing-1999")
    assert zones[0].bounds[2] == pytest.approx(20, abs=0.3)
    assert zones[1].bounds[0] == pytest.approx(26, abs=0.3)


def test_beijing_1999_counts_a_building_without_neighbour_from_all_four_sides():
    zones, cw, _ = run([shapely.box(0, 12, 20, 30)], MAIN, "beijing-1999")
    z = zones[0]
    for p in [(10, 9.5), (-5, 20), (25, 20), (10, 35)]:  # front, both sides, back
        assert z.covers(shapely.Point(p)), p
    assert shapely.intersection(z, cw).area < 0.01


def test_a_corner_building_takes_both_sides_and_the_corner():
    roads = [road([(-150, 0), (150, 0)]), road([(0, -150), (0, 150)])]
    zones, cw, _ = run([shapely.box(12, 12, 32, 32)], roads)
    z = zones[0]
    for p in [(20, 9.5), (9.5, 20), (9.5, 9.5)]:  # south strip, west strip, corner wedge
        assert z.covers(shapely.Point(p)), p
    assert shapely.intersection(z, cw).area < 0.01


def test_a_dual_carriageway_leaves_no_fake_pavement_between_its_halves():
    # two one-way halves 15 m apart: carriageways y ∈ [-3.5, 3.5] and [11.5, 18.5]; 8 m median
    roads = [road([(-150, 0), (150, 0)], "primary", oneway="yes"),
             road([(150, 15), (-150, 15)], "primary", oneway="yes")]
    zones, cw, _ = run([shapely.box(0, 26, 20, 40), shapely.box(0, -30, 20, -12)], roads)
    assert cw.covers(shapely.Point(10, 7.5))  # the median is carriageway
    for z in zones.values():
        assert not z.intersects(shapely.box(-150, 3.5, 150, 11.5))
    assert zones[0].bounds[1] == pytest.approx(18.5, abs=0.1)
    assert zones[1].bounds[3] == pytest.approx(-3.5, abs=0.1)


def test_a_cul_de_sac_end_building_faces_the_turning_head():
    roads = [road([(-100, 0), (50, 0)], "residential")]  # 2 × 3.0 m lanes: curb 3 m, round end
    zones, cw, _ = run([shapely.box(58, -10, 78, 10)], roads)
    z = zones[0]
    assert z.covers(shapely.Point(56, 0))
    assert shapely.intersection(z, cw).area < 0.01


def test_no_zone_crosses_the_road_to_the_other_side():
    zones, _, _ = run([shapely.box(0, 12, 20, 30), shapely.box(0, -30, 20, -12)], MAIN)
    assert zones[0].bounds[1] >= 7 - 0.05 and zones[1].bounds[3] <= -7 + 0.05
    assert not zones[0].intersects(zones[1])


def test_a_pedestrian_street_is_shared_at_its_centreline():
    roads = [road([(-150, 0), (150, 0)], "pedestrian"), road([(-150, -60), (150, -60)])]
    zones, _, _ = run([shapely.box(0, 5, 20, 20), shapely.box(0, -20, 20, -5)], roads)
    assert zones[0].bounds[1] == pytest.approx(0, abs=0.05)
    assert zones[1].bounds[3] == pytest.approx(0, abs=0.05)


def test_a_building_set_back_beyond_the_maximum_depth_gets_no_zone_and_is_reported():
    zones, _, res = run([shapely.box(0, 12, 20, 30), shapely.box(40, 45, 60, 60)], MAIN)
    assert 0 in zones and 1 not in zones
    assert list(res.set_back) == [1]


def test_red_line_zones_stop_at_the_red_line():
    # red line 20 m wide (10 m from the centreline); facade at 15 m, curb at 7 m
    roads = [road([(-150, 0), (150, 0)], red_line_width=20.0)]
    curb, _, _ = run([shapely.box(0, 15, 20, 30)], roads)
    red, _, _ = run([shapely.box(0, 15, 20, 30)], roads, "red-line")
    assert curb[0].bounds[1] == pytest.approx(7, abs=0.05)
    assert red[0].bounds[1] == pytest.approx(10, abs=0.05)
    # without a red line in the data, red-line zones stop at the curb
    plain, _, _ = run([shapely.box(0, 15, 20, 30)], MAIN, "red-line")
    assert plain[0].bounds[1] == pytest.approx(7, abs=0.05)


def test_nonmotor_curb_zones_take_the_bicycle_lane_and_are_deeper():
    roads = [road([(-150, 0), (150, 0)], "primary")]  # 4 lanes: curb 7 m, 3.5 m bicycle lane
    curb, _, _ = run([shapely.box(0, 12, 20, 30)], roads)
    nm, _, _ = run([shapely.box(0, 12, 20, 30)], roads, "nonmotor-curb")
    assert nm[0].bounds[1] == pytest.approx(3.5, abs=0.05)
    assert nm[0].area > curb[0].area


def test_road_without_sidewalk_runs_to_its_centreline_under_beijing_rules_only():
    roads = [road([(-150, 0), (150, 0)], "service"), road([(-150, -80), (150, -80)])]
    bj, _, _ = run([shapely.box(0, 8, 20, 30)], roads)
    red, _, _ = run([shapely.box(0, 8, 20, 30)], roads, "red-line")
    assert bj[0].bounds[1] == pytest.approx(0, abs=0.05)          # to the centreline
    assert red[0].bounds[1] == pytest.approx(2.25, abs=0.05)      # to the curb (1.5 lanes × 3 m / 2)


def test_zones_never_overlap_in_a_dense_block():
    rng = np.random.default_rng(7)
    blds = []
    for i in range(30):
        x = -140 + i * 9.5
        blds.append(shapely.box(x, 10 + rng.uniform(0, 6), x + rng.uniform(5, 9), 35))
    zones, cw, _ = run(blds, MAIN)
    geoms = list(zones.values())
    assert len(geoms) >= 25
    total = sum(g.area for g in geoms)
    assert shapely.union_all(geoms).area == pytest.approx(total, abs=0.01)
    assert shapely.intersection(shapely.union_all(geoms), cw).area < 0.01


def test_two_units_sharing_a_street_corner_split_it_at_the_bisector():
    # a corner building at a crossing, shared by two units along its diagonal: A fronts the
    # south street, B the west one, the chamfer at the corner half each
    roads = [road([(-150, 0), (150, 0)]), road([(0, -150), (0, 150)])]  # curbs at x, y = ±7
    a = shapely.Polygon([(16, 12), (40, 12), (40, 40), (14, 14)])
    b = shapely.Polygon([(12, 16), (14, 14), (40, 40), (12, 40)])
    zones, cw, _ = run([a, b], roads)
    za, zb = zones[0], zones[1]
    assert za.covers(shapely.Point(10, 8)) and zb.covers(shapely.Point(8, 10))  # each its side of the wedge
    assert za.covers(shapely.Point(30, 9.5)) and zb.covers(shapely.Point(9.5, 30))  # and its own street
    assert shapely.intersection(za, zb).area < 0.01
    # where they meet, in front of the corner, is the bisector of the corner's angle (y = x)
    seam = shapely.intersection(za.buffer(1e-6), zb.boundary)
    xy = shapely.get_coordinates(seam)
    xy = xy[(xy < 14).all(axis=1)]
    assert len(xy) >= 2 and np.abs(xy[:, 0] - xy[:, 1]).max() < 0.3
    assert xy.min() < 7.5  # all the way to the curbs' corner
    # and together they leave nothing of the wedge between the curbs and the chamfer
    wedge = shapely.Polygon([(7.2, 7.2), (16, 7.2), (16, 12), (14, 14), (12, 16), (7.2, 16)])
    assert shapely.difference(wedge, shapely.union_all([za, zb, cw])).area < 0.05


def test_buildings_drawn_over_each_other_leave_no_wedge_of_public_pavement():
    # two outlines drawn over each other at a corner, as OSM often has them: B's facade 9 cm
    # in front of A's, A's wall running inside B for 5 m. A's samples there used to reach out
    # between B's as thin wedges that neither corridor covers (8 m² of public slivers here)
    a, b = shapely.box(0, 12, 20, 30), shapely.box(15, 11.91, 35, 25)
    zones, cw, _ = run([a, b], MAIN)
    pavement = shapely.box(0.5, 7.05, 34.5, 11.9)  # in front of both, facade to curb
    assert shapely.difference(pavement, shapely.union_all([*zones.values(), cw])).area < 0.01
    assert zones[1].covers(shapely.Point(17.5, 9.5))  # in front of B's own facade: B's
    assert zones[0].covers(shapely.Point(5, 9.5))
    assert shapely.intersection(zones[0], zones[1]).area < 0.01
