"""The compiled ingest modules (center/accel.py): built where a C compiler is, never stale, and
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

from center import accel

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
        assert compiled.decode_pair(first, second) == pure.decode_pair(first, second), (first, second)


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
