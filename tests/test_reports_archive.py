"""Reports over the archive (issue 22) against a real PostgreSQL and Redis: year and range reports
add up to their months and days and equal the rebuild from the audit events; after FLUSHALL the
reports stay and follow new writes, and after the facts are dropped a fresh KPI service folds them
again from ticket_events to the same reports."""
from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timezone

import pytest

from services.kpi_service import KpiService
from tests.conftest import T0
from tests.reporting import DISPATCHER, EAST, M, QUERIES, WEST, as_args, drive_story, rebuilt, rounded

pytestmark = [pytest.mark.integration]
UTC = timezone.utc
COUNTS = (("volume", "tickets"), ("volume", "resolved"), ("intake", "repeat_tickets"),
          ("intake", "cancelled_tickets"), ("intake", "closed_on_call_tickets"), ("intake", "police_handover_tickets"),
          ("quality", "first_time_fix"), ("quality", "reopened"), ("quality", "callback_due"),
          ("quality", "callback_done"), ("quality", "satisfied"), ("times", "dispatch_time_s_count"),
          ("times", "arrival_time_s_count"), ("times", "resolution_time_s_count"), ("on_time", "arrive_on_time_due"),
          ("on_time", "arrive_on_time_met"), ("on_time", "resolve_on_time_due"), ("on_time", "resolve_on_time_met"))


def counts_of(report: dict) -> Counter:
    """The report's additive numbers (counts over disjoint periods add up; means and medians do not)."""
    out = Counter({f"{section}.{name}": report[section][name] for section, name in COUNTS})
    for group in ("by_channel", "by_category", "by_district", "by_unit"):
        out.update({f"{group}.{key}": value for key, value in report["volume"][group].items()})
    out.update({f"hour.{h}": n for h, n in enumerate(report["volume"]["by_hour"])})
    return +out


async def test_year_and_range_reports_are_the_sums_of_their_months_and_days(reports_app):
    await drive_story(reports_app.driver)  # the 21st and 22nd of November 2026
    for i, at in enumerate((datetime(2026, 1, 15, 3, tzinfo=UTC),
                            datetime(2026, 6, 30, 16, 30, tzinfo=UTC),    # 1 July 00:30 in Shanghai
                            datetime(2026, 12, 31, 15, 20, tzinfo=UTC),   # 31 December 23:20: resolved in 2027
                            datetime(2026, 12, 31, 16, 10, tzinfo=UTC))):  # 1 January 2027 00:10
        number = await reports_app.driver.call(at, EAST if i % 2 else WEST, phone=f"1392000{i:04d}")
        await reports_app.driver.field_work(number, "C01")
    tz = reports_app.settings.zone
    year_query = "period=year&date=2026-05-05"
    year = await reports_app.get(f"/api/reports/kpi?{year_query}")
    assert (year["period"]["start"], year["period"]["end"]) == (
        "2026-01-01T00:00:00+08:00", "2027-01-01T00:00:00+08:00")
    months = [(await reports_app.get(f"/api/reports/kpi?period=month&date=2026-{m:02d}-01"))["report"] for m in range(1, 13)]
    assert counts_of(year["report"]) == sum((counts_of(m) for m in months), Counter())
    assert year["report"]["volume"]["tickets"] == 7 + 3 and year["report"]["volume"]["resolved"] == 4 + 2
    assert len(year["report"]["series"]) == 365
    assert rounded(year) == rounded(rebuilt(reports_app.database_url, as_args(year_query), tz))
    for first, last in (("2026-11-20", "2026-11-23"), ("2026-12-31", "2027-01-01")):
        query = f"period=range&from={first}&to={last}"
        ranged = await reports_app.get(f"/api/reports/kpi?{query}")
        days = [ranged_day["day"] for ranged_day in ranged["report"]["series"]]
        assert days[0] == first and days[-1] == last
        assert ranged["period"]["kind"] == "range"
        assert (ranged["period"]["from"], ranged["period"]["to"]) == (first, last)
        singles = [(await reports_app.get(f"/api/reports/kpi?period=day&date={d}"))["report"] for d in days]
        assert counts_of(ranged["report"]) == sum((counts_of(d) for d in singles), Counter())
        assert rounded(ranged) == rounded(rebuilt(reports_app.database_url, as_args(query), tz))
        assert await reports_app.get(f"/api/reports/kpi?from={first}&to={last}") == ranged  # period=range implied
    boundary = (await reports_app.get("/api/reports/kpi?from=2026-12-31&to=2027-01-01"))["report"]["series"]
    assert [(d["created"], d["resolved"]) for d in boundary] == [(1, 0), (1, 2)]
    total = (await reports_app.get(f"/api/reports/drill?{year_query}&metric=created&limit=3"))["total"]
    assert total == 10


async def test_after_flushall_and_without_facts_a_rebuild_from_postgresql_gives_the_same_reports(reports_app):
    await drive_story(reports_app.driver)
    before = {query: await reports_app.get(f"/api/reports/kpi?{query}") for query in QUERIES}
    await reports_app.store.redis.flushall()  # the change stream and everything else in Redis: gone
    reports_app.tokens.clear()  # the sessions too: everyone logs in again (a process may still hold one briefly)
    for query, report in before.items():
        assert await reports_app.get(f"/api/reports/kpi?{query}") == report, query
    late = await reports_app.driver.call(T0 + 3 * 60 * M, EAST, phone="13930000001")  # the service follows the new stream
    await reports_app.driver.step(2, late, "dispatch", DISPATCHER, crew_id="C01")
    day = await reports_app.get("/api/reports/kpi?period=day&date=2026-11-22")
    assert day["report"]["volume"]["tickets"] == before[QUERIES[0]]["report"]["volume"]["tickets"] + 1
    after = {query: await reports_app.get(f"/api/reports/kpi?{query}") for query in QUERIES}
    # the facts dropped too: a service started now folds every ticket again from ticket_events
    await reports_app.kpi.stop()
    await reports_app.kpi.facts.forget()
    assert (await reports_app.store.db.fetchone("SELECT count(*) AS n FROM kpi_facts"))["n"] == 0
    fresh = KpiService(reports_app.store.db, reports_app.store.redis, tz=reports_app.settings.zone, block_ms=100)
    await fresh.start()
    reports_app.web_settings["services"] = dataclasses.replace(reports_app.web_settings["services"], kpi=fresh)
    try:
        assert fresh.stats()["tickets_folded"] == 8
        for query, report in after.items():
            assert rounded(await reports_app.get(f"/api/reports/kpi?{query}")) == rounded(report), query
            assert rounded(report) == rounded(rebuilt(reports_app.database_url, as_args(query), reports_app.settings.zone)), query
    finally:
        await fresh.stop()
