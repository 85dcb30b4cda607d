"""Signed 110 incident transfers with a bad or out-of-area point (issue #21): each is a 400 with
a stable code, creates no ticket, no incident claim and no idempotency record, and a retry with
the same Idempotency-Key creates nothing either (it used to make one half-saved ticket a try)."""
from __future__ import annotations

import uuid

import orjson
import pytest
from psycopg import sql

from command.coordinates import ServiceArea
from command.police import to_json
from tests.police import signed

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def _transfer_body(police_env, **changes) -> bytes:
    obj = orjson.loads(to_json(police_env.sim.make_transfer()))
    obj.update(changes)
    return orjson.dumps(obj)


RECORD_TABLES = ("tickets", "ticket_events", "day_sequences", "incidents", "police_inbound", "police_incidents",
                 "police_tickets", "police_outbox", "police_last_messages")


async def _keys(police_env) -> tuple[set[str], dict[str, list]]:
    """Every Redis key and every row of the tables a transfer writes (the nonces aside: each
    signed request rightly burns its own)."""
    rows = {table: await police_env.store.db.fetch(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            for table in RECORD_TABLES}
    return set(await police_env.store.redis.keys("*")), rows


@pytest.mark.parametrize("changes, code", [
    ({"lat": 89.0}, "bad_coordinates"),        # the issue: three retries made three tickets
    ({"lat": 86.0}, "bad_coordinates"),
    ({"lon": 200.0}, "bad_coordinates"),
    ({"lat": None}, "bad_coordinates"),        # half a point
    ({"lon": 121.0}, "outside_service_area"),
])
async def test_a_transfer_with_a_bad_point_is_refused_three_times_and_creates_nothing(police_env, changes, code):
    police_env.parts.tickets.service_area = ServiceArea(119.5, 36.15, 120.0, 36.6)
    await police_env.token("dispatcher")
    body = _transfer_body(police_env, **changes)
    before = await _keys(police_env)
    for _ in range(3):  # 110 retries with one Idempotency-Key (a new nonce each time)
        status, reply = await police_env.call("POST", "/api/police/incidents", None, body,
                                              signed(body, at=police_env.clock.now, key="JJ-bad:transfer:1"))
        assert status == 400, reply
        assert orjson.loads(reply)["error"]["code"] == code
    assert await _keys(police_env) == before
    assert await police_env.parts.tickets.store.open_count() == 0


async def test_a_good_transfer_after_the_refusals_still_becomes_one_ticket(police_env):
    police_env.parts.tickets.service_area = ServiceArea(119.5, 36.15, 120.0, 36.6)
    bad = _transfer_body(police_env, lat=89.0)
    status, _ = await police_env.call("POST", "/api/police/incidents", None, bad, signed(bad, at=police_env.clock.now, key="JJ-x:1"))
    assert status == 400
    good = _transfer_body(police_env, message_id=uuid.uuid4().hex)
    for _ in range(2):
        status, reply = await police_env.call("POST", "/api/police/incidents", None, good,
                                              signed(good, at=police_env.clock.now, key="JJ-x:2"))
        assert status == 200, reply
    assert await police_env.parts.tickets.store.open_count() == 1
