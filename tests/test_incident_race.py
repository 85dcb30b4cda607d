"""Calls on one valve-isolation segment created at the same moment land in ONE incident, through
one TicketManager or two with their own connection pools (as two web processes have; each
process's area lock covers its own creates only), also when the segment crosses a DMA's edge. The store's
guard (`IncidentWrite.area_seen`: the area's transaction lock, then a look for an incident opened
meanwhile) makes the later opener read again and join. Real PostgreSQL and Redis."""
from __future__ import annotations

import asyncio

import pytest

from store.live import Store
from store.tickets import TicketStore
from command.ticket_model import Actor, Role
from services.tickets import TicketManager
from tests.cities import NETWORK_CITY, area, ll, write_city
from tests.conftest import T0

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
AGENT = Actor("agent", Role.AGENT)


# the same city with its DMA cut in two across main A: the segment's calls are in two DMAs
SPLIT = {**NETWORK_CITY, "dmas": [{"dma_id": "DMA01", "name": "西计量分区", "g": area(-500, -500, 500, 4000)},
                          {"dma_id": "DMA02", "name": "东计量分区", "g": area(500, -500, 4000, 4000)}]}


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("layers", [NETWORK_CITY, SPLIT], ids=["one_dma", "segment_across_two_dmas"])
async def test_calls_on_one_segment_at_once_are_one_incident(tmp_path, redis_url, database_url, layers, processes):
    """One process: its saves of one moment go as one transaction (group commit) and its area lock
    is per DMA, so two calls of one segment in two DMAs meet only in the store's guard."""
    (tmp_path / "city").mkdir()
    city = write_city(tmp_path / "city", layers)
    stores = [Store.from_url(redis_url, database_url) for _ in range(processes)]
    try:
        managers = [await asyncio.to_thread(TicketManager.for_city, TicketStore(s.db, s.redis), city, clock=lambda: T0)
                    for s in stores]

        async def call(k: int) -> str:
            lon, lat = ll(100 + 110 * k, 20)  # on main A: segment SEG0001 (x 100..870 m)
            result = await managers[k % processes].create({
                "channel": "phone", "category": "water", "type": "repair", "description": "家里停水了",
                "caller_phone": f"1390000{k:04d}", "lon": lon, "lat": lat}, AGENT, link=False)
            return result.record.ticket.number

        numbers = await asyncio.gather(*(call(k) for k in range(8)))
        records = [await managers[0].store.get(n) for n in numbers]
        assert {r.ticket.supply_area for r in records} == {"SEG0001"}
        incidents = {r.ticket.incident_id for r in records}
        assert len(incidents) == 1 and None not in incidents, incidents
        incident, _ = await managers[0].incident(incidents.pop())
        assert sorted(incident.ticket_numbers) == sorted(numbers)
    finally:
        for s in stores:
            await s.close()


@pytest.mark.parametrize("round_", range(4))
async def test_a_burst_call_and_a_symptom_call_of_its_segment_at_once_end_in_one_incident(
        tmp_path, redis_url, database_url, round_):
    """A DMA's pressure drop (a DMA-wide incident), then at the same moment, through two processes'
    managers, a no-water call and the burst call on another segment of the DMA. The no-water call
    alone would open an incident of that segment (a symptom call never joins a DMA-wide one), the
    burst call narrows the DMA's incident to the segment: whichever commits first, the other's guard
    (`IncidentWrite.area_seen` of the new incident and of the narrowed one) makes it read again,
    and the two calls and the alarm's ticket end in one open incident."""
    import json

    (tmp_path / "city").mkdir()
    city = write_city(tmp_path / "city", NETWORK_CITY)
    stores = [Store.from_url(redis_url, database_url) for _ in range(2)]
    try:
        managers = [await asyncio.to_thread(TicketManager.for_city, TicketStore(s.db, s.redis), city, clock=lambda: T0)
                    for s in stores]
        alarm = {"alarm_id": f"P001:low{round_}", "sensor_id": "P001", "kind": "low", "severity": "critical",
                 "value": 0.08, "threshold": 0.14, "raised_at": T0.isoformat()}
        record = await managers[0].on_alarm_event({"type": "raised", "alarm": json.dumps(alarm)})
        assert record is not None and record.ticket.incident_id

        async def call(k: int, description: str, urgency: str) -> str:
            await asyncio.sleep(0.002 * round_ * k)  # the rounds start them a little apart, either way
            lon, lat = ll(1400 + 100 * k, 30)  # on main B: segment SEG0002
            result = await managers[k].create({
                "channel": "phone", "category": "water", "type": "repair", "description": description,
                "urgency": urgency, "caller_phone": f"1390001{round_}{k:03d}", "lon": lon, "lat": lat}, AGENT, link=False)
            return result.record.ticket.number

        pair = [(0, "家里停水了", "normal"), (1, "路面冒水，水管爆裂", "emergency")]
        numbers = await asyncio.gather(*(call(*p) for p in (pair if round_ % 2 == 0 else pair[::-1])))
        records = [await managers[0].store.get(n) for n in [*numbers, record.ticket.number]]
        incidents = {r.ticket.incident_id for r in records}
        assert incidents == {record.ticket.incident_id}, [(r.ticket.number, r.ticket.incident_id) for r in records]
        incident, _ = await managers[0].incident(record.ticket.incident_id)
        assert incident.supply_area == "SEG0002" and not incident.dma_wide
        open_ = [i for i, _ in await managers[0].incidents(open_only=True)]
        assert [i.incident_id for i in open_ if i.covers("SEG0002")] == [incident.incident_id]
    finally:
        for s in stores:
            await s.close()
