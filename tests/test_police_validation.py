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
from tests.test_police_link import _signed, env  # noqa: F401  (env is a fixture used here)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def _transfer_body(env, **changes) -> bytes:  # noqa: F811
    obj = orjson.loads(to_json(env.sim.make_transfer()))
    obj.update(changes)
    return orjson.dumps(obj)


RECORD_TABLES = ("tickets", "ticket_events", "day_sequences", "incidents", "police_inbound", "police_incidents",
                 "police_tickets", "police_outbox", "police_last_messages")


async def _keys(env) -> tuple[set[str], dict[str, list]]:  # noqa: F811
    """Every Redis key and every row of the tables a transfer writes (the nonces aside: each
    signed request rightly burns its own)."""
    rows = {table: await env.store.db.fetch(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            for table in RECORD_TABLES}
    return set(await env.store.redis.keys("*")), rows


@pytest.mark.parametrize("changes, code", [
    ({"lat": 89.0}, "bad_coordinates"),        # the issue: three retries made three tickets
    ({"lat": 86.0}, "bad_coordinates"),
    ({"lon": 200.0}, "bad_coordinates"),
    ({"lat": None}, "bad_coordinates"),        # half a point
    ({"lon": 121.0}, "outside_service_area"),
])
async def test_a_transfer_with_a_bad_point_is_refused_three_times_and_creates_nothing(env, changes, code):  # noqa: F811
    env.parts.tickets.service_area = ServiceArea(119.5, 36.15, 120.0, 36.6)
    await env.token("dispatcher")
    body = _transfer_body(env, **changes)
    before = await _keys(env)
    for _ in range(3):  # 110 retries with one Idempotency-Key (a new nonce each time)
        status, reply = await env.call("POST", "/api/police/incidents", None, body,
                                       _signed(body, at=env.clock.now, key="JJ-bad:transfer:1"))
        assert status == 400, reply
        assert orjson.loads(reply)["error"]["code"] == code
    assert await _keys(env) == before
    assert await env.parts.tickets.store.open_count() == 0


async def test_a_good_transfer_after_the_refusals_still_becomes_one_ticket(env):  # noqa: F811
    env.parts.tickets.service_area = ServiceArea(119.5, 36.15, 120.0, 36.6)
    bad = _transfer_body(env, lat=89.0)
    status, _ = await env.call("POST", "/api/police/incidents", None, bad, _signed(bad, at=env.clock.now, key="JJ-x:1"))
    assert status == 400
    good = _transfer_body(env, message_id=uuid.uuid4().hex)
    for _ in range(2):
        status, reply = await env.call("POST", "/api/police/incidents", None, good,
                                       _signed(good, at=env.clock.now, key="JJ-x:2"))
        assert status == 200, reply
    assert await env.parts.tickets.store.open_count() == 1
