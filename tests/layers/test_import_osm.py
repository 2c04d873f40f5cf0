"""import-osm on the real extracts in ../shared/data, counts as their SOURCE.md documents."""

import json

import pytest

from layers.store import open_store
from tests.conftest import NANJING_BBOX, run_cli

# (folder, file, bbox or None for the file's own <bounds>, documented counts)
EXTRACTS = [
    ("beijing_haidian_osm", "beijing_haidian_cau_2026-03.osm.gz", None,
     {"buildings": 257, "roads": 303, "pois": 153, "areas": 93}),
    ("beijing_haidian_osm", "beijing_haidian_tsinghua_2017-06.osm.gz", None,
     {"buildings": 521, "roads": 683, "pois": 242, "areas": 112}),
    ("guixi_jiangxi_osm", "guixi_2024-11.osm.gz", None,
     {"buildings": 165, "roads": 179, "pois": 5, "areas": 13}),
]


def test_nanjing_gives_the_documented_counts_with_chinese_names(store_url, nanjing_osm):
    out = run_cli("import-osm", nanjing_osm, "--bbox", *NANJING_BBOX, "--json", db=store_url,
                  check=True)
    report = json.loads(out.stdout)
    assert report["counts"] == {"buildings": 1277, "roads": 384, "pois": 259, "areas": 203}
    with open_store(store_url) as store:
        assert {i["name"]: i["count"] for i in store.layer_info()
                if i["count"]} == report["counts"]
        pois, roads = store.read("pois"), store.read("roads")
        buildings = store.read("buildings")
    assert "中央商场" in set(pois["name"])
    assert "长江路" in set(roads["name"])
    assert "南京图书馆" in set(buildings["name"])
    # the road attributes zone drawing needs survive, typed
    assert roads["lanes"].notna().sum() == 35 and roads["oneway"].notna().sum() == 91
    assert set(roads["highway"]) >= {"primary", "secondary", "footway", "trunk"}
    assert buildings["levels"].notna().sum() == 131
    # raw coordinates are kept on point records
    assert (pois["raw_crs"] == "EPSG:4326").all() and pois["raw_x"].notna().all()
    # tags without a column of their own are kept in attrs
    assert any("name:zh" in (a or "") or "operator" in (a or "") for a in buildings["attrs"])


@pytest.mark.parametrize("folder,name,bbox,counts", EXTRACTS, ids=[e[1] for e in EXTRACTS])
def test_other_real_extracts_use_their_bounds_and_give_documented_counts(
        shared_data, gpkg_store, folder, name, bbox, counts):
    from layers.importer import import_osm

    report = import_osm(gpkg_store, shared_data / folder / name, bbox=bbox)
    assert report["counts"] == counts
    assert {n: gpkg_store.count(n) for n in counts} == counts


def test_dry_run_writes_nothing_and_reimport_needs_replace(tmp_path, nanjing_osm):
    db = str(tmp_path / "z.gpkg")
    dry = run_cli("import-osm", nanjing_osm, "--bbox", *NANJING_BBOX, "--dry-run", "--json", db=db)
    assert dry.returncode == 0 and json.loads(dry.stdout)["counts"]["buildings"] == 1277
    with open_store(db) as s:
        assert s.is_empty()
    run_cli("import-osm", nanjing_osm, "--bbox", *NANJING_BBOX, db=db, check=True)
    again = run_cli("import-osm", nanjing_osm, "--bbox", *NANJING_BBOX, db=db)
    assert again.returncode == 1 and "--replace" in again.stderr
    replaced = run_cli("import-osm", nanjing_osm, "--bbox", *NANJING_BBOX, "--replace", "--json",
                       db=db, check=True)
    assert json.loads(replaced.stdout)["replaced"]["buildings"] == 1277
    with open_store(db) as s:
        assert s.count("buildings") == 1277


@pytest.mark.parametrize("content,message", [(b"", "empty (0 bytes)"),
                                              (b"\x1f\x8b\x08\x00garbage", "not a readable OSM")])
def test_bad_osm_files_get_a_clear_error_and_leave_the_store_unchanged(tmp_path, content, message):
    bad = tmp_path / "city.osm.gz"
    bad.write_bytes(content)
    db = str(tmp_path / "z.gpkg")
    out = run_cli("import-osm", bad, db=db)
    assert out.returncode == 1 and message in out.stderr and "city.osm.gz" in out.stderr
    with open_store(db) as s:
        assert s.is_empty()


def test_a_bad_bbox_is_refused(tmp_path, nanjing_osm):
    out = run_cli("import-osm", nanjing_osm, "--bbox", "118.8", "32.1", "118.7", "32.0",
                  db=str(tmp_path / "z.gpkg"))
    assert out.returncode == 1 and "W<E" in out.stderr
