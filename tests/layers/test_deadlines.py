import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layers.deadlines import YELLOW_SHARE, WorkingCalendar, deadline, light, light_at, light_of, load_categories
from layers.errors import InputError

# 2026-05-01 (Fri) is a holiday in this test calendar; 2026-05-09 (Sat) is a make-up workday
CAL = WorkingCalendar.load


@pytest.fixture
def cal(tmp_path):
    f = tmp_path / "cal.toml"
    f.write_text('work_periods = ["08:30-12:00", "14:00-17:30"]\nholidays = ["2026-05-01"]\n'
                 'workdays = ["2026-05-09"]\n', "utf-8")
    return WorkingCalendar.load(f)


def test_the_category_table_has_the_national_codes_with_limits():
    cats = load_categories()
    assert len(cats) >= 90
    assert cats["06010"].name == "暴露垃圾" and cats["06010"].limit_unit == "working_days"
    assert cats["06029"].urgency == "urgent" and cats["06029"].limit_unit == "hours"
    for code in ("06011", "06012", "06017", "06036", "06042", "07001", "08004", "08012", "09005",
                 "09006", "09009", "09011", "10001"):
        assert code in cats


def test_working_days_skip_the_weekend_and_a_holiday(cal):
    thu = dt.datetime(2026, 4, 30, 10, 0)  # Thursday; Fri is a holiday, then the weekend
    assert cal.add(thu, 1, "working_days") == dt.datetime(2026, 5, 4, 10, 0)
    sat = dt.datetime(2026, 5, 2, 9, 0)  # reported on a rest day: counted from Monday morning
    assert cal.add(sat, 1, "working_days") == dt.datetime(2026, 5, 5, 8, 30)
    fri = dt.datetime(2026, 5, 8, 16, 0)  # the make-up Saturday counts
    assert cal.add(fri, 1, "working_days") == dt.datetime(2026, 5, 9, 16, 0)


def test_working_hours_cross_lunch_and_night(cal):
    assert cal.add(dt.datetime(2026, 5, 6, 11, 0), 2, "working_hours") == dt.datetime(2026, 5, 6, 15, 0)
    assert cal.add(dt.datetime(2026, 5, 6, 17, 0), 1, "working_hours") == dt.datetime(2026, 5, 7, 9, 0)
    assert cal.add(dt.datetime(2026, 4, 30, 17, 0), 1, "working_hours") == dt.datetime(2026, 5, 4, 9, 0)
    assert cal.add(dt.datetime(2026, 5, 6, 20, 0), 2, "hours") == dt.datetime(2026, 5, 6, 22, 0)


def test_deadline_and_light(cal):
    cats = load_categories()
    t0 = dt.datetime(2026, 5, 6, 9, 0)
    assert deadline(cats["06012"], t0, cal) == dt.datetime(2026, 5, 6, 16, 0)  # 3 h before lunch + 2 h
    road = cats["06012"]
    assert light(road, t0, dt.datetime(2026, 5, 6, 11, 0), cal) == "green"   # 2 h of 5
    assert light(road, t0, dt.datetime(2026, 5, 6, 15, 30), cal) == "yellow"  # 4.5 h of 5 = 90 %
    assert light(road, t0, dt.datetime(2026, 5, 7, 9, 0), cal) == "red"


def test_bad_tables_name_the_row(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("code,name,major,limit,limit_unit,urgency,department\n06010,暴露垃圾,市容环境,1,weeks,normal,x\n",
                 "utf-8")
    with pytest.raises(InputError, match="row 2: limit_unit 'weeks'"):
        load_categories(f)
    f.write_text("code,name,major,limit,limit_unit,urgency,department\n6010,暴露垃圾,市容环境,1,hours,normal,x\n",
                 "utf-8")
    with pytest.raises(InputError, match="row 2: code '6010'"):
        load_categories(f)


def test_the_shipped_calendar_loads():
    cal = WorkingCalendar.load()
    assert cal.is_working_day(dt.date(2026, 11, 27)) and not cal.is_working_day(dt.date(2026, 11, 28))


_MINUTE = dt.timedelta(minutes=1)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 60 * 24 * 40), amount=st.integers(1, 12),
       unit=st.sampled_from(["minutes", "hours", "working_hours", "working_days"]),
       later=st.integers(0, 60 * 24 * 30))
def test_the_stored_light_times_tell_the_same_light_as_the_share_of_time_used(start, amount, unit, later):
    """A case's light is kept as two times (yellow from, red after) so that a store can tell it
    in SQL; at every minute they must give the light the share of working time gives."""
    cal = WorkingCalendar(((dt.time(8, 30), dt.time(12, 0)), (dt.time(14, 0), dt.time(17, 30))),
                          frozenset({dt.date(2026, 5, 1)}), frozenset({dt.date(2026, 5, 9)}))
    s = dt.datetime(2026, 4, 25) + start * _MINUTE
    d = cal.add(s, amount, unit)
    yellow, red = cal.at_share(s, d, unit, YELLOW_SHARE), cal.resume(d, unit)
    whole = cal.elapsed(s, d, unit)
    sec = dt.timedelta(seconds=1)  # on either side of each change (at it, floats decide)
    for now in (s + later * _MINUTE, yellow - sec, yellow + sec, red - sec, red + sec, d + sec):
        if now < s:
            continue
        want = light_of(cal.elapsed(s, now, unit) / whole)
        assert light_at(now, yellow, red) == want, (s, d, now, yellow, red)
