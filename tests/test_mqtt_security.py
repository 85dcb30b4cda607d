"""Devices authenticate at the broker and may only use their own topics (issue #21), on both
embedded brokers (mosquitto and amqtt), against real broker processes and the credentials in a
real PostgreSQL."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from servers.broker_credentials import (AclRule, allowed, device_rules, filter_covered, hash_password,
                                parse_acl_file, parse_password_file, render, verify_password)
from messaging.mqtt import MqttClient, device_url, with_credentials
from servers.embedded import start_broker
from store.db import Database
from store.devices import Device, DeviceStore, valid_device_id
from store.startup import broker_sync, open_servers
from tests.conftest import test_settings
from tests.procs import ROOT

KINDS = ["mosquitto", "amqtt"]


# pure tables -----------------------------------------------------------------------------------

def test_the_hash_is_mosquitto_passwd_s_format(tmp_path):
    """Our verify accepts what mosquitto_passwd writes, and mosquitto accepts what we write
    (checked by the broker tests below: every device logs in with a hash of ours)."""
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), "V01", "s3cret"], check=True)
    stored = parse_password_file(path.read_text())["V01"]
    assert verify_password("s3cret", stored) and not verify_password("s3creT", stored)
    ours = hash_password("s3cret")
    assert ours.startswith("$7$101$") and verify_password("s3cret", ours)
    assert not verify_password("s3cret", "$6$abc$def") and not verify_password("x", "garbage")


@pytest.mark.parametrize("device_id, ok", [
    ("V01", True), ("edge-1.a_b", True), ("a" * 64, True), ("a" * 65, False), ("", False),
    (".", False), ("..", False), ("V:01", False), ("V/01", False), ("+", False), ("#", False), ("V 1", False),
])
def test_device_ids(device_id, ok):
    assert valid_device_id(device_id) is ok


@pytest.mark.parametrize("kind, sensors, sparkplug, topic, access, ok", [
    ("vehicle", (), False, "fleet/V01/nmea", "write", True),
    ("vehicle", (), False, "fleet/V01/status", "write", True),
    ("vehicle", (), False, "fleet/V02/status", "write", False),
    ("vehicle", (), False, "scada/P050/pressure", "write", False),
    ("vehicle", (), False, "fleet/V01/nmea", "read", False),
    ("gateway", ("P001",), False, "scada/P001/pressure", "write", True),
    ("gateway", ("P001",), False, "scada/P002/pressure", "write", False),
    ("gateway", ("P001",), False, "spBv1.0/g/NDATA/V01", "write", False),
    ("gateway", ("P001",), True, "spBv1.0/g/NDATA/V01", "write", True),
    ("gateway", ("P001",), True, "spBv1.0/g/DDATA/V01/meter", "write", True),
    ("gateway", ("P001",), True, "spBv1.0/g/NDATA/G2", "write", False),
    ("gateway", ("P001",), True, "spBv1.0/g/NCMD/V01", "write", False),
    ("gateway", ("P001",), True, "spBv1.0/g/NCMD/V01", "read", True),
    ("gateway", ("P001",), True, "spBv1.0/g/NCMD/G2", "read", False),
])
def test_device_rules(kind, sensors, sparkplug, topic, access, ok):
    device = Device("V01", kind, "$7$x", sensors=sensors, sparkplug=sparkplug)
    assert allowed(device_rules(device), topic, access) is ok


@pytest.mark.parametrize("pattern, wanted, ok", [
    ("#", "#", True), ("fleet/V01/#", "#", False), ("fleet/V01/#", "fleet/#", False),
    ("fleet/V01/#", "fleet/V01/nmea", True), ("fleet/V01/#", "fleet/+/nmea", False),
    ("spBv1.0/+/NCMD/G1", "spBv1.0/+/NCMD/G1", True), ("spBv1.0/+/NCMD/G1", "spBv1.0/+/+/G1", False),
    ("#", "$SYS/broker/uptime", False),
])
def test_subscriptions_need_the_whole_filter(pattern, wanted, ok):
    assert filter_covered(pattern, wanted) is ok


def test_rendered_files_parse_back_and_leave_out_revoked_devices():
    devices = [Device("V01", "vehicle", hash_password("a")), Device("V02", "vehicle", hash_password("b"), active=False),
               Device("G1", "gateway", hash_password("c"), sensors=("P001",))]
    auth = render(devices, ("center", hash_password("d")))
    assert set(parse_password_file(auth.password_text())) == {"V01", "G1", "center"}
    acls = parse_acl_file(auth.acl_text())
    assert acls["center"] == [AclRule("readwrite", "#")]
    assert acls["V01"] == [AclRule("write", "fleet/V01/#")] and "V02" not in acls


def test_amqtt_s_subscription_table_is_walked_over_a_snapshot():
    from servers.broker import _Subscriptions

    table = _Subscriptions({"a/#": [], "b/#": []})
    for key in table:
        table[key + "/new"] = []  # a client subscribing while amqtt awaits a plugin
    for key, _ in table.items():
        table.pop(key)
    assert table == {}


# real brokers ----------------------------------------------------------------------------------

def connack(url: str, client_id: str, timeout: float = 10.0) -> int:
    """Connect once with paho and return the CONNACK's return code (-1: closed without one)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    result: list[int] = []
    done = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    if parsed.username:
        client.username_pw_set(unquote(parsed.username), unquote(parsed.password or ""))

    def on_connect(c, userdata, flags, reason_code, properties):
        result.append(reason_code.value)
        done.set()

    def on_disconnect(c, userdata, flags, reason_code, properties):
        result.append(-1)
        done.set()

    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    client.connect(parsed.hostname, parsed.port, keepalive=10)
    client.loop_start()
    try:
        assert done.wait(timeout), "no CONNACK and no close"
    finally:
        client.disconnect()
        client.loop_stop()
    return result[0]


class Inbox:
    """Messages a client received, waited for by topic."""

    def __init__(self) -> None:
        self.messages: list = []
        self.cond = threading.Condition()

    def __call__(self, batch) -> None:
        with self.cond:
            self.messages.extend(batch)
            self.cond.notify_all()

    def wait_topic(self, topic: str, timeout: float = 10.0):
        with self.cond:
            assert self.cond.wait_for(lambda: any(m.topic == topic for m in self.messages), timeout), \
                f"{topic} never arrived; got {self.topics()}"

    def topics(self) -> list[str]:
        return [m.topic for m in self.messages]


class Rig:
    """An embedded broker of one kind with its credential sync, and devices put in the store."""

    def __init__(self, tmp_path, database_url: str, kind: str) -> None:
        self.database_url = database_url
        self.broker = start_broker(tmp_path, kind=kind)
        self.kind = kind
        self.sync = broker_sync(database_url, self.broker, poll_s=0.2)
        self.settings = test_settings(tmp_path, MQTT_URL=self.broker.url,
                                      MQTT_DEVICE_URL=self.broker.extra["device_url"])
        self.clients: list[MqttClient] = []

    def put(self, device: Device) -> None:
        """DeviceStore.put, from this sync test."""
        put_device(self.database_url, device)

    def device(self, device_id: str, kind: str = "vehicle", password: str = "pw-ok", **kw) -> str:
        """Issue a credential; returns the device's URL with it."""
        self.put(Device(device_id, kind, hash_password(password), **kw))
        return device_url(self.settings, device_id, password)

    def wait_login(self, url: str, client_id: str, want_ok: bool = True) -> None:
        """Wait until the broker (after its reload) lets this login in, or refuses it."""
        deadline = time.monotonic() + 15
        while (connack(url, client_id) == 0) is not want_ok:
            assert time.monotonic() < deadline, f"{client_id} login never became {want_ok}"
            time.sleep(0.2)

    def client(self, url: str, client_id: str, inbox: Inbox | None = None, subscribe=()) -> MqttClient:
        client = MqttClient(url, client_id, on_messages=inbox)
        if subscribe:
            client.subscribe(list(subscribe), qos=1)
        client.start()
        assert client.wait_connected(10), f"{client_id} did not connect"
        self.clients.append(client)
        return client

    def center(self, inbox: Inbox, topics=("#",)) -> MqttClient:
        client = self.client(self.broker.url, f"test-center-{len(self.clients)}", inbox, topics)
        time.sleep(0.3)  # the SUBACK travels after CONNACK
        return client

    def close(self) -> None:
        for client in self.clients:
            client.stop()
        self.sync.stop()
        self.broker.stop()


def put_device(database_url: str, device: Device) -> None:
    """DeviceStore.put from a sync test (a pool of its own for the one write)."""
    import asyncio

    async def put() -> None:
        db = Database(database_url, max_size=1)
        try:
            await DeviceStore(db).put(device)
        finally:
            await db.close()
    asyncio.run(put())


@pytest.fixture(params=KINDS)
def rig(request, tmp_path, database_url):
    rig = Rig(tmp_path, database_url, request.param)
    yield rig
    rig.close()


def test_anonymous_and_wrong_passwords_are_refused(rig):
    import socket
    from urllib.parse import urlparse

    url = rig.device("V01")
    for _ in range(3):  # port probes (health checks) and a client gone before its CONNECT
        with socket.create_connection((urlparse(url).hostname, urlparse(url).port), timeout=5):
            pass
    rig.wait_login(url, "V01")
    anonymous = rig.settings.MQTT_DEVICE_URL
    assert connack(anonymous, "V01") != 0
    assert connack(anonymous, "anything") != 0
    assert connack(with_credentials(anonymous, "V01", "wrong"), "V01") != 0
    assert connack(with_credentials(anonymous, "nobody", "pw-ok"), "nobody") != 0
    center = rig.broker.url.rsplit("@", 1)[1]
    assert connack("mqtt://" + center, "ingest") != 0


def test_a_vehicle_publishes_only_its_own_topics(rig):
    inbox = Inbox()
    rig.center(inbox)
    url = rig.device("V01")
    rig.wait_login(url, "V01")
    vehicle = rig.client(url, "V01")
    for topic in ("fleet/V06/status", "fleet/V02/nmea", "scada/P050/pressure", "spBv1.0/g/NDATA/V01"):
        vehicle.publish(topic, b"offline", qos=1, retain=True)
    vehicle.publish("fleet/V01/nmea", b"$GPGGA", qos=1)  # sent last: once it arrives, the others would have
    inbox.wait_topic("fleet/V01/nmea")
    assert inbox.topics() == ["fleet/V01/nmea"]


def test_a_gateway_publishes_only_its_sensors_and_edge_node(rig):
    inbox = Inbox()
    rig.center(inbox)
    url = rig.device("G1", "gateway", sensors=("P001",), sparkplug=True)
    rig.wait_login(url, "G1")
    gateway = rig.client(url, "G1")
    for topic in ("scada/P002/pressure", "spBv1.0/g/NDATA/G2", "spBv1.0/g/NCMD/G1", "fleet/G1/nmea"):
        gateway.publish(topic, b"{}", qos=1)
    gateway.publish("scada/P001/pressure", b"{}", qos=1)
    gateway.publish("spBv1.0/g/DDATA/G1/meter", b"x", qos=1)
    inbox.wait_topic("spBv1.0/g/DDATA/G1/meter")
    assert inbox.topics() == ["scada/P001/pressure", "spBv1.0/g/DDATA/G1/meter"]


def test_a_device_cannot_read_everything(rig):
    url = rig.device("G1", "gateway", sensors=("P001",), sparkplug=True)
    rig.wait_login(url, "G1")
    inbox = Inbox()
    rig.client(url, "G1", inbox, ("#", "fleet/#", "spBv1.0/+/NCMD/G1"))
    time.sleep(0.3)  # the SUBACK travels after CONNACK
    center = rig.center(Inbox(), ())
    center.publish("fleet/V01/nmea", b"$GPGGA", qos=1)
    center.publish("spBv1.0/g/NCMD/G2", b"x", qos=1)
    center.publish("spBv1.0/g/NCMD/G1", b"rebirth", qos=1)
    inbox.wait_topic("spBv1.0/g/NCMD/G1")
    assert inbox.topics() == ["spBv1.0/g/NCMD/G1"]


def test_nobody_takes_a_device_s_client_id_over(rig):
    inbox = Inbox()
    rig.center(inbox)
    url = rig.device("V07")
    other = rig.device("V09", password="pw-other")
    rig.wait_login(other, "V09")
    vehicle = rig.client(url, "V07")
    base = rig.settings.MQTT_DEVICE_URL
    center_listener = "mqtt://" + rig.broker.url.rsplit("@", 1)[1]
    attempts = [base, with_credentials(base, "V07", "wrong"), other,
                center_listener, with_credentials(center_listener, "V09", "pw-other")]
    for attacker in attempts:
        connack(attacker, "V07")  # refused, or (mosquitto's device listener) renamed to its own id
    vehicle.publish("fleet/V07/status", b"online", qos=1)
    inbox.wait_topic("fleet/V07/status")
    assert vehicle.connected and vehicle.disconnects == 0


def test_a_device_with_the_wrong_client_id_is_refused_or_renamed(rig):
    inbox = Inbox()
    rig.center(inbox)
    url = rig.device("V01")
    rig.wait_login(url, "V01")
    code = connack(url, "sim-V01")
    assert code != 0 if rig.kind == "amqtt" else code == 0  # mosquitto: use_username_as_clientid


def test_a_rotated_or_revoked_credential_stops_working(rig):
    url = rig.device("V01", password="first")
    rig.wait_login(url, "V01")
    rotated = rig.device("V01", password="second")
    rig.wait_login(url, "V01", want_ok=False)
    rig.wait_login(rotated, "V01")
    inbox = Inbox()
    rig.center(inbox)
    vehicle = rig.client(rotated, "V01")
    rig.put(Device("V01", "vehicle", hash_password("second"), active=False))
    rig.wait_login(rotated, "V01", want_ok=False)
    # the open connection is dropped (mosquitto) or may do nothing more (amqtt): a publish after
    # the revocation never reaches the center, while the center's own still does
    vehicle.publish("fleet/V01/status", b"revoked?", qos=1)
    center = rig.center(Inbox(), ())
    center.publish("fleet/V01/marker", b"", qos=1)
    inbox.wait_topic("fleet/V01/marker")
    assert "fleet/V01/status" not in inbox.topics()


def test_the_center_account_reads_and_writes_everything(rig):
    inbox = Inbox()
    rig.center(inbox)
    url = rig.device("V01")
    rig.wait_login(url, "V01")
    rig.client(url, "V01").publish("fleet/V01/nmea", b"a", qos=1)
    writer = rig.center(Inbox(), ())
    for topic in ("scada/P050/pressure", "spBv1.0/g/NCMD/G1", "sim/sensors/control"):
        writer.publish(topic, b"b", qos=1)
    inbox.wait_topic("sim/sensors/control")
    assert sorted(inbox.topics()) == sorted(["fleet/V01/nmea", "scada/P050/pressure", "spBv1.0/g/NCMD/G1",
                                             "sim/sensors/control"])


@pytest.mark.parametrize("kind", KINDS)
def test_files_and_run_file_are_private_and_servers_listen_on_loopback(tmp_path, kind):
    settings = test_settings(tmp_path, MQTT_EMBEDDED_BROKER=kind)
    servers = open_servers(settings)
    try:
        run_file = settings.data_dir / "run" / "servers.json"
        assert stat.S_IMODE(run_file.stat().st_mode) == 0o600
        for name in ("center.secret", "center.passwd", "center.acl", "mosquitto.passwd", "mosquitto.acl"):
            assert stat.S_IMODE((settings.data_dir / "broker" / name).stat().st_mode) == 0o600, name
        assert "@127.0.0.1:" in servers.mqtt_url and servers.device_url.startswith("mqtt://127.0.0.1:")
        assert "@" not in servers.device_url
        import psutil

        for server in servers.owned:
            listening = [c.laddr for c in psutil.Process(server.process.pid).net_connections("inet")
                         if c.status == psutil.CONN_LISTEN]
            assert listening and all(addr.ip == "127.0.0.1" for addr in listening), (server.name, listening)
    finally:
        servers.stop()


def test_mqtt_auth_writes_the_files_for_an_external_mosquitto(tmp_path, redis_url, database_url):
    put_device(database_url, Device("V01", "vehicle", hash_password("pw")))
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url,
           "MQTT_URL": "mqtt://center:c%40t@127.0.0.1:1883",
           "DATA_DIR": str(tmp_path / "var"), "CONFIG_FILE": str(tmp_path / "absent.toml")}
    out = tmp_path / "auth"
    subprocess.run([sys.executable, "-m", "center", "mqtt-auth", str(out)], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=60)
    passwords = parse_password_file((out / "mosquitto.passwd").read_text())
    assert verify_password("pw", passwords["V01"]) and verify_password("c@t", passwords["center"])
    assert parse_acl_file((out / "mosquitto.acl").read_text())["V01"] == [AclRule("write", "fleet/V01/#")]
    assert stat.S_IMODE((out / "mosquitto.passwd").stat().st_mode) == 0o600


# TLS -------------------------------------------------------------------------------------------

def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(directory, name: str):
    """A test CA (key, self-signed certificate) made with the openssl CLI; returns the cert path."""
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "2", "-subj", f"/CN={name}")
    return cert


def make_server_cert(directory, ca_cert) -> dict:
    """A server certificate for 127.0.0.1 signed by the CA."""
    ca_key = ca_cert.with_suffix(".key")
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return {"certfile": str(cert), "keyfile": str(key)}


@pytest.mark.parametrize("kind", KINDS)
def test_devices_connect_over_tls_and_a_wrong_ca_fails(tmp_path, database_url, kind):
    import asyncio
    import ssl

    from messaging.mqtt import TlsFiles

    pki = tmp_path / "pki"
    pki.mkdir()
    ca, wrong_ca = make_ca(pki, "test-ca"), make_ca(pki, "other-ca")
    broker = start_broker(tmp_path, kind=kind, tls=make_server_cert(pki, ca))
    sync = broker_sync(database_url, broker, poll_s=0.2)
    clients: list[MqttClient] = []
    try:
        tls_url = broker.extra["tls_url"]
        assert tls_url.startswith("mqtts://")
        put_device(database_url, Device("G1", "gateway", hash_password("pw"), sensors=("P001",), sparkplug=True))
        trust = TlsFiles(ca_file=str(ca))
        url = with_credentials(tls_url, "G1", "pw")
        center_url = broker.url  # mosquitto: the plain loopback center listener; amqtt: TLS too
        center_inbox = Inbox()
        deadline = time.monotonic() + 15
        while not sync.renders:
            assert time.monotonic() < deadline, "the credential files were never rendered"
            time.sleep(0.1)

        center = MqttClient(center_url, "test-center", on_messages=center_inbox, tls=trust)
        center.subscribe("scada/#", qos=1)
        center.start()
        clients.append(center)
        assert center.wait_connected(10)

        async def gateway_round_trip() -> list:
            """The gateway's reader on an asyncio loop (the ingest's mode) over TLS."""
            inbox = Inbox()
            gateway = MqttClient(url, "G1", on_messages=inbox, loop=asyncio.get_running_loop(), tls=trust)
            gateway.subscribe("spBv1.0/+/NCMD/G1", qos=1)
            gateway.start()
            try:
                for _ in range(300):
                    if gateway.connected:
                        break
                    await asyncio.sleep(0.05)
                assert gateway.connected, "the gateway did not connect over TLS"
                await asyncio.sleep(0.3)  # the SUBACK travels after CONNACK
                gateway.publish("scada/P001/pressure", b'{"value": 0.3}', qos=1)
                await asyncio.to_thread(center_inbox.wait_topic, "scada/P001/pressure")
                center.publish("spBv1.0/g/NCMD/G1", b"rebirth", qos=1)
                await asyncio.to_thread(inbox.wait_topic, "spBv1.0/g/NCMD/G1")
                return inbox.topics()
            finally:
                gateway.stop()

        assert asyncio.run(gateway_round_trip()) == ["spBv1.0/g/NCMD/G1"]

        threaded = MqttClient(url, "G1", tls=trust)  # paho's own network thread over TLS
        threaded.start()
        clients.append(threaded)
        assert threaded.wait_connected(10)

        # a client trusting another CA refuses the broker's certificate (checked with the ssl
        # module itself: paho leaks the socket of a failed handshake, a ResourceWarning here)
        import socket

        context = ssl.create_default_context(cafile=str(wrong_ca))
        with socket.create_connection(("127.0.0.1", int(tls_url.rsplit(":", 1)[1])), timeout=10) as raw:
            with pytest.raises(ssl.SSLCertVerificationError):
                with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                    pass
        context = ssl.create_default_context(cafile=str(ca))  # and the right CA accepts it
        with socket.create_connection(("127.0.0.1", int(tls_url.rsplit(":", 1)[1])), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version()
    finally:
        for client in clients:
            client.stop()
        sync.stop()
        broker.stop()
