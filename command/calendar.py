"""The center's working calendar (工作日历): working hours, weekly rest days, holidays and the
调休 make-up working days, in the center's time zone (pure: instants are passed in).

A day is a working day when it is a make-up working day (a weekend day worked, 调休上班), or
when it is neither a holiday nor a weekly rest day. A working day has the same working periods
(default 08:30–12:00 and 13:30–17:30 local time, the usual hours of a Chinese government office:
7.5 working hours). Instants in and out are timezone-aware datetimes (answers in UTC); the
periods are local wall-clock times of `zone` (Asia/Shanghai by default, which has no daylight
saving time; a zone with DST works too, its periods are placed by `zoneinfo`).

Arithmetic:

- `add(at, amount)`: the instant when `amount` of working time has passed after `at` (started
  outside working hours, the count starts at the next working period; an amount that ends a
  period exactly ends at that period's end, not at the start of the next);
- `add_working_days(at, n)`: `add(at, n × day_length)`: N working days are N working days' worth
  of working time, so a ticket received on Monday at 10:00 with 5 working days is due the next
  Monday at 10:00 (later across holidays), one received on Saturday on Friday at 17:30;
- `between(a, b)`: the working time from `a` to `b` (negative when `b` is before `a`);
  ``between(at, add(at, x)) == x`` for every `at` and `x` ≥ 0;
- `is_working_time(at)`: whether `at` falls in a working period.

Each local day's periods are computed once and cached (a dict per calendar), so a ticket view
costs a few dictionary reads per day spanned. `calendar_from_config` reads the settings file's
mapping (see ``config/calendar.toml``).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from command.errors import ValidationError

ZERO = timedelta(0)
MAX_DAYS = 3660  # a search for working time gives up after ten years without a working day
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_HOURS: tuple[tuple[time, time], ...] = ((time(8, 30), time(12, 0)), (time(13, 30), time(17, 30)))
_Period = tuple[datetime, datetime]


def _aware(value: Any, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(name, "must be a timezone-aware datetime")
    return value.astimezone(timezone.utc)


@dataclass(frozen=True)
class WorkCalendar:
    """Working periods of a working day, weekly rest days (0 Monday … 6 Sunday), holidays and
    make-up working days, in `zone`; `provisional_years` are years whose dates are not the
    official schedule yet (shown as a warning by whoever loads the calendar)."""

    zone: ZoneInfo = ZoneInfo("Asia/Shanghai")
    hours: tuple[tuple[time, time], ...] = DEFAULT_HOURS
    weekend: frozenset[int] = frozenset({5, 6})
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    provisional_years: frozenset[int] = frozenset()
    _days: dict[date, tuple[_Period, ...]] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.hours:
            raise ValidationError("hours", "a working day needs at least one working period")
        for (start, end), following in zip(self.hours, self.hours[1:] + ((None, None),)):
            if not start < end or (following[0] is not None and not end <= following[0]):
                raise ValidationError("hours", "periods must be in order, each ending after it starts")
        if not set(self.weekend) <= set(range(7)) or len(self.weekend) == 7:
            raise ValidationError("weekend", "rest days are weekdays 0..6, not all seven")
        both = self.holidays & self.workdays
        if both:
            raise ValidationError("workdays", f"{min(both).isoformat()} is both a holiday and a make-up working day")

    @property
    def day_length(self) -> timedelta:
        """Working time of one working day (7.5 h by default)."""
        return sum((datetime.combine(date.min, e) - datetime.combine(date.min, s) for s, e in self.hours), ZERO)

    def is_working_day(self, day: date) -> bool:
        """Whether the local date `day` is a working day."""
        if day in self.workdays:
            return True
        return day not in self.holidays and day.weekday() not in self.weekend

    def periods(self, day: date) -> tuple[_Period, ...]:
        """The working periods of the local date `day` as UTC (start, end) pairs; () on a rest day."""
        found = self._days.get(day)
        if found is None:
            found = ()
            if self.is_working_day(day):
                found = tuple((datetime.combine(day, s, self.zone).astimezone(timezone.utc),
                               datetime.combine(day, e, self.zone).astimezone(timezone.utc)) for s, e in self.hours)
            self._days[day] = found
        return found

    def local_date(self, at: datetime) -> date:
        """The date of `at` in the center's zone."""
        return _aware(at, "at").astimezone(self.zone).date()

    def is_working_time(self, at: datetime) -> bool:
        """Whether `at` falls within a working period (start included, end excluded)."""
        at = _aware(at, "at")
        return any(start <= at < end for start, end in self.periods(self.local_date(at)))

    def add(self, at: datetime, amount: timedelta) -> datetime:
        """The instant when `amount` (≥ 0) of working time has passed after `at` (UTC)."""
        at = _aware(at, "at")
        if amount < ZERO:
            raise ValidationError("amount", "must not be negative")
        if amount == ZERO:
            return at
        day = self.local_date(at)
        for _ in range(MAX_DAYS):
            for start, end in self.periods(day):
                if end <= at:
                    continue
                begin = max(start, at)
                if amount <= end - begin:
                    return begin + amount
                amount -= end - begin
            day += timedelta(days=1)
        raise ValidationError("calendar", f"no working time within {MAX_DAYS} days")

    def add_working_days(self, at: datetime, days: float) -> datetime:
        """`at` plus `days` working days (each `day_length` of working time)."""
        return self.add(at, days * self.day_length)

    def add_working_hours(self, at: datetime, hours: float) -> datetime:
        """`at` plus `hours` working hours."""
        return self.add(at, timedelta(hours=hours))

    def between(self, start: datetime, end: datetime) -> timedelta:
        """The working time from `start` to `end`; negative when `end` is before `start`."""
        start, end = _aware(start, "start"), _aware(end, "end")
        if end < start:
            return -self.between(end, start)
        total = ZERO
        day, last = self.local_date(start), self.local_date(end)
        while day <= last:
            for begin, finish in self.periods(day):
                overlap = min(finish, end) - max(begin, start)
                if overlap > ZERO:
                    total += overlap
            day += timedelta(days=1)
        return total


DEFAULT_CALENDAR = WorkCalendar()

_HOURS = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_CONFIG_KEYS = {"hours", "weekend", "years"}
_YEAR_KEYS = {"status", "source", "holidays", "workdays"}


def _period(text: Any) -> tuple[time, time]:
    found = _HOURS.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ValidationError("hours", f"a period is written HH:MM-HH:MM, got {text!r}")
    h1, m1, h2, m2 = (int(x) for x in found.groups())
    try:
        return time(h1, m1), time(h2, m2)
    except ValueError:
        raise ValidationError("hours", f"not a time of day: {text!r}") from None


def _dates(entries: Any, field: str, year: int) -> set[date]:
    """Dates of a list of "YYYY-MM-DD" or "YYYY-MM-DD..YYYY-MM-DD" (inclusive) strings, all in `year`."""
    if not isinstance(entries, list):
        raise ValidationError(field, "must be a list of dates or date ranges")
    out: set[date] = set()
    for entry in entries:
        try:
            first, _, last = str(entry).partition("..")
            a, b = date.fromisoformat(first.strip()), date.fromisoformat((last or first).strip())
        except ValueError:
            raise ValidationError(field, f"not a date or a range: {entry!r}") from None
        if not a <= b or a.year != year or b.year != year:
            raise ValidationError(field, f"{entry!r} is not an ordered range within {year}")
        out.update(a + timedelta(days=i) for i in range((b - a).days + 1))
    return out


def calendar_from_config(data: Mapping[str, Any], *, zone: str = "Asia/Shanghai") -> WorkCalendar:
    """A calendar from the settings file's mapping: ``hours`` (["08:30-12:00", ...]), ``weekend``
    (["saturday", "sunday"]) and ``[years.YYYY]`` tables with ``status`` ("official" or
    "provisional"), ``source``, ``holidays`` and ``workdays`` (dates or inclusive ranges
    "YYYY-MM-DD..YYYY-MM-DD"). ValidationError names the bad key."""
    unknown = set(data) - _CONFIG_KEYS
    if unknown:
        raise ValidationError(sorted(unknown)[0], "unknown key in the calendar")
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("zone", f"unknown time zone {zone!r}") from None
    hours = tuple(_period(p) for p in data.get("hours", [f"{s:%H:%M}-{e:%H:%M}" for s, e in DEFAULT_HOURS]))
    weekend_names = data.get("weekend", ["saturday", "sunday"])
    if not isinstance(weekend_names, list) or any(str(n).lower() not in WEEKDAYS for n in weekend_names):
        raise ValidationError("weekend", f"a list of weekday names ({', '.join(WEEKDAYS)})")
    holidays: set[date] = set()
    workdays: set[date] = set()
    provisional: set[int] = set()
    years = data.get("years", {})
    if not isinstance(years, Mapping):
        raise ValidationError("years", "must be a table of [years.YYYY] tables")
    for key, table in years.items():
        if not re.fullmatch(r"\d{4}", str(key)) or not isinstance(table, Mapping):
            raise ValidationError("years", f"{key!r}: a year is a [years.YYYY] table")
        year = int(key)
        extra = set(table) - _YEAR_KEYS
        if extra:
            raise ValidationError(sorted(extra)[0], f"unknown key in [years.{year}]")
        status = table.get("status", "official")
        if status not in ("official", "provisional"):
            raise ValidationError("status", f"[years.{year}] status is official or provisional, got {status!r}")
        if status == "provisional":
            provisional.add(year)
        holidays |= _dates(table.get("holidays", []), "holidays", year)
        workdays |= _dates(table.get("workdays", []), "workdays", year)
    return WorkCalendar(tz, hours, frozenset(WEEKDAYS.index(str(n).lower()) for n in weekend_names),
                        frozenset(holidays), frozenset(workdays), frozenset(provisional))

