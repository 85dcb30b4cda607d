"""The demo with a vehicle on a JT/T 808 terminal, as real processes: the supervisor runs the
gateway (`python -m center jt808`) beside the other services, the demo binds the terminal of its
last simulated vehicle, the simulator's terminal registers, authenticates and reports through the
gateway, and the vehicle moves on the API through the ingest like the NMEA vehicles; a terminal the
administrator binds reports an emergency, which the dispatcher's console shows on that vehicle;
everything, the gateway included, stops on SIGTERM."""
from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
import urllib.error

import psutil
import pytest

from servers.embedded import free_port
from simulators.jt808_terminal import Terminal, location_body
from tests.conftest import BROWSER_MARKS, QUIET_DEMO, ConsoleWatch, login_page
from tests.procs import start_demo

pytestmark = [pytest.mark.process, *BROWSER_MARKS]


async def _emergency(port: int, phone: str) -> None:
    """A terminal of `phone` registers, authenticates and reports an emergency (alarm bit 0)."""
    client = Terminal(phone, "T000009")
    await client.connect("127.0.0.1", port)
    try:
        assert await client.register() == 0 and await client.authenticate() == 0
        now = datetime.now(timezone.utc).replace(microsecond=0)
        assert await client.report(location_body(36.3801, 119.7501, now, alarms=("emergency",))) == 0
    finally:
        client.close()


@pytest.mark.timeout(300)  # its own deadlines: the start (90 s), two reports (60 s), the console (30 s)
def test_a_demo_vehicle_reports_through_the_gateway(tmp_path, demo_city_profile, browser):
    port = free_port()
    demo = start_demo(tmp_path / "var", tmp_path / "demo.log", vehicles=3, city=demo_city_profile,
                      DEMO_JT808_VEHICLES="1", JT808_PORT=str(port), **QUIET_DEMO)
    try:
        log = demo.wait_log("registered for vehicle", timeout=60)
        vehicle_id = re.search(r"terminal 013900000001 registered for vehicle (\S+)", log)[1]
        assert "JT/T 808 terminals: 013900000001 -> " + vehicle_id in log
        procs = demo.tree()
        assert any("center jt808" in " ".join(p.cmdline()) for p in procs)
        token = demo.login("dispatcher")
        seen = []
        deadline = time.monotonic() + 60  # a report every 10 s
        while len(seen) < 2:
            try:
                fix = demo.get(f"/api/vehicles/{vehicle_id}", token).get("fix")
            except urllib.error.HTTPError as exc:  # 404 until its first message
                assert exc.code == 404
                fix = None
            if fix and (not seen or fix["t"] != seen[-1]["t"]):
                seen.append(fix)
            assert time.monotonic() < deadline, f"{vehicle_id} did not report twice: {seen}"
            time.sleep(1.0)
        assert demo.get(f"/api/vehicles/{vehicle_id}", token)["state"] == "online"
        deadline = time.monotonic() + 30  # counters are written with the held track, every INGEST_HOLD_S
        while (counters := demo.get("/api/ingest/stats", token)["counters"]).get("jt808_ingest:fix", 0) < 2:
            assert time.monotonic() < deadline, counters
            time.sleep(1.0)
        assert counters["jt808:auth_ok"] >= 1
        assert not any(k.startswith("nmea:") and vehicle_id in k for k in counters)
        # the administrator binds a terminal to V10 (a registry vehicle nothing simulates); its
        # emergency reaches an open console live: the vehicle's row names the alarm, its marker
        # carries it
        admin = demo.login("admin")
        demo.post("/api/admin/jt808/terminals", admin, {"phone": "013900000099", "vehicle_id": "V10"})
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        watch = ConsoleWatch(page)
        login_page(page, demo.base, "dispatcher")
        page.wait_for_selector(f"[data-vehicle-row='{vehicle_id}']", timeout=30_000)
        with ThreadPoolExecutor(1) as other:  # (the sync Playwright holds this thread's event loop)
            other.submit(asyncio.run, _emergency(port, "013900000099")).result(timeout=30)
        page.wait_for_selector("[data-vehicle-row='V10'].vehicle-alarm", timeout=30_000)
        assert "终端报警: 紧急报警" in page.text_content("[data-vehicle-row='V10']")
        assert page.get_attribute("[data-vehicle='V10']", "data-alarm") == "emergency"
        page.close()
        assert watch.errors == []
    finally:
        demo.stop()
    time.sleep(0.5)
    assert [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
