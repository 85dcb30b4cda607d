"""An incident handled once (issue #24), through the HTTP API with real PostgreSQL and Redis: the
restoration time (ETR) by role and its audit, the outage notice following it, the incidents near a
caller, a call attached to an incident, and the resolution cascade (every call resolved with its
own event, limits stopped, callbacks queued, the notice withdrawn, the consoles told)."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
import pytest
import redis.asyncio as aioredis

from store.incidents import LIVE_INCIDENTS
from tests.apps import serve_tickets
from tests.conftest import T0, Clock

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

WEST = [(119.720, 36.360), (119.722, 36.360), (119.724, 36.361)]  # the west transformer area TA2, > 100 m apart


@pytest.fixture
async def api(tmp_path, redis_url, database_url, city):  # noqa: F811
    server, client = await serve_tickets(tmp_path, redis_url, database_url, city, Clock(T0))
    yield client
    server.stop()
    await server.close_all_connections()
    await client.store.close()


async def _burst(api) -> tuple[str, list[str]]:
    """Three power outage calls in one transformer area: one incident."""
    numbers, incident = [], None
    for i, (lon, lat) in enumerate(WEST):
        api.clock.now = T0 + timedelta(minutes=i)
        code, body = await api.create(lon=lon, lat=lat, caller_phone=f"1381234000{i}", link=False,
                                      address=f"西街{i + 1}号", description="家里停电了")
        assert code == 201, body
        numbers.append(body["ticket"]["number"])
        incident = incident or body["incident_id"]
        assert body["incident_id"] == incident
    return incident, numbers


async def test_etr_by_role_is_audited_on_the_incident_and_the_primary_timeline(api):
    incident_id, numbers = await _burst(api)
    later = (T0 + timedelta(hours=3)).isoformat()
    code, body = await api.call("POST", f"/api/incidents/{incident_id}/etr", "agent", {"etr": later})
    assert code == 403 and body["error"]["code"] == "forbidden"
    code, body = await api.call("POST", f"/api/incidents/{incident_id}/etr", "crew2", {"etr": later})
    assert code == 403, body  # not the crew of the primary ticket
    for bad, field in (("2026-11-22T01:00:00Z", "etr"), ("tomorrow", "etr"), ("2026-11-22T12:00:00", "etr"),
                       ((T0 + timedelta(days=40)).isoformat(), "etr")):
        code, body = await api.call("POST", f"/api/incidents/{incident_id}/etr", "dispatcher", {"etr": bad})
        assert (code, body["error"]["code"]) == (400, "validation_error") and \
            body["error"]["message"].startswith(f"{field}:"), (bad, body)
    code, body = await api.call("POST", "/api/incidents/INC-NOPE/etr", "dispatcher", {"etr": later})
    assert code == 404 and body["error"]["code"] == "incident_not_found"

    code, body = await api.call("POST", f"/api/incidents/{incident_id}/etr", "dispatcher",
                                {"etr": later, "note": "更换跌落式熔断器"})
    assert code == 200, body
    assert body["etr"] == "2026-11-22T05:00:00Z" and body["etr_by"] == "dispatcher" and body["etr_note"] == "更换跌落式熔断器"
    # the crew of the primary ticket may change it too
    primary = numbers[0]
    assert (await api.act("dispatcher", primary, "dispatch", crew_id="C02"))[0] == 200
    code, body = await api.call("POST", f"/api/incidents/{incident_id}/etr", "crew2",
                                {"etr": (T0 + timedelta(hours=4)).isoformat()})
    assert code == 200 and body["etr"] == "2026-11-22T06:00:00Z", body

    code, detail = await api.call("GET", f"/api/incidents/{incident_id}", "agent")
    assert code == 200 and detail["etr"] == "2026-11-22T06:00:00Z"
    assert [(e["action"], e["actor_id"], e["data"]["etr"]) for e in detail["events"]] == [
        ("etr_set", "dispatcher", "2026-11-22T05:00:00+00:00"), ("etr_set", "crew2", "2026-11-22T06:00:00+00:00")]
    assert detail["events"][0]["note"] == "预计恢复时间 11月22日 13:00：更换跌落式熔断器"
    code, timeline = await api.call("GET", f"/api/tickets/{primary}/timeline", "dispatcher")
    notes = [e for e in timeline["events"] if e["action"] == "note"]
    assert [(e["actor_id"], e["data"]["data"]["etr"], e["data"]["data"]["incident_id"]) for e in notes] == [
        ("dispatcher", "2026-11-22T05:00:00+00:00", incident_id), ("crew2", "2026-11-22T06:00:00+00:00", incident_id)]


async def test_the_notice_follows_the_etr_and_the_desk_finds_the_incident_near_the_caller(api):
    incident_id, numbers = await _burst(api)
    code, body = await api.call("POST", f"/api/incidents/{incident_id}/notice", "agent", {})
    assert code == 403
    code, notice = await api.call("POST", f"/api/incidents/{incident_id}/notice", "dispatcher", {})
    assert code == 200, notice
    assert notice["kind"] == "停电" and notice["state"] == "active" and notice["area_id"] == "TA2"
    assert notice["area_text"] == "西台区（西街1号、西街2号、西街3号等）"  # the 台区's name, not its code
    assert notice["text"].startswith("【停电通知】因供电线路突发故障，西台区（西街1号、西街2号、西街3号等）自11月22日 10:00起停电。")
    assert "恢复供电时间待定" in notice["text"]
    code, body = await api.call("POST", f"/api/incidents/{incident_id}/notice", "dispatcher", {"area_text": "x" * 201})
    assert code == 400 and body["error"]["message"].startswith("area_text:")
    code, notice = await api.call("POST", f"/api/incidents/{incident_id}/notice", "supervisor",
                                  {"area_text": "西街1-3号及周边"})
    assert code == 200 and notice["area_text"] == "西街1-3号及周边" and notice["published_by"] == "dispatcher"

    await api.call("POST", f"/api/incidents/{incident_id}/etr", "dispatcher", {"etr": (T0 + timedelta(hours=3)).isoformat()})
    code, listed = await api.call("GET", "/api/notices", "agent")
    assert code == 200 and [n["incident_id"] for n in listed["notices"]] == [incident_id]
    assert listed["notices"][0]["etr"] == "2026-11-22T05:00:00Z"
    assert "西街1-3号及周边自11月22日 10:00起停电" in listed["notices"][0]["text"]
    assert "预计11月22日 13:00恢复供电" in listed["notices"][0]["text"]

    code, near = await api.call("GET", "/api/incidents/near?lon=119.7215&lat=36.3615&category=power", "agent")
    assert code == 200 and [i["incident_id"] for i in near["incidents"]] == [incident_id]
    found = near["incidents"][0]
    assert found["calls"] == 3 and found["notice"]["kind"] == "停电" and found["distance_m"] < 300
    assert "预计11月22日 13:00恢复供电" in found["answer"]
    for query in ("lon=119.7215&lat=36.3615&category=water", "lon=119.78&lat=36.37&category=power"):
        code, near = await api.call("GET", f"/api/incidents/near?{query}", "agent")
        assert code == 200 and near["incidents"] == [], query
    code, body = await api.call("GET", "/api/incidents/near?lon=119.72&lat=36.36&category=sky", "agent")
    assert code == 400 and body["error"]["message"].startswith("category:")
    code, body = await api.call("GET", "/api/incidents/near?lon=119.72&category=power", "agent")
    assert code == 400 and body["error"]["code"] == "bad_coordinates"

    code, detail = await api.call("GET", f"/api/incidents/{incident_id}", "agent")
    assert [e["action"] for e in detail["events"]] == ["notice_published", "notice_updated", "etr_set", "notice_updated"]
    assert [e["actor_id"] for e in detail["events"]] == ["dispatcher", "supervisor", "dispatcher", "dispatcher"]


async def test_a_call_attached_to_an_incident_joins_it_and_is_validated(api):
    incident_id, numbers = await _burst(api)
    api.clock.now = T0 + timedelta(hours=2)  # past the grouping window: only the agent's choice joins it
    code, body = await api.create(lon=119.7205, lat=36.3605, caller_phone="13900000009", incident_id=incident_id)
    assert code == 201, body
    assert body["incident_id"] == incident_id and body["ticket"]["incident_id"] == incident_id
    assert body["linked"] is False  # a new ticket, joined to the incident (not a repeat of another caller's)
    number = body["ticket"]["number"]
    code, timeline = await api.call("GET", f"/api/tickets/{number}/timeline", "agent")
    assert [(e["action"], e["actor_id"]) for e in timeline["events"]] == [("create", "agent"), ("link_incident", "agent")]
    code, incident = await api.call("GET", f"/api/incidents/{incident_id}", "agent")
    assert incident["calls"] == 4 and incident["ticket_numbers"][-1] == number

    for fields, message in (({"incident_id": "INC20261122-9999"}, "no incident"),
                            ({"incident_id": incident_id, "category": "water", "description": "停水"}, "about power"),
                            ({"incident_id": 7}, "incident id")):
        code, body = await api.create(**fields)
        assert (code, body["error"]["code"]) == (400, "validation_error"), body
        assert body["error"]["message"].startswith("incident_id:"), body
        assert message in body["error"]["message"]
    await api.call("POST", f"/api/incidents/{incident_id}/resolve", "dispatcher", {"resolution": "已修复"})
    code, body = await api.create(incident_id=incident_id)
    assert code == 400 and "resolved" in body["error"]["message"]


async def test_resolving_the_incident_resolves_every_call_stops_limits_queues_callbacks_withdraws_the_notice(api, redis_url):
    redis = aioredis.from_url(redis_url)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(LIVE_INCIDENTS)
    try:
        incident_id, numbers = await _burst(api)
        primary = numbers[0]
        assert (await api.act("dispatcher", primary, "dispatch", crew_id="C02"))[0] == 200
        assert (await api.act("crew2", primary, "accept"))[0] == 200
        await api.call("POST", f"/api/incidents/{incident_id}/etr", "dispatcher", {"etr": (T0 + timedelta(hours=3)).isoformat()})
        await api.call("POST", f"/api/incidents/{incident_id}/notice", "dispatcher", {})
        code, before = await api.call("GET", f"/api/tickets/{numbers[1]}", "dispatcher")
        assert before["limit_stage"] in ("dispatch", "arrive", "resolve")  # a symptom call's limits run

        api.clock.now = T0 + timedelta(hours=1)
        code, body = await api.call("POST", f"/api/incidents/{incident_id}/resolve", "agent", {"resolution": "已修复"})
        assert code == 403
        code, resolved = await api.call("POST", f"/api/incidents/{incident_id}/resolve", "dispatcher",
                                        {"resolution": "更换熔断器，已恢复供电"})
        assert code == 200 and resolved["status"] == "resolved", resolved

        for number in numbers:
            code, ticket = await api.call("GET", f"/api/tickets/{number}", "dispatcher")
            assert ticket["state"] == "resolved" and ticket["resolution"] == "更换熔断器，已恢复供电"
            assert ticket["limit_stage"] == "callback"  # dispatch, arrival and resolution limits stopped
            code, timeline = await api.call("GET", f"/api/tickets/{number}/timeline", "dispatcher")
            resolving = [e for e in timeline["events"] if e["action"] == "resolve_with_incident"]
            assert [(e["actor_id"], e["to_state"]) for e in resolving] == [("dispatcher", "resolved")]
        code, queue = await api.call("GET", "/api/callbacks", "agent")
        assert set(numbers) <= {t["number"] for t in queue["tickets"]}

        code, active = await api.call("GET", "/api/notices", "agent")
        assert active["notices"] == []
        code, every = await api.call("GET", "/api/notices?all=1", "supervisor")
        assert [(n["state"], n["withdrawn_by"]) for n in every["notices"]] == [("withdrawn", "dispatcher")]
        code, detail = await api.call("GET", f"/api/incidents/{incident_id}", "dispatcher")
        assert [e["action"] for e in detail["events"]][-2:] == ["resolved", "notice_withdrawn"]
        code, body = await api.call("POST", f"/api/incidents/{incident_id}/etr", "dispatcher",
                                    {"etr": (T0 + timedelta(hours=5)).isoformat()})
        assert code == 400 and "resolved" in body["error"]["message"]

        told = []
        for _ in range(50):  # get_message answers None for the subscription's confirmation
            message = await pubsub.get_message(timeout=1.0)
            if message is not None:
                told += [(c["incident_id"], c["action"], c["notice"]) for c in orjson.loads(message["data"])]
            if len(told) >= 3:
                break
        assert told == [(incident_id, "etr_set", False), (incident_id, "notice_published", True),
                        (incident_id, "resolved", False)]
    finally:
        await pubsub.aclose()
        await redis.aclose()


async def test_the_live_feed_relays_incident_changes_to_the_views_that_see_the_city(api):
    from web.live import LiveFeed

    feed = LiveFeed(api.store)
    for name in ("agent", "crew:C02", "unit:PWR01"):
        feed.view(name)
    feed.accept_incidents([{"incident_id": "INC1", "rev": 2, "action": "etr_set"},
                           {"incident_id": "INC1", "rev": 3, "action": "notice_published"}])
    frames = [orjson.loads(f) for f in feed.flush()]
    assert sorted((f["type"], [i["action"] for i in f["incidents"]]) for f in frames) == [
        ("incidents", ["notice_published"]), ("incidents", ["notice_published"])]  # office and agent only
    await asyncio.sleep(0)


async def test_the_crew_resolving_the_primary_resolves_the_incident_through_the_dispatch_worker(api):
    from services.incidents import IncidentService
    from services.worker import on_change

    incident_id, numbers = await _burst(api)
    primary = numbers[0]
    await api.call("POST", f"/api/incidents/{incident_id}/notice", "dispatcher", {})
    assert (await api.act("dispatcher", primary, "dispatch", crew_id="C02"))[0] == 200
    for action, args in (("accept", {}), ("arrive", {}), ("resolve", {"resolution": "更换熔断器"})):
        code, body = await api.act("crew2", primary, action, **args)
        assert code == 200, body

    class Parts:  # what the worker's on_change needs for a crew's resolve
        tickets = api.manager
        incidents = IncidentService(api.manager)

        class police:
            outbound_enabled = False

        class dispatch:
            @staticmethod
            async def on_change(change):
                return None

    change = {"number": primary, "action": "resolve", "version": "9", "state": "resolved"}
    await on_change(Parts, change)
    code, incident = await api.call("GET", f"/api/incidents/{incident_id}", "dispatcher")
    assert incident["status"] == "resolved" and incident["events"][-2]["actor_id"] == "system"
    for number in numbers[1:]:
        code, ticket = await api.call("GET", f"/api/tickets/{number}", "dispatcher")
        assert (ticket["state"], ticket["resolution"]) == ("resolved", f"随主工单 {primary} 办结：更换熔断器")
    code, active = await api.call("GET", "/api/notices", "agent")
    assert active["notices"] == []
    await on_change(Parts, change)  # delivered again (at least once): nothing more
    code, again = await api.call("GET", f"/api/incidents/{incident_id}", "dispatcher")
    assert again["rev"] == incident["rev"] and len(again["events"]) == len(incident["events"])
    code, body = await api.call("POST", f"/api/incidents/{incident_id}/resolve", "dispatcher", {"resolution": "再次"})
    assert code == 400 and "resolved already" in body["error"]["message"]
