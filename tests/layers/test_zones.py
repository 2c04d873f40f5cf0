"""Zones on the real extracts in ../shared/data, their versions, units and the CLI."""

import datetime as dt
import json
import shutil

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geo.carriageway import build_streets
from geo.crs import metric_crs
from layers import zones
from layers.importer import import_file, import_osm
from layers.rules import load_curb_rules, load_profile, profile_names
from layers.store import open_store
from tests.conftest import run_cli

DATASETS = {
    "nanjing": ("nanjing_xinjiekou_osm/nanjing_xinjiekou_2021-06.osm.gz", (118.7620, 32.0347, 118.7968, 32.0522)),
    "beijing-cau": ("beijing_haidian_osm/beijing_haidian_cau_2026-03.osm.gz", None),
    "beijing-tsinghua": ("beijing_haidian_osm/beijing_haidian_tsinghua_2017-06.osm.gz", None),
    "guixi": ("guixi_jiangxi_osm/guixi_2024-11.osm.gz", None),
}


@pytest.fixture(scope="module", params=[pytest.param(d, marks=pytest.mark.slow) if d != "nanjing" else d
                                        for d in DATASETS])
def generated(request, shared_data, tmp_path_factory):
    if request.param == "nanjing":  # the same extract and box as conftest's nanjing_gpkg
        return request.param, *request.getfixturevalue("nanjing_zoned")
    path, bbox = DATASETS[request.param]
    db = str(tmp_path_factory.mktemp(request.param) / "z.gpkg")
    with open_store(db) as s:
        import_osm(s, shared_data / path, bbox=bbox)
        report = zones.generate(s, "beijing-2022", valid_from=dt.date(2026, 1, 1))
    return request.param, db, report


def zoned_copy(nanjing_zoned, tmp_path, name: str) -> str:
    db = str(tmp_path / name)
    shutil.copy(nanjing_zoned[0], db)
    return db


def test_generation_is_clean_on_every_real_dataset(generated):
    name, db, report = generated
    # campuses: most buildings answer through their parcel's 卫生责任区, not a frontage
    assert report.counts["frontage"] + report.counts["unit"] + report.counts["site"] > 40, name
    assert report.counts["public"] > 0
    assert report.check["overlaps"] == 0 and report.check["invalid"] == 0
    assert report.check["without_unit"] == 0
    # what was stored, tile seams included: no overlap, no gap (generation leaves gaps to this)
    out = run_cli("zones", "check", "--json", db=db)
    stored = json.loads(out.stdout)
    assert out.returncode == 0 and stored["overlaps"] == 0 and stored["invalid"] == 0, stored
    assert stored["gaps"] == 0, stored
    assert stored["zones"] == sum(report.counts.values())


def test_stored_geometry_keeps_the_ledger_area(generated):
    _, db, report = generated
    with open_store(db) as s:
        z = zones.current(s.read("zones"))
    measured = z.to_crs(report.crs).area
    assert np.allclose(measured, z["area_m2"], rtol=1e-4, atol=0.01)


def test_street_facing_facade_is_covered(generated):
    name, _, report = generated
    # the share of street-facing facade (buildings within 30 m of a carriageway) that has its
    # own building's zone in front of it
    assert report.facade["facing_m"] > 1000
    assert report.facade["share"] >= 0.95, (name, report.facade)  # issue 12: at least 95 %


def test_no_frontage_zone_crosses_a_carriageway_and_depths_are_in_range(generated):
    _, db, report = generated
    with open_store(db) as s:
        z = zones.current(s.read("zones"))
        roads = s.read("roads")
    z = z[z["kind"] == "frontage"].to_crs(report.crs)
    p = load_profile("beijing-2022")
    streets = build_streets(roads.to_crs(report.crs), load_curb_rules(), p.depth_to, p.no_sidewalk)
    tree = shapely.STRtree(streets.stop)
    pairs = tree.query(z.geometry.to_numpy(), predicate="intersects")
    inside = shapely.area(shapely.intersection(z.geometry.to_numpy()[pairs[0]], streets.stop[pairs[1]]))
    assert inside.max(initial=0) < 0.05
    assert z["depth_m"].max() <= p.max_depth_m and z["depth_m"].min() >= 0
    assert (z["area_m2"] > 0).all() and (z["frontage_len_m"] > 0).all()


def test_four_bounds_name_real_neighbouring_roads(generated):
    _, db, _ = generated
    with open_store(db) as s:
        z = zones.current(s.read("zones"))
        names = set(s.read("roads")["name"].dropna())
    f = z[z["kind"] == "frontage"]
    assert f["bounds_text"].str.match(r"^东至.+；西至.+；南至.+；北至.+$").all()
    named = f["street"].dropna()
    assert len(named) >= 0.3 * len(f)
    for streets in named:
        assert set(streets.split("、")) <= names


# the middle quarter of the Nanjing extract (Xinjiekou, its densest blocks): half its width and height
NANJING_MIDDLE = (118.7707, 32.0391, 118.7881, 32.0478)


@pytest.mark.slow  # every rule profile on the real Nanjing extract
def test_every_profile_is_clean_and_changes_the_zones(nanjing_gpkg, tmp_path):
    """Each profile drawn over the same part of the city (the default one over the whole
    extract is the module's nanjing_zoned, checked by the tests above)."""
    areas = {}
    for name in profile_names():
        db = str(tmp_path / f"{name}.gpkg")
        shutil.copy(nanjing_gpkg, db)
        with open_store(db) as s:
            r = zones.generate(s, name, bbox=NANJING_MIDDLE)
            stored = zones.check(s)
        assert r.check["overlaps"] == 0 and r.check["invalid"] == 0, name
        assert stored["overlaps"] == 0 and stored["gaps"] == 0 and stored["invalid"] == 0, (name, stored)
        assert r.counts["frontage"] > 100 and r.counts["public"] > 0, (name, r.counts)
        areas[name] = r.facade["covered_m"]
    assert len(set(areas.values())) == len(areas)  # each rule draws differently


def test_versions_codes_and_as_of(tmp_path, nanjing_zoned):
    db, first = zoned_copy(nanjing_zoned, tmp_path, "v.gpkg"), nanjing_zoned[1]
    with open_store(db) as s:
        again = zones.generate(s, "beijing-2022", valid_from=dt.date(2026, 2, 1))
        n_rows = s.count("zones")
        assert again.unchanged == sum(first.counts.values()) and again.new_versions == 0
        assert n_rows == sum(first.counts.values())
        other = zones.generate(s, "beijing-1999", valid_from=dt.date(2026, 3, 1))
        assert other.new_versions > 0
        all_rows = s.read("zones")
    assert len(all_rows) == n_rows + other.new_versions  # nothing deleted, only closed
    jan = zones.current(all_rows, dt.date(2026, 1, 15))
    apr = zones.current(all_rows, dt.date(2026, 4, 1))
    assert set(jan["profile"]) == {"beijing-2022"} and set(apr["profile"]) == {"beijing-1999"}
    # a frontage zone kept its code and has two versions
    code = next(c for c in apr[apr["kind"] == "frontage"]["code"] if c in set(jan["code"]))
    out = run_cli("zones", "history", code, "--json", db=db, check=True)
    hist = json.loads(out.stdout)
    assert [h["version"] for h in hist] == [1, 2]
    assert hist[0]["valid_to"] == "2026-03-01" and hist[1]["valid_to"] is None
    listed = json.loads(run_cli("zones", "list", "--as-of", "2026-01-15", "--json", db=db, check=True).stdout)
    assert len(listed) == len(jan)


def test_units_are_derived_and_a_planner_fills_them_from_a_table(tmp_path, nanjing_zoned):
    db = zoned_copy(nanjing_zoned, tmp_path, "u.gpkg")
    with open_store(db) as s:
        units = s.read("units")
        z = zones.current(s.read("zones"))
    assert {"FALLBACK-JD", "FALLBACK-HW"} <= set(units["unit_id"])
    named = units[~units["placeholder"].astype(bool)]
    assert "南京图书馆" in set(named["name"]) and "金陵中学" in set(named["name"])
    assert units["placeholder"].astype(bool).sum() > 0  # unnamed frontages, named by id, flagged
    assert set(z["primary_unit"]) <= set(units["unit_id"])
    # which generation derived each of them stays on it (its run, long ended: no unit is hidden)
    assert units["source"].str.fullmatch(r"generate:[0-9a-f]{12}").all()
    with open_store(db) as s:
        assert s.query("SELECT count(*) FROM zonemap_runs", ())[0][0] == 0
    table = tmp_path / "责任人.xlsx"
    pd.DataFrame({"单位名称": ["南京图书馆", "金陵中学"], "责任人": ["张三", "李四"],
                  "联系电话": ["025-84356000", "025-83301234"], "邮箱": ["lib@example.org", None],
                  "统一社会信用代码": ["12320000466000148E", "12320100466007321X"]}).to_excel(table, index=False)
    out = run_cli("import", table, "--as", "units", "--match", "name", "--json", db=db, check=True)
    assert json.loads(out.stdout)["written"] == 2
    with open_store(db) as s:
        u = s.read("units").set_index("name")
    assert u.loc["南京图书馆", "person"] == "张三" and u.loc["金陵中学", "phone"] == "025-83301234"
    assert u.loc["南京图书馆", "email"] == "lib@example.org"  # where its notices go (layers/notify.py)
    # a row naming no unit: nothing is written, the row is named
    bad = tmp_path / "bad.csv"
    bad.write_text("名称,统一社会信用代码,责任人\n南京图书馆,12320000466000148E,王五\n不存在的单位,,赵六\n", "utf-8")
    out = run_cli("import", bad, "--as", "units", "--match", "name", db=db)
    assert out.returncode == 1 and "row 3" in out.stdout and "不存在的单位" in out.stdout
    with open_store(db) as s:
        assert s.read("units").set_index("name").loc["南京图书馆", "person"] == "张三"
    by_code = tmp_path / "code.csv"
    by_code.write_text("统一社会信用代码,联系电话\n12320000466000148E,025-11111111\n", "utf-8")
    run_cli("import", by_code, "--as", "units", "--match", "code", db=db, check=True)
    with open_store(db) as s:
        assert s.read("units").set_index("name").loc["南京图书馆", "phone"] == "025-11111111"


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_the_input_crs_does_not_change_areas(tmp_path, shared_data, crs):
    src = shared_data / "nanjing_xinjiekou_osm" / "nanjing_xinjiekou_osm.gpkg"
    bbox = (118.776, 32.038, 118.786, 32.046)
    results = {}
    for label, target in (("metric", "EPSG:4549"), ("other", crs)):
        db = str(tmp_path / f"{label}.gpkg")
        for layer in ("buildings", "roads"):
            frame = gpd.read_file(src, layer=layer, bbox=bbox).to_crs(target)
            path = tmp_path / f"{label}_{layer}.gpkg"
            frame.to_file(path, layer=layer)
            with open_store(db) as s:
                import_file(s, path, layer)
        with open_store(db) as s:
            r = zones.generate(s, "beijing-2022", bbox=bbox, dry_run=True)
            results[label] = (r.counts, r.facade["covered_m"])
        with open_store(db) as s:
            zones.generate(s, "beijing-2022", bbox=bbox)
            z = zones.current(s.read("zones"))
        results[label] += (z.groupby("kind")["area_m2"].sum().to_dict(),)
    (c1, f1, a1), (c2, f2, a2) = results["metric"], results["other"]
    assert c1["frontage"] == c2["frontage"]
    for kind in a1:
        assert a2[kind] == pytest.approx(a1[kind], rel=0.01), kind
    assert f2 == pytest.approx(f1, rel=0.01)


def test_check_fails_on_overlapping_zones(tmp_path):
    db = str(tmp_path / "o.gpkg")
    with open_store(db) as s:
        s.append("zones", gpd.GeoDataFrame(
            {"code": ["F1", "F2"], "kind": ["frontage", "frontage"], "primary_unit": ["U1", None],
             "valid_from": [dt.date(2026, 1, 1)] * 2, "version": [1, 1]},
            geometry=[shapely.box(118.780, 32.040, 118.7802, 32.0402),
                      shapely.box(118.7801, 32.0401, 118.7803, 32.0403)], crs=4326))
    out = run_cli("zones", "check", "--json", db=db)
    res = json.loads(out.stdout)
    assert out.returncode == 1 and res["overlaps"] == 1 and res["without_unit"] == 1
    assert res["overlap_pairs"] == [["F1", "F2"]]
    assert res["overlap_m2"] == pytest.approx(np.prod([0.0001 * 94_400, 0.0001 * 110_900]), rel=0.05)


def test_bad_profile_and_empty_store_say_what_to_do(tmp_path):
    db = str(tmp_path / "e.gpkg")
    out = run_cli("zones", "generate", db=db)
    assert out.returncode == 1 and "import-osm" in out.stderr
    out = run_cli("zones", "generate", "--profile", "shanghai", db=db)
    assert out.returncode == 1 and "beijing-2022" in out.stderr
    bad = tmp_path / "my.toml"
    bad.write_text('depth_to = "moon"\n')
    out = run_cli("zones", "generate", "--profile", str(bad), db=db)
    assert out.returncode == 1 and "depth_to" in out.stderr


def test_a_construction_site_goes_to_its_contractor_with_the_developer_co_responsible(tmp_path, nanjing_gpkg):
    db = str(tmp_path / "s.gpkg")
    shutil.copy(nanjing_gpkg, db)
    site = shapely.box(118.7725, 32.0455, 118.7735, 32.0462)
    with open_store(db) as s:
        s.append("sites", gpd.GeoDataFrame(
            {"code": ["SG-2026-001"], "name": ["新街口地块工程"], "contractor": ["中建八局"],
             "developer": ["南京新街口开发公司"]}, geometry=[site], crs=4326))
        r = zones.generate(s, "beijing-2022")
        z = zones.current(s.read("zones"))
        units = s.read("units").set_index("unit_id")["name"]
    assert r.counts["site"] == 1
    sz = z[z["kind"] == "site"].iloc[0]
    assert units[sz["primary_unit"]] == "中建八局" and units[sz["co_unit"]] == "南京新街口开发公司"
    # the site zone covers the site and wins over every frontage zone there
    assert sz.geometry.buffer(1e-7).covers(site)
    others = z[z["kind"] == "frontage"]
    assert not others[others.intersects(site.buffer(-1e-6))].shape[0]


def test_check_reports_an_invalid_stored_zone(tmp_path):
    db = str(tmp_path / "i.gpkg")
    bowtie = shapely.Polygon([(118.780, 32.040), (118.781, 32.041), (118.781, 32.040), (118.780, 32.041)])
    with open_store(db) as s:
        s.append("zones", gpd.GeoDataFrame({"code": ["F1"], "kind": ["frontage"], "primary_unit": ["U1"],
                                            "valid_from": [dt.date(2026, 1, 1)], "version": [1]},
                                           geometry=[bowtie], crs=4326))
    out = run_cli("zones", "check", "--json", db=db)
    assert out.returncode == 1 and json.loads(out.stdout)["invalid"] == 1


def test_zones_in_force_on_a_date_before_any_version_was_closed():
    """Right after a city's first generation no zone has valid_to: --as-of must still work
    (pandas 3 keeps an all-empty date column as datetime64)."""
    import datetime as dt

    from shapely.geometry import box

    from layers.zones import current

    z = gpd.GeoDataFrame({"code": ["A", "B"], "valid_from": [dt.date(2026, 1, 1), dt.date(2026, 6, 1)],
                          "valid_to": [None, None]}, geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1)])
    assert list(current(z, dt.date(2026, 3, 1))["code"]) == ["A"]
    assert list(current(z, dt.date(2026, 6, 1))["code"]) == ["A", "B"]
    z["valid_to"] = [dt.date(2026, 6, 1), None]
    assert list(current(z, dt.date(2026, 6, 1))["code"]) == ["B"]


# one zone (34 m²) of the 100k synthetic city (EPSG:4326 as reprojected from its tile's metric
# CRS): GEOS's make_valid(method="structure") raised a TopologyException on it, which stopped
# the whole generation
RAISES_IN_MAKE_VALID = (
    "MULTIPOLYGON (((120.0028538119725 32.0257197760953, "
    "120.00286310795813 32.025750552351454, 120.00287240394998 32.02578132860676, "
    "120.00288779073985 32.02579390153866, 120.00288779074664 32.025794117700215, "
    "120.00288169938493 32.02579411783878, 120.00288170037408 32.0258257121457, "
    "120.00288170136324 32.02585730645245, 120.00288170235238 32.02588890075906, "
    "120.00291444091796 32.025888900756826, 120.00294118476668 32.025888900759284, "
    "120.00294118437898 32.02587676807276, 120.00291448885936 32.025876768689045, "
    "120.00288779333972 32.025876769299714, 120.0028877919583 32.02583273850373, "
    "120.00288779057689 32.025788707707456, 120.00289552369084 32.02578870753113, "
    "120.00289552367066 32.0257880659871, 120.00289162044677 32.025788066076146, "
    "120.00288698033934 32.025747484423604, 120.00288234023601 32.02570690277061, "
    "120.00285159404471 32.025706903465654, 120.0028538119725 32.0257197760953)))")


def test_a_zone_whose_repair_raises_is_stored_by_the_next_repair():
    deg = shapely.from_wkt(RAISES_IN_MAKE_VALID)
    with pytest.raises(shapely.errors.GEOSException):
        shapely.make_valid(deg, method="structure")
    metric = metric_crs(deg.centroid.x, deg.centroid.y)
    there = gpd.GeoSeries([deg], crs=4326).to_crs(metric).to_numpy()
    stored, lost = zones.to_storage(there, metric)
    assert lost == 0 and shapely.is_valid(stored[0])
    back = gpd.GeoSeries(stored, crs=4326).to_crs(metric).area[0]
    assert back == pytest.approx(shapely.area(there[0]), rel=1e-6)
