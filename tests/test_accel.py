"""The compiled ingest modules (ingest/accel.py): built where a C compiler is, never stale, and
doing exactly what their pure-Python source does (the same source, loaded as plain Python, is fed
the same payloads and must leave the same fixes, counters, signals and stats)."""
from __future__ import annotations

import collections
import importlib
import importlib.util
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import accel

DATA = Path(__file__).parent / "data" / "nmea"


def _pure_modules() -> dict:
    """MODULES loaded from their .py sources (each pure module importing the pure others), while
    the compiled ones stay what ``import`` gives everyone else."""
    saved = {name: sys.modules.pop(name) for name in accel.MODULES if name in sys.modules}
    try:
        pure = {}
        for name in accel.MODULES:  # in dependency order
            spec = importlib.util.spec_from_file_location(name, accel.source(name))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            pure[name] = module
        return pure
    finally:
        for name in accel.MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


PURE = _pure_modules()
COMPILED = {name: importlib.import_module(name) for name in accel.MODULES}
needs_compiled = pytest.mark.skipif(not accel.is_compiled(COMPILED["ingest.nmea"]),
                                    reason="pure Python in use (no compiled modules): nothing to compare")


def test_modules_are_built_where_a_compiler_is():
    if accel.compiler() is None:
        pytest.skip("no C compiler on this machine: the pure-Python modules are in use")
    for name in accel.MODULES:
        assert accel.built(name), f"{name} not compiled: run make"
        assert accel.is_compiled(COMPILED[name]), f"{name} imported from its .py"
    assert all(not accel.is_compiled(module) for module in PURE.values())


def test_no_compiled_module_is_older_than_its_source():
    assert accel.stale() == []


def test_a_source_newer_than_its_build_is_reported_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(accel, "ROOT", tmp_path)
    monkeypatch.setattr(accel, "MODULES", ("pkg.mod",))
    (tmp_path / "pkg").mkdir()
    src = tmp_path / "pkg" / "mod.py"
    ext = tmp_path / "pkg" / ("mod" + importlib.machinery.EXTENSION_SUFFIXES[0])
    src.write_text("x = 1\n")
    ext.write_bytes(b"")
    import os

    os.utime(ext, (1_000_000, 1_000_000))
    assert accel.stale() == [ext]
    os.utime(ext, None)
    os.utime(src, (1_000_000, 1_000_000))
    assert accel.stale() == []
    accel.clean()
    assert not ext.exists()


def _values(obj):
    """A decoded object's values, comparable across the pure and compiled classes."""
    if obj is None or isinstance(obj, (str, int, float, bool, tuple, bytes)):
        return obj
    return obj.__class__.__name__, tuple(repr(getattr(obj, slot)) for slot in obj.__slots__)


def _capture_lines() -> list[bytes]:
    lines = []
    for path in sorted((DATA / "gpsd").glob("*.log")) + sorted((DATA / "robustness").glob("*.log")):
        lines.extend(path.read_bytes().replace(b"\r\n", b"\n").split(b"\n"))
    return lines


@needs_compiled
def test_compiled_decoder_matches_its_source_on_every_capture_line():
    pure, compiled = PURE["ingest.nmea"], COMPILED["ingest.nmea"]
    lines = _capture_lines()
    assert len(lines) > 4000
    for line in lines:
        got, want = compiled.decode_line(line), pure.decode_line(line)
        assert (_values(got[0]), got[1]) == (_values(want[0]), want[1]), line
    for first, second in zip(lines, lines[1:]):
        assert repr(compiled.decode_pair(first, second)) == repr(pure.decode_pair(first, second)), (first, second)


def _fleet_pairs(vehicles: int, rounds: int) -> list[tuple[bytes, bytes]]:
    from bench.ingest import Fleet

    fleet, start = Fleet(vehicles), datetime.now(timezone.utc).timestamp() - 30
    return [tuple(payload.split(b"\r\n")[:2]) for k in range(rounds)
            for payload in fleet.round(datetime.fromtimestamp(start + k, timezone.utc), k)]


def _framed(body: bytes) -> bytes:
    value = 0
    for byte in body:
        value ^= byte
    return b"$" + body + b"*%02X" % value


@needs_compiled
def test_the_compiled_pair_decoder_reads_clean_pairs_in_c_as_python_does():
    pure, compiled = PURE["ingest.nmea"], COMPILED["ingest.nmea"]
    pairs = _fleet_pairs(200, 3)
    for gga, rmc in pairs[:2]:  # the address cache filled, as the general path does on first sight
        pure.decode_line(gga), pure.decode_line(rmc), compiled.decode_line(gga), compiled.decode_line(rmc)
    for gga, rmc in pairs:
        fast = compiled._pair_c(gga, rmc)
        assert fast is not None, (gga, rmc)  # the C path, not the fallback
        assert repr(fast) == repr(pure.decode_pair(gga, rmc)) == repr(compiled.decode_pair(gga, rmc))
    # every shape the talkers, decimals and hemispheres give, GGA and RMC disagreeing on digits
    for gga, rmc in [(b"GNGGA,000000,0000.0,S,00000.00000,W,6,0,,-12.5,M,,M,,", b"GBRMC,000000.000,A,0000.00,S,00000.0,W,0.,359.99,290224,,,D"),
                     (b"BDGGA,235960.99,8959.9999999,N,17959.9999999,E,2,99,99.9,9999.9,M,,M,,", b"GNRMC,235960.99,A,8959.9999999,N,17959.9999999,E,,,311299,,,")]:
        gga, rmc = _framed(gga), _framed(rmc)
        for module in (pure, compiled):
            module.decode_line(gga), module.decode_line(rmc)
        assert compiled._pair_c(gga, rmc) is not None
        assert repr(compiled.decode_pair(gga, rmc)) == repr(pure.decode_pair(gga, rmc))


_FIELD_TEXT = st.one_of(
    st.from_regex(r"-?[0-9]{0,17}(\.[0-9]{0,17})?", fullmatch=True),           # plain decimals, any length
    st.text(alphabet="0123456789.-+eE_ NSWEA,*$\x00\xff", max_size=14),       # anything odd
    st.sampled_from(["", "0", "1", "6", "8", "S", "N", "E", "W", "A", "V", "D", "060.0", "18000.1", "9000.0001"]),
).map(lambda t: t.encode("latin-1"))


@needs_compiled
@settings(max_examples=1500, deadline=None)
@given(st.integers(min_value=0, max_value=59), st.booleans(), st.integers(min_value=0, max_value=13), _FIELD_TEXT,
       st.booleans())
def test_the_compiled_pair_decoder_matches_python_on_pairs_with_odd_fields(which, in_rmc, field, text, checksum):
    """One field of a clean pair replaced by odd text, the checksum made right again (or not): the
    C reader must give what the Python path gives, or leave the pair to it."""
    pure, compiled = PURE["ingest.nmea"], COMPILED["ingest.nmea"]
    gga, rmc = _FLEET[which]
    lines = [gga, rmc]
    fields = lines[in_rmc][1:-3].split(b",")
    fields[min(field, len(fields) - 1)] = text
    body = b",".join(fields)
    lines[in_rmc] = _framed(body) if checksum else b"$" + body + lines[in_rmc][-3:]
    for module in (pure, compiled):
        module.decode_line(lines[0]), module.decode_line(lines[1])
    assert repr(compiled.decode_pair(*lines)) == repr(pure.decode_pair(*lines)), lines


_FLEET = _fleet_pairs(20, 3)
_EDGES = [b"", b"0", b"-0", b"-0.0", b"00001.0", b".5", b"5.", b"-", b".", b"+1.5", b" 1.5", b"1.5 ", b"1e3", b"1_0",
          b"nan", b"inf", b"999999999999.9", b"1000000000000", b"-1000000000000.0", b"123456789012345",
          b"1234567890123456", b"0.000000000000001", b"0.0000000000000001", b"060.0", b"5960.0", b"18000.0",
          b"18000.1", b"9000.0001", b"8959.99999999999", b"235960.99", b"240000", b"1", b"6", b"8", b"99999",
          b"0001", b"S", b"N", b"E", b"W", b"A", b"V", b"SS", b"290223", b"290224", b"311299", b"010180", b"1a"]


@needs_compiled
def test_the_compiled_pair_decoder_matches_python_on_edge_values_in_every_field():
    pure, compiled = PURE["ingest.nmea"], COMPILED["ingest.nmea"]
    checked = 0
    for gga, rmc in _FLEET[:2]:
        for in_rmc in (0, 1):
            for field in range(1, 14):
                for text in _EDGES:
                    lines = [gga, rmc]
                    fields = lines[in_rmc][1:-3].split(b",")
                    if field >= len(fields):
                        continue
                    fields[field] = text
                    lines[in_rmc] = _framed(b",".join(fields))
                    for module in (pure, compiled):
                        module.decode_line(lines[0]), module.decode_line(lines[1])
                    assert repr(compiled.decode_pair(*lines)) == repr(pure.decode_pair(*lines)), lines
                    checked += 1
    assert checked > 2000


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=90), st.integers(min_value=0, max_value=80), st.sampled_from(
    [b"$GPGGA,123519.00,4807.0381,N,01131.0002,E,1,08,0.9,545.4,M,46.9,M,,*4A",
     b"$GNRMC,123519.00,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W,A*2D",
     b"$BDGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39"]))
def test_compiled_decoder_matches_its_source_on_mangled_lines(noise, at, line):
    mangled = line[:at] + noise + line[at + len(noise) // 3:]
    pure, compiled = PURE["ingest.nmea"], COMPILED["ingest.nmea"]
    got, want = compiled.decode_line(mangled), pure.decode_line(mangled)
    assert (_values(got[0]), got[1]) == (_values(want[0]), want[1])


def _run(modules: dict, payloads: list[tuple[str, bytes, float, bool]]):
    vehicles = modules["ingest.vehicles"]
    ingest = vehicles.VehicleIngest()
    out = []
    for start in range(0, len(payloads), 50):
        batch, stats = vehicles.VehicleBatch(), collections.Counter()
        for vid, payload, received_at, backfill in payloads[start:start + 50]:
            ingest.handle(vid, payload, received_at, backfill, batch, stats)
        ingest.flush_idle_backfill(payloads[-1][2] + 3600, batch, stats)
        out.append((list(batch.fixes), batch.counters, batch.signals, batch.seen, dict(stats)))
    return out, {vid: _values(fix) for vid, fix in ingest.last_live.items()}


@needs_compiled
def test_compiled_vehicle_ingest_matches_its_source():
    """Live and backfill payloads from every capture, and clean fleet pairs (the fast lane),
    through both VehicleIngests: the same fix records, counters, signals and stats."""
    from bench.ingest import Fleet

    payloads = []
    for n, path in enumerate(sorted((DATA / "gpsd").glob("*.log")) + sorted((DATA / "robustness").glob("*.log"))):
        lines = path.read_bytes().replace(b"\r\n", b"\n").split(b"\n")
        for i in range(0, len(lines), 3):
            payloads.append((f"C{n}", b"\r\n".join(lines[i:i + 3]), 1_700_000_000.0 + i, n % 2 == 0))
    fleet = Fleet(40)
    start = datetime.now(timezone.utc).timestamp() - 30
    for k in range(20):
        for vid, payload in zip(fleet.ids, fleet.round(datetime.fromtimestamp(start + k, timezone.utc), k)):
            payloads.append((vid, payload, start + k + 0.4, False))
    got, want = _run(COMPILED, payloads), _run(PURE, payloads)
    records = [record for fixes, *_ in want[0] for record in fixes]
    assert sum(r.vehicle_id.startswith("C") for r in records) > 100  # from the captures
    assert sum(r.vehicle_id.startswith("V") for r in records) == 800  # every fleet pair, fast lane
    assert got == want


@needs_compiled
def test_compiled_write_preparation_matches_its_source():
    """The batches of live and backfill captures and fleet pairs, prepared for the Redis script
    by both `ingest.fixpack` modules: the same arguments, byte for byte, and the same caches."""
    from store.live import FixRecord

    payloads = []
    for n, path in enumerate(sorted((DATA / "gpsd").glob("*.log"))):
        lines = path.read_bytes().replace(b"\r\n", b"\n").split(b"\n")
        for i in range(0, len(lines), 3):
            payloads.append((f"C{n}", b"\r\n".join(lines[i:i + 3]), 1_700_000_000.0 + i, n % 2 == 0))
    for k, (gga, rmc) in enumerate(_fleet_pairs(100, 5)):
        payloads.append((f"V{k % 100}", gga + b"\r\n" + rmc, datetime.now(timezone.utc).timestamp() + k // 100, False))
    batches, _ = _run(PURE, payloads)
    odd = FixRecord("X1", -3599.9995, 90.0, -180.0, 2500.0, -0.004, -40000.0, 300, None, 999, None, "GP", True, True)
    batches.append(([odd, FixRecord("X1", 7200.0005, 0.0, 0.0, None, 359.996, 40000.0, None, "A", None, 0.5, "BD",
                                    False, True)], {"X1": {"fix": 1}}, {"X1": "no_fix:V"}, {"X1": 1.5}, {}))
    pure, compiled = PURE["ingest.fixpack"], COMPILED["ingest.fixpack"]
    written = 0
    for fixes, counters, signals, seen, _stats in batches:
        caches = [({}, set()), ({}, set())]
        for indexed, known in caches:  # a second batch sees the hours and ids of the first as known
            got = compiled.prepare(fixes, counters, seen, 86400.0, signals, indexed, known)
            want = pure.prepare(fixes, counters, seen, 86400.0, signals, indexed, known)
            assert repr(got) == repr(want)
            indexed.update(dict.fromkeys(want[2], True))
            known.update(want[3])
            written += len(fixes)
        for fix in fixes:
            assert compiled.pack_fix(fix) == pure.pack_fix(fix) and compiled.fix_text(fix) == pure.fix_text(fix)
            assert compiled.fix_text(fix, fix[1] + 0.25) == pure.fix_text(fix, fix[1] + 0.25)
    assert written > 1000


def _outcome(fn, *args):
    """What a call gives: its result, or the type of the exception it raises."""
    try:
        return repr(fn(*args))
    except Exception as exc:  # noqa: BLE001 - the same failure is part of the same behaviour
        return type(exc).__name__


_PACK_EDGES = {
    1: [0.0, 0.0004, 0.0005, 0.0015, 0.0025, 3599.9995, 3599.99949999, 3600.0, 7200.0005, 1_700_000_000.0005,
        1_790_000_000.123456, 4.0e15, 1e15, -0.0, -1.0, -3599.9995, float("nan"), float("inf")],
    2: [0.0, -0.0, 90.0, -90.0, 180.0, -180.0, 180.00000001, 214.7483647, 1e-7 / 2, 3e-7 / 2, -1.5e-7,
        36.19439965833333, float("nan"), float("-inf")],
    3: [0.0, 180.0, -180.0, 180.0000001, 359.9, 1e-7 / 2, -2.5e-7, 119.52067933833332, float("inf")],
    4: [None, 0.0, -0.0, 0.018, 0.054, 0.09, 2359.26, 2359.27, 2359.278, 1e11, 1e13, -1e-9, -1.0,
        float("nan"), float("inf"), 5, True],
    5: [None, 0.0, -0.0, -1e-20, 0.005, 0.015, 359.995, 359.996, 360.0, -360.0, 720.005, -0.005, 1e11, 1e13,
        float("nan"), float("-inf"), 90],
    6: [None, 0.0, 0.5, 1.5, 2.5, -0.5, -32767.5, -32768.5, 32767.5, 40000.0, -40000.0, 1e13, float("nan"), 3],
    7: [None, 0, 1, 254, 255, 300, 1 << 45, -1, True, 2.0],
    9: [None, 0, 1, 254, 255, 999, 1 << 45, -1, False],
}


def _record(**values):
    from store.live import FixRecord

    base = FixRecord("V1", 1_790_000_000.48, 36.19439965833333, 119.52067933833332, 40.0032, 45.0, 45.0, 1, "A",
                     10, 0.9, "GP", True, True)
    return base._replace(**values)


@needs_compiled
def test_the_compiled_record_packer_packs_plain_fixes_in_c_as_python_does():
    pure, compiled = PURE["ingest.fixpack"], COMPILED["ingest.fixpack"]
    stream = PURE["ingest.fixes"].NmeaStream()
    fixes = 0
    for gga, rmc in _fleet_pairs(200, 3):
        fix = PURE["ingest.fixes"].fix_from_values(stream.feed_pair(gga + b"\r\n" + rmc))
        record = PURE["ingest.vehicles"]._record("V1", fix, True, True)
        assert compiled._pack_c(record) is not None  # the C path, not the fallback
        assert compiled._pack_c(record) == compiled.pack_fix(record) == pure.pack_fix(record)
        fixes += 1
    assert fixes == 600


@needs_compiled
def test_the_compiled_record_packer_matches_python_on_edge_values_in_every_field():
    pure, compiled = PURE["ingest.fixpack"], COMPILED["ingest.fixpack"]
    names = _record()._fields
    checked = 0
    for index, values in _PACK_EDGES.items():
        for value in values:
            record = _record(**{names[index]: value})
            assert _outcome(compiled.pack_fix, record) == _outcome(pure.pack_fix, record), (names[index], value)
            checked += 1
    assert checked > 90


@needs_compiled
@settings(max_examples=1500, deadline=None)
@given(st.floats(min_value=-1e5, max_value=5e15) | st.floats(), st.floats(-200, 200) | st.floats(),
       st.floats(-200, 200), st.none() | st.floats(-10, 3000) | st.floats(), st.none() | st.floats(-1e4, 1e4),
       st.none() | st.floats(-5e4, 5e4), st.none() | st.integers(-5, 400), st.none() | st.integers(-5, 400))
def test_the_compiled_record_packer_matches_python_on_any_values(t, lat, lon, speed, course, alt, quality, sats):
    pure, compiled = PURE["ingest.fixpack"], COMPILED["ingest.fixpack"]
    record = _record(t=t, lat=lat, lon=lon, speed_kmh=speed, course_deg=course, alt_m=alt, quality=quality,
                     sats=sats)
    assert _outcome(compiled.pack_fix, record) == _outcome(pure.pack_fix, record), record


def _utc_seconds_by_datetime(secs: float) -> float:
    return datetime.fromtimestamp(secs, timezone.utc).timestamp()


@needs_compiled
@settings(max_examples=3000, deadline=None)
@given(st.one_of(
    st.floats(min_value=0.0, max_value=9.0e9),  # past the C range's end (8e9): the datetime path
    st.integers(min_value=0, max_value=4_102_444_800 * 2 ** 20).map(lambda n: n / 2 ** 20),  # binary fractions
    st.integers(min_value=0, max_value=4_102_444_800_000_000).map(lambda us: (us + 0.5) / 1e6),  # near .5 us
    st.integers(min_value=0, max_value=4_102_444_800 * 100).map(lambda cs: cs / 100)))  # NMEA's centiseconds
def test_the_compiled_utc_seconds_is_the_datetime_round_trip(secs):
    """A fix record's t is its datetime's timestamp(); the fast lane computes it in C, never
    making the datetime: the same float for every time, ties of half a microsecond included."""
    want = _utc_seconds_by_datetime(secs)
    assert COMPILED["ingest.fixpack"].utc_seconds(secs) == want
    assert PURE["ingest.fixpack"].utc_seconds(secs) == want
    assert datetime.fromtimestamp(want, timezone.utc) == datetime.fromtimestamp(secs, timezone.utc)


@needs_compiled
def test_the_compiled_utc_seconds_rounds_exact_half_microseconds_to_even():
    """m/128 s for odd m is an exact tie: 1/128 s = 7812.5 us, which a datetime keeps as 7812 us
    (half to even), 3/128 s as 23438 us."""
    fixpack = COMPILED["ingest.fixpack"]
    for whole in (0.0, 1000.0, 1_763_870_000.0, 7.9e9):
        for m in range(1, 128, 2):
            secs = whole + m / 128
            assert (secs - whole) * 1e6 % 1 == 0.5  # a tie indeed
            assert fixpack.utc_seconds(secs) == _utc_seconds_by_datetime(secs), secs
    assert fixpack.utc_seconds(1 / 128) == 0.007812


# floats on a decimal grid (n * 10**-d), as NMEA's fields and the rounded values are: the ones the C
# writer formats itself, up to and beyond the edges of its range (4e9 with 6 decimals, 4e6 with 9)
_GRID_FLOATS = st.builds(lambda n, d: n / 10 ** d, st.integers(-5 * 10 ** 15, 5 * 10 ** 15), st.integers(0, 10))
_TEXT_VALUES = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), _GRID_FLOATS,
                         st.integers(-2**63, 2**63 - 1),
                         st.text(max_size=12), st.sampled_from(["null", "nul", "\"null\"", "n\"ull", "A", "GN", "é"]))


@needs_compiled
@settings(max_examples=2000, deadline=None)
@given(st.lists(_TEXT_VALUES, min_size=11, max_size=11), st.one_of(st.none(), st.floats(), _GRID_FLOATS),
       st.sampled_from(["", "x" * 400]))
def test_the_compiled_fix_text_matches_python_on_any_values(values, seen, padding):
    """The latest-fix text, formatted in one C pass where compiled: the same text as the Python
    steps for every value orjson writes (quotes, 'null' in strings, non-ASCII, long texts)."""
    record = _record()._replace(**dict(zip(_record()._fields[1:12], values)))._replace(talker=padding + str(values[-1]))
    pure, compiled = PURE["ingest.fixpack"], COMPILED["ingest.fixpack"]
    assert compiled.fix_text(record, seen) == pure.fix_text(record, seen)


@needs_compiled
def test_the_compiled_fix_text_writes_decimal_grid_floats_as_orjson_does():
    """100,000 floats n * 10**-d at every scale the C writer takes, and past its edges (where it
    leaves the value to orjson), in the fields written as they are (course, altitude, hdop) and
    the rounded ones: the text is the Python steps' text, float for float."""
    import random

    rng = random.Random(11)
    pure, compiled = PURE["ingest.fixpack"], COMPILED["ingest.fixpack"]
    for _ in range(100_000):
        d = rng.randrange(0, 11)
        n = rng.randrange(-(10 ** rng.randrange(1, 17)), 10 ** rng.randrange(1, 17))
        x = n / 10 ** d
        record = _record()._replace(course_deg=x, alt_m=-x, hdop=x * 10, t=abs(x), lat=x, speed_kmh=x)
        assert compiled.fix_text(record, abs(x)) == pure.fix_text(record, abs(x)), x


@needs_compiled
@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=-181, max_value=181) | st.sampled_from([-180.0, 180.0, float("nan")]),
       st.floats(min_value=-86, max_value=86) | st.sampled_from([-85.05112878, 85.05112878, float("nan")]))
def test_the_compiled_geo_score_matches_python(lon, lat):
    """The latest positions' GEO scores (checked against GEOADD itself in test_store): C and Python agree."""
    assert COMPILED["ingest.fixpack"].geo_score(lon, lat) == PURE["ingest.fixpack"].geo_score(lon, lat)
