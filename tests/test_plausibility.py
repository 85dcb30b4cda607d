"""Table tests of each plausibility rule with `now` passed in, and hypothesis properties."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.fixes import Fix
from ingest.plausibility import GPS_ROLLOVER, Plausibility, distance_m, sane

UTC = timezone.utc
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
BASE = Fix(time=NOW - timedelta(seconds=10), lat=39.9042, lon=116.4074, speed_kmh=36.0, course_deg=90.0,
           alt_m=50.0, quality=1, mode="A", sats=9, hdop=0.9, talker="GN")


def at(**changes) -> Fix:
    """BASE with some fields changed."""
    return replace(BASE, **changes)


@pytest.mark.parametrize(
    ("fix", "reason"),
    [
        (BASE, None),
        (at(lat=90.0, lon=-180.0), None),
        (at(lat=90.0001), "lat_out_of_range"),
        (at(lat=-91.0), "lat_out_of_range"),
        (at(lat=float("nan")), "lat_out_of_range"),
        (at(lon=180.5), "lon_out_of_range"),
        (at(speed_kmh=-1.0), "speed_out_of_range"),
        (at(speed_kmh=5000.0), "speed_out_of_range"),
        (at(course_deg=361.0), "course_out_of_range"),
        (at(course_deg=-0.1), "course_out_of_range"),
        (at(alt_m=1e6), "alt_out_of_range"),
        (at(time=datetime(2026, 6, 1)), "time_not_utc"),
        (at(time=datetime(2026, 6, 1, tzinfo=timezone(timedelta(hours=8)))), "time_not_utc"),
        (at(time=datetime(1979, 12, 31, tzinfo=UTC)), "time_absurd"),
    ],
)
def test_sane(fix, reason):
    """The shared sanity check names the first out-of-range field."""
    assert sane(fix) == reason


@pytest.mark.parametrize(
    ("fix", "last", "backfill", "expected"),
    [
        # (live, track, reason)
        (BASE, None, False, (True, True, None)),
        (at(lat=0.0, lon=0.0), None, False, (False, False, "zero_zero")),
        (at(lat=95.0), None, False, (False, False, "lat_out_of_range")),
        (at(course_deg=400.0), None, False, (False, False, "course_out_of_range")),
        (at(speed_kmh=250.0), None, False, (False, False, "speed_too_high")),
        (at(time=NOW + timedelta(hours=1)), None, False, (False, False, "time_in_future")),
        (at(time=NOW + timedelta(hours=1)), None, True, (False, False, "time_in_future")),
        (at(time=NOW - timedelta(days=3)), None, False, (False, False, "time_too_old")),
        # 1 km in 10 s = 360 km/h
        (at(lat=BASE.lat + 0.009), at(time=NOW - timedelta(seconds=20)), False, (False, False, "jump")),
        # 100 m in 10 s = 36 km/h
        (at(lat=BASE.lat + 0.0009), at(time=NOW - timedelta(seconds=20)), False, (True, True, None)),
        # older than last: track only
        (BASE, at(time=NOW), False, (False, True, "out_of_order")),
        (BASE, BASE, False, (False, True, "out_of_order")),
        # backfill from 2019: judged against the stream, not the clock
        (at(time=datetime(2019, 2, 5, 2, 9, 35, tzinfo=UTC)), None, True, (True, True, None)),
        (
            at(time=datetime(2019, 2, 5, 2, 9, 36, tzinfo=UTC)),
            at(time=datetime(2019, 2, 5, 2, 9, 35, tzinfo=UTC)),
            True,
            (True, True, None),
        ),
        # same 2019 fix on the live topic is far in the past and no rollover step lands near now
        (at(time=datetime(2019, 2, 5, 2, 9, 35, tzinfo=UTC)), None, False, (False, False, "time_too_old")),
    ],
)
def test_rules(fix, last, backfill, expected):
    """Each rule of issue 3 as a row: verdict flags and reason."""
    chain = Plausibility()
    verdict = chain.check(fix, last, NOW, backfill=backfill)
    assert (verdict.live, verdict.track, verdict.reason) == expected
    if expected[1]:
        assert sane(verdict.fix) is None


@pytest.mark.parametrize(
    ("raw", "last", "backfill", "repaired"),
    [
        # live: 2006-11-15 is 1024 weeks before 2026-07-01 minus ... -> lands within the window
        (NOW - GPS_ROLLOVER - timedelta(seconds=30), None, False, NOW - timedelta(seconds=30)),
        # two rollovers back (1987)
        (NOW - 2 * GPS_ROLLOVER - timedelta(seconds=5), None, False, NOW - timedelta(seconds=5)),
        # backfill, no last: a 1999 date (before oldest_plausible) -> the latest step not in the future
        (
            datetime(1999, 8, 22, 0, 2, 31, tzinfo=UTC),
            None,
            True,
            datetime(2019, 4, 7, 0, 2, 31, tzinfo=UTC),
        ),
        # backfill with last: consistent with the stream's own sequence
        (
            datetime(1999, 8, 22, 0, 2, 32, tzinfo=UTC),
            at(time=datetime(2019, 4, 7, 0, 2, 31, tzinfo=UTC)),
            True,
            datetime(2019, 4, 7, 0, 2, 32, tzinfo=UTC),
        ),
        # backfill, last from the live position (2026) and a receiver sending 2006 dates
        (
            NOW - GPS_ROLLOVER - timedelta(minutes=5),
            at(time=NOW - timedelta(minutes=6)),
            True,
            NOW - timedelta(minutes=5),
        ),
    ],
)
def test_week_rollover_repair(raw, last, backfill, repaired):
    """Dates 1024·k weeks too early are repaired when the result is consistent."""
    chain = Plausibility()
    verdict = chain.check(at(time=raw), last, NOW, backfill=backfill)
    assert verdict.fix.time == repaired
    assert verdict.track
    assert chain.counts["repaired:rollover"] == 1


def test_rollover_example_2006():
    """A fix dated 2006-11-?? while now is 2026: +1024 weeks."""
    now = datetime(2026, 7, 1, 8, 0, 5, tzinfo=UTC)
    raw = datetime(2006, 11, 15, 8, 0, 0, tzinfo=UTC)
    assert raw + GPS_ROLLOVER == datetime(2026, 7, 1, 8, 0, 0, tzinfo=UTC)
    verdict = Plausibility().check(at(time=raw), None, now)
    assert (verdict.live, verdict.fix.time) == (True, datetime(2026, 7, 1, 8, 0, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("raw", "last", "backfill"),
    [
        # live: repaired time would not land within the window (2006 + 1024 w = mid 2026 is after now+5min)
        (datetime(2006, 11, 15, tzinfo=UTC), None, False),
        # backfill: 1999 date that does not fit the stream's sequence (last in 2015)
        (datetime(1999, 8, 22, tzinfo=UTC), at(time=datetime(2015, 1, 1, tzinfo=UTC)), True),
    ],
)
def test_rollover_inconsistent_is_dropped(raw, last, backfill):
    """When no 1024-week step lands consistently, the fix is dropped."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    verdict = Plausibility().check(at(time=raw), last, now, backfill=backfill)
    assert (verdict.live, verdict.track, verdict.reason) == (False, False, "time_too_old")


def test_rollover_repair_can_be_switched_off():
    """rollover_repair=False drops old dates instead of repairing them."""
    chain = Plausibility(rollover_repair=False)
    verdict = chain.check(at(time=NOW - GPS_ROLLOVER), None, NOW)
    assert verdict.reason == "time_too_old"


def test_configurable_speed_limit():
    """max_speed_kmh moves the jump threshold."""
    last = at(time=NOW - timedelta(seconds=20))
    fix = at(lat=BASE.lat + 0.009)  # ~1 km in 10 s = 360 km/h
    assert Plausibility(max_speed_kmh=400.0).check(fix, last, NOW).live
    assert not Plausibility(max_speed_kmh=300.0).check(fix, last, NOW).track


def test_failing_step_is_counted_and_chain_goes_on(caplog):
    """A step that raises counts step_error:<name>, logs at a bounded rate, and the rest still run."""
    chain = Plausibility()

    def broken(fix, last, now, backfill):
        raise RuntimeError("boom")

    chain._steps = (("broken", broken),) + chain._steps
    with caplog.at_level("WARNING"):
        for second in range(3):
            verdict = chain.check(at(lat=0.0, lon=0.0), None, NOW + timedelta(seconds=second))
    assert verdict.reason == "zero_zero"
    assert chain.counts["step_error:broken"] == 3
    assert chain.counts["rejected:zero_zero"] == 3
    assert len([r for r in caplog.records if "broken" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("a", "b", "metres"),
    [((0.0, 0.0), (0.0, 1.0), 111_195.0), ((39.9042, 116.4074), (31.2304, 121.4737), 1_067_000.0)],
)
def test_distance(a, b, metres):
    """Haversine distance against known values (1° of equator; Beijing-Shanghai ~1067 km)."""
    assert distance_m(*a, *b) == pytest.approx(metres, rel=2e-3)


# ---------------------------------------------------------------- properties
finite = st.floats(allow_nan=True, allow_infinity=True)
times = st.datetimes(min_value=datetime(1980, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC))
fixes = st.builds(
    Fix,
    time=times,
    lat=finite,
    lon=finite,
    speed_kmh=st.none() | finite,
    course_deg=st.none() | finite,
    alt_m=st.none() | finite,
    quality=st.none() | st.integers(0, 9),
    mode=st.none() | st.sampled_from(["A", "D", "N", "E", "S", "2D", "3D"]),
    sats=st.none() | st.integers(0, 64),
    hdop=st.none() | finite,
    talker=st.sampled_from(["GP", "GN", "BD", "GB"]),
)


@settings(max_examples=400, deadline=None)
@given(fixes, st.none() | fixes, times, st.booleans())
def test_chain_never_raises_and_accepts_only_sane_fixes(fix, last, now, backfill):
    """Any fix/last/now: no exception, no step error, and whatever may be stored is sane."""
    chain = Plausibility()
    verdict = chain.check(fix, last, now, backfill=backfill)
    assert not [k for k in chain.counts if k.startswith("step_error")]
    if verdict.track or verdict.live:
        assert sane(verdict.fix) is None
        assert not (verdict.fix.lat == 0.0 and verdict.fix.lon == 0.0)
        assert verdict.fix.time <= now + chain.max_future
    if verdict.live:
        assert verdict.track
        assert last is None or verdict.fix.time > last.time


def test_a_last_fix_that_is_no_position_is_no_reference_for_the_jump_step():
    """Found by hypothesis: a `last` with an infinite longitude made the jump step's distance
    raise (a counted step error); such a last is no reference, so the step lets the fix by."""
    at = datetime(2000, 1, 1, tzinfo=timezone.utc)
    chain = Plausibility()
    for lon in (float("inf"), float("nan"), 200.0):
        last = Fix(time=at - timedelta(seconds=10), lat=0.0, lon=lon, talker="GP")
        verdict = chain.check(Fix(time=at, lat=0.0, lon=1.0, talker="GP"), last, at + timedelta(seconds=1))
        assert verdict.live and verdict.fix.lon == 1.0
    assert not [k for k in chain.counts if k.startswith("step_error")]
