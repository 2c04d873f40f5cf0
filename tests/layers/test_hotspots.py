"""Hotspots of stored problems. The real Boston 311 reports of 2015 (imported once, with
their own New York times): Gi* finds significant hot cells where the data's own neighbourhoods
are densest and none over the harbour's water or the empty interiors of Franklin Park and
the Arnold Arboretum; repeat spots and peaks come out in city time; the command writes a
GeoPackage layer. Then GET /api/hotspots on a small city of each store kind: staff only."""

from __future__ import annotations

import datetime as dt
import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from layers import cases
from layers import hotspots as hs
from layers.importer import import_file
from layers.store import open_store
from layers.users import User, add_user, issue_token
from tests.conftest import run_cli
from tests.layers.test_cases import IN_F1, city
from webmap.app import create_app

NY = "America/New_York"
# Boxes with no report in the whole year (each test checks it holds none): President Roads,
# the harbour channel east of Castle Island; Franklin Park's golf course; Peters Hill in the
# Arnold Arboretum. The Back Bay Fens are not among them: their paths have litter baskets,
# and the data has reports there.
EMPTY = {"harbour water": (-71.010, 42.330, -70.996, 42.350),
         "Franklin Park golf course": (-71.104, 42.293, -71.094, 42.300),
         "Arnold Arboretum, Peters Hill": (-71.131, 42.290, -71.125, 42.295)}
DENSE = ("Downtown / Financial District", "South End", "Allston / Brighton")  # the data's own column
SPARSE = ("Hyde Park", "West Roxbury")


@pytest.fixture(scope="module")
def boston(shared_data, tmp_path_factory):
    """A GeoPackage store holding the Boston reports, and the source rows with a place."""
    path = shared_data / "boston_311_sanitation_2015" / "boston_311_sanitation_2015.gpkg"
    db = str(tmp_path_factory.mktemp("boston") / "boston.gpkg")
    with open_store(db) as store:
        import_file(store, path, "problems", tz=NY)
    src = gpd.read_file(path, layer="reports")
    return db, src[~src["location_is_placeholder"].astype(bool)].reset_index(drop=True)


def test_gi_star_finds_the_dense_neighbourhoods_hot_and_no_water_or_park_interior(boston):
    db, src = boston
    with open_store(db) as store:
        result = hs.hotspots(store, "gi", tz=NY)
    cells = result.layer
    assert result.summary["problems"] == len(src) == 9744 and cells.crs == "EPSG:4326"
    assert result.params["weights"] == "queen contiguity" and result.params["correction"] == "fdr"
    assert (result.shown["spot"] != "ns").all() and len(result.shown) == (cells["spot"] != "ns").sum()

    where = gpd.sjoin(src[["neighborhood", "geometry"]], cells[["spot", "geometry"]], predicate="within")
    share_hot = where["spot"].str.startswith("hot").groupby(where["neighborhood"]).mean()
    for name in DENSE:  # most reports there lie in significant hot cells…
        assert share_hot[name] > 0.4, (name, share_hot[name])
        assert (where.loc[where["neighborhood"] == name, "spot"] == "hot99").sum() > 100, name
    for name in SPARSE:  # …and almost none in the suburbs
        assert share_hot[name] < 0.1, (name, share_hot[name])

    hot = cells[cells["spot"].str.startswith("hot")]
    for place, bbox in EMPTY.items():
        box = shapely.box(*bbox)
        assert not src.within(box).any(), f"{place}: the box is meant to hold no report"
        assert cells.intersects(box).sum() > 20, place  # the lattice covers it: cells were tested there
        assert not hot.intersects(box).any(), f"a hot spot over {place}"


def test_repeat_spots_and_peaks_in_the_citys_time(boston):
    db, src = boston
    with open_store(db) as store:
        spots = hs.hotspots(store, "repeats", tz=NY, k=3, days=30, since="2015-06-01", until="2015-08-31")
        peaks = hs.hotspots(store, "peaks", tz=NY)
    table = spots.layer
    assert len(table) > 20 and (table["count"] >= 3).all() and (table["total"] >= table["count"]).all()
    # no zones in this store: a place is a ~30 m square; check the first spot against the file
    top = table.iloc[0]
    assert top["place"].startswith("cell:E")
    first, last = pd.Timestamp(top["first"]), pd.Timestamp(top["last"])
    assert first.utcoffset() == last.utcoffset() == dt.timedelta(hours=-4)  # summer time in Boston
    assert pd.Timedelta(0) <= last - first <= pd.Timedelta(days=30)
    centre = gpd.GeoSeries([top.geometry], crs="EPSG:4326").to_crs("EPSG:32619").iloc[0]
    near = src[(src["case_type"] == top["category"]).to_numpy()
               & (src.to_crs("EPSG:32619").distance(centre) < 50).to_numpy()]  # the 30 m square around it
    opened = pd.to_datetime(near["open_dt"]).dt.tz_localize(NY)
    in_window = ((opened >= first) & (opened <= last)).sum()
    assert in_window >= top["count"]  # the file holds those reports, at those local times

    s = peaks.summary
    assert s["total"] == len(src) and sum(s["by_hour"]) == len(src)
    local = pd.to_datetime(src["open_dt"])  # the file's own local times
    assert s["by_hour"] == np.bincount(local.dt.hour, minlength=24).tolist()
    assert s["by_weekday"] == np.bincount(local.dt.day_of_week, minlength=7).tolist()


def test_the_command_writes_the_cells_as_a_geopackage_layer(boston, tmp_path):
    db, _ = boston
    out = tmp_path / "hot.gpkg"
    done = run_cli("hotspots", "--method", "gi", "--since", "2015-01-01", "--until", "2015-12-31", "--tz", NY,
                   "--category", "Graffiti Removal,PWD Graffiti", "--out", out, "--json", "--limit", "5", db=db)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["params"]["category"] == ["Graffiti Removal", "PWD Graffiti"]
    assert len(answer["rows"]) == 5 and all(r["spot"].startswith("hot") for r in answer["rows"])
    layer = gpd.read_file(out, layer="hotspots_gi")
    assert len(layer) == answer["summary"]["cells"] and layer.crs == "EPSG:4326"
    assert {"cell_id", "count", "gi_z", "gi_p", "spot"} <= set(layer.columns)
    assert layer["count"].sum() == answer["summary"]["problems"]
    bad = run_cli("hotspots", "--method", "peaks", "--out", tmp_path / "p.gpkg", db=db)
    assert bad.returncode == 1 and "peaks are a table" in bad.stderr


# ---- the API, on each store kind ---------------------------------------------------------

def _small_city(url) -> None:
    """Two zones and their units; 40 reports at the shop (zone F1) and 40 spread over 2 km."""
    store = city(url)
    rng = np.random.default_rng(4)
    lon = np.r_[np.full(40, IN_F1[0]), IN_F1[0] + rng.uniform(-0.012, 0.012, 40)]
    lat = np.r_[np.full(40, IN_F1[1]), IN_F1[1] + rng.uniform(-0.009, 0.009, 40)]
    at = pd.Timestamp("2026-11-02T01:00Z") + pd.to_timedelta(np.arange(80) * 7, unit="h")
    frame = pd.DataFrame({"lon": lon, "lat": lat, "category": "06010", "reported_at": at})
    cases.intake(store, frame, User("insp1", "inspector"), "api", dedupe=False, now=at[-1].to_pydatetime())
    add_user(store, "insp", "inspector", "correct horse 42")
    add_user(store, "shop", "unit", "correct horse 42", unit_id="U-SHOP")
    store.close()


def test_hotspots_api_is_for_staff_and_answers_geojson(store_url):
    _small_city(store_url)
    with open_store(store_url) as s:
        staff, unit = issue_token(s, "insp"), issue_token(s, "shop")
    client = create_app({"db": store_url, "access_log": False, "TESTING": True}).test_client()
    assert client.get("/api/hotspots").status_code == 401
    refused = client.get("/api/hotspots", headers={"Authorization": f"Bearer {unit}"})
    assert refused.status_code == 403 and "staff" in refused.json["error"]

    bearer = {"Authorization": f"Bearer {staff}"}
    got = client.get("/api/hotspots?method=gi&cell_m=100&since=2026-11-01&until=2026-11-30", headers=bearer)
    assert got.status_code == 200, got.json
    fc = got.json
    assert fc["type"] == "FeatureCollection" and fc["summary"]["problems"] == 80 and fc["features"]
    assert all(f["properties"]["spot"] != "ns" for f in fc["features"])
    strongest = fc["features"][0]
    assert strongest["properties"]["spot"] == "hot99"
    assert shapely.geometry.shape(strongest["geometry"]).distance(shapely.Point(IN_F1)) < 0.002

    spots = client.get("/api/hotspots?method=repeats", headers=bearer).json
    assert spots["features"][0]["properties"]["place"] == "F1"  # the shop's zone, 40 times
    assert spots["features"][0]["properties"]["first"].endswith("+08:00")  # city time
    peaks = client.get("/api/hotspots?method=peaks", headers=bearer).json
    assert sum(peaks["summary"]["by_hour"]) == 80 and peaks["summary"]["tz"] == "Asia/Shanghai"
    bad = client.get("/api/hotspots?cell_m=1", headers=bearer)
    assert bad.status_code == 400 and "cell_m" in bad.json["error"]
    early = client.get("/api/hotspots?until=2025-01-01", headers=bearer).json
    assert early["summary"]["problems"] == 0 and early["features"] == []
