"""`python -m center migrate-redis`: the old records as rows (a table of `store.migrate_rows`
cases), then a real Redis-only installation's data: a redis-server started on the AOF captured
from a demo at f2cb00e (tests/data/redis-only-demo), migrated into the test's PostgreSQL; counts
per area, whole timelines, the KPI report, accounts that still log in with their old passwords
through the new web, the fleet, devices and the 110 linkage; a second run adds nothing; a row the
record refuses (or holds otherwise) makes the counts differ and the command exit 1."""
from __future__ import annotations

import asyncio
import gzip
import io
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import orjson
import psycopg
import pytest
import redis
import tornado.httpclient

from store import migrate_rows as rows
from command.accounts import hash_password, verify_password
from store.migrate_redis import Migration, migrate
from servers.embedded import free_port, start_redis
from store.live import Store
from services.kpi_query import report_command
from web import app as webapp
from tests.conftest import Web, test_settings, wait_for

DATA = Path(__file__).resolve().parent / "data" / "redis-only-demo"
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "demo-pass-123"  # the demo's (see the data's README)
DAY = date(2026, 12, 7)  # the demo's tickets are GD20261207-0001 ... -0033


NOW = datetime(2026, 12, 8, tzinfo=timezone.utc)


@pytest.mark.parametrize("made, expected", [
    (rows.utc(""), None),
    (rows.utc("1796575683.5"), datetime(2026, 12, 6, 16, 48, 3, 500000, tzinfo=timezone.utc)),
    (rows.account_row("crew-C01", {"role": "crew", "crew_id": "C01", "active": "0", "hash": "scrypt$1"}),
     ("crew-C01", "crew", "", "C01", False, "scrypt$1")),
    (rows.account_row("agent", {"role": "agent", "crew_id": "", "display": "坐席"}), ("agent", "agent", "坐席", None, True, "")),
    (rows.shift_row("C02", {"on_shift": False, "ends_at": None, "by": "sup", "at": 1796575683.5}, NOW),
     ("C02", False, None, "sup", datetime(2026, 12, 6, 16, 48, 3, 500000, tzinfo=timezone.utc))),
    (rows.inbound_row("k", "processing", 60, NOW), None),  # a request under way: no reply to keep
    (rows.inbound_row("k", '{"status": 200, "body": {"ok": true}}', -1, NOW),
     ("k", "done", 200, {"ok": True}, NOW + timedelta(days=7))),
    (rows.nonce_row("n", 90, NOW), ("n", NOW + timedelta(seconds=90))),
    (rows.police_incident_row("JJ1", "GD20261207-0008"), ("JJ1", "GD20261207-0008")),
    (rows.police_incident_row("JJ2", "pending"), ("JJ2", None)),  # claimed, its ticket not made yet
    (rows.outbox_row({"message_id": "m", "ticket_number": "GD20261207-0008", "seq": "2", "body": "{}",
                      "idempotency_key": "GD20261207-0008:manual:1", "created_at": "1796575683.5",
                      "next_attempt_at": "", "first_sent_at": "", "acked_at": "", "alarmed_at": ""})[7:12],
     (0, rows.utc("1796575683.5"), rows.utc("1796575683.5"), None, None)),
    (sorted(["GD20261207-10000", "GD20261207-9999", "GD20261206-0002"], key=rows.ticket_sort_key),
     ["GD20261206-0002", "GD20261207-9999", "GD20261207-10000"]),
    (rows.day_sequences({"tkt:seq:20261207": "30", "inc:seq:20261207": "5", "tkt:seq:x": "1"},
                        ["GD20261207-0033", "GD20261206-0004"]),
     {("ticket", date(2026, 12, 7)): 33, ("incident", date(2026, 12, 7)): 5, ("ticket", date(2026, 12, 6)): 4}),
])
def test_old_records_as_rows(made, expected):
    assert made == expected


def test_a_device_the_new_code_would_refuse_is_no_row():
    gateway = {"kind": "gateway", "password_hash": "$7$x", "sensors": ["P013"], "sparkplug": True, "issued_at": 1.5}
    assert rows.device_row("SUB01", gateway) == ("SUB01", "gateway", "$7$x", ["P013"], True, True, 1.5, "")
    with pytest.raises(ValueError):
        rows.device_row("fleet/V01", {"kind": "vehicle", "password_hash": "$7$x"})


@pytest.fixture(scope="module")
def old_redis(tmp_path_factory) -> str:
    """A redis-server on a copy of the captured AOF (the server writes to its files)."""
    directory = tmp_path_factory.mktemp("redis-only")
    (directory / "redis").mkdir()
    with gzip.open(DATA / "appendonly.aof.gz") as src, open(directory / "redis" / "appendonly.aof", "wb") as dst:
        shutil.copyfileobj(src, dst)
    server = start_redis(directory)
    yield server.url
    server.stop()


@pytest.fixture
def old(old_redis):
    """A client of the old installation's Redis."""
    client = redis.Redis.from_url(old_redis, decode_responses=True)
    yield client
    client.close()


def run(old_redis: str, database_url: str) -> tuple[int, str, str]:
    """migrate() with its output captured: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = migrate(old_redis, database_url, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


TABLES = ("tickets", "ticket_events", "ticket_stages", "incidents", "alarm_tickets", "day_sequences",
          "accounts", "devices", "vehicles", "crews", "crew_shifts", "admin_audit", "police_outbox", "police_inbound",
          "police_incidents", "police_tickets", "police_last_messages", "ticket_changes")


def counts(database_url: str) -> dict[str, int]:
    """Rows per table of the record."""
    with psycopg.connect(database_url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


@pytest.mark.integration
def test_every_area_is_copied_and_a_second_run_adds_nothing(old_redis, old, database_url):
    inbound = [k for k in old.scan_iter("p110:in:*") if old.get(k) != "processing"]  # 7-day TTLs
    status, out, err = run(old_redis, database_url)
    assert status == 0, out + err
    assert "tickets: 33/33 read, 33 written" in err
    rows = counts(database_url)
    assert rows["tickets"] == 33 and rows["incidents"] == 5 and rows["alarm_tickets"] == 2
    assert rows["ticket_events"] == sum(old.xlen(f"tkt:{n}:events") for n in numbers(old))
    assert rows["accounts"] == 26 and rows["vehicles"] == 21 and rows["crews"] == 21 and rows["crew_shifts"] == 2
    assert rows["devices"] == 24  # 21 vehicles, the SCADA gateway and 2 Sparkplug edge nodes
    assert rows["admin_audit"] == old.xlen("admin:audit") > 21
    assert rows["police_outbox"] == 4 and rows["police_tickets"] == 4 and rows["police_incidents"] == 4
    assert rows["police_last_messages"] == 4 and rows["police_inbound"] == len(inbound)
    assert rows["ticket_changes"] == 0  # a migrated ticket is not a change to announce
    for line in out.splitlines()[1:-1]:  # the check: every area agrees
        area, in_redis, in_postgres = line[:22].strip(), *line[22:].split()[:2]
        assert in_redis == in_postgres, line

    status, out, err = run(old_redis, database_url)
    assert status == 0, out + err
    assert counts(database_url) == rows
    with psycopg.connect(database_url, autocommit=True) as conn:
        tallies = Migration(old, conn).run()
    assert {t.area: t.written for t in tallies if t.written} == {}


def numbers(old) -> list[str]:
    """The old installation's ticket numbers."""
    return sorted(k[4:] for k in old.scan_iter("tkt:GD*", _type="string"))


@pytest.mark.integration
def test_sequences_continue_after_the_migrated_numbers(old_redis, database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO day_sequences (kind, day, last) VALUES ('incident', %s, 9)", (DAY,))
        assert run(old_redis, database_url)[0] == 0
        rows = dict(((kind, day), last) for kind, day, last in conn.execute("SELECT kind, day, last FROM day_sequences"))
    assert rows == {("ticket", DAY): 33, ("incident", DAY): 9}  # raised, never lowered


@pytest.mark.integration
def test_records_read_back_as_they_were(old_redis, old, database_url):
    assert run(old_redis, database_url)[0] == 0
    with psycopg.connect(database_url) as conn:
        for number in numbers(old):
            record = conn.execute("SELECT record FROM tickets WHERE number = %s", (number,)).fetchone()[0]
            assert record == orjson.loads(old.get(f"tkt:{number}"))
            events = [row[0] for row in conn.execute(
                "SELECT event FROM ticket_events WHERE number = %s ORDER BY id", (number,))]
            assert events == [orjson.loads(f["e"]) for _id, f in old.xrange(f"tkt:{number}:events")]
        stages = conn.execute("SELECT stage, limit_s FROM ticket_stages WHERE number = 'GD20261207-0008'"
                              " ORDER BY limit_s").fetchall()
        assert stages == [("dispatch", 1800), ("arrive", 3600), ("resolve", 86400)]
        crew = conn.execute("SELECT crew_name, skills, vehicle_id FROM crews WHERE crew_id = 'C01'").fetchone()
        assert crew == ("城区供电所抢修一班", ["power"], "V01")
        assert conn.execute("SELECT plate FROM vehicles WHERE vehicle_id = 'V01'").fetchone() == ("鲁G·U1632",)
        assert conn.execute("SELECT on_shift, set_by FROM crew_shifts ORDER BY crew_id").fetchall() == [
            (False, "supervisor"), (True, "supervisor")]
        gateway = orjson.loads(old.hget("dev:all", "SCADA-GW1"))
        assert conn.execute("SELECT kind, password_hash, sensors FROM devices WHERE device_id = 'SCADA-GW1'").fetchone() \
            == ("gateway", gateway["password_hash"], gateway["sensors"])
        assert conn.execute("SELECT rev FROM device_revision").fetchone()[0] != ""  # brokers re-render
        outbox = conn.execute("SELECT state, police_incident_id, body FROM police_outbox"
                              " WHERE ticket_number = 'GD20261207-0008'").fetchone()
        assert outbox[:2] == ("acked", "JJ20261206000001")
        assert outbox[2] == old.hget("p110:out:2af3ccb694104c99a41a20c44791b3bf", "body")  # the signed bytes


@pytest.mark.integration
def test_the_kpi_report_counts_the_migrated_tickets(old_redis, database_url):
    assert run(old_redis, database_url)[0] == 0
    out, err = io.StringIO(), io.StringIO()
    assert report_command(database_url, {"period": "day", "date": "2026-12-07"}, out=out, err=err) == 0, err.getvalue()
    report = orjson.loads(out.getvalue())["report"]
    assert report["volume"]["tickets"] == 33 and report["volume"]["by_channel"]["sensor"] == 2  # the alarm tickets
    assert report["intake"]["police_handover_tickets"] == 4  # 2 by the dispatcher, 2 automatic


@pytest.fixture
async def web(tmp_path, redis_url, database_url, mqtt_url):
    """The web service on the test's PostgreSQL (filled by the test) and the session's Redis."""
    port = free_port()
    settings = test_settings(tmp_path, HTTP_PORT=port)
    client = Web(f"http://127.0.0.1:{port}", Store.from_url(redis_url, database_url))
    client.http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    stop = asyncio.Event()
    task = None

    async def start() -> Web:
        nonlocal task
        task = asyncio.create_task(webapp.serve(settings, redis_url, mqtt_url, stop=stop))
        await wait_for(client.up, timeout=30)
        return client

    yield start
    stop.set()
    if task is not None:
        await task
    client.http.close()
    await client.store.close()


@pytest.mark.integration
@pytest.mark.asyncio
async def test_the_new_code_serves_the_migrated_record(old_redis, old, database_url, web):
    status, out, err = await asyncio.to_thread(run, old_redis, database_url)
    assert status == 0, out + err
    client = await web()
    for name in ("dispatcher", "crew-C03", "supervisor"):  # the old scrypt hashes still log in
        response = await client.call("POST", "/api/login", body={"username": name, "password": PASSWORD})
        assert response.code == 200, (name, response.body)
    response = await client.call("POST", "/api/login", body={"username": "agent", "password": "wrong-pass-123"})
    assert response.code == 401
    token = orjson.loads((await client.call("POST", "/api/login", body={
        "username": "dispatcher", "password": PASSWORD})).body)["token"]
    for number in ("GD20261207-0008", "GD20261207-0023", "GD20261207-0033"):
        ticket = orjson.loads((await client.call("GET", f"/api/tickets/{number}", token=token)).body)
        stored = orjson.loads(old.get(f"tkt:{number}"))
        assert (ticket["number"], ticket["state"], ticket["version"]) == (number, stored["state"], stored["version"])
        timeline = orjson.loads((await client.call("GET", f"/api/tickets/{number}/timeline", token=token)).body)
        before = [orjson.loads(f["e"]) for _id, f in old.xrange(f"tkt:{number}:events")]
        assert [(e["action"], e["actor_id"], e["to_state"], e["note"]) for e in timeline["events"]] == [
            (e["action"], e["actor_id"], e["to_state"], e["note"]) for e in before]
    response = await client.call("GET", "/api/crews", token=token)
    assert response.code == 200
    assert {c["crew_id"] for c in orjson.loads(response.body)["crews"]} >= {f"C{i:02d}" for i in range(1, 22)}


@pytest.mark.integration
def test_rows_the_record_refuses_or_already_holds_otherwise_make_the_counts_differ(old_redis, old, database_url):
    plate = orjson.loads(old.hget("fleet:vehicles", "V07"))["plate"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        # another vehicle has V07's plate; the new version, started first, created its own admin
        conn.execute("INSERT INTO vehicles (vehicle_id, plate, kind, source, updated_at, updated_by)"
                     " VALUES ('X99', %s, 'repair', 'admin', now(), 'admin')", (plate,))
        conn.execute("INSERT INTO accounts (name, role, password_hash) VALUES ('admin', 'admin', %s)",
                     (hash_password("another-pass-1"),))
    status, out, err = run(old_redis, database_url)
    assert status == 1
    assert out.splitlines()[-1] == "counts differ: vehicles, crews, accounts"  # C07 holds V07: refused too
    assert "vehicles: not in PostgreSQL as in Redis: V07\n" in err  # a conflict: skipped
    assert "crews: C07: not copied (insert or update on table \"crews\" violates foreign key" in err
    assert "accounts: not in PostgreSQL as in Redis: admin\n" in err
    with psycopg.connect(database_url) as conn:  # kept as it was
        assert verify_password("another-pass-1", conn.execute(
            "SELECT password_hash FROM accounts WHERE name = 'admin'").fetchone()[0])
    assert counts(database_url)["tickets"] == 33  # the other areas are copied


@pytest.mark.integration
def test_a_ticket_the_record_refuses_leaves_the_others_of_its_batch_copied(old_redis, old, database_url):
    bad = {**orjson.loads(old.get("tkt:GD20261207-0001")), "number": "GD20261208-0001", "lat": 95.0}
    old.set("tkt:GD20261208-0001", orjson.dumps(bad))  # the table's CHECK refuses the latitude
    try:
        status, out, err = run(old_redis, database_url)
    finally:
        old.delete("tkt:GD20261208-0001")
    assert status == 1 and out.splitlines()[-1] == "counts differ: tickets"
    assert 'tickets: GD20261208-0001: not copied (new row for relation "tickets" violates check constraint' in err
    rows = counts(database_url)
    assert rows["tickets"] == 33
    assert rows["ticket_events"] == sum(old.xlen(f"tkt:{n}:events") for n in numbers(old))


@pytest.mark.integration
def test_the_command_uses_redis_url_and_database_url(old_redis, database_url, tmp_path):
    env = {**os.environ, "REDIS_URL": old_redis, "DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "var"),
           "CONFIG_FILE": str(tmp_path / "absent.toml"), "MQTT_URL": ""}
    done = subprocess.run([sys.executable, "-m", "center", "migrate-redis"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tickets: 33/33 read" in done.stderr and "accounts: 26 in Redis, 26 rows written" in done.stderr
    assert done.stdout.splitlines()[-1] == "every record of Redis is in PostgreSQL; the Redis data was left as it was"
    assert redis.Redis.from_url(old_redis).exists("tkt:GD20261207-0001", "user:agent") == 2  # nothing deleted


@pytest.mark.integration
def test_a_redis_without_the_old_record_is_said_to_be_one(redis_url, database_url):
    status, out, _err = run(redis_url, database_url)  # the session's Redis: live state only
    assert status == 0 and out.splitlines()[-1].startswith("this Redis holds no record of a Redis-only installation")
