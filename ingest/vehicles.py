"""Vehicle NMEA processing at the ingest edge: topic -> stream -> plausibility -> FixRecord; the
JT/T 808 gateway's fixes (``fleet/<id>/jt808``, `ingest.jt808_fixes`) join at the plausibility.

Holds no business rules of its own: decoding is ``ingest.fixes``, judging is
``ingest.plausibility``; this module keeps the per-vehicle state they need and turns their
output into store records and counters.
"""
from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping

from ingest.fixes import FeedResult, Fix, NmeaStream, SignalUpdate
from ingest.jt808_fixes import decode_payload
from ingest.plausibility import Plausibility, Verdict
from store.fix_writes import FixRecord

log = logging.getLogger(__name__)

_PREFIXED: dict[str, dict[str, str]] = {"nmea:": {}}  # prefix -> count name -> "<prefix><name>", built once
BACKFILL_IDLE_S = 2.0  # a backfill stream idle this long has its pending epoch flushed


@dataclass
class VehicleBatch:
    """What the ingest accumulates between two Redis writes."""

    fixes: list[FixRecord] = field(default_factory=list)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    signals: dict[str, str] = field(default_factory=dict)
    # None: the track part of ``fixes`` is written with them; else `HeldWrites.cut` took it and
    # this lists the records whose track part this batch writes (theirs or earlier batches').
    track: list[FixRecord] | None = None

    def __len__(self) -> int:
        return len(self.fixes) + len(self.signals)

    @classmethod
    def merged(cls, batches: "list[VehicleBatch]") -> "VehicleBatch":
        """One batch writing what the given consecutive batches write one after the other:
        fixes in order, counters summed, the last seen time, and the signals still standing
        (a signal is cleared by a later batch's live fix of the same vehicle)."""
        out = cls()
        counters, signals = out.counters, out.signals
        if any(batch.track is not None for batch in batches):
            out.track = []
        for batch in batches:
            out.fixes.extend(batch.fixes)
            if out.track is not None:
                out.track.extend(batch.fixes if batch.track is None else batch.track)
            for vehicle_id, deltas in batch.counters.items():
                _add_counts(counters, vehicle_id, deltas)
            out.seen.update(batch.seen)
            if signals:
                for fix in batch.fixes:
                    if fix.live:
                        signals.pop(fix.vehicle_id, None)
            signals.update(batch.signals)
        return out

    def count(self, vehicle_id: str, name: str, n: int = 1) -> None:
        """Add to one of a vehicle's counters."""
        counter = self.counters.get(vehicle_id)
        if counter is None:
            counter = self.counters[vehicle_id] = {}
        counter[name] = counter.get(name, 0) + n


def _add_counts(counters: dict, vehicle_id: str, deltas: Mapping[str, int]) -> None:
    """Add one vehicle's counter deltas to a mapping of vehicle id -> counters (a copy when new)."""
    counter = counters.get(vehicle_id)
    if counter is None:
        counters[vehicle_id] = dict(deltas)
    else:
        for name, n in deltas.items():
            counter[name] = counter.get(name, 0) + n


class HeldWrites:
    """Each vehicle's track records and counters, held back for up to ``hold_s`` seconds so that
    a vehicle costs Redis one track append and one counter update per interval rather than per
    message; its live position is written with every batch regardless.

    `cut` runs when a batch is cut for writing: it takes the batch's track records and counters
    and gives it back those of the vehicles whose oldest held item is due (all of them when
    ``flush``). A vehicle's track and counters are always written together, so a reader that sees
    a vehicle's counters also sees the track they count. What a batch is to write is fixed at its
    cut: a retried write writes the same."""

    def __init__(self, hold_s: float):
        self.hold_s = hold_s
        self.tracks: dict[str, list] = {}
        self.counters: dict[str, dict] = {}
        self.order: collections.deque = collections.deque()  # (held since, vehicle id), oldest first

    def __len__(self) -> int:
        """Track records held."""
        return sum(len(records) for records in self.tracks.values())

    def cut(self, batch: VehicleBatch, now: float, flush: bool = False) -> None:
        """Hold ``batch``'s track records and counters; put the due ones in ``batch.track`` and
        ``batch.counters``. ``now``: a monotonic clock."""
        tracks: dict = self.tracks
        held_counters: dict = self.counters
        order = self.order
        for fix in batch.fixes if batch.track is None else batch.track:
            if not fix.track:
                continue
            vid = fix.vehicle_id
            records = tracks.get(vid)
            if records is None:
                if vid not in held_counters:
                    order.append((now, vid))
                tracks[vid] = [fix]
            else:
                records.append(fix)
        for vid, deltas in batch.counters.items():
            if vid not in held_counters and vid not in tracks:
                order.append((now, vid))
            _add_counts(held_counters, vid, deltas)
        due: list = []
        counters: dict = {}
        limit = now - self.hold_s
        while order and (flush or order[0][0] <= limit):
            vid = order.popleft()[1]
            records = tracks.pop(vid, None)
            if records is not None:
                due.extend(records)
            counter = held_counters.pop(vid, None)
            if counter is not None:
                counters[vid] = counter
        batch.track = due
        batch.counters = counters


def _record(vehicle_id: str, fix: Fix, live: bool, track: bool) -> FixRecord:
    """FixRecord of an accepted fix."""
    return FixRecord(vehicle_id, fix.time.timestamp(), fix.lat, fix.lon, fix.speed_kmh, fix.course_deg, fix.alt_m,
                     fix.quality, fix.mode, fix.sats, fix.hdop, fix.talker, live, track)


class VehicleIngest:
    """Per-vehicle NMEA streams and last fixes; feeds a VehicleBatch."""

    def __init__(self, *, max_speed_kmh: float = 200.0):
        self.plausibility = Plausibility(max_speed_kmh=max_speed_kmh)
        self.live_streams: dict[str, NmeaStream] = {}
        self.backfill_streams: dict[str, NmeaStream] = {}
        self.backfill_touched: dict[str, float] = {}
        # each vehicle's last live / backfill fix
        self.last_live: dict[str, Fix] = {}
        self.last_backfill: dict[str, Fix] = {}

    def handle(self, vehicle_id: str, payload: bytes, received_at: float, backfill: bool,
               batch: VehicleBatch, stats: collections.Counter) -> None:
        """Decode one payload of a vehicle into the batch; never raises on payload content."""
        when = datetime.fromtimestamp(received_at, timezone.utc)
        streams = self.backfill_streams if backfill else self.live_streams
        stream = streams.get(vehicle_id)
        if stream is None:
            stream = streams[vehicle_id] = NmeaStream()
        if backfill:
            self.backfill_touched[vehicle_id] = received_at
        result = stream.feed(payload, when, flush=not backfill)
        batch.seen[vehicle_id] = received_at
        self._take(vehicle_id, result, when, backfill, batch, stats)

    def handle_jt808(self, vehicle_id: str, payload: bytes, received_at: float, backfill: bool,
                     batch: VehicleBatch, stats: collections.Counter) -> None:
        """One ``fleet/<id>/jt808`` payload (`ingest.jt808_fixes`) into the batch through the same
        plausibility chain as NMEA fixes. A backfill (0x0704) is judged as a stream of its own,
        seeded by the vehicle's newest live fix. Alarms stand on the vehicle's live state as its
        signal ``alarm:<names>`` while its newest report has them (cleared by a report without),
        and are counted ``jt808_alarm:<name>``."""
        reports, bad = decode_payload(payload)
        when = datetime.fromtimestamp(received_at, timezone.utc)
        result = FeedResult()
        counts = result.counts
        counts["fix"] += sum(1 for r in reports if r.fix is not None)
        if bad:
            counts["bad_fix"] += bad
        for report in reports:
            if report.fix is None:
                counts["no_fix"] += 1
                result.signal.append(SignalUpdate(None))
            else:
                result.fixes.append(report.fix)
        batch.seen[vehicle_id] = received_at
        if backfill:
            self.last_backfill.pop(vehicle_id, None)
        self._take(vehicle_id, result, when, backfill, batch, stats, prefix="jt808_ingest:")
        if backfill:
            self.last_backfill.pop(vehicle_id, None)
            return
        alarms = sorted({name for report in reports for name in report.alarms})
        for name in alarms:
            stats["jt808_alarm:" + name] += 1
        if alarms:
            batch.signals[vehicle_id] = "alarm:" + ",".join(alarms)

    def flush_idle_backfill(self, now: float, batch: VehicleBatch, stats: collections.Counter) -> None:
        """Complete the pending epoch of backfill streams that went quiet."""
        when = datetime.fromtimestamp(now, timezone.utc)
        for vehicle_id, touched in list(self.backfill_touched.items()):
            if now - touched >= BACKFILL_IDLE_S:
                del self.backfill_touched[vehicle_id]
                stream = self.backfill_streams.pop(vehicle_id, None)
                if stream is not None:
                    self._take(vehicle_id, stream.flush(), when, True, batch, stats)
                self.last_backfill.pop(vehicle_id, None)

    def _take(self, vehicle_id: str, result: FeedResult, when: datetime, backfill: bool, batch: VehicleBatch,
              stats: collections.Counter, prefix: str = "nmea:") -> None:
        """Count a feed's result (stats ``<prefix><name>``), judge its fixes and add the accepted
        ones to the batch."""
        counter = batch.counters.get(vehicle_id)
        if counter is None:
            counter = batch.counters[vehicle_id] = {}
        prefixed = _PREFIXED.get(prefix) or _PREFIXED.setdefault(prefix, {})
        for name, n in result.counts.items():
            counter[name] = counter.get(name, 0) + n
            key = prefixed.get(name)
            if key is None:
                key = prefixed[name] = prefix + name
            stats[key] += n
        for update in result.signal:
            batch.signals[vehicle_id] = f"no_fix:{update.mode or update.quality or 'void'}"
        last_map = self.last_backfill if backfill else self.last_live
        for fix in result.fixes:
            try:
                fix, judged_live, track, reason = self._judge(vehicle_id, fix, last_map.get(vehicle_id), when,
                                                              backfill)
            except Exception:  # the chain isolates its steps; this is the last line of defence
                stats["fix:check_error"] += 1
                log.exception("plausibility failed for %s", vehicle_id)
                continue
            if not (judged_live or track):
                batch.count(vehicle_id, "fix_rejected:" + (reason or "unknown"))
                stats["fix_rejected:" + (reason or "unknown")] += 1
                continue
            live = judged_live
            if backfill:
                # Backfill moves the live position only when newer than the live one.
                current = self.last_live.get(vehicle_id)
                live = judged_live and (current is None or fix.time > current.time)
            record = _record(vehicle_id, fix, live, track)
            if judged_live or (backfill and track):
                prev = last_map.get(vehicle_id)
                if prev is None or fix.time > prev.time:
                    last_map[vehicle_id] = fix
            if backfill and live:
                self.last_live[vehicle_id] = fix
            batch.fixes.append(record)
            name = "fix_ok" if live else "fix_track_only"
            counter[name] = counter.get(name, 0) + 1
            stats[name] += 1
            if live:
                batch.signals.pop(vehicle_id, None)

    def _judge(self, vehicle_id: str, fix: Fix, last: Fix | None, when: datetime, backfill: bool) -> Verdict:
        """Run the plausibility chain. The first fix of a backfill stream is judged against the
        vehicle's newest live fix (so a receiver with the week-rollover bug sending 2006 dates
        today is repaired to today); when that refuses it, it is judged on its own, as the start
        of a recorded log from any year."""
        check = self.plausibility.check
        if backfill and last is None:
            seed = self.last_live.get(vehicle_id)
            if seed is not None:
                verdict = check(fix, seed, when, backfill=True)
                if verdict.live or verdict.track:
                    return verdict
        return check(fix, last, when, backfill=backfill)


_TOPICS: dict[str, tuple[str, str] | None] = {}  # topic -> parse_fleet_topic(topic), bounded
_TOPICS_MAX = 100_000
_KINDS = (("/nmea/backfill", "backfill"), ("/nmea", "nmea"), ("/status", "status"),
          ("/jt808/backfill", "jt808_backfill"), ("/jt808", "jt808"))


def parse_fleet_topic(topic: str) -> tuple[str, str] | None:
    """fleet/<id>/nmea -> (id, 'nmea'); .../nmea/backfill -> 'backfill'; .../status -> 'status';
    .../jt808 -> 'jt808'; .../jt808/backfill -> 'jt808_backfill'; None for any other topic. The id
    is what stands between ``fleet/`` and the kind, as sent (``fleet/a/b/nmea`` gives ``a/b``): the caller checks it with `store.fleet.valid_vehicle_id`."""
    try:
        return _TOPICS[topic]
    except KeyError:
        pass
    if len(_TOPICS) >= _TOPICS_MAX:
        _TOPICS.clear()
    parsed = _TOPICS[topic] = _parse_fleet_topic(topic)
    return parsed


def _parse_fleet_topic(topic: str) -> tuple[str, str] | None:
    """parse_fleet_topic without the cache."""
    if not topic.startswith("fleet/"):
        return None
    for suffix, kind in _KINDS:
        if topic.endswith(suffix) and len(topic) >= 6 + len(suffix):
            return topic[6:len(topic) - len(suffix)], kind
    return None


def now() -> float:
    """UTC epoch seconds (the edge reads the clock; the domain gets it passed in)."""
    return time.time()
