"""`zonemap import FILE --as LAYER`: formats, encodings, CRS, and every kind of bad input.

Fixture files are made here, in a temporary folder, from small hand-written data."""

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from geo.crs import wgs84_to_bd09, wgs84_to_gcj02
from layers.errors import InputError
from layers.importer import import_file
from layers.store import open_store
from tests.conftest import run_cli

SCHOOL = shapely.box(118.7800, 32.0400, 118.7810, 32.0408)
MARKET = shapely.box(118.7820, 32.0410, 118.7832, 32.0418)


def parcels(crs="EPSG:4326"):
    g = gpd.GeoDataFrame({"名称": ["新街口小学", "中山东路菜场"], "备注": ["门前三包示范", "早市"],
                          "管理单位": ["玄武区教育局", "新街口街道"]},
                         geometry=[SCHOOL, MARKET], crs="EPSG:4326")
    return g.to_crs(crs)


def write_shp(path, frame, encoding=None, cpg=True):
    kw = {"encoding": encoding} if encoding else {}
    pyogrio.write_dataframe(frame, path, driver="ESRI Shapefile", **kw)
    if not cpg:
        path.with_suffix(".cpg").unlink(missing_ok=True)
    return path


def stored(db):
    with open_store(db) as s:
        return {i["name"]: i["count"] for i in s.layer_info() if i["count"]}


# ---- formats ---------------------------------------------------------------------------

def test_gbk_shapefile_without_cpg_needs_encoding_and_then_round_trips(tmp_path):
    shp = write_shp(tmp_path / "地块.shp", parcels(), encoding="GBK", cpg=False)
    assert not shp.with_suffix(".cpg").exists()
    db = str(tmp_path / "z.gpkg")
    refused = run_cli("import", shp, "--as", "areas", db=db)
    assert refused.returncode == 1 and "--encoding gbk" in refused.stderr
    assert stored(db) == {}
    run_cli("import", shp, "--as", "areas", "--encoding", "gbk", db=db, check=True)
    with open_store(db) as s:
        back = s.read("areas").sort_values("name")
    # Chinese field names and values survive: 名称 → name, 管理单位 → operator, 备注 kept in attrs
    assert list(back["name"]) == ["中山东路菜场", "新街口小学"]
    assert list(back["operator"]) == ["新街口街道", "玄武区教育局"]
    assert [json.loads(a)["备注"] for a in back["attrs"]] == ["早市", "门前三包示范"]
    school = back[back["name"] == "新街口小学"].geometry.iloc[0]
    assert school.normalize().equals_exact(shapely.multipolygons([SCHOOL]).normalize(), 1e-9)


def test_utf8_shapefile_with_cpg_round_trips(tmp_path):
    shp = write_shp(tmp_path / "parcels.shp", parcels())
    assert shp.with_suffix(".cpg").read_text().upper().startswith("UTF")
    rep = import_file(open_store(str(tmp_path / "z.gpkg")), shp, "areas")
    assert rep.written == 2 and rep.columns["名称"] == "name" and "备注" in rep.kept_in_attrs


def test_geopackage_layer_is_picked_with_layer(shared_data, tmp_path):
    src = shared_data / "nanjing_xinjiekou_osm" / "nanjing_xinjiekou_osm.gpkg"
    db = str(tmp_path / "z.gpkg")
    many = run_cli("import", src, "--as", "buildings", db=db)
    assert many.returncode == 1 and "--layer" in many.stderr and "roads" in many.stderr
    unknown = run_cli("import", src, "--as", "buildings", "--layer", "houses", db=db)
    assert unknown.returncode == 1 and "no layer 'houses'" in unknown.stderr
    ok = run_cli("import", src, "--as", "buildings", "--layer", "buildings", "--json", db=db,
                 check=True)
    report = json.loads(ok.stdout)
    assert report["written"] == 1277 and report["columns"]["building_levels"] == "levels"
    assert stored(db) == {"buildings": 1277}


def test_geojson_kml_and_dxf(tmp_path):
    db = str(tmp_path / "z.gpkg")
    gj = tmp_path / "p.geojson"
    parcels().to_file(gj, driver="GeoJSON")
    run_cli("import", gj, "--as", "areas", db=db, check=True)
    kml = tmp_path / "p.kml"
    parcels().rename(columns={"名称": "Name"}).to_file(kml, driver="KML")
    run_cli("import", kml, "--as", "areas", db=db, check=True)
    dxf = tmp_path / "p.dxf"
    parcels("EPSG:4549")[["geometry"]].to_file(dxf, driver="DXF")
    no_crs = run_cli("import", dxf, "--as", "areas", db=db)
    assert no_crs.returncode == 1 and "--crs" in no_crs.stderr
    run_cli("import", dxf, "--as", "areas", "--crs", "4549", db=db, check=True)
    with open_store(db) as s:
        areas = s.read("areas")
    assert len(areas) == 6
    assert set(areas["name"].dropna()) == {"新街口小学", "中山东路菜场"}
    # the DXF in CGCS2000 GK CM120E lands on the same place as the lon/lat files
    from_dxf = areas[areas["source"].str.startswith("p.dxf")].geometry
    assert min(g.hausdorff_distance(SCHOOL) for g in from_dxf) < 1e-6


@pytest.mark.parametrize("header,xy", [("lon,lat", None), ("经度,纬度", None), ("LNG,LAT", None),
                                       ("东经,北纬", ("东经", "北纬"))])
def test_csv_coordinate_columns_are_found_or_named(tmp_path, header, xy):
    csv = tmp_path / "shops.csv"
    csv.write_text(f"名称,{header}\n中央商场,118.7835,32.0418\n", "utf-8")
    args = ["--x", xy[0], "--y", xy[1]] if xy else []
    out = run_cli("import", csv, "--as", "pois", "--crs", "wgs84", "--json", *args,
                  db=str(tmp_path / "z.gpkg"), check=True)
    rep = json.loads(out.stdout)
    assert rep["written"] == 1 and rep["crs"] == "wgs84"


def test_xlsx_with_projected_xy(tmp_path):
    pts = gpd.GeoSeries([shapely.Point(118.7835, 32.0418)], crs=4326).to_crs(4549)
    xlsx = tmp_path / "units.xlsx"
    pd.DataFrame({"单位名称": ["中央商场"], "x": [pts.x[0]], "y": [pts.y[0]],
                  "统一社会信用代码": ["91320100134885688X"]}).to_excel(xlsx, index=False)
    db = str(tmp_path / "z.gpkg")
    run_cli("import", xlsx, "--as", "units", "--crs", "EPSG:4549", db=db, check=True)
    with open_store(db) as s:
        u = s.read("units").iloc[0]
    assert u["name"] == "中央商场" and u["credit_code"] == "91320100134885688X"
    assert u.geometry.x == pytest.approx(118.7835, abs=1e-8)
    assert u["raw_crs"] == "EPSG:4549" and u["raw_x"] == pytest.approx(pts.x[0])


@pytest.mark.parametrize("system,convert", [("gcj02", wgs84_to_gcj02), ("bd09", wgs84_to_bd09)])
def test_phone_coordinates_are_converted_and_raw_kept(tmp_path, system, convert):
    true = (118.7835, 32.0418)
    x, y = (float(v) for v in convert(*true))
    csv = tmp_path / "reports.csv"
    csv.write_text(f"lon,lat,类别,描述\n{x!r},{y!r},06010,暴露垃圾\n", "utf-8")
    db = str(tmp_path / "z.gpkg")
    run_cli("import", csv, "--as", "problems", "--crs", system, db=db, check=True)
    with open_store(db) as s:
        p = s.read("problems").iloc[0]
    dx = (p.geometry.x - true[0]) * 94_000  # metres per degree of longitude at 32°N
    dy = (p.geometry.y - true[1]) * 111_000
    assert np.hypot(dx, dy) < 0.5
    assert p["raw_crs"] == system and p["raw_x"] == pytest.approx(x) and p["category"] == "06010"


def test_invalid_geometry_is_repaired_and_counted(tmp_path):
    bowtie = shapely.Polygon([(118.78, 32.04), (118.79, 32.05), (118.79, 32.04), (118.78, 32.05)])
    gj = tmp_path / "b.geojson"
    gpd.GeoDataFrame({"name": ["bow", "ok"]}, geometry=[bowtie, SCHOOL], crs=4326).to_file(gj)
    rep = import_file(open_store(str(tmp_path / "z.gpkg")), gj, "buildings")
    assert rep.repaired == 1 and rep.written == 2 and not rep.rejected


def test_dry_run_validates_and_reports_without_writing(tmp_path):
    gj = tmp_path / "p.geojson"
    parcels().to_file(gj)
    db = str(tmp_path / "z.gpkg")
    out = run_cli("import", gj, "--as", "areas", "--dry-run", "--json", db=db, check=True)
    rep = json.loads(out.stdout)
    assert rep["dry_run"] and rep["accepted"] == 2 and rep["written"] == 0
    assert not (tmp_path / "z.gpkg").exists() or stored(db) == {}


# ---- bad input: a clear error and an unchanged store ------------------------------------

@pytest.fixture
def db_with_data(tmp_path):
    db = str(tmp_path / "z.gpkg")
    gj = tmp_path / "seed.geojson"
    parcels().to_file(gj)
    run_cli("import", gj, "--as", "areas", db=db, check=True)
    return db


def refused(db, *args, expect):
    before = stored(db)
    out = run_cli("import", *args, db=db)
    assert out.returncode != 0, out.stdout
    said = out.stdout + out.stderr
    for part in ([expect] if isinstance(expect, str) else expect):
        assert part in said, said
    assert stored(db) == before
    return said


def test_truncated_shp(tmp_path, db_with_data):
    shp = write_shp(tmp_path / "t.shp", parcels())
    data = shp.read_bytes()
    shp.write_bytes(data[: len(data) - 40])
    refused(db_with_data, shp, "--as", "areas", expect=["t.shp", "truncated"])


def test_missing_prj_without_crs(tmp_path, db_with_data):
    shp = write_shp(tmp_path / "noprj.shp", parcels("EPSG:4549"))
    shp.with_suffix(".prj").unlink()
    refused(db_with_data, shp, "--as", "areas", expect=["noprj.shp", "no .prj", "--crs"])
    run_cli("import", shp, "--as", "areas", "--crs", "4549", db=db_with_data, check=True)


def test_swapped_lat_lon(tmp_path, db_with_data):
    csv = tmp_path / "swapped.csv"
    csv.write_text("name,lon,lat\n中央商场,32.0418,118.7835\n东方商城,32.0431,118.7829\n", "utf-8")
    said = refused(db_with_data, csv, "--as", "pois", "--crs", "wgs84",
                   expect=["row 2", "row 3", "swap", "nothing was written"])
    assert "lat/lon" in said


def test_empty_geometries(tmp_path, db_with_data):
    gj = tmp_path / "empty.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "a"}, "geometry": None},
        {"type": "Feature", "properties": {"name": "b"},
         "geometry": {"type": "Polygon", "coordinates": []}},
        {"type": "Feature", "properties": {"name": "c"}, "geometry": shapely.geometry.mapping(SCHOOL)},
    ]}), "utf-8")
    refused(db_with_data, gj, "--as", "areas", expect=["feature 1: empty geometry",
                                                       "feature 2: empty geometry"])
    # with --skip-invalid the good one goes in and the others are reported
    out = run_cli("import", gj, "--as", "areas", "--skip-invalid", "--json", db=db_with_data,
                  check=True)
    rep = json.loads(out.stdout)
    assert rep["written"] == 1 and [r["row"] for r in rep["rejected"]] == [1, 2]


def test_coordinates_of_1e7_in_a_geographic_crs(tmp_path, db_with_data):
    gj = tmp_path / "projected.geojson"
    parcels("EPSG:4549").set_crs(4326, allow_override=True).to_file(gj)  # metres labelled as degrees
    refused(db_with_data, gj, "--as", "areas", expect=["outside longitude", "--crs"])


def test_wrong_encoding_either_way(tmp_path, db_with_data):
    gbk = write_shp(tmp_path / "gbk.shp", parcels(), encoding="GBK", cpg=False)
    refused(db_with_data, gbk, "--as", "areas", "--encoding", "utf-8",
            expect=["gbk.shp", "cannot be decoded as utf-8", "--encoding gbk"])
    utf = write_shp(tmp_path / "utf.shp", parcels(), cpg=False)
    refused(db_with_data, utf, "--as", "areas", "--encoding", "gbk",
            expect=["utf.shp", "UTF-8", "--encoding utf-8"])
    csv = tmp_path / "gbk.csv"
    csv.write_bytes("名称,lon,lat\n中央商场,118.78,32.04\n".encode("gbk"))
    refused(db_with_data, csv, "--as", "pois", "--crs", "wgs84", expect="--encoding gbk")


def test_unknown_layer_name(tmp_path, db_with_data):
    gj = tmp_path / "p.geojson"
    parcels().to_file(gj)
    refused(db_with_data, gj, "--as", "shops", expect=["'shops'", "buildings"])


def test_zero_byte_file(tmp_path, db_with_data):
    for name in ("zero.shp", "zero.csv", "zero.geojson", "zero.gpkg"):
        (tmp_path / name).write_bytes(b"")
        refused(db_with_data, tmp_path / name, "--as", "areas", "--crs", "4326",
                expect=[name, "empty (0 bytes)"])


def test_bad_values_name_the_row_and_field(tmp_path, db_with_data):
    csv = tmp_path / "b.csv"
    csv.write_text("name,lon,lat,层数\nA,118.78,32.04,3\nB,118.78,32.04,三层\nC,abc,32.04,2\n", "utf-8")
    said = refused(db_with_data, csv, "--as", "buildings", "--crs", "wgs84",
                   expect=["row 3: field '层数'", "'三层' is not a number", "row 4"])
    assert "row 2" not in said.split("rejected", 1)[1].split("\n")[0]


def test_conflicting_crs_and_unknown_format(tmp_path, db_with_data):
    gj = tmp_path / "p.geojson"
    parcels().to_file(gj)
    refused(db_with_data, gj, "--as", "areas", "--crs", "4549", expect=["declares EPSG:4326"])
    (tmp_path / "p.doc").write_text("x")
    refused(db_with_data, tmp_path / "p.doc", "--as", "areas", expect="unknown file type")
    with pytest.raises(InputError, match="not a coordinate system"):
        import_file(None, gj, "areas", crs="mars", dry_run=True)
