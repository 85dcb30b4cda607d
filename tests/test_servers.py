"""The real servers: an MQTT round trip, and Redis AOF surviving a restart."""
from __future__ import annotations

import threading
import time

import pytest
import redis

from messaging.mqtt import MqttClient, Will
from servers.embedded import Servers, port_open, read_run_file, start_redis
from tests.conftest import test_settings


def test_mqtt_round_trip(mqtt_url):
    got: list = []
    done = threading.Event()

    def on_messages(batch):
        got.extend(batch)
        if len(got) >= 3:
            done.set()

    sub = MqttClient(mqtt_url, "test-sub", on_messages=on_messages)
    sub.subscribe("test/+/echo")
    sub.start()
    assert sub.wait_connected(10)
    time.sleep(0.3)  # the SUBACK travels after CONNACK
    pub = MqttClient(mqtt_url, "test-pub")
    pub.start()
    assert pub.wait_connected(10)
    for i in range(3):
        assert pub.publish(f"test/{i}/echo", f"hello {i}".encode(), qos=1)
    assert done.wait(10), f"only {len(got)} messages arrived"
    pub.stop()
    sub.stop()
    assert sorted(m.payload for m in got) == [b"hello 0", b"hello 1", b"hello 2"]
    assert all(m.topic.endswith("/echo") and m.received_at > 0 for m in got)


def test_last_will_is_published_when_a_client_vanishes(mqtt_url):
    got: list = []
    sub = MqttClient(mqtt_url, "will-watcher", on_messages=got.extend)
    sub.subscribe("fleet/WILL1/status", qos=1)
    sub.start()
    assert sub.wait_connected(10)
    time.sleep(0.3)
    vehicle = MqttClient(mqtt_url, "will-vehicle", will=Will("fleet/WILL1/status", b"offline"), keepalive=2)
    vehicle.start()
    assert vehicle.wait_connected(10)
    vehicle._client.socket().close()  # vanish without DISCONNECT, as a vehicle losing power
    deadline = time.time() + 15
    while time.time() < deadline and not any(m.payload == b"offline" for m in got):
        time.sleep(0.1)
    vehicle._client.loop_stop()
    sub.publish("fleet/WILL1/status", b"", qos=1, retain=True)  # clear the retained will for later tests
    time.sleep(0.2)
    sub.stop()
    assert any(m.payload == b"offline" for m in got)


def test_redis_aof_survives_restart(tmp_path):
    first = start_redis(tmp_path)
    client = redis.Redis.from_url(first.url)
    client.set("ticket:GD1", "acknowledged")
    client.rpush("events", "created", "dispatched")
    client.close()
    port = int(first.url.rsplit(":", 1)[1].split("/")[0])
    first.process.kill()  # no chance to save: only the AOF can bring the data back
    first.process.wait()
    assert (tmp_path / "redis").exists()
    second = start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(second.url)
        assert client.get("ticket:GD1") == b"acknowledged"
        assert client.lrange("events", 0, -1) == [b"created", b"dispatched"]
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.close()
    finally:
        second.stop()
    assert not port_open("127.0.0.1", port)


def test_embedded_servers_are_shared_and_cleaned_up(tmp_path):
    settings = test_settings(tmp_path)
    owner = Servers.resolve(settings)
    try:
        assert owner.owned and read_run_file(settings.data_dir / "run" / "servers.json")
        follower = Servers.resolve(settings)  # a second service finds the running ones
        assert (follower.redis_url, follower.mqtt_url) == (owner.redis_url, owner.mqtt_url)
        assert follower.owned == []
    finally:
        owner.stop()
    assert not (settings.data_dir / "run" / "servers.json").exists()
    for url in (owner.redis_url, owner.mqtt_url):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert not port_open("127.0.0.1", port)


def test_external_urls_start_nothing(tmp_path, servers):
    settings = test_settings(tmp_path, DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url, MQTT_URL=servers.mqtt_url)
    resolved = Servers.resolve(settings)
    assert resolved.owned == [] and resolved.redis_url == servers.redis_url
    assert resolved.database_url == servers.database_url


@pytest.mark.parametrize("url", ["http://127.0.0.1:1883", "ws://x:1"])
def test_mqtt_rejects_unknown_schemes(url):
    with pytest.raises(ValueError, match="unsupported MQTT URL"):
        MqttClient(url, "x")


def test_free_ports_are_bindable_and_below_the_ephemeral_range():
    """A port from the ephemeral range could go to an outgoing connection before the server
    binds it (a web process once could not listen because of that): free_port picks below it."""
    import socket

    from servers.embedded import PICKED_PORTS, _ephemeral_low, free_port

    low, high = PICKED_PORTS[0], min(PICKED_PORTS[1], _ephemeral_low() - 1)
    ports = {free_port() for _ in range(20)}
    assert all(low <= port <= high for port in ports)
    assert len(ports) > 10  # at random, not one port handed out again and again
    for port in list(ports)[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_the_embedded_servers_die_with_a_parent_killed_outright(tmp_path):
    """SIGKILL leaves no chance to stop them: PR_SET_PDEATHSIG must (mosquitto, started as root,
    would switch users and lose it)."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    from tests.procs import ROOT

    code = ("import sys, time; from pathlib import Path; from servers.embedded import start_broker, start_redis; "
            "d = Path(sys.argv[1]); b = start_broker(d); r = start_redis(d); "
            "print(b.process.pid, r.process.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            assert time.monotonic() < deadline, "an embedded server outlived its killed parent"
            time.sleep(0.1)
    finally:
        parent.kill()
        parent.wait(10)
        parent.stdout.close()
