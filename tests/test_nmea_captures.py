"""Real receiver captures (gpsd regression logs) decoded as a backfill and compared with gpsd's own
decoding (`.log.chk`), and the pynmeagps robustness logs passed through without exceptions.

Semantics of a `.log.chk` used here (gpsd echoes each sentence, then the JSON reports it caused):
- a ``"class":"TPV"`` with ``lat``/``lon`` is a position gpsd reported (mode 2 or 3); TPVs with
  ``"status":8`` are gpsd's simulation mode and are not real fixes, so they are left out;
- gpsd fills ``speed`` even where no sentence reported one (it differentiates positions); such a
  TPV has no ``track``. Only speeds of TPVs that also carry ``track`` (reported by RMC/VTG) are
  compared;
- gpsd applies its own week-rollover guesses to ``time`` (neo-m8n.log is stamped 2034), so times
  are compared by time of day only.
"""
from __future__ import annotations

import collections
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ingest.fixes import NmeaStream
from tests.captures import CAPTURES, DATA, NOW, ROBUSTNESS, explain, gpsd_positions, replay_backfill


def tod_key(time: datetime) -> str:
    """HH:MM:SS.mmm, the form of gpsd's TPV time of day."""
    return time.strftime("%H:%M:%S.%f")[:12]


def compare(path: Path) -> dict:
    """Match each stored fix against gpsd's positions and reported speeds for one capture."""
    stored, counts, chain = replay_backfill(path)
    reports = gpsd_positions(path)
    distinct = {(t["lat"], t["lon"]) for t in reports}
    speeds: dict[str, list[float]] = collections.defaultdict(list)
    for tpv in reports:
        if "time" in tpv and "speed" in tpv and "track" in tpv:
            speeds[tpv["time"][11:23]].append(tpv["speed"])
    matched, produced, exceptions, speed_checked, speed_exceptions = 0, set(), [], 0, []
    for fix in stored:
        hits = {p for p in distinct if abs(p[0] - fix.lat) <= 1e-6 and abs(p[1] - fix.lon) <= 1e-6}
        if hits:
            matched += 1
            produced |= hits
        else:
            exceptions.append(f"{path.name} {fix.time:%H:%M:%S.%f} {fix.lat:.9f},{fix.lon:.9f}: {explain(path, fix)}")
        candidates = speeds.get(tod_key(fix.time), [])
        if fix.speed_kmh is not None and candidates:
            speed_checked += 1
            if not any(abs(c - fix.speed_kmh / 3.6) <= 0.01 for c in candidates):
                speed_exceptions.append(f"{path.name} {fix.time}: {fix.speed_kmh / 3.6:.3f} m/s vs {candidates}")
    return {
        "stored": len(stored), "matched": matched, "exceptions": exceptions, "distinct": len(distinct),
        "produced": len(produced), "speed_checked": speed_checked, "speed_exceptions": speed_exceptions,
        "counts": counts, "chain": chain.counts,
    }


RESULTS = {path.name: compare(path) for path in CAPTURES}


def test_every_capture_is_covered():
    """All gpsd captures are present and decoded."""
    assert len(CAPTURES) == 20
    assert sum(r["stored"] for r in RESULTS.values()) > 350


def test_positions_match_gpsd_within_1e6_degrees():
    """At least 98% of stored fixes match a gpsd TPV position within 1e-6 degrees."""
    stored = sum(r["stored"] for r in RESULTS.values())
    matched = sum(r["matched"] for r in RESULTS.values())
    exceptions = [e for r in RESULTS.values() for e in r["exceptions"]]
    assert matched / stored >= 0.98, "\n".join(exceptions)
    assert len(exceptions) == stored - matched


def test_speeds_match_gpsd_within_1cm_per_s():
    """Every fix speed agrees with gpsd's reported speed for that epoch within 0.01 m/s."""
    checked = sum(r["speed_checked"] for r in RESULTS.values())
    exceptions = [e for r in RESULTS.values() for e in r["speed_exceptions"]]
    assert checked > 300
    assert exceptions == []


def test_distinct_gpsd_positions_are_produced():
    """At least 90% of gpsd's distinct positions are produced (each capture at least 80%)."""
    distinct = sum(r["distinct"] for r in RESULTS.values())
    produced = sum(r["produced"] for r in RESULTS.values())
    assert produced / distinct >= 0.90
    for name, r in RESULTS.items():
        assert r["produced"] >= 0.8 * r["distinct"], name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("GPSmap-76S.log", "simulated"),  # GGA quality 8, RMC mode S throughout
        ("beidou-gb.log", "void"),  # starts without a fix
        ("hemi.log", "void"),  # GGA quality 1 with 0 satellites: gpsd mode 1
        ("april6_2019.log", "bad_date"),  # Telit '2208-1'
        ("neo-m8n.log", "no_checksum"),
        ("unicore-um621.log", "unknown_sentence"),  # $SNRSTAT, $GYOACC
        ("skytraq.log", "void"),
    ],
)
def test_capture_counts(name, reason):
    """Known defects of each capture are counted under their reason."""
    assert RESULTS[name]["counts"][reason] > 0


def test_simulation_capture_stores_nothing():
    """A receiver in simulation mode yields no stored fix although gpsd reports positions."""
    assert RESULTS["GPSmap-76S.log"]["stored"] == 0


def test_week_rollover_capture_is_repaired():
    """april6_2019: the 1999-08-22 dates become 2019-04-07 (1024 weeks later)."""
    stored, _, chain = replay_backfill(DATA / "gpsd" / "april6_2019.log")
    assert [f.time for f in stored] == [
        datetime(2019, 4, 7, 0, 2, 31, 99000, tzinfo=timezone.utc),
        datetime(2019, 4, 7, 0, 2, 31, 420000, tzinfo=timezone.utc),
    ]
    assert chain.counts["repaired:rollover"] == 2


@pytest.mark.parametrize(
    ("name", "bad_reasons"),
    [
        ("pygpsdata-BADHDR.log", {"bad_checksum"}),
        ("pygpsdata-badeof.log", {"truncated"}),
        ("pygpsdata-mixed.log", {"garbage", "no_checksum"}),
        ("pygpsdata-nmea4.log", set()),
        ("pygpsdata-nmeabadck.log", {"bad_checksum"}),
        ("pygpsdata-nmeabadck2.log", {"bad_checksum"}),
        ("pygpsdata-nmeastartup.log", set()),
        ("unicore_nmea.log", set()),
    ],
)
@pytest.mark.parametrize("chunk_lines", [1, 7, 10_000])
def test_robustness_logs_pass_through(name, bad_reasons, chunk_lines):
    """Each robustness log passes live and as backfill without an exception, bad frames counted."""
    path = DATA / "robustness" / name
    assert path in ROBUSTNESS
    lines = path.read_bytes().splitlines(keepends=True)
    for flush in (True, False):
        stream, counts = NmeaStream(), collections.Counter()
        for start in range(0, len(lines), chunk_lines):
            counts += stream.feed(b"".join(lines[start : start + chunk_lines]), NOW, flush=flush).counts
        counts += stream.flush().counts
        for reason in bad_reasons:
            assert counts[reason] > 0, (reason, counts)
        assert counts["sentences_ok"] > 0
        assert counts["internal_error"] == 0 and counts["parse_error"] == 0


def test_robustness_file_set_is_complete():
    """The table above names every robustness log."""
    assert len(ROBUSTNESS) == 8
