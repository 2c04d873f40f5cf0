"""Categories, the working calendar and deadline arithmetic (data in layers/rules/).

A limit is counted in clock hours, working hours (the office periods of working days) or
working days (the same time of day, that many working days later). A case's light is green
below 80 % of its limit, yellow from 80 % to 100 %, red beyond (domain.md).

Working days are Monday to Friday, less China's statutory holidays, plus the weekend days
worked instead (调休), both from the State Council's annual notice as the PyPI package
`chinesecalendar` carries it; the city's calendar.toml adds or removes days and wins."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import logging
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

RULES = Path(__file__).resolve().parent / "rules"
UNITS = ("working_hours", "working_days", "hours", "minutes")
log = logging.getLogger("zonemap.calendar")


def rule_file(name: str) -> Path:
    """A city's own copy of a rules file (in $ZONEMAP_RULES) when it has one, else ours."""
    own = os.environ.get("ZONEMAP_RULES")
    if own and (Path(own) / name).is_file():
        return Path(own) / name
    return RULES / name


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    major: str
    limit: float
    limit_unit: str
    urgency: str
    department: str
    legacy: str = ""
    source: str = ""


def load_categories(path: Path | None = None) -> dict[str, Category]:
    """The category table, checked row by row (a bad row names its line and field)."""
    path = Path(path or rule_file("categories.csv"))
    lines = [ln for ln in path.read_text("utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    out: dict[str, Category] = {}
    for n, row in enumerate(csv.DictReader(lines), start=2):
        where = f"{path.name} row {n}"
        code = (row.get("code") or "").strip()
        if not re.fullmatch(r"\d{5}", code):
            raise InputError(f"{where}: code {code!r} is not a 5-digit category code")
        if code in out:
            raise InputError(f"{where}: code {code} appears twice")
        try:
            limit = float(row["limit"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{where}: limit {row.get('limit')!r} is not a number") from None
        if limit <= 0:
            raise InputError(f"{where}: limit must be above 0")
        if row.get("limit_unit") not in UNITS:
            raise InputError(f"{where}: limit_unit {row.get('limit_unit')!r}; use one of {', '.join(UNITS)}")
        out[code] = Category(code, row["name"], row["major"], limit, row["limit_unit"],
                             row.get("urgency") or "normal", row.get("department") or "",
                             row.get("legacy") or "", row.get("source") or "")
    return out


def _hm(text: str) -> dt.time:
    h, m = text.split(":")
    return dt.time(int(h), int(m))


@functools.cache
def national_days() -> tuple[frozenset[dt.date], frozenset[dt.date], frozenset[int]]:
    """China's statutory rest days and make-up workdays (调休上班) from chinesecalendar, and the
    years it knows (the State Council publishes each year's late in the year before)."""
    import chinese_calendar

    rest, work = frozenset(chinese_calendar.holidays), frozenset(chinese_calendar.workdays)
    years = {d.year for d in rest | work}
    return rest, work, frozenset(range(min(years), max(years) + 1))


_warned_years: set[int] = set()


def _warn_unknown_year(year: int) -> None:
    """Say once per process that a year's national holidays are not known."""
    if year not in _warned_years:
        _warned_years.add(year)
        log.warning("chinesecalendar does not know China's holidays for %d: working days that year "
                    "are Monday to Friday plus calendar.toml; add that year's holidays and make-up "
                    "workdays to calendar.toml, or upgrade chinesecalendar", year)


def _city_days(d: dict, path: Path) -> dict[str, frozenset[dt.date]]:
    days = {k: frozenset(dt.date.fromisoformat(str(v)) for v in d.get(k, [])) for k in ("holidays", "workdays")}
    both = sorted(days["holidays"] & days["workdays"])
    if both:
        raise InputError(f"{path.name}: {both[0]} is both a holiday and a workday; keep it in one list")
    return days


@dataclass(frozen=True)
class WorkingCalendar:
    """`holidays` and `workdays` are the rest days and worked weekend days in force (national
    and city merged); `national_years` the years whose national days are known, checked only
    when `national` is on."""

    periods: tuple[tuple[dt.time, dt.time], ...]
    holidays: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()
    national: bool = False
    national_years: frozenset[int] = frozenset()

    @classmethod
    def load(cls, path: Path | None = None) -> WorkingCalendar:
        path = Path(path or rule_file("calendar.toml"))
        try:
            d = tomllib.loads(path.read_text("utf-8"))
            periods = tuple((_hm(a), _hm(b)) for a, b in (p.split("-") for p in d["work_periods"]))
            city = _city_days(d, path)
        except (tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
            raise InputError(f"{path.name}: {exc}; see the comments in layers/rules/calendar.toml") from None
        if not periods or any(a >= b for a, b in periods):
            raise InputError(f"{path.name}: work_periods must be HH:MM-HH:MM with start before end")
        national = d.get("national_holidays", False)
        if not isinstance(national, bool):
            raise InputError(f"{path.name}: national_holidays = {national!r}; use true or false")
        if not national:
            return cls(periods, city["holidays"], city["workdays"])
        rest, work, years = national_days()
        # the city's entries win: its workdays cancel national rest days, its holidays cancel
        # national make-up workdays
        return cls(periods, (rest - city["workdays"]) | city["holidays"],
                   (work - city["holidays"]) | city["workdays"], True, years)

    def is_working_day(self, day: dt.date) -> bool:
        if self.national and day.year not in self.national_years:
            _warn_unknown_year(day.year)
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def _next_working_day(self, day: dt.date) -> dt.date:
        day += dt.timedelta(days=1)
        while not self.is_working_day(day):
            day += dt.timedelta(days=1)
        return day

    def add(self, start: dt.datetime, amount: float, unit: str) -> dt.datetime:
        """`start` plus `amount` of `unit` (minutes, hours, working_hours, working_days)."""
        if unit == "minutes":
            return start + dt.timedelta(minutes=amount)
        if unit == "hours":
            return start + dt.timedelta(hours=amount)
        if unit == "working_days":
            day, at = start.date(), start.time()
            if not self.is_working_day(day):  # counted from the start of the next working day
                day, at = self._next_working_day(day), self.periods[0][0]
            for _ in range(int(amount)):
                day = self._next_working_day(day)
            return dt.datetime.combine(day, at, start.tzinfo)
        if unit == "working_hours":
            left = dt.timedelta(hours=amount)
            day, now = start.date(), start
            while True:
                if self.is_working_day(day):
                    for a, b in self.periods:
                        p0 = dt.datetime.combine(day, a, start.tzinfo)
                        p1 = dt.datetime.combine(day, b, start.tzinfo)
                        if now >= p1:
                            continue
                        begin = max(now, p0)
                        if begin + left <= p1:
                            return begin + left
                        left -= p1 - begin
                        now = p1
                day += dt.timedelta(days=1)
                now = dt.datetime.combine(day, dt.time(0), start.tzinfo)
        raise ValueError(f"unknown limit unit {unit!r}")

    def at_share(self, start: dt.datetime, end: dt.datetime, unit: str, share: float) -> dt.datetime:
        """The first instant by which `share` of the `unit` time from `start` to `end` has
        passed: the inverse of `elapsed`, so that `elapsed(start, t) >= share * elapsed(start,
        end)` exactly when t is at or after it (a light can then be stored as a time)."""
        whole = self.elapsed(start, end, unit)
        if whole <= 0:
            return start
        part = share * whole
        if unit in ("minutes", "hours"):
            return start + (end - start) * share
        if unit == "working_hours":
            return self.add(start, part, "working_hours")
        if unit == "working_days":  # whole working days, then a share of the next one
            days = int(part)
            day = start
            for _ in range(days):
                day = self.add(day, 1, "working_days")
            return day + (self.add(day, 1, "working_days") - day) * (part - days)
        raise ValueError(f"unknown limit unit {unit!r}")

    def resume(self, t: dt.datetime, unit: str) -> dt.datetime:
        """The last instant at which no more `unit` time has passed than at `t`: `t` itself,
        or for working hours the start of the next working period when `t` falls outside one
        (a stage due at 12:00 has used exactly its time until the afternoon begins)."""
        if unit != "working_hours":
            return t
        day = t.date()
        while True:
            if self.is_working_day(day):
                for a, b in self.periods:
                    p0, p1 = dt.datetime.combine(day, a, t.tzinfo), dt.datetime.combine(day, b, t.tzinfo)
                    if p0 <= t < p1:
                        return t
                    if p0 > t:
                        return p0
            day += dt.timedelta(days=1)

    def elapsed(self, start: dt.datetime, now: dt.datetime, unit: str) -> float:
        """How much of `unit` has passed between start and now (for the light)."""
        if unit == "minutes":
            return (now - start).total_seconds() / 60
        if unit == "hours":
            return (now - start).total_seconds() / 3600
        if unit == "working_days":
            n, day = 0.0, start
            while self.add(day, 1, "working_days") <= now:
                day = self.add(day, 1, "working_days")
                n += 1
            nxt = self.add(day, 1, "working_days")
            return n + (now - day).total_seconds() / max((nxt - day).total_seconds(), 1)
        total, day = 0.0, start.date()
        while day <= now.date():
            if self.is_working_day(day):
                for a, b in self.periods:
                    p0 = max(dt.datetime.combine(day, a, start.tzinfo), start)
                    p1 = min(dt.datetime.combine(day, b, start.tzinfo), now)
                    total += max((p1 - p0).total_seconds(), 0)
            day += dt.timedelta(days=1)
        return total / 3600


def deadline(category: Category, reported_at: dt.datetime, calendar: WorkingCalendar) -> dt.datetime:
    return calendar.add(reported_at, category.limit, category.limit_unit)


YELLOW_SHARE = 0.8  # a stage turns yellow when this share of its time has passed


def light_of(share: float) -> str:
    """The light for the share of a limit used: green below 80 %, yellow 80–100 %, red beyond."""
    return "green" if share < YELLOW_SHARE else "yellow" if share <= 1.0 else "red"


def light_at(now, yellow_at, red_after) -> str:
    """The light at `now` of a stage that turns yellow at `yellow_at` and red after
    `red_after` (WorkingCalendar.at_share and .resume give them): the same light as
    light_of(elapsed share), told from two stored times."""
    return "red" if now > red_after else "yellow" if now >= yellow_at else "green"


def light(category: Category, reported_at: dt.datetime, now: dt.datetime, calendar: WorkingCalendar) -> str:
    """green below 80 % of the limit, yellow 80–100 %, red beyond."""
    return light_of(calendar.elapsed(reported_at, now, category.limit_unit) / category.limit)
