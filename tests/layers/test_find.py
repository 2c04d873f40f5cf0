"""cases.find: which cases each role sees, the filters, and paging done by the store (only the
page is read), on both stores; /api/cases?page=N over 1,200 cases against the same sort in pandas."""

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from layers import cases
from layers.errors import NotFound
from layers.store import open_store
from layers.users import User, add_user, issue_token
from layers.workflow import FINAL, LINKED
from webmap.app import create_app

UNIT_A, UNIT_B = User("a1", "unit", "U-A"), User("b1", "unit", "U-B")
PUB1, ANON = User("pub1", "public"), User("anonymous", "public")
STAFF = [User(f"s-{r}", r) for r in ("inspector", "dispatcher", "planner", "admin")]


def _cases(n: int, seed: int = 3) -> gpd.GeoDataFrame:
    """n cases of two units and two reporters, times with ties (and a few missing), every
    tenth a duplicate linked to an earlier case."""
    rng = np.random.default_rng(seed)
    ids = [f"ZM20261101-{i:06d}" for i in range(n)]
    at = pd.Timestamp("2026-11-01T00:00:00Z") + pd.to_timedelta(rng.integers(0, 20 * 24, n), unit="h")
    status = rng.choice(["filed", "dispatched", "closed", "voided", "processing"], n).astype(object)
    dup = np.full(n, None, dtype=object)
    for i in range(10, n, 10):
        status[i], dup[i] = LINKED, ids[int(rng.integers(0, i))]
    return gpd.GeoDataFrame(
        {"problem_id": ids, "category": rng.choice(["06010", "09005"], n).tolist(), "status": status,
         "unit_id": rng.choice(["U-A", "U-B"], n).tolist(), "reporter": rng.choice(["pub1", "pub2", None], n).tolist(),
         "duplicate_of": dup, "reported_at": [None if i % 97 == 5 else t.to_pydatetime() for i, t in enumerate(at)]},
        geometry=[shapely.Point(118.78 + i * 1e-5, 32.04) for i in range(n)], crs="EPSG:4326")


def _newest(frame: pd.DataFrame) -> list[str]:
    """The order the case list promises, done in pandas: newest first, then id, no time last."""
    at = pd.to_datetime(frame["reported_at"], utc=True)
    return frame.assign(_at=at).sort_values(["_at", "problem_id"], ascending=False,
                                            na_position="last")["problem_id"].tolist()


class ReadCounter:
    """A real store that notes how many rows each read of the problems layer brought back."""

    def __init__(self, store):
        self.store, self.rows = store, []

    def read(self, layer, *args, **kw):
        frame = self.store.read(layer, *args, **kw)
        if layer == "problems":
            self.rows.append(len(frame))
        return frame

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.fixture
def filled(store):
    store.append("problems", _cases(300))
    return store, store.read("problems")


def test_each_role_sees_its_own_cases(filled):
    store, all_rows = filled
    mine = all_rows[all_rows["status"] != LINKED]
    for user in STAFF:
        assert cases.find(store, user)[1] == len(mine)
    for user, column, value in [(UNIT_A, "unit_id", "U-A"), (UNIT_B, "unit_id", "U-B"), (PUB1, "reporter", "pub1")]:
        frame, total = cases.find(store, user, limit=1000)
        own = mine[mine[column] == value]
        assert total == len(frame) == len(own) > 0 and set(frame["problem_id"]) == set(own["problem_id"])
    # a unit asking for another unit's cases still gets its own; the anonymous public none
    assert set(cases.find(store, UNIT_A, unit="U-B", limit=1000)[0]["unit_id"]) == {"U-A"}
    nothing, none = cases.find(store, ANON)
    assert nothing.empty and none == 0
    # the open-data view (Open311) sees every case, duplicates too when asked
    assert cases.find(store, None, include_linked=True)[1] == len(all_rows)


def test_an_unseen_case_cannot_be_read_or_moved(filled):
    store, all_rows = filled
    theirs = all_rows[(all_rows["unit_id"] == "U-B") & (all_rows["status"] == "dispatched")]["problem_id"].iloc[0]
    with pytest.raises(NotFound):
        cases.get_case(store, theirs, UNIT_A)
    with pytest.raises(NotFound):
        cases.transition(store, theirs, "accept", UNIT_A)
    assert cases.transition(store, theirs, "accept", UNIT_B)["status"] == "processing"
    assert cases.get_case(store, theirs, STAFF[0])["status"] == "processing"


def test_filters_and_pages_match_pandas_and_only_the_page_is_read(filled):
    store, all_rows = filled
    at = pd.to_datetime(all_rows["reported_at"], utc=True)
    # since/until are city days (Asia/Shanghai), both included
    start, stop = pd.Timestamp("2026-11-03", tz="Asia/Shanghai"), pd.Timestamp("2026-11-10", tz="Asia/Shanghai")
    want = all_rows[(at >= start) & (at < stop) & all_rows["category"].eq("06010").to_numpy()
                    & all_rows["status"].isin(["filed", "closed"]).to_numpy()]
    counter = ReadCounter(store)
    got = [cases.find(counter, STAFF[0], status="filed,closed", category="06010", since="2026-11-03",
                      until="2026-11-09", limit=7, offset=k) for k in range(0, 70, 7)]
    assert [p for frame, _ in got for p in frame["problem_id"]] == _newest(want)
    assert {total for _, total in got} == {len(want)} and max(counter.rows) == 7


def test_open_and_closed_count_a_duplicate_as_its_case(filled):
    store, all_rows = filled
    status = dict(zip(all_rows["problem_id"], all_rows["status"]))
    final = all_rows["status"].isin(FINAL) | (all_rows["status"].eq(LINKED)
                                              & all_rows["duplicate_of"].map(status).isin(FINAL))
    for closed in (True, False):
        want = _newest(all_rows[final == closed])
        pages = [cases.find(store, None, include_linked=True, closed=closed, limit=40, offset=k)
                 for k in range(0, len(want) + 40, 40)]
        assert [p for frame, _ in pages for p in frame["problem_id"]] == want
        assert pages[0][1] == len(want)
        assert any(s == LINKED for frame, _ in pages for s in frame["status"])


def test_api_case_list_page_three_of_1200(tmp_path):
    db = str(tmp_path / "many.gpkg")
    with open_store(db) as s:
        s.append("problems", _cases(1200, seed=11))
        everything = s.read("problems")
        add_user(s, "insp", "inspector", "correct horse 42", None)
        token = issue_token(s, "insp")
    client = create_app({"DB": db, "PHOTOS": str(tmp_path / "photos"), "TESTING": True}).test_client()
    r = client.get("/api/cases?page=3&per_page=50", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.json
    want = _newest(everything[everything["status"] != LINKED])
    assert r.json["total"] == len(want) and [c["problem_id"] for c in r.json["cases"]] == want[100:150]
    with open_store(db) as s:  # the same page, counting what the store hands back
        counter = ReadCounter(s)
        page = cases.list_cases(counter, STAFF[0], page=3, per_page=50)
    assert [c["problem_id"] for c in page["cases"]] == want[100:150] and counter.rows == [50]
