"""Reports (issues 8, 22) against a real PostgreSQL and Redis: the live KpiService (facts in
PostgreSQL, fed by tkt:changes) equals the rebuild from the audit events alone — in process,
through `python -m center kpi`, and on the demo's own data; after a Redis wipe and after the facts
are dropped; year and range reports add up to their months and days; the report API with its
filters, errors and roles; the drill-down; and the CSV/XLSX exports, opened with csv/openpyxl,
holding the API report's numbers with masked phones.

Floats are compared after rounding to 9 significant digits: the two paths sum the same durations
in a different row order, which may change a mean's last bit and nothing else. The app and the day
of tickets: tests/reporting.py (the `reports_app` fixture)."""
from __future__ import annotations

import asyncio
import dataclasses
import csv
import io
import json
import os
import signal
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import openpyxl
import orjson
import psutil
import pytest
import redis as redis_sync

from servers.embedded import free_port, start_redis
from store.live import Store
from store.tickets import TicketStore
from store.ticket_publish import CHANGES_STREAM
from gis.lookup import SpatialLookup
from services.kpi_query import parse_query, report_payload
from services.kpi_service import KpiService, KpiUnavailable
from services.tickets import TicketManager
from tests.conftest import T0, Clock, wait_for
from tests.procs import start_demo, walk_a_ticket
from tests.reporting import (
    DISPATCHER, EAST, M, QUERIES, WEST, Driver, as_args, crew, drive_story, kpi_command, rebuilt, rounded,
)
from web.report_export import minutes, percent

pytestmark = [pytest.mark.integration]  # async tests run in asyncio mode "auto" (pytest.ini)
# ---------------------------------------------------------------------------- incremental = rebuild

async def test_the_live_service_equals_the_rebuild_and_the_kpi_command(reports_app, tmp_path):
    numbers = await drive_story(reports_app.driver)
    tz = reports_app.settings.zone
    for query in QUERIES:
        live = await reports_app.get(f"/api/reports/kpi?{query}")
        assert rounded(live) == rounded(rebuilt(reports_app.database_url, as_args(query), tz)), query
    # a second service started now sweeps (nothing to fold) and reads the same facts; same reports
    late = KpiService(reports_app.store.db, reports_app.store.redis, tz=tz)
    await late.start()
    try:
        for query in QUERIES:
            q = parse_query(as_args(query).get, today=T0.date())
            assert rounded(await report_payload(late, q, tz)) == rounded(await report_payload(reports_app.kpi, q, tz)), query
    finally:
        await late.stop()
    # and the command, a real process reading the events alone
    command = kpi_command(reports_app.database_url, reports_app.redis_url, tmp_path / "var", "--period", "month",
                          "--date", "2026-11-22")
    assert rounded(command) == rounded(await reports_app.get("/api/reports/kpi?period=month&date=2026-11-22"))
    filtered = kpi_command(reports_app.database_url, reports_app.redis_url, tmp_path / "var", "--period", "day",
                           "--date", "2026-11-22", "--district", "D2")
    assert rounded(filtered) == rounded(await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22&district=D2"))

    # the story's known numbers (days in Asia/Shanghai: "yesterday" counts on the 21st, resolved on the 22nd)
    day = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22"))["report"]
    assert day["period_start"] == "2026-11-22T00:00:00+08:00" and day["period_end"] == "2026-11-23T00:00:00+08:00"
    assert day["volume"]["tickets"] == 6 and day["volume"]["resolved"] == 4
    assert day["volume"]["by_category"] == {"water": 1, "power": 4, "gas": 0, "heating": 0, "drainage": 1,
                                            "sanitation": 0, "other": 0}
    assert day["volume"]["by_district"] == {"D1": 3, "D2": 3} and day["volume"]["by_hour"][10] == 4
    assert (day["intake"]["repeat_tickets"], day["intake"]["orange_tickets"], day["intake"]["cancelled_tickets"],
            day["intake"]["closed_on_call_tickets"], day["intake"]["transferred_tickets"]) == (1, 1, 1, 1, 1)
    assert (day["quality"]["first_time_fix"], day["quality"]["reopened"], day["quality"]["satisfied"],
            day["quality"]["basically_satisfied"]) == (3, 1, 1, 1)  # the answered call is fixed first time too
    # arrival (dispatch → first arrival): 28 min by GPS; 58 min by the button after a decline and re-dispatch
    assert day["times"]["arrival_time_s_count"] == 2 and day["times"]["arrival_time_s_median"] == 43 * 60
    assert {r["unit_id"] for r in day["rankings"]["unit"]} >= {"PWR01", "WAT01", "PWR02"}
    yesterday = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-21"))["report"]
    assert (yesterday["volume"]["tickets"], yesterday["volume"]["resolved"]) == (1, 0)
    month = (await reports_app.get("/api/reports/kpi?period=month&date=2026-11-05"))["report"]
    assert month["volume"]["tickets"] == 7 and len(month["series"]) == 30
    assert numbers["yesterday"] in [t["number"] for t in (await reports_app.get(
        "/api/reports/drill?period=day&date=2026-11-22&metric=resolved&limit=500"))["tickets"]]


async def test_a_report_right_after_a_write_includes_it_and_repeated_reads_count_once(reports_app):
    before = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22"))["report"]["volume"]["tickets"]
    number = await reports_app.driver.call(T0 + 5 * M, EAST)
    after = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22"))["report"]
    assert after["volume"]["tickets"] == before + 1
    await reports_app.driver.step(3, number, "dispatch", DISPATCHER, crew_id="C01")
    for _ in range(3):  # catching up again and again applies each event once
        report = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22"))["report"]
        assert (report["volume"]["tickets"], report["times"]["dispatch_time_s_count"]) == (before + 1, 1)
    assert report["times"]["dispatch_time_s_mean"] == 180.0
    await wait_for(lambda: reports_app.kpi.counters["changes_read"] >= 2)  # two writes: the call, the dispatch
    stats = reports_app.kpi.stats()
    assert stats["ready"] and stats["events_applied"] == 3  # create, link_incident, dispatch: each once


async def test_writes_between_the_sweep_and_the_follow_are_neither_missed_nor_counted_twice(reports_app):
    tz = reports_app.settings.zone
    # 40 minutes apart: six separate calls (each its own incident), each dispatched on its own
    numbers = [await reports_app.driver.call(T0 + i * 40 * M, EAST if i % 2 else WEST, phone=f"1390000{i:04d}") for i in range(6)]
    await reports_app.kpi.facts.forget()  # the new service folds every ticket again while they change
    service = KpiService(reports_app.store.db, reports_app.store.redis, tz=tz, batch=2)  # small batches: many sweep and XREAD rounds
    started = asyncio.create_task(service.start())
    for number in numbers:  # written while the rebuild may be running
        await reports_app.driver.step(1, number, "dispatch", DISPATCHER, crew_id="C01")
    await started
    try:
        for number in numbers[:3]:
            await reports_app.driver.step(1, number, "accept", crew("C01"))
        query = parse_query(as_args("period=day&date=2026-11-22").get, today=T0.date())
        live = await report_payload(service, query, tz)
        assert rounded(live) == rounded(rebuilt(reports_app.database_url, as_args("period=day&date=2026-11-22"), tz))
        assert live["report"]["times"]["dispatch_time_s_count"] == 6
        assert live["report"]["times"]["acceptance_time_s_count"] == 3
    finally:
        await service.stop()


async def test_a_background_sweep_answers_when_ready_and_names_its_progress_before(reports_app):
    tz = reports_app.settings.zone
    numbers = [await reports_app.driver.call(T0 + i * M, EAST if i % 2 else WEST, phone=f"1391000{i:04d}") for i in range(4)]
    await reports_app.kpi.facts.forget()
    query = parse_query(as_args("period=day&date=2026-11-22").get, today=T0.date())
    impatient = KpiService(reports_app.store.db, reports_app.store.redis, tz=tz, batch=1, ready_timeout_s=0.0)
    impatient._progress = 2  # as the sweep reports it between two batches
    with pytest.raises(KpiUnavailable, match="2 tickets so far"):
        await impatient.current()
    service = KpiService(reports_app.store.db, reports_app.store.redis, tz=tz, batch=1)
    await service.start(wait=False)  # returns at once: the web process serves while it sweeps
    try:
        await reports_app.driver.step(1, numbers[0], "dispatch", DISPATCHER, crew_id="C01")
        live = await report_payload(service, query, tz)  # waits for the sweep, then catches up
        assert rounded(live) == rounded(rebuilt(reports_app.database_url, as_args("period=day&date=2026-11-22"), tz))
        assert live["report"]["times"]["dispatch_time_s_count"] == 1 and service.stats()["ready"]
    finally:
        await service.stop()


async def test_an_unreadable_audit_event_is_logged_counted_and_skipped(reports_app):
    number = await reports_app.driver.call(T0, EAST)
    await reports_app.store.db.execute("INSERT INTO ticket_events (number, at, action, event)"
                                       " VALUES (%s, now(), 'note', '\"not an event\"'::jsonb)", (number,))
    await reports_app.store.redis.xadd(CHANGES_STREAM, {"number": number, "version": "9", "action": "note", "state": "new"})
    await reports_app.driver.step(2, number, "dispatch", DISPATCHER, crew_id="C01")
    report = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22"))["report"]
    assert report["volume"]["tickets"] == 1 and report["times"]["dispatch_time_s_mean"] == 120.0
    assert reports_app.kpi.counters["bad_events"] == 1


async def test_the_service_survives_redis_going_away_and_loses_nothing_when_it_comes_back_empty(
        tmp_path, city, database_url):
    port = free_port()
    redis_proc = start_redis(tmp_path / "r", port=port)
    url = f"redis://127.0.0.1:{port}/0"
    # Redis errors reach the KPI service after ~1 s of retries (a web request's client waits 5 s)
    store = Store.from_url(url, database_url, patience_s=1.0)
    clock = Clock(T0)
    tickets = TicketStore(store.db, store.redis)
    driver = Driver(TicketManager(tickets, SpatialLookup(city), clock=clock), clock)
    kpi = KpiService(store.db, store.redis, block_ms=100, retry_s=0.1)
    await kpi.start()
    day = as_args("period=day&date=2026-11-22")
    query = parse_query(day.get, today=T0.date())

    async def tickets_now() -> int:
        return (await report_payload(kpi, query, kpi.tz))["report"]["volume"]["tickets"]

    try:
        await driver.call(T0, EAST)
        assert await tickets_now() == 1
        os.kill(redis_proc.process.pid, signal.SIGKILL)
        redis_proc.process.wait(10)
        await wait_for(lambda: kpi.counters["redis_errors"] > 0)
        assert await tickets_now() == 1  # Redis away: the facts are in PostgreSQL, no exception
        redis_proc = start_redis(tmp_path / "r", port=port)  # the same AOF
        await wait_for(lambda: _pingable(store))
        await driver.call(T0 + 10 * M, WEST, phone="13911112222")
        await wait_for(lambda: kpi.counters["changes_read"] >= 1)  # following the stream again
        assert await tickets_now() == 2
        # Redis comes back without its data (a new, empty one): nothing of the KPIs was kept there
        errors = kpi.counters["redis_errors"]
        os.kill(redis_proc.process.pid, signal.SIGKILL)
        redis_proc.process.wait(10)
        await wait_for(lambda: kpi.counters["redis_errors"] > errors)
        redis_proc = start_redis(tmp_path / "r2", port=port)
        await wait_for(lambda: _pingable(store))
        assert await tickets_now() == 2
        await driver.call(T0 + 20 * M, EAST, phone="13911113333")
        live = await report_payload(kpi, query, kpi.tz)
        assert live["report"]["volume"]["tickets"] == 3
        assert rounded(live) == rounded(rebuilt(database_url, day, kpi.tz))
    finally:
        await kpi.stop()
        await store.close()
        redis_proc.stop()


async def _pingable(store: Store) -> bool:
    try:
        return await store.redis.ping()
    except Exception:
        return False


# ---------------------------------------------------------------------------- API: filters, errors, roles

async def test_filters_select_the_report_and_are_echoed(reports_app):
    await drive_story(reports_app.driver)
    whole = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22"))["report"]
    power = await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22&category=power")
    assert power["period"] == {"kind": "day", "date": "2026-11-22", "start": "2026-11-22T00:00:00+08:00",
                               "end": "2026-11-23T00:00:00+08:00"}
    assert power["report"]["filters"] == {"category": "power", "district": None, "unit": None}
    assert power["report"]["volume"]["tickets"] == whole["volume"]["by_category"]["power"] == 4
    west = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22&district=D2"))["report"]
    assert west["volume"]["tickets"] == whole["volume"]["by_district"]["D2"]
    units = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22&unit=PWR01,WAT01"))["report"]
    assert units["filters"]["unit"] == ["PWR01", "WAT01"]
    assert units["volume"]["tickets"] == whole["volume"]["by_unit"]["PWR01"] + whole["volume"]["by_unit"]["WAT01"]
    unknown = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22&district=D9"))["report"]
    assert unknown["volume"]["tickets"] == 0
    week = await reports_app.get("/api/reports/kpi?period=week&date=2026-11-22")  # a Sunday: the week began on Monday the 16th
    assert (week["period"]["start"], week["period"]["end"]) == (
        "2026-11-16T00:00:00+08:00", "2026-11-23T00:00:00+08:00")


@pytest.mark.parametrize("path, field", [
    ("/api/reports/kpi?period=decade", "period"),
    ("/api/reports/kpi?period=range&from=2026-11-20", "to"), ("/api/reports/kpi?from=2026-11-22&to=2026-11-20", "to"),
    ("/api/reports/kpi?period=range&from=2020-01-01&to=2026-11-20", "to"),
    ("/api/reports/kpi?from=2026-13-01&to=2026-12-01", "from"),
    ("/api/reports/kpi?period=day&date=2026-13-01", "date"),
    ("/api/reports/kpi?date=1800-01-01", "date"),
    ("/api/reports/kpi?category=electricity", "category"),
    ("/api/reports/kpi?district=D1;DROP", "district"),
    ("/api/reports/drill?metric=nope", "metric"),
    ("/api/reports/drill?metric=created&group=street&key=S1", "group"),
    ("/api/reports/drill?metric=created&group=hour&key=24", "key"),
    ("/api/reports/drill?metric=created&group=district", "key"),
    ("/api/reports/drill?metric=created&limit=0", "limit"),
    ("/api/reports/drill?metric=created&offset=x", "offset"),
    ("/api/reports/export?format=pdf", "format"),
])
async def test_bad_arguments_are_a_400_naming_the_field_and_counted(reports_app, path, field):
    body = await reports_app.get(path, expect=400)
    assert body["error"]["code"] == "validation_error" and body["error"]["field"] == field
    assert reports_app.kpi.counters["bad_request:validation_error"] == 1


@pytest.mark.parametrize("user, status", [("supervisor", 200), ("admin", 200), ("dispatcher", 200),
                                          ("agent", 403), ("crew", 403), (None, 401)])
async def test_only_supervisors_admins_and_dispatchers_read_reports(reports_app, user, status):
    for path in ("/api/reports/kpi", "/api/reports/drill?metric=created", "/api/reports/export?format=csv"):
        response = await reports_app.fetch(path, user)
        assert response.code == status, (path, user, response.body[:200])
        if status != 200:
            assert orjson.loads(response.body)["error"]["code"] == ("forbidden" if status == 403 else "unauthenticated")
    page = await reports_app.fetch("/reports", user)
    if user is None:
        assert page.code == 302 and page.headers["Location"].startswith("/login")
    else:
        assert page.code == status
        if status == 200:
            assert "vendor/echarts/echarts.min.js" in page.body.decode() and "日报" in page.body.decode()


async def test_reports_answer_503_without_a_kpi_service(reports_app):
    services = reports_app.web_settings["services"]
    reports_app.web_settings["services"] = dataclasses.replace(services, kpi=None)
    try:
        body = await reports_app.get("/api/reports/kpi", expect=503)
        assert body["error"]["code"] == "kpi_unavailable"
    finally:
        reports_app.web_settings["services"] = services
    assert (await reports_app.get("/api/reports/kpi"))["report"]["volume"]["tickets"] == 0


# ---------------------------------------------------------------------------- drill-down

async def test_every_number_opens_the_tickets_behind_it_with_masked_phones(reports_app):
    n = await drive_story(reports_app.driver)
    base = "/api/reports/drill?period=day&date=2026-11-22"
    east = await reports_app.get(f"{base}&metric=created&group=district&key=D1")
    assert sorted(t["number"] for t in east["tickets"]) == sorted([n["east_fixed"], n["answered"], n["transferred"]])
    assert east["total"] == 3 and east["group"] == "district" and east["key"] == "D1"
    row = next(t for t in east["tickets"] if t["number"] == n["east_fixed"])
    assert (row["created"], row["category"], row["district"], row["unit"], row["crew"], row["state"]) == (
        "2026-11-22T02:00:00Z", "power", "D1", "PWR01", "C01", "closed")
    assert row["phone"] == "139****1111"
    reopened = await reports_app.get(f"{base}&metric=reopened")
    assert [t["number"] for t in reopened["tickets"]] == [n["west_rework"]]
    hour = await reports_app.get(f"{base}&metric=created&group=hour&key=10")
    assert hour["total"] == 4
    report = (await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22"))["report"]
    for row in report["rankings"]["unit"] + report["rankings"]["crew"]:  # each count: its drill metric and group
        for field, metric in report["drill_metrics"].items():
            if field.endswith("_mean"):
                continue  # a mean opens the tickets it averages, checked below
            group = f"group={row['drill']['group_by']}&key={row['drill']['group']}"
            drilled = await reports_app.get(f"{base}&metric={metric}&{group}")
            assert drilled["total"] == row[field], (row["drill"], field)
    arrivals = await reports_app.get(f"{base}&metric=arrival_time_s")
    assert arrivals["total"] == report["times"]["arrival_time_s_count"] == 2
    first = await reports_app.get(f"{base}&metric=created&limit=2")
    second = await reports_app.get(f"{base}&metric=created&limit=2&offset=2")
    assert first["total"] == second["total"] == 6 and len(first["tickets"]) == len(second["tickets"]) == 2
    created = [t["created"] for t in first["tickets"] + second["tickets"]]
    assert created == sorted(created, reverse=True)  # newest first, pages continue
    assert not {t["number"] for t in first["tickets"]} & {t["number"] for t in second["tickets"]}
    everything = json.dumps(await reports_app.get(f"{base}&metric=created&limit=500"))
    assert "1390000" not in everything and "****" in everything


# ---------------------------------------------------------------------------- exports

def csv_sections(data: bytes) -> dict[str, list[list[str]]]:
    """The CSV export's sections by title: header row then data rows."""
    assert data.startswith("\ufeff".encode())
    sections, title = {}, None
    for row in csv.reader(io.StringIO(data.decode("utf-8-sig"))):
        if row and row[0].startswith("【"):
            title = row[0].strip("【】")
            sections[title] = []
        elif row and title is not None:
            sections[title].append(row)
        elif not row:
            title = None
    return sections


def xlsx_sections(data: bytes) -> dict[str, list[list]]:
    """The XLSX export's sheets by name: header row then data rows (the summary's title lines skipped)."""
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    out = {}
    for sheet in book.worksheets:
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
        start = next(i for i, r in enumerate(rows) if r and r[0] in ("指标", "日期", "小时", "渠道", "类别", "类型", "区",
                                                                      "责任单位", "环节", "维度", "名次", "工单号"))
        out[sheet.title] = rows[start:]
    book.close()
    return out


def number(cell) -> float | None:
    """A CSV/XLSX cell as a number (None for an empty cell)."""
    if cell in (None, ""):
        return None
    return float(cell)


def check_export(sections: dict, report: dict, tickets: set[str]) -> None:
    """The export's numbers equal the API report's (durations in minutes, rates in %)."""
    summary = {row[0]: (number(row[1]), row[2]) for row in sections["汇总"][1:]}
    assert summary["受理工单"] == (report["volume"]["tickets"], "张")
    assert summary["办结工单"] == (report["volume"]["resolved"], "张")
    assert summary["平均到位时间"] == (minutes(report["times"]["arrival_time_s_mean"]), "分钟")
    assert summary["满意率"] == (percent(report["quality"]["satisfaction_rate"]), "%")
    assert summary["一次修复率"] == (percent(report["quality"]["first_time_fix_rate"]), "%")
    assert summary["110联动"] == (report["intake"]["police_linkage_count"], "次")
    assert sections["按类别"][0] == ["类别", "受理(张)"]
    labels = {"供水": "water", "供电": "power", "燃气": "gas", "供热": "heating", "排水": "drainage", "环卫": "sanitation",
              "其他": "other"}
    assert {labels[r[0]]: number(r[1]) for r in sections["按类别"][1:]} == report["volume"]["by_category"]
    assert {r[0].split(" ")[0]: number(r[1]) for r in sections["按区"][1:]} == report["volume"]["by_district"]
    times = {r[0]: [number(c) for c in r[1:]] for r in sections["环节时长"][1:]}
    t = report["times"]
    assert times["到位时间"] == [t["arrival_time_s_count"], minutes(t["arrival_time_s_mean"]),
                              minutes(t["arrival_time_s_median"]), minutes(t["arrival_time_s_p90"])]
    assert sections["环节时长"][0] == ["环节", "样本数(张)", "平均(分钟)", "中位数(分钟)", "P90(分钟)"]
    on_time = {r[0]: [number(c) for c in r[1:]] for r in sections["准时率"][1:]}
    o = report["on_time"]
    assert on_time["办结"] == [o["resolve_on_time_due"], o["resolve_on_time_met"], percent(o["resolve_on_time_rate"])]
    ranking = sections["责任单位排名"]
    assert ranking[0][:5] == ["名次", "责任单位", "受理(张)", "办结(张)", "平均到位时间(分钟)"]
    for row, want in zip(ranking[1:], report["rankings"]["unit"]):
        assert row[1].split(" ")[0] == want["unit_id"]
        assert [number(c) for c in (row[0], row[2], row[3], row[4])] == [
            want["rank"], want["tickets"], want["resolved"], minutes(want["arrival_time_s_mean"])]
    assert len(ranking) - 1 == len(report["rankings"]["unit"])
    listed = sections["工单明细"]
    assert listed[0][-1] == "来电号码(脱敏)"
    assert {r[0] for r in listed[1:]} == tickets
    assert all(r[-1] is None or r[-1] == "" or "****" in r[-1] for r in listed[1:])


async def test_csv_and_xlsx_exports_hold_the_reports_numbers_with_masked_phones(reports_app):
    await drive_story(reports_app.driver)
    for query in ("period=day&date=2026-11-22", "period=month&date=2026-11-22&category=power"):
        report = (await reports_app.get(f"/api/reports/kpi?{query}"))["report"]
        created = await reports_app.get(f"/api/reports/drill?{query}&metric=created&limit=500")
        resolved = await reports_app.get(f"/api/reports/drill?{query}&metric=resolved&limit=500")
        tickets = {t["number"] for t in created["tickets"] + resolved["tickets"]}
        assert tickets
        for kind in ("csv", "xlsx"):
            response = await reports_app.fetch(f"/api/reports/export?{query}&format={kind}")
            assert response.code == 200, response.body[:300]
            disposition = response.headers["Content-Disposition"]
            assert disposition.startswith("attachment; filename=\"kpi-") and "filename*=UTF-8''" in disposition
            name = unquote(disposition.split("filename*=UTF-8''")[1])
            assert name.startswith("调度指挥中心") and name.endswith(f".{kind}")
            data = response.body
            for raw in ("13900001111", "13900002222", "13812341234"):  # never a raw number anywhere in the file
                assert raw.encode() not in data
            sections = csv_sections(data) if kind == "csv" else xlsx_sections(data)
            check_export(sections, report, tickets)
            if kind == "xlsx":
                assert response.headers["Content-Type"].startswith("application/vnd.openxmlformats")
                assert all(str(c).count("1390000") == 0 for rows in sections.values() for r in rows for c in r if c)
    month = (await reports_app.get("/api/reports/kpi?period=month&date=2026-11-22"))["report"]
    names = csv_sections((await reports_app.fetch("/api/reports/export?period=month&date=2026-11-22&format=csv")).body)
    assert any(r[0] == "D1 东区" for r in names["按区"]) and month["volume"]["by_district"]["D1"] >= 1


# ---------------------------------------------------------------------------- the demo's own data

def _children(demo, name: str) -> list[psutil.Process]:
    return [p for p in demo.tree() if p.pid != demo.process.pid and name in " ".join(p.cmdline())]


@pytest.mark.process
@pytest.mark.timeout(420)
def test_on_the_demo_data_the_live_report_equals_the_rebuild_command(tmp_path):
    demo = start_demo(tmp_path / "var", tmp_path / "demo.log", vehicles=8, ready_timeout=180,
                      SIM_SPEEDUP="200", SIM_CALLS_PER_DAY="1000", SIM_SCENARIO="main_burst",
                      SIM_SCENARIO_AFTER_S="5", SENSOR_CHECK_S="1")
    frozen: list[psutil.Process] = []
    try:
        token = demo.login("supervisor")
        walk_a_ticket(demo.base)
        today = datetime.now(timezone.utc).astimezone(timezone(timedelta(hours=8))).date().isoformat()
        query = f"period=month&date={today}"
        report = demo.get(f"/api/reports/kpi?{query}", token)["report"]
        assert report["volume"]["resolved"] >= 2 and report["quality"]["callback_done"] >= 1, report["quality"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and report["volume"]["tickets"] < 20:  # calls, the burst, 110
            time.sleep(2)
            report = demo.get(f"/api/reports/kpi?{query}", token)["report"]
        # hold the writers still (SIGSTOP, resumed below) so both paths read the same streams
        for name in ("simulate", "dispatch"):
            for proc in _children(demo, f"center {name}"):
                proc.suspend()
                frozen.append(proc)
        servers = json.loads((demo.data_dir / "run" / "servers.json").read_text())
        client = redis_sync.Redis.from_url(servers["redis_url"])
        try:
            for _ in range(20):
                tail = client.xrevrange(CHANGES_STREAM, count=1)
                live = demo.get(f"/api/reports/kpi?{query}", token)
                command = kpi_command(servers["database_url"], servers["redis_url"], demo.data_dir, "--period",
                                      "month", "--date", today)
                day = demo.get(f"/api/reports/kpi?period=day&date={today}", token)
                day_command = kpi_command(servers["database_url"], servers["redis_url"], demo.data_dir, "--period",
                                          "day", "--date", today)
                if client.xrevrange(CHANGES_STREAM, count=1) == tail and rounded(live) == rounded(command) \
                        and rounded(day) == rounded(day_command):
                    break
                # a request in flight wrote meanwhile, or the live service is still folding the
                # latest committed changes (a busy machine): read both again
                time.sleep(1)
        finally:
            client.close()
        assert live["report"]["volume"]["tickets"] >= 20 and live["report"]["volume"]["resolved"] >= 2
        assert rounded(live) == rounded(command)
        assert rounded(day) == rounded(day_command)
    finally:
        for proc in frozen:
            proc.resume()
        demo.stop()


async def test_report_responses_match_the_openapi_document(reports_app):
    from tests.openapi_check import validate

    await drive_story(reports_app.driver)
    document = orjson.loads((await reports_app.fetch("/api/openapi.json", None)).body)
    for path, status in (("/api/reports/kpi?period=week&date=2026-11-22", 200),
                         ("/api/reports/drill?period=day&date=2026-11-22&metric=created&group=hour&key=10", 200),
                         ("/api/reports/kpi?period=year&date=2026-11-22", 200),
                         ("/api/reports/kpi?period=range&from=2026-11-20&to=2026-11-22", 200),
                         ("/api/reports/kpi?period=decade", 400)):
        response = await reports_app.fetch(path)
        assert response.code == status
        validate(document, "GET", path.split("?")[0], status, orjson.loads(response.body))
    assert "/api/reports/export" in document["paths"]
