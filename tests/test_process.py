"""Tier 3: the demo as real processes — start, see a vehicle move over the WebSocket, stop cleanly;
a crashed service restarts; a demo that does not stop in time is killed whole."""
from __future__ import annotations

import asyncio
import time

import orjson
import psutil
import pytest
import tornado.httpclient
import tornado.websocket

from servers.embedded import port_open
from tests.conftest import close_websocket
from tests.procs import alive, start_demo

pytestmark = pytest.mark.process


async def _vehicle_moves(base: str, token: str, timeout: float = 30.0) -> tuple[dict, dict]:
    url = base.replace("http://", "ws://") + "/ws/live"
    ws = await tornado.websocket.websocket_connect(
        tornado.httpclient.HTTPRequest(url, headers={"Authorization": f"Bearer {token}"}))
    try:
        first: dict[str, tuple[float, float]] = {}
        snapshot = orjson.loads(await ws.read_message())
        assert snapshot["type"] == "snapshot"
        for v in snapshot["vehicles"]:
            if v["fix"]:
                first[v["id"]] = (v["fix"]["lat"], v["fix"]["lon"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = orjson.loads(await asyncio.wait_for(ws.read_message(), timeout))
            for v in frame.get("vehicles", []):
                if "lat" not in v:
                    continue
                before = first.setdefault(v["id"], (v["lat"], v["lon"]))
                if (v["lat"], v["lon"]) != before:
                    return {"id": v["id"], "lat": before[0], "lon": before[1]}, v
        raise AssertionError("no vehicle moved within the timeout")
    finally:
        await close_websocket(ws)


def _listening_ports(procs: list[psutil.Process]) -> set[int]:
    ports = set()
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    ports.add(conn.laddr.port)
        except psutil.NoSuchProcess:
            pass
    return ports


@pytest.mark.timeout(300)  # its own deadlines (the start, a vehicle moving, the bot's first assignment: up to
# 120 s, the second start) are the checks; pytest's default 120 s cut it off on a loaded machine
def test_demo_runs_moves_vehicles_and_stops_cleanly(tmp_path):
    demo = start_demo(tmp_path / "var", tmp_path / "demo.log", vehicles=21, SIM_DISPATCHER="1",  # every crew has a vehicle
                      SIM_CALLS_PER_DAY="20000")  # six times the real line's volume: a repair within seconds
    try:
        demo.wait_log("console: " + demo.base + "/")
        token = demo.login("dispatcher")
        before, after = asyncio.run(_vehicle_moves(demo.base, token))
        assert before["id"] == after["id"] and (before["lat"], before["lon"]) != (after["lat"], after["lon"])
        procs = demo.tree()
        names = " ".join(" ".join(p.cmdline()) for p in procs)
        for service in ("center web", "center ingest", "center simulate", "redis-server"):
            assert service in names, f"{service} not running: {names}"
        ports = _listening_ports(procs)
        assert len(ports) >= 3  # web, redis, broker
        demo.dump_stacks()  # SIGUSR1: every service prints its threads' stacks and goes on
        stacks = demo.log().count("Current thread 0x")
        assert stacks >= 4, demo.log()[-3000:]  # supervisor, web, ingest, simulate
        assert all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)
        deadline = time.monotonic() + 30  # counters are written with the track, every INGEST_HOLD_S
        while "fix_ok" not in (vehicle := demo.get(f"/api/vehicles/{after['id']}", token))["counters"]:
            assert time.monotonic() < deadline, f"no counters for {after['id']}: {vehicle}"
            time.sleep(0.5)
        deadline = time.monotonic() + 120  # calls come in; the dispatcher bot assigns through the API
        while demo.get("/healthz")["services"]["simulate"].get("assigned_by_bot", 0) < 1:
            assert time.monotonic() < deadline, "the dispatcher bot assigned nothing"
            time.sleep(1.0)
        counts = demo.get("/api/tickets/counts", token)["states"]
        assert sum(counts.get(s, 0) for s in ("dispatched", "accepted", "en_route", "on_site", "resolved")) >= 1
    finally:
        took = demo.stop()
    assert took <= 10.0
    assert demo.process.returncode == 0
    time.sleep(0.5)
    alive = [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running: {alive}"
    assert not any(port_open("127.0.0.1", port) for port in ports)
    assert not (demo.data_dir / "run" / "demo.pid").exists()
    assert not (demo.data_dir / "run" / "servers.json").exists()
    assert list((demo.data_dir / "run").iterdir()) == []  # nothing left behind (pid, run or config files)

    # a second demo on the same DATA_DIR resumes with the data of the first
    again = start_demo(demo.data_dir, tmp_path / "demo2.log")
    try:
        token = again.login("dispatcher")  # the accounts survived
        resumed = again.get(f"/api/vehicles/{after['id']}", token)
        assert resumed["counters"]["fix_ok"] >= vehicle["counters"]["fix_ok"]
        since = vehicle["fix"]["t"] - 60
        track = again.get(f"/api/vehicles/{after['id']}/track?since={since}&until={vehicle['fix']['t']}", token)
        assert track["count"] > 0
    finally:
        again.stop()


def _service_procs(demo, service: str) -> list[psutil.Process]:
    """The live processes of one service of the demo (`python -m center <service>`)."""
    found = []
    for proc in demo.tree():
        try:
            if proc.cmdline()[-2:] == ["center", service] and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:  # gone or a zombie between listing and asking
            pass
    return found


def _web_pids(demo, requests: int = 40) -> set[int]:
    """The pids of the web processes answering fresh connections (the kernel spreads them)."""
    return {demo.get("/healthz")["services"]["web"]["pid"] for _ in range(requests)}


def test_a_crashed_service_is_restarted_a_second_demo_is_refused_and_a_stuck_one_killed_whole(tmp_path):
    demo = start_demo(tmp_path / "var", tmp_path / "demo.log", vehicles=1, SIM_CALLERS="0", SIM_CREWS="0",
                      SIM_SCENARIO="", WEB_PROCESSES="2")
    try:
        import signal
        import subprocess
        import sys

        from tests.procs import ROOT

        second = subprocess.run([sys.executable, "-m", "center", "demo"], cwd=ROOT, capture_output=True, text=True,
                                env={"DATA_DIR": str(demo.data_dir), "PATH": "/usr/bin:/bin",
                                     "HTTP_PORT": "0", "CONFIG_FILE": "/nonexistent"}, timeout=60)
        assert second.returncode == 1 and "already running" in second.stderr

        def ingests() -> list[psutil.Process]:
            return _service_procs(demo, "ingest")

        (ingest,) = ingests()
        ingest.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            again = [p for p in ingests() if p.pid != ingest.pid]
            if again and demo.health()["services"]["ingest"].get("pid") == again[0].pid:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"ingest was not restarted:\n{demo.log()[-2000:]}")
        assert "ingest stopped unexpectedly (killed by signal SIGKILL); restarting in 1 s" in demo.log()

        # WEB_PROCESSES=2: two web processes share the port; one killed, the other goes on serving
        webs = _service_procs(demo, "web")
        assert len(webs) == 2
        assert _web_pids(demo) == {p.pid for p in webs}
        webs[0].send_signal(signal.SIGKILL)
        webs[0].wait(10)  # its sockets are closed: new connections go to the survivor
        assert webs[1].pid in _web_pids(demo, 10)  # every request answered while it restarts
        deadline = time.monotonic() + 20
        while len(_service_procs(demo, "web")) < 2:
            assert time.monotonic() < deadline, "the killed web process was not restarted"
            time.sleep(0.3)
        assert "web stopped unexpectedly (killed by signal SIGKILL)" in demo.log() or \
            "web#2 stopped unexpectedly (killed by signal SIGKILL)" in demo.log()

        # a demo whose stop times out (its supervisor frozen) is killed whole: nothing it started is left
        started = demo.tree()
        names = " ".join(" ".join(p.cmdline()) for p in started)
        for part in ("center web", "center ingest", "center simulate", "redis-server", "postgres"):
            assert part in names, f"{part} not running: {names}"
        demo.process.send_signal(signal.SIGSTOP)
        with pytest.raises(AssertionError, match="did not stop within 1.0 s"):
            demo.stop(timeout=1.0)
        assert [p.pid for p in started if alive(p)] == [] and demo.group() == []
    finally:
        demo.stop()
