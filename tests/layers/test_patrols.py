"""Patrols (走): a hand-made 3×3 grid of 100 m cells and a GPX track through seven of them give
巡查率 7/9 = 77.8 %, below the 95 % target, with the two cells not patrolled listed; tracks from
GeoJSON; the phone's POST /api/patrols."""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pyproj
import pytest
import shapely

from geo.crs import metric_crs
from layers import patrols
from layers.errors import InputError
from layers.store import open_store
from layers.users import add_user, issue_token
from tests.conftest import run_cli

LON, LAT = 118.78, 32.04
METRIC = metric_crs(LON, LAT)
_fwd = pyproj.Transformer.from_crs("EPSG:4326", METRIC, always_xy=True)
_back = pyproj.Transformer.from_crs(METRIC, "EPSG:4326", always_xy=True)
X0, Y0 = _fwd.transform(LON, LAT)


def lonlat(x, y):
    """Metres east/north of the grid's south-west corner → (lon, lat)."""
    return _back.transform(X0 + x, Y0 + y)


def cell(col, row):
    return shapely.Polygon([lonlat(col * 100 + dx, row * 100 + dy) for dx, dy in ((0, 0), (100, 0), (100, 100),
                                                                                   (0, 100))])


def grid_store(url):
    """Nine cells: street 东街 holds rows 0 and 1, 西街 row 2; one community per row."""
    s = open_store(url)
    cells = [(c, r) for r in range(3) for c in range(3)]
    frame = gpd.GeoDataFrame({
        "code": [f"320102001001{r}{c:02d}" for c, r in cells], "name": [f"网格{c}{r}" for c, r in cells],
        "street": ["东街" if r < 2 else "西街" for _, r in cells], "community": [f"社区{r}" for _, r in cells]},
        geometry=[cell(c, r) for c, r in cells], crs="EPSG:4326")
    s.append("grid", frame)
    return s


# A snake through the centres of row 0 (west → east), row 1 (east → west), then north into
# cell (0, 2): seven cells. Cells (1, 2) and (2, 2) stay 50 m from it, beyond 15 m.
SNAKE = [(50, 50), (250, 50), (250, 150), (50, 150), (50, 250)]


def gpx(path, tracks):
    """A GPX file with (name, [(x, y, time)]) tracks."""
    parts = []
    for name, pts in tracks:
        seg = "".join(f'<trkpt lat="{lonlat(x, y)[1]:.8f}" lon="{lonlat(x, y)[0]:.8f}"><time>{t}</time></trkpt>'
                      for x, y, t in pts)
        parts.append(f"<trk><name>{name}</name><trkseg>{seg}</trkseg></trk>")
    path.write_text('<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" creator="t" '
                    'xmlns="http://www.topografix.com/GPX/1/1">' + "".join(parts) + "</gpx>", "utf-8")
    return path


def snake_times(day="2026-11-03"):
    return [(x, y, f"{day}T0{1 + i}:00:00Z") for i, (x, y) in enumerate(SNAKE)]


def test_coverage_of_a_hand_made_grid_lists_the_cells_not_patrolled(store_url, tmp_path):
    grid_store(store_url).close()
    october = [(250, 250, "2026-10-05T01:00:00Z"), (150, 250, "2026-10-05T02:00:00Z")]  # must not count in November
    f = gpx(tmp_path / "walk.gpx", [("网格员01", snake_times()), ("网格员02", october)])
    done = run_cli("import", f, "--as", "patrols", "--json", db=store_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["written"] == 2
    with open_store(store_url) as s:
        tracks = s.read("patrols").sort_values("started_at")
        cov = patrols.coverage(s, "2026-11")
    nov = tracks.iloc[1]
    assert nov["worker"] == "网格员01" and nov["points"] == 5
    assert pd.Timestamp(nov["started_at"]) == pd.Timestamp("2026-11-03T01:00Z")
    assert pd.Timestamp(nov["ended_at"]) == pd.Timestamp("2026-11-03T05:00Z")
    assert nov["length_m"] == pytest.approx(200 + 100 + 200 + 100, abs=0.5)
    assert (cov["cells"], cov["patrolled"], cov["tracks"]) == (9, 7, 1)
    assert cov["rate"] == pytest.approx(7 / 9) and round(100 * cov["rate"], 1) == 77.8
    assert cov["meets_target"] is False and cov["target"] == 0.95
    assert sorted(c["name"] for c in cov["not_patrolled"]) == ["网格12", "网格22"]
    streets = {r["street"]: (r["patrolled"], r["cells"]) for r in cov["by_street"]}
    assert streets == {"东街": (6, 6), "西街": (1, 3)}
    assert [(w["worker"], w["cells"]) for w in cov["by_worker"]] == [("网格员01", 7)]
    # October: only the second worker's short walk, through cells (2, 2) and (1, 2)
    with open_store(store_url) as s:
        october = patrols.coverage(s, "2026-10")
    assert october["patrolled"] == 2 and len(october["not_patrolled"]) == 7
    assert {"网格12", "网格22"}.isdisjoint(c["name"] for c in october["not_patrolled"])


def test_the_distance_is_a_setting_in_metres(gpkg_store, tmp_path):
    gpkg_store.append("grid", gpd.GeoDataFrame({"code": ["320102001001000"]}, geometry=[cell(0, 0)],
                                               crs="EPSG:4326"))
    f = gpx(tmp_path / "t.gpx", [("w", [(120, -50, "2026-11-03T01:00:00Z"), (120, 150, "2026-11-03T02:00:00Z")])])
    patrols.import_tracks(gpkg_store, f)
    assert patrols.coverage(gpkg_store, "2026-11")["patrolled"] == 0  # 20 m east of the cell
    assert patrols.coverage(gpkg_store, "2026-11", within_m=25)["patrolled"] == 1


def test_geojson_tracks_need_a_worker_and_times(gpkg_store, tmp_path):
    line = [list(lonlat(x, y)) for x, y in SNAKE]
    good = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": line},
            "properties": {"worker": "网格员03", "coordTimes": [f"2026-11-04T0{i}:00:00Z" for i in range(5)]}}
    bad = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": line}, "properties": {"worker": "x"}}
    f = tmp_path / "t.geojson"
    f.write_text(json.dumps({"type": "FeatureCollection", "features": [good, bad]}), "utf-8")
    rep = patrols.import_tracks(gpkg_store, f)
    assert rep.written == 0 and "nothing was written" in rep.error
    assert rep.rejected == [{"row": 2, "reason": "feature 2: no time (GPX point times, started_at/ended_at or a "
                                                 "times list)"}]
    rep = patrols.import_tracks(gpkg_store, f, skip_invalid=True)
    assert rep.written == 1
    got = gpkg_store.read("patrols").iloc[0]
    assert got["worker"] == "网格员03" and pd.Timestamp(got["ended_at"]) == pd.Timestamp("2026-11-04T04:00Z")
    pts = tmp_path / "p.geojson"
    pts.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [LON, LAT]}, "properties": {}}]}))
    with pytest.raises(InputError, match="no line features"):
        patrols.import_tracks(gpkg_store, pts)


def test_coverage_without_a_grid_says_what_to_do(gpkg_store):
    with pytest.raises(InputError, match="import the unit grid"):
        patrols.coverage(gpkg_store, "2026-11")


def test_the_phone_records_a_track(tmp_path):
    from webmap.app import create_app

    db = str(tmp_path / "s.gpkg")
    grid_store(db).close()
    with open_store(db) as s:
        add_user(s, "grid1", "inspector", "correct horse 42")
        add_user(s, "disp", "dispatcher", "correct horse 42")
        worker, other = issue_token(s, "grid1"), issue_token(s, "disp")
    app = create_app({"db": db, "photos": str(tmp_path / "ph"), "access_log": False, "TESTING": True})
    c = app.test_client()
    line = [list(lonlat(x, y)) for x, y in SNAKE]
    feature = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": line},
               "properties": {"times": [f"2026-11-03T0{1 + i}:00:00+08:00" for i in range(5)]}}
    assert c.post("/api/patrols", json=feature).status_code == 401
    assert c.post("/api/patrols", json=feature, headers={"Authorization": f"Bearer {other}"}).status_code == 403
    got = c.post("/api/patrols", json=feature, headers={"Authorization": f"Bearer {worker}"})
    assert got.status_code == 201, got.json
    assert got.json["worker"] == "grid1" and got.json["started_at"] == "2026-11-03T01:00:00+08:00"
    assert got.json["length_m"] == pytest.approx(600, abs=0.5)
    short = {**feature, "properties": {"times": feature["properties"]["times"][:3]}}
    bad = c.post("/api/patrols", json=short, headers={"Authorization": f"Bearer {worker}"})
    assert bad.status_code == 400 and "one time per coordinate" in bad.json["error"]
    with open_store(db) as s:
        assert patrols.coverage(s, "2026-11")["patrolled"] == 7
        assert s.read("audit")["action"].tolist()[-1] == "patrol:record"
