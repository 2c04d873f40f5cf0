"""Problems from a file: the real Boston 311 reports go in with their own times and states,
the placeholder locations are flagged and counted, and zonemap's on-time rate per department
equals the file's own ontime_status."""

import json

import geopandas as gpd
import pandas as pd
import pytest

from layers.store import open_store
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def boston(shared_data):
    path = shared_data / "boston_311_sanitation_2015" / "boston_311_sanitation_2015.gpkg"
    return path, gpd.read_file(path, layer="reports")


@pytest.mark.slow  # the real Boston 311 file
def test_boston_311_imports_with_its_own_times_and_the_on_time_rate_matches(store_url, boston):
    path, src = boston
    done = run_cli("import", path, "--as", "problems", "--tz", "America/New_York", "--json", db=store_url)
    assert done.returncode == 0, done.stdout + done.stderr
    rep = json.loads(done.stdout)
    placeholders = int(src["location_is_placeholder"].sum())
    assert placeholders == 549 and rep["flagged"] == placeholders
    assert any("549 rows have a placeholder location" in w for w in rep["warnings"])
    assert rep["written"] == len(src) == 10293 and rep["routed"]["unlocated"] == placeholders

    with open_store(store_url) as s:
        got = s.read("problems").set_index("problem_id")
        steps = s.count("case_steps")
    assert steps == len(src)  # one step each: the import, no invented history
    one = src.iloc[100]
    row = got.loc[one["case_id"]]
    local = pd.Timestamp(one["open_dt"]).tz_localize("America/New_York")
    assert pd.Timestamp(row["reported_at"]) == local
    assert pd.Timestamp(row["target_at"]) == pd.Timestamp(one["target_dt"]).tz_localize("America/New_York")
    assert (got["status"] == "closed").sum() == (src["case_status"] == "Closed").sum()
    assert (got["status"] == "processing").sum() == (src["case_status"] == "Open").sum()
    flagged = got[got["location_placeholder"].astype(bool)]
    assert len(flagged) == 549 and flagged["zone_code"].isna().all()

    stats = run_cli("cases", "stats", "--by", "department", "--json", db=store_url, check=True)
    mine = {r["department"]: r for r in json.loads(stats.stdout)}
    closed = src[(src["case_status"] == "Closed") & src["target_dt"].notna() & src["closed_dt"].notna()]
    theirs = closed.groupby("department")["ontime_status"].agg(
        closed="size", on_time=lambda v: int((v == "ONTIME").sum()))
    assert set(mine) == set(theirs.index)
    for dept, r in theirs.iterrows():
        assert (mine[dept]["closed"], mine[dept]["on_time"]) == (r["closed"], r["on_time"]), dept
        assert mine[dept]["rate"] == pytest.approx(r["on_time"] / r["closed"])

    again = run_cli("import", path, "--as", "problems", "--tz", "America/New_York", db=store_url)
    assert again.returncode != 0 and "nothing was written" in again.stdout + again.stderr
    with open_store(store_url) as s:
        assert s.count("problems") == len(src) and s.count("case_steps") == len(src)


def test_a_problem_file_with_unknown_states_names_the_rows(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("编号,类别,lon,lat,上报时间,状态\n"
                 "A1,06010,118.78,32.04,2026-11-02 09:00,已结案\n"
                 "A2,06010,118.78,32.04,2026-11-02 10:00,等领导批示\n", "utf-8")
    db = str(tmp_path / "s.gpkg")
    done = run_cli("import", f, "--as", "problems", "--crs", "wgs84", db=db)
    assert done.returncode == 1
    assert "row 3: status '等领导批示' is not known; map it with --status-map 等领导批示=STATE" in done.stdout
    ok = run_cli("import", f, "--as", "problems", "--crs", "wgs84", "--status-map", "等领导批示=shelved", "--json",
                 db=db)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with open_store(db) as s:
        got = s.read("problems").set_index("problem_id")
    assert got.loc["A2", "status"] == "shelved" and got.loc["A1", "status"] == "closed"
    assert got.loc["A2", "source_status"] == "等领导批示"
    # naive times are local (Asia/Shanghai by default)
    assert pd.Timestamp(got.loc["A1", "reported_at"]) == pd.Timestamp("2026-11-02T01:00:00Z")
