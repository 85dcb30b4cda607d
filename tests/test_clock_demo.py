"""The demo on one fast clock, as real processes: a ticket's timeline advances at the simulated rate."""
from __future__ import annotations

import time
from datetime import datetime

from tests.procs import start_demo

SPEEDUP = 60.0
CALL = {"channel": "phone", "category": "water", "type": "repair", "urgency": "normal",
        "caller_name": "测试 李先生", "caller_phone": "13900002222", "description": "小区门口水管漏水，地面积水"}


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_tickets_timeline_advances_at_the_clocks_speedup(tmp_path):
    anchor = time.time()
    demo = start_demo(tmp_path / "var", tmp_path / "demo.log", vehicles=2, CLOCK_SPEEDUP=f"{SPEEDUP:g}",
                      CLOCK_ANCHOR=f"{anchor:.3f}", SIM_SPEEDUP=f"{SPEEDUP:g}", SIM_SCENARIO="", SIM_CALLERS="0",
                      SIM_CREWS="0", SIM_CALLBACKS="0", SIM_SENSORS="0", DISPATCH_AUTO="0")
    try:
        assert "CLOCK_SPEEDUP=60" in demo.log()  # said loudly, by every service
        agent, dispatcher = demo.login("agent"), demo.login("dispatcher")
        crew = next(c for c in demo.get("/api/crews", dispatcher)["crews"] if c["lon"] is not None)
        started = time.time()
        ticket = demo.post("/api/tickets", agent, {**CALL, "link": False, "lon": crew["lon"], "lat": crew["lat"]})["ticket"]
        created = time.time()
        time.sleep(3.0)
        noted = time.time()
        demo.post(f"/api/tickets/{ticket['number']}/actions/note", agent,
                  {"expected_version": ticket["version"], "note": "回拨确认地址"})
        done = time.time()
        events = demo.get(f"/api/tickets/{ticket['number']}/timeline", agent)["events"]
        first, note = _at(events[0]["at"]), _at(next(e for e in events if e["action"] == "note")["at"])
        # each time is the clock's, anchor + elapsed wall x 60: hours ahead of the wall clock by now
        assert anchor + (started - anchor) * SPEEDUP - 1 <= first <= anchor + (created - anchor) * SPEEDUP + 1
        # and 3 wall seconds between the two actions are 3 simulated minutes
        assert (noted - created) * SPEEDUP - 1 <= note - first <= (done - started) * SPEEDUP + 1
        listing = demo.get("/api/tickets?state=open&limit=1", agent)
        assert _at(listing["now"]) >= note
    finally:
        demo.stop()
