"""The tickets area of the store: every ticket- and incident-related Redis key, and the one Lua
script that writes them. Nobody else spells these keys.

Records (JSON strings, so a page of the queue is one MGET):

- ``tkt:{number}`` the ticket: ``command.tickets.to_dict`` (times UTC ISO-8601) plus ``meta``
  (``queue``: the open timed stages as ``[stage, deadline_epoch_s, limit_s]``; ``police_kind``:
  the 110 emergency kind or null; ``alarm_key``; ``asset_id``). Its ``version`` is the
  optimistic-concurrency version checked by the script.
- ``tkt:{number}:events`` Redis Stream, the ticket's audit trail: one entry per transition with
  field ``e`` = ``command.tickets.event_to_dict`` JSON (who, role, when, from, to, note, data).
  Never trimmed, never expired.
- ``inc:{incident_id}`` an incident (``command.grouping.Incident``) as JSON with ``rev``;
  ``inc:{incident_id}:rev`` its revision alone (the optimistic-concurrency guard).

Indexes, all maintained by the same script call that writes the record and its events:

- ``tkt:open`` zset of open tickets, score created (epoch s); ``tkt:state:{state}`` zset per state,
  score created; ``tkt:counts`` hash state → number of tickets in it.
- ``tkt:geo`` GEO set of open tickets with a point (duplicates within r metres).
- ``tkt:phone:{phone}`` zset of every ticket of a caller, score created (history, repeat callers).
- ``tkt:crew:{crew_id}`` set of the open tickets assigned to a crew.
- ``tkt:color:{color}`` zset of open tickets per repeat colour; ``tkt:supervise`` zset of open
  tickets in front of a supervisor (red or flagged), both score created.
- ``tkt:callbacks`` zset of tickets resolved or awaiting callback, score resolved (epoch s).
- ``tkt:police`` zset of open tickets flagged for 110 (``meta.police_kind``), score created.
- ``tkt:q:{limit_s}`` zset per limit length, member ``{number}|{stage}|{deadline}``, score the
  stage's deadline (epoch s): within one limit length the deadline order is the order of "share of the limit left",
  so the dispatcher's queue merges the heads of a few zsets. ``tkt:q:limits`` set of the limit
  lengths in use; ``tkt:q:none`` zset of open tickets without a timed stage (score created);
  ``tkt:qrow`` hash number → ``[urgency_rank, created_epoch_s, queue]`` of open tickets.
- ``tkt:unit_rework`` hash unit → tickets reopened after a dissatisfied callback.
- ``tkt:alarm:{alarm_key}`` string → number of the proactive ticket of one alarm (idempotency).
- ``tkt:cid:{action_id}`` string with a one-day TTL → ``<number>/<action>`` a client's action id was
  applied to (a resent action answers instead of conflicting).
- ``tkt:seq:{YYYYMMDD}`` daily ticket number sequence (INCR; day in the center's time zone);
  ``inc:seq:{YYYYMMDD}`` the same for incidents. A failed write leaves a gap, never a duplicate.
  A ticket number is drawn together with the repeat check; a call that is linked as a repeat gives
  it back (RELEASE_SEQ_SCRIPT: DECR only while it is still the day's latest), else it is a gap.
- ``inc:all`` zset of incidents, score first call; ``inc:open`` zset of unresolved ones;
  ``inc:area:{supply_area}`` set of unresolved incident ids of a supply area (grouping).
- ``tkt:changes`` stream (capped at about 100,000) of every write: number, version, action,
  state, for live consoles and the dispatch worker; pub/sub ``live:tickets`` the same, as JSON.

Script contract (``SAVE_SCRIPT``, loaded once with SCRIPT LOAD and run by EVALSHA): KEYS are
every key touched; ARGV[1] is JSON ``{"g": guards, "o": ops}`` where keys are 1-based KEYS
indexes. Guards run first: ``["absent", k]`` (the key must not exist) and ``["jfield", k, name,
value]`` (the JSON string at k has ``name`` == value, "" when the key is missing) and
``["equals", k, value]`` (the string at k is value, "" when missing). The first
failing guard returns ``[0, guard_index, actual]`` and nothing is written. Before the guards the
script checks every op (known name, finite scores, integer increments, and each GEO pair within
|lon| <= 180, |lat| <= 85.05112878, as GEOADD takes them): a bad one returns ``[2, op_index,
reason]`` and nothing is written, because Redis keeps a script's earlier writes when a later
command fails. Otherwise the ops run
in order (``set``, ``xadd`` with an optional approximate MAXLEN, ``zadd``, ``zrem``, ``sadd``,
``srem``, ``geoadd``, ``hset``, ``hdel``, ``hincrby``, ``publish``) and the reply is
``[1, stream ids of the xadds...]``. One script call is atomic; with AOF (everysec) its effects
are in the AOF file before the reply is sent, so a kill -9 of redis-server loses nothing that was
acknowledged.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import orjson
import redis.asyncio as aioredis

from command.coordinates import GEO_LAT_LIMIT, CoordinateError, geo_pair_ok
from command.errors import Conflict, TicketNotFound, ValidationError
from command.grouping import Incident
from command.tickets import (
    OPEN_STATES, URGENCY_RANK, AuditEvent, Category, State, Ticket, event_to_dict, from_dict, to_dict,
)

CHANGES_STREAM = "tkt:changes"
CHANGES_MAXLEN = 100_000
LIVE_TICKETS = "live:tickets"
ALARM_EVENTS = "alarms:events"  # written by the sensor part of the store; read here by a consumer group

RELEASE_SEQ_SCRIPT = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DECR', KEYS[1]); return 1 end
return 0
"""

SAVE_SCRIPT = r"""
local spec = cjson.decode(ARGV[1])
-- Everything that can fail is checked before the first write (Redis does not undo a script's
-- earlier writes when a later command errors): op names, numbers, and the GEO pair's range.
local function num(v)
  local n = tonumber(v)
  return n ~= nil and n == n and n > -math.huge and n < math.huge
end
for i, o in ipairs(spec.o) do
  local op = o[1]
  if KEYS[o[2]] == nil then return {2, i, 'no key'} end
  if op == 'geoadd' then
    local lon, lat = tonumber(o[3]), tonumber(o[4])
    if not (num(o[3]) and num(o[4]) and lon >= -180 and lon <= 180 and lat >= -85.05112878 and lat <= 85.05112878) then
      return {2, i, 'invalid longitude,latitude pair ' .. tostring(o[3]) .. ',' .. tostring(o[4])}
    end
  elseif op == 'zadd' then
    if not num(o[3]) then return {2, i, 'score is not a finite number'} end
  elseif op == 'hincrby' then
    if type(o[4]) ~= 'number' or o[4] ~= math.floor(o[4]) then return {2, i, 'increment is not an integer'} end
  elseif op == 'xadd' then
    if type(o[3]) ~= 'number' or o[3] < 0 or #o < 5 or (#o - 3) % 2 ~= 0 then return {2, i, 'bad xadd'} end
  elseif not (op == 'set' or op == 'zrem' or op == 'sadd' or op == 'srem' or op == 'hset' or op == 'hdel'
              or op == 'publish') then
    return {2, i, 'unknown op ' .. tostring(op)}
  end
end
for i, g in ipairs(spec.g) do
  local key = KEYS[g[2]]
  if g[1] == 'absent' then
    if redis.call('EXISTS', key) == 1 then
      local t = redis.call('TYPE', key).ok
      local actual = ''
      if t == 'string' then actual = redis.call('GET', key) end
      return {0, i, actual}
    end
  elseif g[1] == 'jfield' then
    local raw = redis.call('GET', key)
    local actual = ''
    if raw then
      local v = cjson.decode(raw)[g[3]]
      if v ~= nil then actual = tostring(v) end
    end
    if actual ~= g[4] then return {0, i, actual} end
  elseif g[1] == 'equals' then
    local actual = redis.call('GET', key) or ''
    if actual ~= g[3] then return {0, i, actual} end
  else
    return redis.error_reply('unknown guard ' .. tostring(g[1]))
  end
end
local ids = {}
for _, o in ipairs(spec.o) do
  local op, key = o[1], KEYS[o[2]]
  if op == 'set' then redis.call('SET', key, o[3])
  elseif op == 'xadd' then
    local args = {'XADD', key}
    if o[3] > 0 then table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, o[3]) end
    table.insert(args, '*')
    for j = 4, #o do table.insert(args, o[j]) end
    table.insert(ids, redis.call(unpack(args)))
  elseif op == 'zadd' then redis.call('ZADD', key, o[3], o[4])
  elseif op == 'zrem' then redis.call('ZREM', key, o[3])
  elseif op == 'sadd' then redis.call('SADD', key, o[3])
  elseif op == 'srem' then redis.call('SREM', key, o[3])
  elseif op == 'geoadd' then redis.call('GEOADD', key, o[3], o[4], o[5])
  elseif op == 'hset' then redis.call('HSET', key, o[3], o[4])
  elseif op == 'hdel' then redis.call('HDEL', key, o[3])
  elseif op == 'hincrby' then redis.call('HINCRBY', key, o[3], o[4])
  elseif op == 'publish' then redis.call('PUBLISH', key, o[3])
  end
end
local out = {1}
for _, id in ipairs(ids) do table.insert(out, id) end
return out
"""


class GuardFailed(Exception):
    """A precondition of a write did not hold (an incident changed, an alarm already has a ticket)."""

    def __init__(self, key: str, actual: str) -> None:
        super().__init__(f"guard on {key} failed (current: {actual!r})")
        self.key = key
        self.actual = actual


@dataclass(frozen=True)
class TicketRecord:
    """A stored ticket and its metadata (queue stages, 110 flag, alarm link)."""

    ticket: Ticket
    meta: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)  # to_dict(ticket), when known

    def to_json(self) -> bytes:
        """The stored JSON form."""
        ticket = to_dict(self.ticket) if self.data is None else self.data  # data is to_dict(ticket) when set
        return orjson.dumps({**ticket, "meta": dict(self.meta)})

    @classmethod
    def from_json(cls, raw: str | bytes) -> "TicketRecord":
        """Rebuild from the stored JSON."""
        data = orjson.loads(raw)
        meta = data.pop("meta", None) or {}
        return cls(from_dict(data), meta, data)


@dataclass(frozen=True)
class TicketWrite:
    """One ticket's part of an atomic write: the new record, its audit events, and the record it
    replaces (None for a new ticket); `alarm_key` claims the alarm's one proactive ticket."""

    record: TicketRecord
    events: Sequence[AuditEvent]
    previous: TicketRecord | None = None
    alarm_key: str | None = None


@dataclass(frozen=True)
class CreateReads:
    """`TicketStore.create_reads`: the drawn sequence number, repeat candidates near the point
    (number, metres) and by phone, and the supply area's unresolved incident ids (None: not read)."""

    seq: int
    near: list[tuple[str, float]]
    by_phone: list[str]
    area_incident_ids: list[str] | None


@dataclass(frozen=True)
class IncidentWrite:
    """One incident's part of an atomic write: new state and revision, and the replaced state."""

    incident: Incident
    rev: int
    previous: Incident | None = None


def incident_to_dict(incident: Incident, rev: int) -> dict[str, Any]:
    """JSON-safe dict of an incident with its revision."""
    out: dict[str, Any] = {"rev": rev}
    for f in dataclasses.fields(Incident):
        value = getattr(incident, f.name)
        if isinstance(value, datetime):
            value = value.astimezone(timezone.utc).isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Category):
            value = value.value
        out[f.name] = value
    return out


def incident_from_dict(data: Mapping[str, Any]) -> tuple[Incident, int]:
    """Rebuild (incident, rev) from `incident_to_dict` output."""
    values = {k: v for k, v in data.items() if k != "rev"}
    values["category"] = Category(values["category"])
    for name in ("first_call_at", "last_call_at", "confirmed_at", "resolved_at"):
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name]).astimezone(timezone.utc)
    values["ticket_numbers"] = tuple(values.get("ticket_numbers") or ())
    values["alarm_ids"] = tuple(values.get("alarm_ids") or ())
    return Incident(**values), int(data.get("rev", 1))


def _epoch(value: datetime | None) -> float:
    return 0.0 if value is None else value.timestamp()


def _ticket_entries(record: TicketRecord | None) -> dict[tuple[str, str], tuple[str, Any]]:
    """Index memberships of a ticket: (key, member) → (kind, value); kinds z, s, g, h."""
    if record is None:
        return {}
    t, meta = record.ticket, record.meta
    n, created = t.number, _epoch(t.created_at)
    out: dict[tuple[str, str], tuple[str, Any]] = {(f"tkt:state:{t.state.value}", n): ("z", created)}
    if t.caller_phone:
        out[(f"tkt:phone:{t.caller_phone}", n)] = ("z", created)
    if t.state in (State.RESOLVED, State.CALLBACK):
        out[("tkt:callbacks", n)] = ("z", _epoch(t.resolved_at or t.updated_at))
    if t.state not in OPEN_STATES:
        return out
    out[("tkt:open", n)] = ("z", created)
    out[(f"tkt:color:{t.color.value}", n)] = ("z", created)
    if t.color.value == "red" or t.supervised:
        out[("tkt:supervise", n)] = ("z", created)
    if t.lon is not None and t.lat is not None:
        out[("tkt:geo", n)] = ("g", (t.lon, t.lat))
    if t.crew_id:
        out[(f"tkt:crew:{t.crew_id}", n)] = ("s", None)
    if meta.get("police_kind"):
        out[("tkt:police", n)] = ("z", created)
    queue = list(meta.get("queue") or ())
    for stage, deadline, limit_s in queue:
        out[(f"tkt:q:{int(limit_s)}", f"{n}|{stage}|{float(deadline)!r}")] = ("z", float(deadline))
        out[("tkt:q:limits", str(int(limit_s)))] = ("s", None)
    if not queue:
        out[("tkt:q:none", n)] = ("z", created)
    out[("tkt:qrow", n)] = ("h", orjson.dumps([URGENCY_RANK[t.urgency], created, queue]).decode())
    return out


def _incident_entries(incident: Incident | None) -> dict[tuple[str, str], tuple[str, Any]]:
    if incident is None:
        return {}
    i, first = incident.incident_id, _epoch(incident.first_call_at)
    out: dict[tuple[str, str], tuple[str, Any]] = {("inc:all", i): ("z", first)}
    if incident.resolved_at is None:
        out[("inc:open", i)] = ("z", first)
        out[(f"inc:area:{incident.supply_area}", i)] = ("s", None)
    return out


class _Batch:
    """Builds the KEYS and the guards/ops JSON of one SAVE_SCRIPT call."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        self.guards: list[list[Any]] = []
        self.guard_info: list[tuple[str, str, Any]] = []  # (kind, key, context) per guard
        self.ops: list[list[Any]] = []

    def k(self, key: str) -> int:
        if key not in self._index:
            self.keys.append(key)
            self._index[key] = len(self.keys)
        return self._index[key]

    def guard(self, kind: str, key: str, *args: Any, context: Any = None) -> None:
        self.guards.append([kind, self.k(key), *args])
        self.guard_info.append((kind, key, context))

    def op(self, name: str, key: str, *args: Any) -> None:
        self.ops.append([name, self.k(key), *args])

    def diff(self, old: dict, new: dict) -> None:
        for (key, member), (kind, value) in old.items():
            if (key, member) in new:
                continue
            if kind == "s":
                if key != "tkt:q:limits":
                    self.op("srem", key, member)
            elif kind == "h":
                self.op("hdel", key, member)
            else:
                self.op("zrem", key, member)
        for (key, member), (kind, value) in new.items():
            if old.get((key, member)) == (kind, value):
                continue
            if kind == "z":
                self.op("zadd", key, repr(float(value)), member)
            elif kind == "s":
                self.op("sadd", key, member)
            elif kind == "g":
                self.op("geoadd", key, repr(float(value[0])), repr(float(value[1])), member)
            else:
                self.op("hset", key, member, value)

    def argv(self) -> bytes:
        return orjson.dumps({"g": self.guards, "o": self.ops})


class TicketStore:
    """Typed access to tickets, their audit trails, indexes and incidents in Redis."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._save = client.register_script(SAVE_SCRIPT)
        self._release = client.register_script(RELEASE_SEQ_SCRIPT)

    async def load_scripts(self) -> None:
        """SCRIPT LOAD the save script (EVALSHA falls back to EVAL after a server restart)."""
        self._save.sha = await self.redis.script_load(SAVE_SCRIPT)
        self._release.sha = await self.redis.script_load(RELEASE_SEQ_SCRIPT)

    # writes ------------------------------------------------------------------------------------
    async def next_number_seq(self, day: date) -> int:
        """The next ticket sequence number of a day (INCR, never reused)."""
        return int(await self.redis.incr(f"tkt:seq:{day:%Y%m%d}"))

    async def release_number_seq(self, day: date, seq: int) -> bool:
        """Give back a ticket sequence number that was not used (the call was a repeat), only if
        it is still the day's latest; otherwise it stays a gap. True when given back."""
        return bool(await self._release(keys=[f"tkt:seq:{day:%Y%m%d}"], args=[seq]))

    async def next_incident_seq(self, day: date) -> int:
        """The next incident sequence number of a day."""
        return int(await self.redis.incr(f"inc:seq:{day:%Y%m%d}"))

    async def save(self, tickets: Sequence[TicketWrite], incidents: Sequence[IncidentWrite] = ()) -> list[str]:
        """Write tickets (with their audit events and indexes) and incidents in one atomic script.

        Each ticket's stored version must still be its `previous` version (a new ticket: the number
        must be free), else Conflict and nothing is written. An incident must still be at
        `rev - 1` (new: absent), and an `alarm_key` must be unclaimed, else GuardFailed. A point
        Redis's GEO index would refuse raises CoordinateError (any other op the script refuses:
        ValidationError), again with nothing written. Returns the audit event stream ids in order.
        """
        batch = _Batch()
        summaries = []
        for write in tickets:
            t = write.record.ticket
            key = f"tkt:{t.number}"
            if write.previous is None:
                batch.guard("absent", key, context=(t.number, 0))
            else:
                prev_v = write.previous.ticket.version
                batch.guard("jfield", key, "version", str(prev_v), context=(t.number, prev_v))
            if write.alarm_key:
                batch.guard("absent", f"tkt:alarm:{write.alarm_key}")
        for write in incidents:
            key = f"inc:{write.incident.incident_id}"
            # the revision sits in its own small key: a storm incident's JSON is large
            batch.guard("equals", f"{key}:rev", "" if write.previous is None else str(write.rev - 1))
        for write in tickets:
            t = write.record.ticket
            batch.op("set", f"tkt:{t.number}", write.record.to_json().decode())
            if write.alarm_key:
                batch.op("set", f"tkt:alarm:{write.alarm_key}", t.number)
            for event in write.events:
                batch.op("xadd", f"tkt:{t.number}:events", 0, "e", orjson.dumps(event_to_dict(event)).decode())
            batch.diff(_ticket_entries(write.previous), _ticket_entries(write.record))
            old_state = None if write.previous is None else write.previous.ticket.state
            if old_state is not t.state:
                if old_state is not None:
                    batch.op("hincrby", "tkt:counts", old_state.value, -1)
                batch.op("hincrby", "tkt:counts", t.state.value, 1)
            if any(e.action == "reopen" for e in write.events) and t.unit_id:
                batch.op("hincrby", "tkt:unit_rework", t.unit_id, 1)
            last = write.events[-1].action if write.events else "save"
            summary = {"number": t.number, "version": t.version, "action": last, "state": t.state.value}
            summaries.append(summary)
            batch.op("xadd", CHANGES_STREAM, CHANGES_MAXLEN, *[x for kv in summary.items() for x in map(str, kv)])
        for write in incidents:
            inc = write.incident
            batch.op("set", f"inc:{inc.incident_id}", orjson.dumps(incident_to_dict(inc, write.rev)).decode())
            batch.op("set", f"inc:{inc.incident_id}:rev", str(write.rev))
            batch.diff(_incident_entries(write.previous), _incident_entries(inc))
        if summaries:
            batch.op("publish", LIVE_TICKETS, orjson.dumps(summaries).decode())
        reply = await self._save(keys=batch.keys, args=[batch.argv()])
        if int(reply[0]) == 2:
            op = batch.ops[int(reply[1]) - 1]
            reason = _text(reply[2])
            if op[0] == "geoadd":
                raise CoordinateError("lon", f"{reason}: not stored (|lon| <= 180, |lat| <= {GEO_LAT_LIMIT})")
            raise ValidationError("ticket", f"not stored: {op[0]} on {batch.keys[op[1] - 1]}: {reason}")
        if int(reply[0]) == 0:
            kind, key, context = batch.guard_info[int(reply[1]) - 1]
            actual = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
            if context is not None:
                number, expected = context
                raise Conflict(number, expected, int(actual) if actual.isdigit() else -1)
            raise GuardFailed(key, actual)
        ids = [_text(x) for x in reply[1:]]
        out, at = [], 0
        for write in tickets:  # per ticket: its audit events, then one tkt:changes entry
            out.extend(ids[at:at + len(write.events)])
            at += len(write.events) + 1
        return out

    # reads -------------------------------------------------------------------------------------
    async def get(self, number: str) -> TicketRecord:
        """One ticket; TicketNotFound when there is none."""
        raw = await self.redis.get(f"tkt:{number}")
        if raw is None:
            raise TicketNotFound(number)
        return TicketRecord.from_json(raw)

    async def get_many(self, numbers: Sequence[str]) -> list[TicketRecord | None]:
        """Tickets by number in one MGET (None for unknown numbers)."""
        if not numbers:
            return []
        raws = await self.redis.mget([f"tkt:{n}" for n in numbers])
        return [None if raw is None else TicketRecord.from_json(raw) for raw in raws]

    async def events(self, number: str) -> list[tuple[str, dict[str, Any]]]:
        """The audit trail of a ticket in order: (stream id, event dict)."""
        rows = await self.redis.xrange(f"tkt:{number}:events", "-", "+")
        return [(_text(sid), orjson.loads(fields[b"e" if b"e" in fields else "e"])) for sid, fields in rows]

    async def client_action(self, action_id: str) -> str | None:
        """What a client's action id was applied to ("<number>/<action>"), if within a day."""
        value = await self.redis.get(f"tkt:cid:{action_id}")
        return None if value is None else _text(value)

    async def remember_client_action(self, action_id: str, applied_to: str, ttl_s: int = 86_400) -> None:
        """Record that a client's action id was applied (see `client_action`)."""
        await self.redis.set(f"tkt:cid:{action_id}", applied_to, ex=ttl_s)

    async def alarm_ticket(self, alarm_key: str) -> str | None:
        """The number of the proactive ticket already created for an alarm, if any."""
        value = await self.redis.get(f"tkt:alarm:{alarm_key}")
        return None if value is None else _text(value)

    async def near_and_by_phone(self, lon: float | None, lat: float | None, radius_m: float,
                                phone: str | None, recent: int = 20) -> tuple[list[tuple[str, float]], list[str]]:
        """Open tickets within radius_m of a point (number, metres; nearest first) and the caller's
        latest tickets (newest first), in one round trip."""
        _check_geo(lon, lat)
        pipe = self.redis.pipeline(transaction=False)
        if lon is not None and lat is not None:
            pipe.geosearch("tkt:geo", longitude=lon, latitude=lat, radius=radius_m, unit="m",
                           sort="ASC", count=50, withdist=True)
        if phone:
            pipe.zrevrange(f"tkt:phone:{phone}", 0, recent - 1)
        replies = await pipe.execute()
        near = [(_text(n), float(d)) for n, d in replies.pop(0)] if lon is not None and lat is not None else []
        by_phone = [_text(n) for n in replies.pop(0)] if phone else []
        return near, by_phone

    async def create_reads(self, day: date, *, lon: float | None = None, lat: float | None = None,
                           radius_m: float = 0.0, phone: str | None = None, supply_area: str | None = None,
                           recent: int = 20) -> CreateReads:
        """What creating a ticket reads, in one round trip: the day's next ticket sequence number
        (INCR; hand it back with `release_number_seq` when the call is linked as a repeat), the
        repeat candidates of `near_and_by_phone` when a point or phone is given, and the unresolved
        incident ids of `supply_area` when given."""
        _check_geo(lon, lat)  # before the INCR: a refused point takes no number
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(f"tkt:seq:{day:%Y%m%d}")
        has_point = lon is not None and lat is not None
        if has_point:
            pipe.geosearch("tkt:geo", longitude=lon, latitude=lat, radius=radius_m, unit="m",
                           sort="ASC", count=50, withdist=True)
        if phone:
            pipe.zrevrange(f"tkt:phone:{phone}", 0, recent - 1)
        if supply_area:
            pipe.smembers(f"inc:area:{supply_area}")
        replies = await pipe.execute()
        seq = int(replies.pop(0))
        near = [(_text(n), float(d)) for n, d in replies.pop(0)] if has_point else []
        by_phone = [_text(n) for n in replies.pop(0)] if phone else []
        area = sorted(_text(x) for x in replies.pop(0)) if supply_area else None
        return CreateReads(seq, near, by_phone, area)

    async def queue_heads(self, count: int) -> dict[int, list[tuple[str, str, float]]]:
        """For each limit length in use, its `count` earliest (number, stage, deadline) entries."""
        limits = sorted(int(_text(x)) for x in await self.redis.smembers("tkt:q:limits"))
        pipe = self.redis.pipeline(transaction=False)
        for limit in limits:
            pipe.zrange(f"tkt:q:{limit}", 0, count - 1)  # the deadline is in the member: no score parsing
        out: dict[int, list[tuple[str, str, float]]] = {}
        for limit, rows in zip(limits, await pipe.execute()):
            entries = []
            for member in rows:
                number, stage, deadline = _text(member).split("|")
                entries.append((number, stage, float(deadline)))
            out[limit] = entries
        return out

    async def untimed_open(self, start: int, stop: int) -> list[str]:
        """Open tickets without a timed stage, oldest first (ZRANGE start..stop)."""
        return [_text(x) for x in await self.redis.zrange("tkt:q:none", start, stop)]

    async def queue_rows(self, numbers: Sequence[str]) -> dict[str, tuple[int, float, list]]:
        """[urgency_rank, created_epoch, queue] of open tickets by number."""
        if not numbers:
            return {}
        raws = await self.redis.hmget("tkt:qrow", list(numbers))
        return {n: tuple(orjson.loads(r)) for n, r in zip(numbers, raws) if r is not None}

    async def index(self, name: str, *, newest_first: bool = True, start: int = 0,
                    stop: int = -1) -> list[str]:
        """Members of a sorted-set index by name: open, state:<s>, color:<c>, supervise, callbacks,
        police, phone:<digits>."""
        key = f"tkt:{name}"
        if newest_first:
            rows = await self.redis.zrevrange(key, start, stop)
        else:
            rows = await self.redis.zrange(key, start, stop)
        return [_text(x) for x in rows]

    async def open_count(self) -> int:
        """Number of open tickets."""
        return int(await self.redis.zcard("tkt:open"))

    async def crew_tickets(self, crew_id: str) -> list[str]:
        """Open tickets assigned to a crew."""
        return sorted(_text(x) for x in await self.redis.smembers(f"tkt:crew:{crew_id}"))

    async def counts(self) -> dict[str, int]:
        """Number of tickets per state."""
        return {_text(k): int(v) for k, v in (await self.redis.hgetall("tkt:counts")).items() if int(v)}

    async def unit_rework(self) -> dict[str, int]:
        """Reopened-after-callback counts per unit."""
        return {_text(k): int(v) for k, v in (await self.redis.hgetall("tkt:unit_rework")).items()}

    # incidents ---------------------------------------------------------------------------------
    async def incident(self, incident_id: str) -> tuple[Incident, int] | None:
        """An incident and its revision, or None."""
        raw = await self.redis.get(f"inc:{incident_id}")
        return None if raw is None else incident_from_dict(orjson.loads(raw))

    async def incidents(self, ids: Iterable[str]) -> list[tuple[Incident, int]]:
        """Incidents by id (unknown ids skipped)."""
        ids = list(ids)
        if not ids:
            return []
        raws = await self.redis.mget([f"inc:{i}" for i in ids])
        return [incident_from_dict(orjson.loads(r)) for r in raws if r is not None]

    async def area_incidents(self, supply_area: str) -> list[tuple[Incident, int]]:
        """Unresolved incidents of a supply area."""
        return await self.incidents(sorted(_text(x) for x in await self.redis.smembers(f"inc:area:{supply_area}")))

    async def incident_ids(self, *, open_only: bool, start: int = 0, stop: int = 99) -> list[str]:
        """Incident ids, newest first."""
        return [_text(x) for x in await self.redis.zrevrange("inc:open" if open_only else "inc:all", start, stop)]


def _check_geo(lon: float | None, lat: float | None) -> None:
    """CoordinateError for a pair GEOSEARCH would refuse (a read that slipped past the boundary)."""
    if lon is not None and lat is not None and not geo_pair_ok(float(lon), float(lat)):
        raise CoordinateError("lon", f"invalid longitude,latitude pair {lon},{lat}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
