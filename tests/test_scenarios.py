"""Scenarios: every shipped file parses and runs against the demo city through fakes, bad files
are refused clearly, and the callers are seeded, daily-curved and consistent with bursts."""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from ingest.nmea import checksum
from simulators.callers import CallGenerator, rate_per_s
from simulators.scenario import (Areas, ScenarioError, ScenarioRunner, fault_messages, load_scenario,
                                 parse_scenario, scenario_names)
from simulators.sensor_model import specs_from_city
from simulators.sensors import SensorSimulator
from simulators.sim_clock import SimClock

UTC = timezone.utc
MIDNIGHT = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)  # 00:00 Asia/Shanghai
PLACES = [(f"高密市测试路{n}号", 119.70 + 0.001 * n, 36.38) for n in range(50)]


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from simulators import democity
    from gis.layers import load_profile

    return load_profile(democity.generate(tmp_path_factory.mktemp("city"), seed=democity.DEFAULT_SEED))


def test_all_four_scenarios_ship():
    assert {"normal_day", "main_burst", "typhoon_storm", "police_outage"} <= set(scenario_names())


@pytest.mark.parametrize("name", scenario_names())
def test_shipped_scenario_parses(name):
    scenario = load_scenario(name)
    assert scenario.name == name and scenario.steps
    assert [s.at for s in scenario.steps] == sorted(s.at for s in scenario.steps)


def test_scenario_found_by_part_of_its_name():
    assert load_scenario("storm").name == "typhoon_storm"


GOOD = 'name = "x"\nduration_s = 600\n'


@pytest.mark.parametrize("text, message", [
    ("name = ", "not valid TOML"),
    ('duration_s = 60\nsteps = []', "name is required"),
    (GOOD + "steps = []\nspeed = 3", "unknown key(s) speed"),
    (GOOD + '[[steps]]\nat = 10\naction = "explode"', "unknown action 'explode'"),
    (GOOD + '[[steps]]\nat = 10\naction = "main_burst"', "step 1 (main_burst): action 'main_burst' needs dma"),
    (GOOD + '[[steps]]\nat = 900\naction = "dead_sensor"\nsensor = "P1"', "outside the scenario's 0..600"),
    (GOOD + '[[steps]]\nat = 1\naction = "dead_sensor"\nsensor = 17', "sensor must be a string"),
    (GOOD + '[[steps]]\nat = 1\naction = "police"\nmode = "sideways"', "mode 'sideways' is not one of"),
    (GOOD + '[[steps]]\nat = 1\naction = "dead_sensor"\nsensor = "P1"\ncolour = "red"',
     "has no parameter 'colour'"),
    (GOOD + '[[steps]]\nat = 1\naction = "calls"\narea = {moon = 1}\ncount = 3\nover_s = 9\ncategory = "water"',
     "area must be"),
    (GOOD + '[[steps]]\nat = 1\naction = "calls"\narea = "city"\ncount = 3\nover_s = 9\ncategory = "beer"',
     "category 'beer' is not one of"),
    (GOOD + '[[steps]]\nat = 1\naction = "feeder_outage"', "feeder_outage needs assets or feeder"),
    (GOOD + '[[steps]]\nat = true\naction = "restore"', "at must be a number"),
    (GOOD + 'start = "2026-11-22T08:00:00"\nsteps = []', "start needs a UTC offset"),
])
def test_bad_scenarios_are_refused_clearly(text, message):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "bad.toml")
    assert message in str(info.value) and "bad.toml" in str(info.value)


def test_unknown_scenario_name_lists_the_shipped_ones():
    with pytest.raises(ScenarioError, match="main_burst"):
        load_scenario("no_such_thing")


# ------------------------------------------------------------------ callers
def _calls(seed: int, chop_s: float, hours: float = 6) -> list:
    generator = CallGenerator(PLACES, seed=seed)
    now, calls = MIDNIGHT + timedelta(hours=6), []
    generator.until(now)
    end = now + timedelta(hours=hours)
    while now < end:
        now = min(end, now + timedelta(seconds=chop_s))  # every chop ends at the same time
        calls += generator.until(now)
    return calls


def test_calls_are_seeded_and_independent_of_the_tick():
    assert _calls(5, 1.0) == _calls(5, 37.0)
    assert _calls(5, 10.0) != _calls(6, 10.0)


def test_a_day_has_about_3300_calls_busy_mornings_and_quiet_nights():
    generator = CallGenerator(PLACES, seed=11)
    generator.until(MIDNIGHT)
    calls = generator.until(MIDNIGHT + timedelta(days=1))
    assert 3000 <= len(calls) <= 3600
    per_hour = Counter((c.at.astimezone(timezone(timedelta(hours=8)))).hour for c in calls)
    assert per_hour[10] > 4 * per_hour[3]
    assert {c.channel for c in calls} == {"phone"}
    assert all(set(c.api_json()) == {"caller_name", "caller_phone", "address", "lon", "lat", "category",
                                     "type", "urgency", "description", "channel"} | ({"answer"} if c.answer else set())
               for c in calls[:20])
    assert any(c.answer for c in calls[:20])  # a consultation answered on the call


@pytest.mark.parametrize("hour, multiplier, low, high", [
    (10, 1, 5000, 7000),     # a busy morning on a normal day, as a daily rate
    (3, 1, 200, 500),
    (10, 3, 15000, 21000),   # a storm day
])
def test_rate_curve(hour, multiplier, low, high):
    assert low <= rate_per_s(hour, 3300 * multiplier) * 86400 <= high


def test_burst_comes_from_the_area_with_repeat_callers():
    generator = CallGenerator(PLACES, seed=3, daily_calls=0)
    area = PLACES[:5]
    made = generator.burst(MIDNIGHT, 60, 600, area, category="water", repeat_share=0.4)
    assert len(made) == 60 and {(c.address, c.lon, c.lat) for c in made} <= set(area)
    repeats = [c for c in made if c.repeat]
    assert 10 <= len(repeats) <= 40
    first_calls = {c.caller_phone: c for c in made if not c.repeat}
    assert all(r.caller_phone in first_calls and first_calls[r.caller_phone].at <= r.at for r in repeats)
    assert generator.until(MIDNIGHT + timedelta(seconds=300)) == [c for c in made if c.at <= MIDNIGHT + timedelta(seconds=300)]
    assert len(generator.until(MIDNIGHT + timedelta(seconds=600))) == len([c for c in made if c.at > MIDNIGHT + timedelta(seconds=300)])


def test_areas_select_around():
    areas = Areas(PLACES, {"dma:DMA01": PLACES[:3]})
    assert areas.select({"around": [119.70, 36.38, 250]}) == PLACES[:3]  # 0, ~90 m, ~180 m
    assert areas.select({"dma": "DMA01"}) == PLACES[:3]
    assert areas.select({"dma": "DMA99"}) == [] and areas.select("city") == PLACES


# ------------------------------------------------------------------ vehicle faults
def _lines(payload: bytes) -> list[str]:
    return [line for line in payload.decode("ascii").split("\r\n") if line]


@pytest.mark.parametrize("fault, check", [
    ("bad_checksum", lambda msgs: any(checksum(l[1:l.index("*")]) != l[-2:] for l in _lines(msgs[0][1]))),
    ("truncated", lambda msgs: not msgs[0][1].endswith(b"\r\n")),
    ("week_rollover", lambda msgs: _lines(msgs[0][1])[1].split(",")[9] == "080407"),  # 1024 weeks back
    ("duplicate_burst", lambda msgs: len(msgs) == 5 and len(set(msgs)) == 1),
    ("out_of_order", lambda msgs: [_lines(p)[0].split(",")[1] for _, p, *_ in msgs] ==
     ["120000.00", "115957.00", "115959.00", "115956.00", "115958.00"]),
    ("offline", lambda msgs: msgs == [("fleet/V01/status", b"offline", 1, True)]),
])
def test_vehicle_faults(fault, check):
    msgs = fault_messages("V01", fault, (119.72, 36.36), datetime(2026, 11, 22, 12, 0, tzinfo=UTC), random.Random(1))
    assert check(msgs)
    if fault not in ("bad_checksum", "offline", "truncated"):
        assert all(checksum(l[1:l.index("*")]) == l[-2:] for _, p, *_ in msgs for l in _lines(p))


# ------------------------------------------------------------------ the runner, against fakes
@pytest.mark.parametrize("name", scenario_names())
async def test_shipped_scenario_runs_compressed_against_fakes(city, name):
    scenario = load_scenario(name)
    published, posted, police = [], [], []
    sensors = SensorSimulator(specs_from_city(city), publish=lambda *m: published.append(m), seed=1, period_s=300)

    async def post(path, body):
        posted.append((path, body))
        return 201

    async def police_control(mode, delay_s):
        police.append(mode)

    clock = SimClock(MIDNIGHT, speedup=scenario.duration_s / 0.3)  # the whole scenario in ~0.3 s
    runner = ScenarioRunner(scenario, areas=Areas.from_city(city), seed=1, post=post, sensor_hook=sensors.apply,
                            police_control=police_control, publish=lambda *m: published.append(m),
                            clock=clock, tick_s=0.02, on_tick=sensors.step)
    report = await runner.run()
    assert report["skipped"] == []
    assert [a for _, a in report["steps"]] == [s.action for s in scenario.steps]
    assert report["calls"] == len(posted) == report["statuses"][201]
    assert all(path == "/api/tickets" for path, _ in posted)
    bursts = sum(s.params["count"] for s in scenario.steps if s.action == "calls")
    assert len(posted) >= bursts
    if name == "police_outage":
        assert police == ["down", "up"]
    if name == "main_burst":
        lows = {t.split("/")[1] for t, p, *_ in published
                if t.startswith("scada/P01") and float(p.split(b'"value":')[1].split(b",")[0]) < 0.14}
        assert lows == {"P013", "P014", "P015", "P016", "P017", "P018"}  # all of DMA03
    if name == "typhoon_storm":
        assert any(t == "spBv1.0/democity/NDEATH/SUB02" for t, *_ in published)
        power = [b for _, b in posted if b["category"] == "power"]
        phones = Counter(b["caller_phone"] for b in power)
        assert max(phones.values()) >= 2  # repeat callers from the outage area


def test_runner_calls_are_the_generators(city):
    scenario = load_scenario("main_burst")

    def call_list(seed):
        runner = ScenarioRunner(scenario, areas=Areas(PLACES, {"dma:DMA03": PLACES[:10]}), seed=seed,
                                clock=SimClock(MIDNIGHT, 1.0))
        runner.callers.until(MIDNIGHT)
        runner.callers.burst(MIDNIGHT, 20, 600, PLACES[:10], category="water")
        return runner.callers.until(MIDNIGHT + timedelta(hours=2))

    assert call_list(4) == call_list(4) != call_list(5)
