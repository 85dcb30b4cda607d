"""The live state in Redis: its keys are listed here (spelled here, or in store/sensors.py,
store/tracks.py and store/login.py as marked); no code outside store/ spells a key.

Keys (``{id}`` is a vehicle, user, service or token id):

- ``veh:ids`` set of known vehicle ids; ``veh:geo`` GEO set of latest positions (nearest queries),
  written by GEOADD.
- ``veh:fix`` hash, vehicle id -> the latest accepted fix as comma-separated ``t`` (UTC epoch s),
  ``lat``, ``lon`` (WGS84), ``spd`` km/h, ``crs`` deg, ``alt`` m, ``q`` quality, ``mode``,
  ``sats``, ``hdop``, ``talker`` (empty when unknown) and ``seen``, when the vehicle's last message
  of that write came (epoch s; lat and lon to 1e-9 degree, spd to 0.001 km/h, seen to the ms:
  `store.fix_writes.fix_text`) (see FIX_FIELDS, read with ``fix_fields``; texts written before
  ``seen`` was added end at ``talker``); ``veh:seen`` hash, vehicle id -> its last message (epoch
  s) in a write without a fix (the vehicle's last message is the later of the two);
  ``veh:signal`` hash, vehicle id -> the no-fix reason while the receiver reports no usable fix,
  or ``alarm:<names>`` while a JT/T 808 terminal reports alarm bits (deleted by the next fix
  without). One hash per field, not per vehicle: the ingest sets a batch's values
  in one variadic HSET each, where a hash per vehicle cost Redis a command per fix (about 3 us a
  fix, measured).
- ``veh:{id}`` hash: ``link`` (``online``/``offline`` from the MQTT status topic) and ``link_at``;
  hashes written before the field hashes also hold ``fix``, ``seen`` and ``signal`` (or the
  fix's fields one by one), read where the field hashes have nothing (``vehicle_fields``).
- ``vehcnt:{id}`` hash: counters of good and rejected sentences/fixes by reason.
- ``veh:unknown`` sorted set (score: last message, epoch s) and ``veh:unknown:last`` hash (id ->
  JSON ``{topic, at, count}``): vehicles not in the fleet registry whose messages the ingest kept
  aside, capped to the newest VEHICLE_UNKNOWN_MAX ids (both trimmed together).
- ``trk:{id}:{hour}`` string: the track of one UTC hour, packed 20-byte records (see TRACK_RECORD),
  appended; ``trkidx:{id}`` sorted set of the hours present. Both expire after the retention;
  the archiver copies each closed hour into PostgreSQL first, and reads merge the two
  (``store.tracks``).
- ``svc:{name}`` string with TTL: a service's heartbeat (JSON), read by /healthz.
- ``session:{sha256 of token}`` string with TTL: login session (the key holds a SHA-256 of the
  token, never the token: ``store.login``); the accounts themselves are in PostgreSQL
  (``store.accounts``).
- ``config:cookie_secret`` string: the secret signing the session cookies, created once and shared
  by every web process (``store.login``).
- ``login:pair:{address} {name}`` and ``login:addr:{address}`` hashes: the login throttle
  (``n`` attempts not proven right, ``until`` epoch s before which none is let through; see
  ``store.login``).
- pub/sub channel ``live:vehicles``: each ingest flush publishes the changed latest fixes.
- ``ingest:stats`` hash: ingest counters shared by every ingest process (good, rejected:<reason>).

Sensors and alarms (``{sid}`` is a sensor id, ``{aid}`` an alarm id ``<sensor id>:<kind>``):

- (sensor and alarm keys below are handled in store/sensors.py, mixed into Store)
- ``sensor:ids`` set and ``sensor:{sid}`` hash: the registry (name, kind, quantity, unit,
  asset_id, period_s, thresholds, lon/lat, rated_kva, sparkplug), replaced from the city layers.
- ``sensorval:{sid}`` hash: latest reading (``value``, ``unit``, ``quantity``, ``ts``,
  ``received_at``, ``source``) and ``link`` (``online``/``offline`` from Sparkplug births and
  deaths) with ``link_at``.
- ``sensorhist:{sid}`` stream, capped (MAXLEN ~): recent readings, fields ``ts`` and ``v``.
- ``sensor:unknown`` list, capped: JSON of the latest readings from sensors not in the registry,
  newest first; ``sensor:unknown_ids`` hash: count per unknown sensor id.
- ``alarm:{aid}`` hash: the current (or last) alarm of a sensor and kind (see ``alarm_fields``);
  ``alarms:shown`` sorted set (score: raised_at) of alarms still shown (active, or cleared but
  not acknowledged).
- ``alarms:events`` stream, capped, append-only: every alarm event (fields ``type``, ``alarm_id``,
  ``at``, ``alarm`` JSON of the alarm after the event); the command side consumes it with a consumer group
  (services/ticket_alarms.py parse_alarm_event).
- pub/sub channel ``live:alarms``: the same events, JSON, for the console.
- ``alarms:acks`` stream: acknowledgement requests from the web (``alarm_id``, ``user``, ``at``),
  applied by the ingest that owns the alarm state; ``ingest:acks_cursor`` its last applied id.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

import numpy as np
import orjson
import redis.asyncio as aioredis

from store import redis_client
from runtime.clock import Clock
from store.db import Database
from store.fix_writes import FixRecord, fix_text, prepare  # noqa: F401 (re-exported)
from store.track_codec import NONE8, NONE16, TRACK_RECORD, pack_fix  # noqa: F401 (re-exported)
from store.tracks import TrackStore
from store.login import LoginStoreMixin, session_key  # noqa: F401 (re-exported)
from store.sensors import (ALARM_ACKS, ALARM_EVENTS, ALARM_EVENTS_MAX, LIVE_ALARMS,  # noqa: F401 (re-exported)
                                 REGISTRY_FIELDS, SensorStoreMixin, alarm_fields, alarm_view, sensor_view)

LIVE_VEHICLES = "live:vehicles"
# One ingest batch of fixes (see Store.write_fixes): ARGV[1] JSON of flat arrays (a table per row
# would cost Lua an allocation each: decoding that was a third of the script's time), ARGV[2]
# packed track records, ARGV[3] the live:vehicles message ('' for none). The latest-fix hashes and
# the GEO set take a batch in a few variadic commands (GEOADD of lon, lat, id); each track is
# one APPEND of its records, cut from ARGV[2] by length, to a key the client spells (no number
# formatting in Lua); ``idx`` lists the tracks new to this ingest, whose expiry and hour index are
# set.
# Keys are not declared in KEYS (standalone Redis; not cluster-safe by design).
WRITE_FIXES = """
local d = cjson.decode(ARGV[1])
local blob = ARGV[2]
local trk, idx, cnt = d.trk, d.idx, d.cnt  -- the lists walked in Lua loops, as locals
local function each(cmd, key, list, width)  -- a variadic command over a flat list, in chunks of rows
  for i = 1, #list, width do redis.call(cmd, key, unpack(list, i, math.min(i + width - 1, #list))) end
end
each('SADD', 'veh:ids', d.ids, 1000)
each('HSET', 'veh:fix', d.fix, 1000)
each('HSET', 'veh:seen', d.seen, 1000)
if #d.fix > 0 and redis.call('HLEN', 'veh:signal') > 0 then  -- a fix clears its vehicle's signal
  local fixed = {}
  for i = 1, #d.fix, 2 do fixed[#fixed + 1] = d.fix[i] end
  each('HDEL', 'veh:signal', fixed, 1000)
end
each('HSET', 'veh:signal', d.sig, 1000)  -- after: a signal after a fix in the batch stands
each('GEOADD', 'veh:geo', d.geo, 3000)
local at = 1
for i = 1, #trk, 2 do
  redis.call('APPEND', trk[i], string.sub(blob, at, at + trk[i + 1] - 1))
  at = at + trk[i + 1]
end
for i = 1, #idx, 3 do
  redis.call('EXPIRE', idx[i], d.ttl)
  redis.call('ZADD', 'trkidx:' .. idx[i + 1], idx[i + 2], idx[i + 2])
  redis.call('EXPIRE', 'trkidx:' .. idx[i + 1], d.ttl)
end
for i = 1, #cnt, 3 do redis.call('HINCRBY', 'vehcnt:' .. cnt[i], cnt[i + 1], cnt[i + 2]) end
if ARGV[3] ~= '' then redis.call('PUBLISH', 'live:vehicles', ARGV[3]) end
return #d.fix / 2
"""

# Messages kept aside from vehicles not in the fleet registry (see Store.keep_unknown_vehicles).
# KEYS: veh:unknown, veh:unknown:last. ARGV[1]: ids kept at most; then per vehicle: id, last
# topic, last time (epoch s, text), messages. Trims both keys to the newest ids.
KEEP_UNKNOWN_VEHICLES = """
for i = 2, #ARGV, 4 do
  local n = tonumber(ARGV[i + 3])
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if old then n = n + cjson.decode(old).count end
  redis.call('HSET', KEYS[2], ARGV[i], cjson.encode({topic = ARGV[i + 1], at = ARGV[i + 2], count = n}))
  redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
end
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if extra > 0 then
  local gone = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
  for i = 1, #gone, 1000 do redis.call('HDEL', KEYS[2], unpack(gone, i, math.min(i + 999, #gone))) end
end
"""

# Packed track record: see store.track_codec (TRACK_RECORD).
TRACK_DTYPE = np.dtype([("ms", "<u4"), ("lat", "<i4"), ("lon", "<i4"), ("cms", "<u2"),
                        ("crs", "<u2"), ("alt", "<i2"), ("q", "u1"), ("sats", "u1")])


def unpack_track(hour: int, data: bytes) -> list[dict[str, Any]]:
    """Decode the packed records of one hour into fix dicts (WGS84 degrees, km/h)."""
    usable = len(data) - len(data) % TRACK_DTYPE.itemsize
    arr = np.frombuffer(data[:usable], dtype=TRACK_DTYPE)
    out = []
    base = hour * 3600.0
    for rec in arr.tolist():
        ms, lat, lon, cms, crs, alt, q, sats = rec
        out.append({
            "t": base + ms / 1000.0, "lat": lat / 1e7, "lon": lon / 1e7,
            "speed_kmh": None if cms == NONE16 else round(cms * 0.036, 4),
            "course_deg": None if crs == NONE16 else crs / 100.0,
            "alt_m": None if alt == -32768 else float(alt),
            "quality": None if q == NONE8 else q, "sats": None if sats == NONE8 else sats,
        })
    return out


FIX_FIELDS = ("t", "lat", "lon", "spd", "crs", "alt", "q", "mode", "sats", "hdop", "talker", "seen")


def fix_fields(raw: Mapping[str, str]) -> Mapping[str, str]:
    """The latest fix's fields of a vehicle hash (``t``, ``lat``, ... as text): from the packed
    ``fix`` field, or from the one-field-each layout of hashes written before it."""
    packed = raw.get("fix")
    if not packed:
        return raw
    return dict(zip(FIX_FIELDS, packed.split(",")))


def _num(value: Any) -> float | None:
    if value in (None, "", b""):
        return None
    return float(value)


LATEST_KEYS = ("veh:fix", "veh:seen", "veh:signal")


def vehicle_fields(vehicle_id: str, raw: Mapping[str, str], fixes: Mapping[str, str],
                   seen: Mapping[str, str], signals: Mapping[str, str]) -> Mapping[str, str]:
    """A vehicle's fields as `vehicle_view` reads them: ``link`` and ``link_at`` from its own hash
    ``raw``; ``fix``, ``seen`` and ``signal`` from the field hashes of LATEST_KEYS (given as
    mappings by vehicle id), falling back to its own hash, where they were kept before those
    hashes. A signal is cleared by a fix (deleted from ``veh:signal``), so a vehicle with a fix
    there has no older signal."""
    if vehicle_id not in fixes and vehicle_id not in seen and vehicle_id not in signals:
        return raw
    out = dict(raw)
    out["fix"] = fixes.get(vehicle_id) or raw.get("fix", "")
    out["seen"] = seen.get(vehicle_id) or raw.get("seen", "")
    if vehicle_id in signals:
        out["signal"] = signals[vehicle_id]
    elif vehicle_id in fixes:
        out["signal"] = ""
    return out


def vehicle_view(vehicle_id: str, raw: Mapping[str, str], now: float, stale_s: float,
                 offline_s: float) -> dict[str, Any]:
    """The API shape of a vehicle's latest state from its fields (see ``vehicle_fields``), with
    state computed at ``now``."""
    fields = fix_fields(raw)
    t = _num(fields.get("t"))
    age = None if t is None else max(0.0, now - t)
    if raw.get("link") == "offline" or age is None or age > offline_s:
        state = "offline"
    elif age > stale_s:
        state = "stale"
    else:
        state = "online"
    fix = None
    if t is not None:
        quality = _num(fields.get("q"))
        sats = _num(fields.get("sats"))
        fix = {"t": t, "lat": float(fields["lat"]), "lon": float(fields["lon"]),
               "speed_kmh": _num(fields.get("spd")), "course_deg": _num(fields.get("crs")),
               "alt_m": _num(fields.get("alt")), "quality": None if quality is None else int(quality),
               "mode": fields.get("mode") or None, "sats": None if sats is None else int(sats),
               "hdop": _num(fields.get("hdop")), "talker": fields.get("talker") or None}
    return {"id": vehicle_id, "state": state, "fix_age_s": age, "fix": fix,
            "link": raw.get("link") or None, "signal": raw.get("signal") or None,
            "last_seen": _latest(_num(raw.get("seen")), _num(fields.get("seen")))}


def _latest(*times: float | None) -> float | None:
    """The latest of the known times, or None."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


class Store(SensorStoreMixin, LoginStoreMixin):
    """Typed access to the live state in Redis (``redis``), carrying the process's PostgreSQL
    pool (``db``, `store.db.Database`) for the stores of the record (tickets, accounts, fleet)."""

    def __init__(self, client: aioredis.Redis, db: Database | None = None):
        self.redis = client
        self.db = db
        # the clock the vehicles' fix times are compared on (runtime.clock; the process sets its own):
        # the stale and offline limits are wall seconds, so span() of them on that clock
        self.clock = Clock()
        self._write_fixes_script = client.register_script(WRITE_FIXES)
        self._keep_unknown_script = client.register_script(KEEP_UNKNOWN_VEHICLES)

    @classmethod
    def from_url(cls, url: str, database_url: str = "", *, db_pool_size: int = 10, **kwargs: Any) -> "Store":
        """Connect (lazily) to the Redis at url, decoding replies as UTF-8 text, waiting out a
        restart or LOADING (`store.redis_client.connect`, whose options ``kwargs`` may set), and
        to the PostgreSQL at database_url when given (a pool opened on first use)."""
        db = Database(database_url, max_size=db_pool_size) if database_url else None
        return cls(redis_client.connect(url, **kwargs), db)

    async def close(self) -> None:
        """Close the connection pools."""
        await self.redis.aclose()
        if self.db is not None:
            await self.db.close()

    # vehicles ---------------------------------------------------------------------------------
    async def write_fixes(self, fixes: Iterable[FixRecord], counters: Mapping[str, Mapping[str, int]],
                          *, seen: Mapping[str, float], retention_s: float,
                          signals: Mapping[str, str] | None = None,
                          indexed: dict[tuple[str, int], bool] | None = None,
                          known: set[str] | None = None,
                          track: Iterable[FixRecord] | None = None) -> list[dict[str, Any]]:
        """Write one ingest batch in a single script call; return the live updates published.

        Only the newest live fix of each vehicle in the batch moves its latest position; every
        track fix is appended to its hour: those of ``fixes``, or, when ``track`` is given (the
        ingest holds track records back, see `ingest.vehicles.HeldWrites`), those of ``track``.
        ``counters`` maps vehicle id to counter deltas.
        ``indexed``, when given, is the caller's cache of (vehicle, hour) tracks whose index entry
        and expiry are already set: they are set once per hour instead of at every append;
        ``known`` likewise caches the ids already in ``veh:ids``. Both caches are filled only after
        the write succeeded. The whole batch goes to Redis as one ``WRITE_FIXES`` script call (a
        JSON argument of flat arrays, the packed track records, the live message): per-command
        overhead in the client, not Redis, is what limits the ingest rate.
        """
        updates, args, new_hours, ids = prepare(fixes, counters, seen, retention_s, signals, indexed, known, track)
        if args is None:
            return updates
        await self._write_fixes_script(args=args)
        if indexed is not None:
            if len(indexed) > 200_000:
                indexed.clear()
            indexed.update(dict.fromkeys(new_hours, True))
        if known is not None:
            if len(known) > 200_000:
                known.clear()
            known.update(ids)
        return updates

    async def set_vehicle_link(self, vehicle_id: str, link: str, at: float) -> None:
        """Record the vehicle's MQTT link state (online/offline, e.g. from its last will)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd("veh:ids", vehicle_id)
        pipe.hset(f"veh:{vehicle_id}", mapping={"link": link, "link_at": repr(at)})
        pipe.publish(LIVE_VEHICLES, orjson.dumps([{"id": vehicle_id, "link": link}]))
        await pipe.execute()

    async def keep_unknown_vehicles(self, entries: Mapping[str, tuple[str, float, int]], keep: int) -> None:
        """Keep aside what vehicles not in the fleet registry sent: ``entries`` maps vehicle id to
        (last topic, last time, messages); only the ``keep`` newest ids stay."""
        if entries:
            args: list[Any] = [keep]
            for vehicle_id, (topic, at, count) in entries.items():
                args += [vehicle_id, topic, repr(at), count]
            await self._keep_unknown_script(keys=["veh:unknown", "veh:unknown:last"], args=args)

    async def unknown_vehicles(self, limit: int = 100) -> dict[str, Any]:
        """Vehicles not in the fleet registry whose messages were kept aside, newest first, each
        with its last topic, last time (epoch s) and message count; ``total``: ids kept."""
        ids = await self.redis.zrevrange("veh:unknown", 0, max(limit, 1) - 1)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard("veh:unknown")
        pipe.hmget("veh:unknown:last", ids or ["-"])
        total, raws = await pipe.execute()
        out = []
        for vehicle_id, raw in zip(ids, raws):
            if raw:  # (None: trimmed since the first read)
                last = orjson.loads(raw)
                out.append({"vehicle_id": vehicle_id, "topic": last["topic"], "at": float(last["at"]),
                            "count": int(last["count"])})
        return {"vehicles": out, "total": int(total)}

    async def vehicle_ids(self) -> list[str]:
        """All known vehicle ids, sorted."""
        return sorted(await self.redis.smembers("veh:ids"))

    async def live_state_present(self, *, vehicles: bool, sensors: bool) -> bool:
        """Whether Redis still holds what the ingest wrote: the known vehicle ids (``vehicles``)
        and the sensor registry (``sensors``); False after a wipe (FLUSHALL, or a restart without
        its AOF)."""
        keys = (["veh:ids"] if vehicles else []) + (["sensor:ids"] if sensors else [])
        return not keys or await self.redis.exists(*keys) == len(keys)

    async def vehicles(self, *, now: float | None = None, stale_s: float = 30.0,
                       offline_s: float = 300.0) -> list[dict[str, Any]]:
        """Latest state of every vehicle."""
        ids = await self.vehicle_ids()
        pipe = self.redis.pipeline(transaction=False)
        for key in LATEST_KEYS:
            pipe.hgetall(key)
        for vid in ids:
            pipe.hgetall(f"veh:{vid}")
        replies = await pipe.execute()
        latest, raws = replies[:len(LATEST_KEYS)], replies[len(LATEST_KEYS):]
        now = self.clock.now() if now is None else now
        stale_s, offline_s = self.clock.span(stale_s), self.clock.span(offline_s)
        return [vehicle_view(vid, vehicle_fields(vid, raw, *latest), now, stale_s, offline_s)
                for vid, raw in zip(ids, raws)]

    async def vehicle(self, vehicle_id: str, *, now: float | None = None, stale_s: float = 30.0,
                      offline_s: float = 300.0) -> dict[str, Any] | None:
        """Latest state and counters of one vehicle, or None when unknown."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.sismember("veh:ids", vehicle_id)
        pipe.hgetall(f"veh:{vehicle_id}")
        pipe.hgetall(f"vehcnt:{vehicle_id}")
        for key in LATEST_KEYS:
            pipe.hget(key, vehicle_id)
        known, raw, counts, *latest = await pipe.execute()
        if not known:
            return None
        latest = [{} if value is None else {vehicle_id: value} for value in latest]
        view = vehicle_view(vehicle_id, vehicle_fields(vehicle_id, raw, *latest),
                            self.clock.now() if now is None else now, self.clock.span(stale_s),
                            self.clock.span(offline_s))
        view["counters"] = {k: int(v) for k, v in sorted(counts.items())}
        return view

    async def nearest_vehicles(self, lon: float, lat: float, radius_m: float, count: int = 10) -> list[tuple[str, float]]:
        """Vehicle ids within radius_m of a point by straight line, nearest first, with metres."""
        rows = await self.redis.geosearch("veh:geo", longitude=lon, latitude=lat, radius=radius_m,
                                          unit="m", sort="ASC", count=count, withdist=True)
        return [(vid, float(dist)) for vid, dist in rows]

    async def track(self, vehicle_id: str, since: float, until: float) -> list[dict[str, Any]]:
        """Track fixes of a vehicle with since <= t <= until (UTC epoch s), in time order: the
        archive and the live hours merged (`store.tracks.TrackStore.track`)."""
        return await TrackStore(self.db, self.redis).track(vehicle_id, since, until)

    async def vehicle_counters(self) -> dict[str, dict[str, int]]:
        """Counters of every vehicle."""
        ids = await self.vehicle_ids()
        pipe = self.redis.pipeline(transaction=False)
        for vid in ids:
            pipe.hgetall(f"vehcnt:{vid}")
        return {vid: {k: int(v) for k, v in raw.items()} for vid, raw in zip(ids, await pipe.execute())}

    async def add_ingest_stats(self, deltas: Mapping[str, int]) -> None:
        """Add to the ingest counters shared by every ingest process."""
        if deltas:
            pipe = self.redis.pipeline(transaction=False)
            for name, delta in deltas.items():
                pipe.hincrby("ingest:stats", name, delta)
            await pipe.execute()

    async def ingest_stats(self) -> dict[str, int]:
        """The ingest counters (good, rejected by reason, buffered, dropped)."""
        return {k: int(v) for k, v in sorted((await self.redis.hgetall("ingest:stats")).items())}

    # services ---------------------------------------------------------------------------------
    async def heartbeat(self, service: str, info: Mapping[str, Any], ttl_s: int = 10) -> None:
        """Record that a service is alive, with its own status, for ttl_s seconds."""
        await self.redis.set(f"svc:{service}", orjson.dumps({**info, "at": time.time()}), ex=ttl_s)

    async def services(self, names: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """The last heartbeat of each named service (None: silent for longer than its TTL)."""
        names = list(names)
        values = await self.redis.mget([f"svc:{n}" for n in names]) if names else []
        return {n: (orjson.loads(v) if v else None) for n, v in zip(names, values)}
