"""The demo with a vehicle on a JT/T 808 terminal, as real processes: the supervisor runs the
gateway (`python -m center jt808`) beside the other services, the demo binds the terminal of its
last simulated vehicle, the simulator's terminal registers, authenticates and reports through the
gateway, and the vehicle moves on the API through the ingest like the NMEA vehicles; everything,
the gateway included, stops on SIGTERM."""
from __future__ import annotations

import re
import time
import urllib.error

import psutil
import pytest

from servers.embedded import free_port
from tests.conftest import QUIET_DEMO
from tests.procs import start_demo

pytestmark = [pytest.mark.process]


@pytest.mark.timeout(300)  # its own deadlines: the start (90 s) and two reports (60 s)
def test_a_demo_vehicle_reports_through_the_gateway(tmp_path, demo_city_profile):
    demo = start_demo(tmp_path / "var", tmp_path / "demo.log", vehicles=3, city=demo_city_profile,
                      DEMO_JT808_VEHICLES="1", JT808_PORT=str(free_port()), **QUIET_DEMO)
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
        counters = demo.get("/api/ingest/stats", token)["counters"]
        assert counters["jt808:auth_ok"] >= 1 and counters["jt808_ingest:fix"] >= 2
        assert not any(k.startswith("nmea:") and vehicle_id in k for k in counters)
    finally:
        demo.stop()
    time.sleep(0.5)
    assert [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
