"""Single-core decode rate of JT/T 808 location reports (0x0200 with the items a fleet terminal
usually sends: mileage, signal strength, satellites) through one `Jt808Stream` per terminal, as a
gateway would run them: frames split from TCP chunks, unescaped, checked and decoded, and each
report's fix fields taken with `as_fix`.

Timed with process CPU time (the machine is shared), so the figure is the rate of one busy core."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from bench.common import emit, progress
from ingest.jt808 import Jt808Stream, as_fix, encode_frame

TERMINALS = 200
SECONDS = 100
PER_CHUNK = 3  # reports a terminal's TCP chunk carries (a 30 s report interval batches none; a backlog does)
DURATION_S = 5.0


def _report(terminal: int, second: int, start: datetime) -> bytes:
    """One 0x0200 frame: positioned, ACC on, driving east at 36 km/h, GMT+8 time."""
    local = start + timedelta(seconds=second)
    lat = int((30.5 + terminal * 0.001) * 1e6)
    lon = int((104.06 + second * 0.0001) * 1e6)
    body = (bytes(4) + (3).to_bytes(4, "big") + lat.to_bytes(4, "big") + lon.to_bytes(4, "big")
            + (500).to_bytes(2, "big") + (360).to_bytes(2, "big") + (90).to_bytes(2, "big")
            + bytes.fromhex(local.strftime("%y%m%d%H%M%S"))
            + b"\x01\x04" + (123_456 + second).to_bytes(4, "big") + b"\x30\x01\x1c\x31\x01\x0c")
    return encode_frame(0x0200, f"0138{terminal:08d}", second, body)


def make_chunks() -> list[tuple[int, bytes]]:
    """(terminal, TCP chunk) pairs, PER_CHUNK reports a chunk."""
    start = datetime(2026, 6, 1, 8, 0, 0)
    chunks = []
    for second in range(0, SECONDS, PER_CHUNK):
        for terminal in range(TERMINALS):
            chunks.append((terminal, b"".join(_report(terminal, s, start)
                                              for s in range(second, min(second + PER_CHUNK, SECONDS)))))
    return chunks


def main() -> None:
    """Print jt808_decode_msgs_per_s (and µs per message)."""
    chunks = make_chunks()
    expected = TERMINALS * SECONDS
    progress(f"{expected} reports of {len(_report(0, 0, datetime(2026, 6, 1)))} bytes in {len(chunks)} chunks")
    done = 0
    elapsed = 0.0
    while elapsed < DURATION_S:
        streams = [Jt808Stream() for _ in range(TERMINALS)]
        fixes = 0
        started = time.process_time()
        for terminal, chunk in chunks:
            for message in streams[terminal].feed(chunk):
                if as_fix(message.body).valid:
                    fixes += 1
        elapsed += time.process_time() - started
        if fixes != expected:
            raise SystemExit(f"expected {expected} valid fixes, got {fixes}")
        done += fixes
    emit("jt808_decode_msgs_per_s", done / elapsed, "msg/s")
    emit("jt808_decode_us_per_msg", elapsed / done * 1e6, "us")


if __name__ == "__main__":
    main()
