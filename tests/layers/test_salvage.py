"""Damaged files: records GDAL cannot read are named with GDAL's reason, the rest are kept
under --skip-invalid, and a sound file is still read in bulk by pyogrio.

The shapefiles are written with pyogrio here and then damaged byte by byte, as a bad disk or a
half-finished copy does."""

import json
import struct

import geopandas as gpd
import pyogrio
import shapely

from layers.store import open_store
from tests.conftest import run_cli

NAMES = ["新街口小学", "中山东路菜场", "金陵饭店", "德基广场"]


def _write(path, geometries):
    frame = gpd.GeoDataFrame({"名称": NAMES}, geometry=geometries, crs="EPSG:4326")
    pyogrio.write_dataframe(frame, path, driver="ESRI Shapefile")
    return path


def parcels_shp(path):
    return _write(path, [shapely.box(118.780 + i * 0.001, 32.040, 118.7805 + i * 0.001, 32.0405)
                         for i in range(4)])


def points_shp(path):
    return _write(path, [shapely.Point(118.780 + i * 0.001, 32.040) for i in range(4)])


def record_offsets(shp):
    """Where each record's content starts in the .shp (after its 8-byte record header)."""
    data, out, at = shp.read_bytes(), [], 100
    while at < len(data):
        _, words = struct.unpack(">ii", data[at:at + 8])
        out.append(at + 8)
        at += 8 + 2 * words
    return out


def damage(shp, feature, field_at, value):
    """Overwrite one little-endian int32 field of record `feature` (counted from 1)."""
    data = bytearray(shp.read_bytes())
    struct.pack_into("<i", data, record_offsets(shp)[feature - 1] + field_at, value)
    shp.write_bytes(bytes(data))


def stored_names(db, layer):
    with open_store(db) as s:
        return sorted(s.read(layer)["name"])


def test_a_polygon_with_a_corrupt_point_count_is_named_with_gdals_reason(tmp_path):
    shp = parcels_shp(tmp_path / "地块.shp")
    # polygon record: shape type (4 bytes), bounding box (32), numParts (4), numPoints (4)
    damage(shp, 3, 4 + 32 + 4, 999_999)
    db = str(tmp_path / "z.gpkg")
    out = run_cli("import", shp, "--as", "areas", "--json", db=db)
    rep = json.loads(out.stdout)
    assert out.returncode == 1 and rep["written"] == 0
    assert [r["row"] for r in rep["rejected"]] == [3]
    reason = rep["rejected"][0]["reason"]
    # GDAL's own words, not "empty geometry"; the feature as the user counts it (from 1)
    assert reason.startswith("feature 3: ") and "counted from 1" in reason
    assert "Corrupted .shp file" in reason and "nPoints=999999" in reason
    assert "empty geometry" not in reason
    assert stored_names(db, "areas") == []
    out = run_cli("import", shp, "--as", "areas", "--skip-invalid", "--json", db=db, check=True)
    rep = json.loads(out.stdout)
    assert rep["written"] == 3 and [r["row"] for r in rep["rejected"]] == [3]
    assert stored_names(db, "areas") == sorted(NAMES[:2] + NAMES[3:])


def test_a_point_whose_shape_type_is_corrupt_is_named(tmp_path):
    shp = points_shp(tmp_path / "商户.shp")
    damage(shp, 2, 0, 5)  # the point record now claims to be a polygon
    db = str(tmp_path / "z.gpkg")
    out = run_cli("import", shp, "--as", "pois", db=db)
    assert out.returncode == 1, out.stdout
    assert "feature 2: " in out.stdout and "Corrupted .shp file" in out.stdout
    assert "nothing was written" in out.stdout and stored_names(db, "pois") == []
    run_cli("import", shp, "--as", "pois", "--skip-invalid", db=db, check=True)
    assert stored_names(db, "pois") == sorted([NAMES[0], *NAMES[2:]])


def test_a_file_the_bulk_read_fails_on_is_read_record_by_record(tmp_path):
    shp = parcels_shp(tmp_path / "地块.shp")
    dbf = shp.with_suffix(".dbf")
    dbf.write_bytes(dbf.read_bytes()[:-30])  # the last attribute record is cut short
    db = str(tmp_path / "z.gpkg")
    assert pyogrio.read_info(shp)["features"] == 4
    out = run_cli("import", shp, "--as", "areas", "--json", db=db)
    rep = json.loads(out.stdout)
    # before: one message for the whole file and no feature number; now the records fiona
    # reached are kept and the one it could not is named
    assert out.returncode == 1 and rep["reader"] == "fiona"
    assert [r["row"] for r in rep["rejected"]] == [4] and "DBF" in rep["rejected"][0]["reason"]
    assert stored_names(db, "areas") == []
    rep = json.loads(run_cli("import", shp, "--as", "areas", "--skip-invalid", "--json", db=db,
                             check=True).stdout)
    assert rep["written"] == 3 and stored_names(db, "areas") == sorted(NAMES[:3])


def test_a_sound_file_takes_the_bulk_path(tmp_path):
    shp = parcels_shp(tmp_path / "地块.shp")
    db = str(tmp_path / "z.gpkg")
    rep = json.loads(run_cli("import", shp, "--as", "areas", "--json", db=db, check=True).stdout)
    assert rep["reader"] == "pyogrio" and rep["written"] == 4 and rep["rejected"] == []
    # a record that truly has no geometry is asked about again, and stays "empty geometry"
    gj = tmp_path / "empty.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "a"}, "geometry": None},
        {"type": "Feature", "properties": {"name": "b"},
         "geometry": shapely.geometry.mapping(shapely.box(118.78, 32.04, 118.781, 32.041))}]}), "utf-8")
    rep = json.loads(run_cli("import", gj, "--as", "areas", "--json", db=db).stdout)
    assert rep["reader"] == "pyogrio+fiona"
    assert rep["rejected"] == [{"row": 1, "reason": "feature 1: empty geometry"}]
