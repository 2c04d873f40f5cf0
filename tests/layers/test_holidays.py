"""Working-day deadlines across China's statutory holidays, from chinesecalendar, with the
city's calendar.toml (ZONEMAP_RULES) as the override.

The 2025 dates are those of the State Council's notice on the 2025 holidays (国办发明电〔2024〕12号):
国庆节、中秋节 10月1日（周三）至8日（周三）放假调休，共8天；9月28日（周日）、10月11日（周六）上班."""

import datetime as dt
import logging

import chinese_calendar
import pytest

from layers.deadlines import WorkingCalendar
from layers.errors import InputError

AT = dt.time(10, 0)


def on(day: str, at: dt.time = AT) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), at)


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.delenv("ZONEMAP_RULES", raising=False)
    return WorkingCalendar.load()


def city(monkeypatch, tmp_path, lines: str) -> WorkingCalendar:
    """The calendar a city gets with its own calendar.toml in ZONEMAP_RULES."""
    (tmp_path / "calendar.toml").write_text('work_periods = ["08:30-12:00", "14:00-17:30"]\n' + lines, "utf-8")
    monkeypatch.setenv("ZONEMAP_RULES", str(tmp_path))
    return WorkingCalendar.load()


def test_the_installed_package_knows_2025():
    # the test's dates below rest on this year being in chinesecalendar
    assert chinese_calendar.is_holiday(dt.date(2025, 10, 8))
    assert chinese_calendar.is_workday(dt.date(2025, 10, 11))


def test_a_deadline_across_guoqing_skips_it_and_counts_the_make_up_days(shipped):
    # Tue 30 Sep + 3 working days: 1–8 Oct are rest days, so Thu 9, Fri 10, and the make-up
    # Saturday 11 Oct. Without the holidays it would be Fri 3 Oct.
    assert shipped.add(on("2025-09-30"), 3, "working_days") == on("2025-10-11")
    # Fri 26 Sep + 1 working day: Sat 27 rests, Sun 28 is a make-up workday
    assert shipped.add(on("2025-09-26"), 1, "working_days") == on("2025-09-28")
    # an hour left at 17:00 on the last day before the holiday falls due on 9 Oct at 09:00
    assert shipped.add(on("2025-09-30", dt.time(17, 0)), 1, "working_hours") == on("2025-10-09", dt.time(9, 0))
    # a report made on 国庆 is counted from the first working morning, 9 Oct 08:30
    assert shipped.add(on("2025-10-03"), 1, "working_days") == on("2025-10-10", dt.time(8, 30))
    # 春节 2025 (28 Jan – 4 Feb, 26 Jan and 8 Feb worked): Mon 27 Jan + 1 → Wed 5 Feb
    assert shipped.add(on("2025-01-27"), 1, "working_days") == on("2025-02-05")


def test_the_light_counts_the_holiday_as_rest(shipped):
    # 1 working day from Tue 30 Sep falls due Thu 9 Oct: on 2 Oct the case is green (2 of the
    # 9 calendar days to its deadline), where a weekends-only calendar has it a day late
    assert shipped.elapsed(on("2025-09-30"), on("2025-10-02"), "working_days") == pytest.approx(2 / 9)
    assert shipped.elapsed(on("2025-09-30"), on("2025-10-09"), "working_days") == pytest.approx(1.0)


def test_the_citys_calendar_wins(monkeypatch, tmp_path, shipped):
    assert shipped.add(on("2025-09-30"), 2, "working_days") == on("2025-10-10")
    # the city works on 8 Oct (it keeps one national holiday fewer) and rests on the national
    # make-up Saturday 11 Oct; it adds a local holiday on Mon 13 Oct
    own = city(monkeypatch, tmp_path, 'national_holidays = true\nworkdays = ["2025-10-08"]\n'
                                      'holidays = ["2025-10-11", "2025-10-13"]\n')
    assert own.add(on("2025-09-30"), 2, "working_days") == on("2025-10-09")  # 8, 9 Oct
    assert own.add(on("2025-09-30"), 4, "working_days") == on("2025-10-14")  # 8, 9, 10, (11–13), 14
    # a calendar that leaves the national days out counts only weekends and its own lists
    plain = city(monkeypatch, tmp_path, "national_holidays = false\n")
    assert plain.add(on("2025-09-30"), 3, "working_days") == on("2025-10-03")


def test_a_year_the_package_does_not_know_falls_back_and_says_so_once(monkeypatch, tmp_path, caplog):
    unknown = max(d.year for d in chinese_calendar.holidays) + 5
    own = city(monkeypatch, tmp_path, f'national_holidays = true\nholidays = ["{unknown}-10-01"]\n')
    start = dt.datetime(unknown, 9, 30, 10, 0)
    while start.weekday() > 3:  # a Monday to Thursday, so the next day would be worked
        start -= dt.timedelta(days=1)
    with caplog.at_level(logging.WARNING, logger="zonemap.calendar"):
        due = own.add(start, 1, "working_days")
        own.add(start, 2, "working_days")
    # weekends and the city's own holiday still count; no crash
    expected = start + dt.timedelta(days=1)
    while expected.date() == dt.date(unknown, 10, 1) or expected.weekday() > 4:
        expected += dt.timedelta(days=1)
    assert due == expected
    said = [r.getMessage() for r in caplog.records if r.name == "zonemap.calendar"]
    assert len(said) == 1 and str(unknown) in said[0] and "calendar.toml" in said[0]


def test_a_day_in_both_lists_is_refused(monkeypatch, tmp_path):
    with pytest.raises(InputError, match="2025-10-08 is both a holiday and a workday"):
        city(monkeypatch, tmp_path, 'holidays = ["2025-10-08"]\nworkdays = ["2025-10-08"]\n')
