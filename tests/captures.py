"""The gpsd regression captures (`tests/data/nmea/gpsd/*.log` with gpsd's own decoding in
`.log.chk`) and the pynmeagps robustness logs, and how the tests replay them: decoded as a
backfill through the plausibility chain, gpsd's reported positions, why gpsd reported none."""
from __future__ import annotations

import collections
import json
from datetime import datetime, timezone
from pathlib import Path

from ingest.fixes import Fix, NmeaStream
from ingest.plausibility import Plausibility

DATA = Path(__file__).parent / "data" / "nmea"
CAPTURES = sorted((DATA / "gpsd").glob("*.log"))
ROBUSTNESS = sorted((DATA / "robustness").glob("*.log"))
NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)
CHUNK_LINES = 20


def replay_backfill(path: Path) -> tuple[list[Fix], collections.Counter[str], Plausibility]:
    """Decode a whole log as a backfill (chunks of 20 lines, flush=False) through the plausibility
    chain, returning the fixes that go into the track, in order."""
    lines = path.read_bytes().splitlines(keepends=True)
    stream, chain = NmeaStream(), Plausibility()
    counts: collections.Counter[str] = collections.Counter()
    decoded: list[Fix] = []
    for start in range(0, len(lines), CHUNK_LINES):
        result = stream.feed(b"".join(lines[start : start + CHUNK_LINES]), NOW, flush=False)
        decoded += result.fixes
        counts += result.counts
    result = stream.flush()
    decoded += result.fixes
    counts += result.counts
    stored: list[Fix] = []
    last: Fix | None = None
    for fix in decoded:
        verdict = chain.check(fix, last, NOW, backfill=True)
        if verdict.track:
            stored.append(verdict.fix)
        if verdict.live:
            last = verdict.fix
    return stored, counts, chain


def gpsd_positions(path: Path) -> list[dict]:
    """gpsd's TPV reports with a position, simulation-mode ones left out."""
    chk = Path(str(path) + ".chk")
    reports = []
    for text in chk.read_text(encoding="utf-8", errors="replace").splitlines():
        if text.startswith('{"class":"TPV"'):
            tpv = json.loads(text)
            if "lat" in tpv and tpv.get("status") != 8:
                reports.append(tpv)
    return reports


def explain(path: Path, fix: Fix) -> str:
    """Why gpsd printed no TPV for this epoch: the reason listed with each exception."""
    tod = fix.time.strftime("%H%M%S")
    text = Path(str(path) + ".chk").read_text(encoding="utf-8", errors="replace")
    tods = [line.split(",")[1][:6] for line in text.splitlines() if line[3:6] in ("GGA", "RMC", "GLL", "GNS")]
    if tod in tods[-2:]:
        return "one of the last epochs of the log: gpsd ends before reporting it"
    return "gpsd printed no TPV for this epoch (its cycle-end detection skipped it)"
