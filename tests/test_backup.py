"""Backup and restore of the record (issue #22), with the real commands on real servers.

Tickets and their timelines are made through the real TicketManager and TicketStore on the
session's PostgreSQL; ``python -m center backup`` dumps it; ``python -m center restore`` loads
the dump into a new, empty embedded server. Every ticket, every timeline and the KPI report
computed from the restored record are identical. A second restore onto the data is refused
unless --force, and the refusal changes nothing.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from store import backup

from servers import postgres as pg_server
from store.db import Database, migrate
from servers.embedded import free_port
from store.tickets import TicketStore
from command.ticket_model import Actor, Role
from services.kpi_query import parse_query, report_payload
from services.kpi_service import KpiService
from services.tickets import TicketManager
from tests.conftest import Clock, ROOT, sibling_database, test_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
M = timedelta(minutes=1)
AGENT, DISPATCHER = Actor("agent", Role.AGENT), Actor("dispatcher", Role.DISPATCHER)
CUT = "2026-11-22"


def _crew(crew_id: str) -> Actor:
    return Actor(f"crew-{crew_id}", Role.CREW, crew_id)


async def _make_day(manager: TicketManager, clock: Clock) -> list[str]:
    """A day of tickets through their lifecycle: resolved and closed, cancelled, answered at once,
    a reopened one and some still open; the numbers made."""
    numbers = []

    async def act(number: str, action: str, actor: Actor, **args) -> None:
        clock.now += 3 * M
        await manager.act(number, action, args, actor, expected_version=None)

    for i in range(12):
        clock.now = T0 + i * 7 * M
        answer = "可在网上营业厅缴纳" if i == 5 else None
        result = await manager.create({
            "channel": "phone", "category": ("water", "power", "gas")[i % 3],
            "type": "consultation" if i == 5 else "repair", "urgency": "emergency" if i == 2 else "normal",
            "description": f"备份测试 {i}", "caller_phone": f"139000{i:05d}", "lon": 119.70 + i * 0.01, "lat": 36.36,
        }, AGENT, link=False, answer=answer)
        number = result.record.ticket.number
        numbers.append(number)
        if i in (5, 11):
            continue
        if i == 9:
            await act(number, "cancel", DISPATCHER, reason="重复工单")
            continue
        crew = f"C0{i % 3 + 1}"
        await act(number, "dispatch", DISPATCHER, crew_id=crew)
        if i == 10:
            continue
        for action in ("accept", "depart", "arrive"):
            await act(number, action, _crew(crew))
        await act(number, "resolve", _crew(crew), resolution="已修复")
        clock.now += 30 * M
        await manager.callback(number, "dissatisfied" if i == 4 else "satisfied", AGENT, expected_version=None)
    return numbers


async def _record(url: str, redis_client, numbers: list[str]) -> dict[str, tuple]:
    """Every ticket as stored and its whole timeline, read through the TicketStore."""
    db = Database(url, max_size=2)
    try:
        store = TicketStore(db, redis_client)
        return {number: ((await store.get(number)).ticket, await store.events(number)) for number in numbers}
    finally:
        await db.close()


async def _reports(url: str, redis_client) -> dict[str, dict]:
    """The day's and the month's KPI reports as GET /api/reports/kpi answers them (KpiService)."""
    db = Database(url, max_size=2)
    kpi = KpiService(db, redis_client)
    try:
        await kpi.start()
        return {period: await report_payload(kpi, parse_query({"period": period, "date": CUT}.get,
                                                               today=T0.date()), kpi.tz)
                for period in ("day", "month")}
    finally:
        await kpi.stop()
        await db.close()


def _center(command: str, *args: str, database_url: str, data_dir) -> subprocess.CompletedProcess:
    """``python -m center <command> <args>`` as a real process on the given database."""
    env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir),
           "CONFIG_FILE": str(data_dir / "absent.toml"), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "center", command, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_a_restored_backup_has_identical_tickets_timelines_and_reports(tmp_path, redis_url, database_url):
    client = aioredis.from_url(redis_url, decode_responses=True)
    source_db = Database(database_url)
    restored_server = None
    try:
        clock = Clock(T0)
        numbers = await _make_day(TicketManager(TicketStore(source_db, client), None, clock=clock), clock)
        await source_db.close()
        original = await _record(database_url, client, numbers)
        assert sum(len(timeline) for _, timeline in original.values()) > 60  # the day is not trivial
        reports = await _reports(database_url, client)
        assert reports["day"]["report"]["volume"]["tickets"] == len(numbers)

        dump = tmp_path / "center.dump"
        made = _center("backup", str(dump), database_url=database_url, data_dir=tmp_path)
        assert made.returncode == 0, made.stderr
        assert 'dumping contents of table "public.tickets"' in made.stdout and "backup done" in made.stdout
        assert dump.is_file() and not dump.with_name("center.dump.partial").exists()

        restored_server, restored_url = pg_server.start(tmp_path / "restored", free_port())  # a new, empty server
        assert backup.table_rows(restored_url) == {}
        loaded = _center("restore", str(dump), database_url=restored_url, data_dir=tmp_path)
        assert loaded.returncode == 0, loaded.stderr
        assert 'processing data for table "public.ticket_events"' in loaded.stdout and "restore done" in loaded.stdout
        assert backup.table_rows(restored_url) == backup.table_rows(database_url)

        await client.flushdb()  # a new installation: its Redis holds nothing yet
        restored = await _record(restored_url, client, numbers)
        assert restored == original  # every ticket as stored, every event with its id, in order
        assert await _reports(restored_url, client) == reports

        refused = _center("restore", str(dump), database_url=restored_url, data_dir=tmp_path)
        assert refused.returncode == 1 and "is not empty" in refused.stderr and "--force" in refused.stderr
        with psycopg.connect(restored_url, autocommit=True) as conn:
            conn.execute("UPDATE tickets SET record = record || '{\"extra\": 1}' WHERE number = %s", (numbers[0],))
        forced = _center("restore", str(dump), "--force", database_url=restored_url, data_dir=tmp_path)
        assert forced.returncode == 0, forced.stderr
        assert "is dropped and made again" in forced.stdout
        assert await _record(restored_url, client, numbers) == original  # the change made after the backup is gone
    finally:
        await source_db.close()
        await client.aclose()
        if restored_server is not None:
            restored_server.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            restored_server.wait(20)


def test_a_restore_that_fails_or_meets_a_connected_session_changes_nothing(tmp_path, database_url):
    url = sibling_database(database_url, "backup")  # no other test's connection blocks a restore there
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:  # data, so that the dump is cut in its data
        conn.execute("INSERT INTO day_sequences (kind, day, last)"
                     " SELECT 'ticket', date '2000-01-01' + i, i FROM generate_series(1, 5000) AS i")
    dump = backup.backup(url, tmp_path / "whole.dump", say=lambda _: None)
    cut = tmp_path / "cut.dump"
    cut.write_bytes(dump.read_bytes()[: dump.stat().st_size * 9 // 10])  # a copy that broke off
    garbage = tmp_path / "not-a-dump"
    garbage.write_bytes(b"PGDMP" + b"\0" * 64)
    before = backup.table_rows(url)
    assert before["day_sequences"] == 5000
    for bad in (cut, garbage):
        with pytest.raises(backup.BackupError, match="nothing was changed"):
            backup.restore(url, bad, force=True, say=lambda _: None)
        assert backup.table_rows(url) == before
    with pytest.raises(backup.BackupError, match="no backup file"):
        backup.restore(url, tmp_path / "absent.dump", say=lambda _: None)
    nothing = test_settings(tmp_path / "empty", DATABASE_URL="")  # no DATABASE_URL, no embedded database
    assert backup.command(nothing, "backup", "") == 1 and not (tmp_path / "empty" / "var").exists()
    with psycopg.connect(url):  # a service still connected
        with pytest.raises(backup.BackupError, match="1 other session"):
            backup.restore(url, dump, force=True, say=lambda _: None)
    assert backup.restore(url, dump, force=True, say=lambda _: None) == before
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(conninfo_to_dict(url)["dbname"])))
