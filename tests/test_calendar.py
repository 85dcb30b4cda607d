"""The working calendar: working days and hours, holidays, 调休 make-up days, the center's zone."""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from config.limit_files import SHIPPED_CALENDAR, load_calendar
from config.settings import SettingsError
from command.calendar import DEFAULT_CALENDAR, WorkCalendar, calendar_from_config
from command.errors import ValidationError

SH = ZoneInfo("Asia/Shanghai")
CAL = load_calendar()  # the shipped config/calendar.toml
H = timedelta(hours=1)
M = timedelta(minutes=1)
DAY = timedelta(hours=7.5)


def local(text: str) -> datetime:
    """A Shanghai wall-clock time ("2026-09-30 17:00") as an aware UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=SH).astimezone(timezone.utc)


@pytest.mark.parametrize(("day", "working"), [
    ("2026-01-01", False), ("2026-01-02", False), ("2026-01-04", True),  # 元旦, Sunday worked
    ("2026-01-05", True), ("2026-01-10", False),  # an ordinary Monday and Saturday
    ("2026-02-14", True), ("2026-02-15", False), ("2026-02-23", False), ("2026-02-24", True),  # 春节
    ("2026-02-28", True), ("2026-04-06", False), ("2026-05-05", False), ("2026-05-09", True),
    ("2026-06-19", False), ("2026-09-20", True), ("2026-09-25", False), ("2026-10-07", False),
    ("2026-10-08", True), ("2026-10-10", True), ("2026-10-11", False),
    ("2027-02-05", False), ("2027-02-08", False), ("2027-02-09", True),  # provisional statutory days
])
def test_working_days_of_the_shipped_calendar(day, working):
    assert CAL.is_working_day(date.fromisoformat(day)) is working


def test_shipped_calendar_2026_official_2027_provisional():
    assert CAL.provisional_years == {2027}
    assert sum(d.year == 2026 for d in CAL.holidays) == 33
    assert sorted(d.isoformat() for d in CAL.workdays) == [
        "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"]
    assert all(d.weekday() >= 5 for d in CAL.workdays)  # make-up days are weekend days
    assert CAL.day_length == DAY and CAL.zone == SH


@pytest.mark.parametrize(("at", "working"), [
    ("2026-11-23 08:29:59", False), ("2026-11-23 08:30", True), ("2026-11-23 11:59:59", True),
    ("2026-11-23 12:00", False), ("2026-11-23 13:30", True), ("2026-11-23 17:29", True),
    ("2026-11-23 17:30", False), ("2026-11-22 10:00", False),  # a Sunday
    ("2026-10-02 10:00", False), ("2026-10-10 10:00", True),  # National Day; its make-up Saturday
])
def test_is_working_time(at, working):
    assert CAL.is_working_time(local(at)) is working


@pytest.mark.parametrize(("start", "amount", "end"), [
    ("2026-11-23 09:00", 1 * H, "2026-11-23 10:00"),
    ("2026-11-23 11:30", 1 * H, "2026-11-23 14:00"),  # across the lunch break
    ("2026-11-23 17:00", 1 * H, "2026-11-24 09:00"),  # across the night
    ("2026-11-23 16:30", 1 * H, "2026-11-23 17:30"),  # ends a period exactly: at its end
    ("2026-11-23 20:00", 1 * H, "2026-11-24 09:30"),  # started in the evening
    ("2026-11-27 17:00", 1 * H, "2026-11-30 09:00"),  # across a weekend
    ("2026-11-28 10:00", 30 * M, "2026-11-30 09:00"),  # started on a Saturday
    ("2026-09-30 17:00", 1 * H, "2026-10-08 09:00"),  # across National Day
    ("2026-10-09 17:00", 1 * H, "2026-10-10 09:00"),  # into its make-up Saturday
    ("2026-02-13 17:00", 1 * H, "2026-02-14 09:00"),  # into the Spring Festival make-up Saturday
    ("2026-02-14 17:00", 1 * H, "2026-02-24 09:00"),  # across the Spring Festival
    ("2026-12-31 17:00", 1 * H, "2027-01-04 09:00"),  # across the year and 2027's New Year's Day
    ("2026-11-22 03:00", timedelta(0), "2026-11-22 03:00"),  # nothing to add
])
def test_add_working_time(start, amount, end):
    assert CAL.add(local(start), amount) == local(end)
    assert CAL.between(local(start), local(end)) == amount


@pytest.mark.parametrize(("start", "days", "end"), [
    ("2026-11-23 10:00", 5, "2026-11-30 10:00"),  # Monday to Monday
    ("2026-11-28 10:00", 5, "2026-12-04 17:30"),  # received on a Saturday: due Friday at closing
    ("2026-09-28 10:00", 5, "2026-10-10 10:00"),  # over National Day, due on its make-up Saturday
    ("2026-02-12 10:00", 3, "2026-02-24 10:00"),  # over the Spring Festival
    ("2026-11-23 10:00", 0.5, "2026-11-23 15:15"),  # 3 h 45 min: 2 h before lunch, 1 h 45 after
])
def test_add_working_days(start, days, end):
    assert CAL.add_working_days(local(start), days) == local(end)


def test_add_working_hours_and_day_length():
    assert CAL.add_working_hours(local("2026-11-23 09:00"), 7.5) == local("2026-11-24 09:00")
    hours = WorkCalendar(hours=((time(9), time(17)),))
    assert hours.day_length == 8 * H
    assert hours.add_working_days(local("2026-11-23 09:00"), 1) == local("2026-11-23 17:00")


@pytest.mark.parametrize(("start", "end", "expected"), [
    ("2026-11-23 09:00", "2026-11-24 09:00", DAY),
    ("2026-11-23 12:10", "2026-11-23 13:20", timedelta(0)),  # within the lunch break
    ("2026-11-27 18:00", "2026-11-30 08:00", timedelta(0)),  # a weekend
    ("2026-10-01 00:00", "2026-10-08 00:00", timedelta(0)),  # National Day
    ("2026-11-24 09:00", "2026-11-23 09:00", -DAY),  # backwards: negative
    ("2026-11-23 00:00", "2026-11-30 00:00", 5 * DAY),
])
def test_between(start, end, expected):
    assert CAL.between(local(start), local(end)) == expected


def test_zone_boundaries_use_the_local_date():
    monday_early = datetime(2026, 11, 22, 23, 30, tzinfo=timezone.utc)  # Monday 07:30 in Shanghai, Sunday in UTC
    assert CAL.local_date(monday_early) == date(2026, 11, 23)
    assert not CAL.is_working_time(monday_early)
    assert CAL.add(monday_early, H) == datetime(2026, 11, 23, 1, 30, tzinfo=timezone.utc)
    tokyo = monday_early.astimezone(ZoneInfo("Asia/Tokyo"))  # the same instant in another zone
    assert CAL.add(tokyo, H) == CAL.add(monday_early, H)
    assert CAL.add(tokyo, H).tzinfo is timezone.utc
    friday_night_utc = datetime(2026, 11, 27, 16, 0, tzinfo=timezone.utc)  # Saturday 00:00 in Shanghai
    assert CAL.is_working_day(CAL.local_date(friday_night_utc)) is False


def test_shanghai_has_no_daylight_saving_berlin_does():
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    starts = {CAL.periods(d)[0][0].time() for d in days if CAL.is_working_day(d)}
    assert starts == {time(0, 30)}  # 08:30 in Shanghai is 00:30 UTC every working day of the year
    berlin = WorkCalendar(zone=ZoneInfo("Europe/Berlin"))
    before, after = berlin.periods(date(2026, 3, 27)), berlin.periods(date(2026, 3, 30))
    assert (before[0][0].time(), after[0][0].time()) == (time(7, 30), time(6, 30))
    friday, tuesday = (datetime(2026, 3, d, tzinfo=ZoneInfo("Europe/Berlin")) for d in (27, 31))
    assert berlin.between(friday, tuesday) == 2 * DAY  # a 23-hour Sunday changes no working day


def test_naive_and_negative_are_refused():
    with pytest.raises(ValidationError):
        CAL.add(datetime(2026, 11, 23, 9, 0), H)
    with pytest.raises(ValidationError):
        CAL.between(local("2026-11-23 09:00"), datetime(2026, 11, 23, 9, 0))
    with pytest.raises(ValidationError):
        CAL.add(local("2026-11-23 09:00"), -H)


INSTANTS = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 1),
                        timezones=st.just(timezone.utc))
AMOUNTS = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20))


@hsettings(max_examples=300, deadline=None)
@given(INSTANTS, AMOUNTS)
def test_adding_then_measuring_gives_back_the_amount(at, amount):
    end = CAL.add(at, amount)
    assert end >= at
    assert CAL.between(at, end) == amount
    assert CAL.between(end, at) == -amount
    assert CAL.add(at, amount + M) > end  # strictly later: time only passes in working hours


@hsettings(max_examples=200, deadline=None)
@given(INSTANTS, INSTANTS, INSTANTS)
def test_between_adds_up_and_never_exceeds_the_clock(a, b, c):
    a, b, c = sorted((a, b, c))
    assert CAL.between(a, b) + CAL.between(b, c) == CAL.between(a, c)
    assert timedelta(0) <= CAL.between(a, c) <= c - a
    assert CAL.add(a, CAL.between(a, c)) <= c


def test_default_calendar_has_weekends_and_no_holidays():
    assert DEFAULT_CALENDAR.is_working_day(date(2026, 10, 1))  # no holidays without the file
    assert not DEFAULT_CALENDAR.is_working_day(date(2026, 10, 3))
    assert DEFAULT_CALENDAR.add_working_days(local("2026-11-23 10:00"), 5) == local("2026-11-30 10:00")


def test_calendar_from_config_reads_ranges_and_names():
    cal = calendar_from_config({"hours": ["9:00-17:00"], "weekend": ["Sunday"], "years": {"2026": {
        "holidays": ["2026-12-24..2026-12-26"], "workdays": [], "status": "official", "source": "test"}}},
        zone="Asia/Urumqi")
    assert cal.zone == ZoneInfo("Asia/Urumqi") and cal.weekend == {6} and cal.day_length == 8 * H
    assert [cal.is_working_day(date(2026, 12, d)) for d in (23, 24, 26, 27, 28)] == [True, False, False, False, True]
    assert cal.provisional_years == frozenset()


@pytest.mark.parametrize(("data", "field"), [
    ({"hour": ["09:00-17:00"]}, "hour"),
    ({"hours": ["9-17"]}, "hours"),
    ({"hours": ["17:00-09:00"]}, "hours"),
    ({"hours": ["13:00-17:00", "09:00-12:00"]}, "hours"),
    ({"hours": ["25:00-26:00"]}, "hours"),
    ({"hours": []}, "hours"),
    ({"weekend": ["caturday"]}, "weekend"),
    ({"weekend": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]}, "weekend"),
    ({"years": {"2026": {"holidays": ["2026-13-01"]}}}, "holidays"),
    ({"years": {"2026": {"holidays": ["2027-01-01"]}}}, "holidays"),  # not in its year
    ({"years": {"2026": {"holidays": ["2026-05-05..2026-05-01"]}}}, "holidays"),
    ({"years": {"2026": {"holidays": "2026-05-01"}}}, "holidays"),
    ({"years": {"2026": {"holidays": ["2026-05-01"], "workdays": ["2026-05-01"]}}}, "workdays"),
    ({"years": {"2026": {"status": "rumoured"}}}, "status"),
    ({"years": {"2026": {"holiday": []}}}, "holiday"),
    ({"years": {"26": {}}}, "years"),
])
def test_bad_calendar_config(data, field):
    with pytest.raises(ValidationError) as err:
        calendar_from_config(data)
    assert err.value.field == field


def test_bad_zone():
    with pytest.raises(ValidationError) as err:
        calendar_from_config({}, zone="Mars/Olympus")
    assert err.value.field == "zone"


def test_calendar_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "calendar.toml"
    bad.write_text('hours = ["9-17"]\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="CALENDAR_FILE .*calendar.toml: hours"):
        load_calendar(bad)
    bad.write_text('hours = [\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="CALENDAR_FILE"):
        load_calendar(bad)
    with pytest.raises(SettingsError, match="CALENDAR_FILE .*absent.toml"):
        load_calendar(tmp_path / "absent.toml")


def test_provisional_and_missing_years_are_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="config.limit_files"):
        load_calendar(SHIPPED_CALENDAR, today=date(2026, 12, 6))
        load_calendar(SHIPPED_CALENDAR, today=date(2027, 3, 1))
    messages = [r.getMessage() for r in caplog.records]
    assert any("2027 are a provisional placeholder" in m for m in messages)
    assert any("no holidays for 2028" in m for m in messages)
