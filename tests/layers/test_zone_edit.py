"""A planner's zone and unit edits (layers.zone_edit, layers.units_edit) on both stores: every
change a new version with who, when and why; stale edits refused naming who and when; the
coverage rule (trim, preview, refuse a swallow, no slivers); split, merge, restore; units
filled in and merged; and the same from the command line. After every edit no code is in
force twice and `zones check` finds no overlap.

The city is a 3×3 grid of 22 m squares near Nanjing with three units, one named like an
attack and one a placeholder."""

import datetime as dt
import json
import threading

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import mapping

from geo.crs import metric_crs
from layers import units_edit, zone_edit, zones
from layers.errors import Forbidden, InputError, Refused
from layers.store import open_store
from layers.users import User
from tests.conftest import run_cli

X0, Y0, D = 118.78, 32.04, 0.0002
CODES = [f"F{k + 1:06d}" for k in range(9)]  # F000001 south-west … F000009 north-east; F000005 the middle
XSS = "<img src=x onerror=alert(1)>"
PLAN = User("plan1", "planner")
PLAN2 = User("plan2", "planner")


def box(x0, y0, x1, y1):
    """A box in grid cells (0…3 each way)."""
    return shapely.box(X0 + x0 * D, Y0 + y0 * D, X0 + x1 * D, Y0 + y1 * D)


def grid_city(url):
    """The store at `url` with the 3×3 grid of zones (version 1, as `zones generate` leaves
    them) and units U-A 甲商店, U-B (an attack's name), U-P (a placeholder)."""
    s = open_store(url)
    z = gpd.GeoDataFrame(
        {"code": CODES, "kind": ["frontage"] * 9, "primary_unit": [("U-A", "U-B", "U-P")[k % 3] for k in range(9)],
         "valid_from": [dt.date(2026, 1, 1)] * 9, "version": [1] * 9, "source": ["generated"] * 9},
        geometry=[box(k % 3, k // 3, k % 3 + 1, k // 3 + 1) for k in range(9)], crs=4326)
    z["area_m2"] = z.to_crs(metric_crs(X0, Y0)).area.round(2)
    u = gpd.GeoDataFrame({"unit_id": ["U-A", "U-B", "U-P"], "name": ["甲商店", XSS, "建筑 385355354"],
                          "placeholder": [False, False, True]}, geometry=[None] * 3, crs=4326)
    with s.transaction() as tx:
        tx.append("zones", z)
        tx.append("units", u)
    return s


@pytest.fixture
def city(store_url):
    s = grid_city(store_url)
    yield s
    s.close()


def in_force(s):
    return zones.current(s.read("zones"))


def sound(s):
    """No code in force twice, no overlap: what every edit must leave."""
    now = in_force(s)
    assert now["code"].is_unique, now["code"].value_counts().head()
    res = zones.check(s)
    assert res["overlaps"] == 0 and res["invalid"] == 0, res
    return now


def area_of(s, code):
    return float(in_force(s).set_index("code").loc[code, "area_m2"])


def test_assign_is_a_new_version_with_who_when_and_why(city):
    rows = city.count("zones")
    change = zone_edit.assign(city, "F000001", "U-B", PLAN, note="店铺易主", base_version=1)
    assert [(r["code"], r["version"]) for r in change.rows] == [("F000001", 2)]
    hist = zone_edit.history(city, "F000001")
    assert [(h["version"], h["change"], h["by"], h["unit_id"]) for h in hist] == [
        (1, "generate", "zones generate", "U-A"), (2, "assign", "plan1", "U-B")]
    assert hist[1]["note"] == "店铺易主" and hist[1]["unit_name"] == XSS
    assert hist[1]["at"].endswith("+08:00")  # city time
    assert hist[0]["valid_to"] == hist[1]["valid_from"] and hist[1]["valid_to"] is None
    audit = city.read("audit", where={"action": "zones:assign"})
    assert list(audit["actor"]) == ["plan1"] and list(audit["target"]) == ["F000001"]
    # the same assignment again writes nothing
    assert zone_edit.assign(city, "F000001", "U-B", PLAN, base_version=2).written == 0
    assert city.count("zones") == rows + 1
    sound(city)


def test_a_stale_edit_is_refused_naming_who_changed_the_zone_and_when(city):
    zone_edit.assign(city, "F000005", "U-A", PLAN, base_version=1)
    rows = city.count("zones")
    with pytest.raises(zone_edit.EditRefused) as err:
        zone_edit.reshape(city, "F000005", mapping(box(1, 1, 1.5, 2)), PLAN2, base_version=1)
    msg = str(err.value)
    assert err.value.status == 409 and "changed by plan1 at " in msg and "+08:00" in msg
    assert err.value.extra["current_version"] == 2 and err.value.extra["by"] == "plan1"
    assert city.count("zones") == rows


def test_a_shape_over_a_neighbour_trims_it_shown_first_by_a_dry_run(city):
    grown = mapping(box(1, 1, 2.5, 2))  # the middle zone takes half of its east neighbour
    rows, total = city.count("zones"), in_force(city)["area_m2"].sum()
    preview = zone_edit.reshape(city, "F000005", grown, PLAN, base_version=1, dry_run=True)
    assert city.count("zones") == rows and preview.written == 0
    (trim,) = preview.trimmed
    assert (trim["code"], trim["version_before"], trim["version_after"]) == ("F000006", 1, 2)
    half = area_of(city, "F000006") / 2
    assert trim["area_m2_lost"] == pytest.approx(half, rel=0.01)
    saved = zone_edit.reshape(city, "F000005", grown, PLAN, note="合并门前", base_version=1)
    assert saved.trimmed == preview.trimmed and city.count("zones") == rows + 2
    now = sound(city).set_index("code")
    assert now.loc["F000006", "version"] == 2 and now.loc["F000006", "change_kind"] == "trim"
    assert now.loc["F000006", "area_m2"] == pytest.approx(half, rel=0.01)
    assert now["area_m2"].sum() == pytest.approx(total, abs=0.5)  # nothing lost, nothing doubled
    assert zones.check(city)["gaps"] == 0


def test_a_shape_that_would_swallow_a_neighbour_is_refused_with_its_geometry(city):
    rows = city.count("zones")
    with pytest.raises(zone_edit.EditRefused) as err:
        zone_edit.reshape(city, "F000005", mapping(box(1, 1, 3, 2)), PLAN, base_version=1)
    assert "swallow zone F000006" in str(err.value)
    (conflict,) = err.value.extra["conflicts"]
    assert conflict["code"] == "F000006" and shapely.geometry.shape(conflict["geometry"]).equals(box(2, 1, 3, 2))
    assert city.count("zones") == rows


def test_a_piece_of_a_neighbour_under_one_square_metre_goes_to_the_edited_zone(city):
    # leaving the neighbour only a 4 × 2 cm corner is swallowing it
    notch = shapely.difference(box(1, 1, 3, 2), box(2.998, 1.999, 3, 2))
    with pytest.raises(zone_edit.EditRefused):
        zone_edit.reshape(city, "F000005", mapping(notch), PLAN, base_version=1)
    # half the neighbour, drawn with a hole of about 0.4 m² in it: the hole would be a sliver of the
    # neighbour, cut off from the rest of it, so it goes to the edited zone (no sliver, no gap)
    hole = box(2.2, 1.5, 2.23, 1.53)
    change = zone_edit.reshape(city, "F000005", mapping(shapely.difference(box(1, 1, 2.5, 2), hole)), PLAN,
                               base_version=1)
    now = sound(city).set_index("code")
    assert len(change.trimmed) == 1 and zones.check(city)["slivers"] == 0 and zones.check(city)["gaps"] == 0
    assert shapely.covers(now.loc["F000005", "geometry"], hole.centroid)
    assert not shapely.intersects(now.loc["F000006", "geometry"], hole.centroid)


def test_split_then_merge_then_restore(city):
    line = {"type": "LineString", "coordinates": [[X0 + 1.6 * D, Y0 + 0.5 * D], [X0 + 1.6 * D, Y0 + 2.5 * D]]}
    before = area_of(city, "F000005")
    split = zone_edit.split(city, "F000005", line, PLAN, note="分成两户", base_version=1)
    assert [(r["code"], r["version"]) for r in split.rows] == [("F000005", 2), ("F000010", 1)]
    sound(city)
    assert area_of(city, "F000005") + area_of(city, "F000010") == pytest.approx(before, abs=0.01)
    with pytest.raises(InputError, match="does not touch"):
        zone_edit.merge(city, ["F000010", "F000001"], PLAN)
    zone_edit.merge(city, ["F000005", "F000010"], PLAN, base_versions={"F000005": 2, "F000010": 1})
    now = sound(city)
    assert "F000010" not in set(now["code"]) and area_of(city, "F000005") == pytest.approx(before, abs=0.01)
    assert [h["change"] for h in zone_edit.history(city, "F000005")] == ["generate", "split", "merge"]
    # undo back to version 1: a new version (4) equal to it
    zone_edit.reshape(city, "F000005", mapping(box(1, 1, 1.5, 2)), PLAN, base_version=3)
    zone_edit.restore(city, "F000005", 1, PLAN, note="撤销", base_version=4)
    rows = city.read("zones", where={"code": "F000005"}).set_index("version")
    assert rows.loc[5, "change_kind"] == "restore" and rows.loc[5, "primary_unit"] == rows.loc[1, "primary_unit"]
    assert shapely.equals(rows.loc[5, "geometry"], rows.loc[1, "geometry"])
    sound(city)


def test_create_fills_a_gap_and_every_code_stays_unique(city):
    made = zone_edit.create(city, mapping(box(3, 0, 4, 1)), "frontage", "U-A", PLAN, note="新店")
    assert made.codes == ["F000010"] and made.trimmed == []
    with pytest.raises(InputError, match="not a unit"):
        zone_edit.create(city, mapping(box(4, 0, 5, 1)), "frontage", "U-NOPE", PLAN)
    sound(city)


def test_only_planners_and_admins_edit(city):
    for user in (User("shop", "unit", "U-A"), User("insp", "inspector"), User("anonymous", "public")):
        with pytest.raises(Forbidden):
            zone_edit.assign(city, "F000001", "U-B", user, base_version=1)
        with pytest.raises(Forbidden):
            units_edit.edit(city, "U-P", {"name": "x"}, user)
    assert city.count("zones") == 9


def test_two_planners_at_once_one_wins_and_no_code_is_in_force_twice(city):
    results = []

    def edit(user, unit):
        try:
            zone_edit.assign(city, "F000002", unit, user, base_version=1)
            results.append("ok")
        except Refused as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=edit, args=(u, unit)) for u, unit in ((PLAN, "U-A"), (PLAN2, "U-P"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["EditRefused", "ok"]
    assert in_force(city).set_index("code").loc["F000002", "version"] == 2
    sound(city)


def test_units_filled_in_and_a_placeholder_merged_into_a_real_unit(city):
    named = units_edit.edit(city, "U-A", {"person": "王五", "phone": "138 0000 0000",
                                          "credit_code": "91320100MA1XXXXX0A"}, PLAN, note="走访核实")
    assert named["person"] == "王五" and named["credit_code"] == "91320100MA1XXXXX0A"
    with pytest.raises(InputError, match="统一社会信用代码"):
        units_edit.edit(city, "U-B", {"credit_code": "123"}, PLAN)
    with pytest.raises(Refused, match="U-A"):
        units_edit.edit(city, "U-B", {"credit_code": "91320100MA1XXXXX0A"}, PLAN)
    placeholder_zones = set(in_force(city).query("primary_unit == 'U-P'")["code"])
    kept = units_edit.merge(city, "U-P", "U-A", PLAN, note="同一商户")
    assert set(kept["zones_moved"]) == placeholder_zones == {"F000003", "F000006", "F000009"}
    now = sound(city).set_index("code")
    assert set(now.loc[sorted(placeholder_zones), "primary_unit"]) == {"U-A"}
    assert set(now.loc[sorted(placeholder_zones), "change_kind"]) == {"unit_merge"}
    gone = city.read("units", where={"unit_id": "U-P"}).iloc[0]  # kept, retired
    assert gone["merged_into"] == "U-A" and gone["retired_at"] is not None
    with pytest.raises(InputError, match="retired"):
        zone_edit.assign(city, "F000001", "U-P", PLAN)
    assert units_edit.listing(city, PLAN, placeholder=True)["total"] == 0


def test_the_command_line_assigns_imports_twice_and_restores(city, store_url, tmp_path):
    city.close()
    out = json.loads(run_cli("zones", "assign", "F000001", "--unit", "U-B", "--note", "换人", "--json",
                             db=store_url, check=True).stdout)
    assert out["versions"][0]["version"] == 2
    again = json.loads(run_cli("zones", "assign", "F000001", "--unit", "U-B", "--json", db=store_url,
                               check=True).stdout)
    assert again["written"] == 0
    # export the middle zone, move its east edge half a cell west, and bring it back: a new version
    with open_store(store_url) as s:
        middle = in_force(s).query("code == 'F000005'")[["code", "kind", "primary_unit", "geometry"]]
    path = tmp_path / "edited.geojson"
    middle.assign(geometry=[box(1, 1, 1.5, 2)]).to_file(path, driver="GeoJSON")
    dry = json.loads(run_cli("zones", "import", path, "--dry-run", "--json", db=store_url, check=True).stdout)
    assert dry["zones"]["new_versions"] == 1 and dry["written"] == 0
    first = json.loads(run_cli("zones", "import", path, "--json", db=store_url, check=True).stdout)
    second = json.loads(run_cli("zones", "import", path, "--json", db=store_url, check=True).stdout)
    assert first["written"] == 1 and second["written"] == 0 and second["zones"]["unchanged"] == 1
    restored = json.loads(run_cli("zones", "restore", "F000005", "--version", "1", "--note", "撤销", "--json",
                                  db=store_url, check=True).stdout)
    assert restored["versions"][0]["version"] == 3
    check = run_cli("zones", "check", "--json", db=store_url)
    assert check.returncode == 0 and json.loads(check.stdout)["overlaps"] == 0
    with open_store(store_url) as s:
        hist = zone_edit.history(s, "F000005")
        assert [h["change"] for h in hist] == ["generate", "import", "restore"]
        assert hist[2]["by"].startswith("cli:") and hist[2]["note"] == "撤销"
        v3 = s.read("zones", where={"code": "F000005", "version": 3}).geometry.iloc[0]
        assert shapely.equals(v3, box(1, 1, 2, 2))
        sound(s)
    bad = run_cli("zones", "restore", "F000005", "--version", "9", db=store_url)
    assert bad.returncode == 1 and "has no version 9" in bad.stderr
    merged = run_cli("units", "merge", "U-P", "--into", "U-A", "--json", db=store_url, check=True)
    assert json.loads(merged.stdout)["zones_moved"] == ["F000003", "F000006", "F000009"]


def test_a_zone_drawn_while_zones_generate_moves_in_takes_a_code_the_run_does_not_hold(city):
    """A generation's rows are hidden from readers until it ends; a planner's new zone meanwhile
    still takes a code after theirs (the same code in both would make the run refuse itself
    at its end, throwing the whole run away)."""
    held = gpd.GeoDataFrame({"code": ["F000010", "F000011"], "kind": "frontage", "primary_unit": "U-A",
                             "version": 1, "run": "generate:moving"},
                            geometry=[box(5, 0, 6, 1), box(6, 0, 7, 1)], crs=4326)
    with city.transaction() as tx:
        tx.start_run("generate:moving", dt.datetime.now(dt.UTC))
        tx.append("zones", held)
    assert "F000011" not in set(in_force(city)["code"])
    made = zone_edit.create(city, mapping(box(3, 0, 4, 1)), "frontage", "U-A", PLAN, note="新店")
    assert made.codes == ["F000012"]
