"""Browser test of the report page (报表): a supervisor opens the monthly report in Debian's chromium
against the demo started as real processes; the ECharts canvases draw, the key figures equal the
API's report, a district filter changes them, a ranking number opens its tickets (phones masked),
the Excel export holds the page's numbers, English and the print layout work, and nothing is
logged to the console. A second test chooses a custom range (自定义): the heading and a number follow
it, so do the CSV export, the drill-down and a reload; a reversed or too long range shows its message
without a request; the quick choices (上季度, 今年) and the API's 400 shown readably. Screenshots in
test-artifacts/.

The demo runs without the simulated callers, crew bots, callback desk and scenario, so the month
holds exactly the tickets this test files through the API (repairs in every district, a
consultation answered on the call, a repair walked to its satisfied callback)."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import openpyxl
import pytest

from services.kpi_query import MAX_RANGE_DAYS
from tests.conftest import ARTIFACTS, BROWSER_MARKS, ConsoleWatch, login_page
from tests.pages import file_tickets, loaded
from tests.procs import start_demo, walk_a_ticket

pytestmark = BROWSER_MARKS



@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_city_profile):
    tmp = tmp_path_factory.mktemp("reports-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=4, city=demo_city_profile, SIM_CALLERS="false", SIM_CREWS="false",
                         SIM_CALLBACKS="false", SIM_SCENARIO="")
    yield running
    running.stop()



def _tile(page, name: str) -> str:
    return page.text_content(f"[data-kpi='{name}'] .v")


PAINTED = """ids => ids.map(id => {
  const canvas = document.querySelector('#' + id + ' canvas');
  if (!canvas || !canvas.width || !canvas.height) { return 0; }
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) { if (data[i] > 0) { painted += 1; } }
  return painted;
})"""
CHARTS = ["chart-series", "chart-hour", "chart-category", "chart-district", "chart-times", "chart-ontime"]


def test_supervisor_opens_the_monthly_report_and_its_charts_render(demo, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    walk_a_ticket(demo.base)  # one repair dispatched, resolved and closed by a satisfied callback
    per_district = file_tickets(demo)
    supervisor = demo.login("supervisor")
    today = datetime.now(timezone.utc).astimezone(timezone(timedelta(hours=8))).date().isoformat()
    api = demo.get(f"/api/reports/kpi?period=month&date={today}", supervisor)["report"]
    assert api["volume"]["tickets"] == sum(per_district.values()) + 2 and api["volume"]["resolved"] == 2

    page = browser.new_page(viewport={"width": 1600, "height": 1100}, accept_downloads=True)
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "supervisor", "/reports")
    loaded(page, "period=day")
    assert page.text_content(".topbar strong") == "报表"  # Simplified Chinese by default
    page.click(".tabs [data-kind='month']")
    loaded(page, "period=month")
    assert page.get_attribute(".tabs [data-kind='month']", "aria-selected") == "true"
    assert page.text_content("#r-heading").startswith("调度指挥中心月报")
    page.wait_for_function("() => Number(document.body.dataset.charts || 0) === 6")
    painted = page.evaluate(PAINTED, CHARTS)
    assert all(n > 500 for n in painted), dict(zip(CHARTS, painted))  # every chart drew bars, axes and labels

    # the key figures are the API's, with units
    assert int(_tile(page, "tickets")) == api["volume"]["tickets"]
    assert int(_tile(page, "resolved")) == api["volume"]["resolved"] == 2
    assert page.text_content("[data-kpi='tickets'] .u") == "张"
    assert page.text_content("[data-kpi='arrival'] .u") == "分钟"
    assert float(_tile(page, "satisfaction")) == 100.0 and page.text_content("[data-kpi='satisfaction'] .u") == "%"
    page.screenshot(path=str(ARTIFACTS / "reports-month.png"), full_page=True)

    # the Excel export holds the page's numbers
    with page.expect_download() as download:
        page.click("#r-xlsx")
    name = download.value.suggested_filename
    assert name.startswith("调度指挥中心月报") and name.endswith(".xlsx")
    book = openpyxl.load_workbook(io.BytesIO(Path(download.value.path()).read_bytes()), read_only=True)
    summary = {row[0]: row[1] for row in book["汇总"].iter_rows(values_only=True) if len(row) > 1 and row[0]}
    assert summary["受理工单"] == int(_tile(page, "tickets")) and summary["办结工单"] == int(_tile(page, "resolved"))
    assert summary["满意率"] == float(_tile(page, "satisfaction"))
    book.close()

    # a district filter changes the numbers to that district's
    district = min(per_district, key=lambda k: (per_district[k], k))
    page.select_option("#r-district", district)
    loaded(page, f"district={district}")
    filtered = demo.get(f"/api/reports/kpi?period=month&date={today}&district={district}", supervisor)["report"]
    assert int(_tile(page, "tickets")) == filtered["volume"]["tickets"] < api["volume"]["tickets"]
    assert district in page.text_content("#r-filters")
    page.select_option("#r-district", "")
    loaded(page, f"period=month&date={today}")
    page.wait_for_function("n => document.querySelector(\"[data-kpi='tickets'] .v\").textContent === n",
                           arg=str(api["volume"]["tickets"]))

    # a ranking number opens the tickets behind it, phones masked
    page.click("#t-rank-unit tbody tr:first-child td:nth-child(3) a.drill")
    page.wait_for_selector("#drill:not(.hidden)")
    page.wait_for_function("() => (document.getElementById('drill').dataset.loaded || '').startsWith('created|unit|')")
    rows = page.locator("#drill-table tbody tr")
    assert rows.count() == int(page.text_content("#t-rank-unit tbody tr:first-child td:nth-child(3)"))
    phones = page.locator("#drill-table tbody tr td:last-child").all_text_contents()
    assert phones and all("****" in p for p in phones)
    page.screenshot(path=str(ARTIFACTS / "reports-drill.png"))
    page.click("#drill-close")

    # English on the switch; the print layout hides the controls and keeps the charts
    page.click("[data-lang-toggle]")
    assert page.text_content("#r-heading").startswith("Monthly report")
    assert page.text_content("[data-kpi='tickets'] .u") == "tickets"
    page.click("[data-lang-toggle]")
    page.emulate_media(media="print")
    assert page.locator(".r-controls").is_hidden() and page.locator(".topbar").is_hidden()
    assert page.locator("#chart-series canvas").is_visible()
    page.screenshot(path=str(ARTIFACTS / "reports-print.png"), full_page=True)
    page.emulate_media(media="screen")
    page.close()
    assert watch.errors == []


def _previous_quarter(today: date) -> tuple[str, str]:
    """First and last day of the calendar quarter before the one holding `today`."""
    first_month = (today.month - 1) // 3 * 3 + 1
    start = date(today.year - (first_month == 1), (first_month - 4) % 12 + 1, 1)
    return start.isoformat(), (date(today.year, first_month, 1) - timedelta(days=1)).isoformat()


def _choose_range(page, first: str, last: str) -> None:
    page.fill("#r-from", first)
    page.fill("#r-to", last)
    page.click("#r-apply")


def test_supervisor_chooses_a_date_range_and_its_export_and_drill_follow(demo, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    agent = demo.login("agent")
    demo.post("/api/tickets", agent, {"channel": "phone", "category": "water", "type": "consultation",
                                      "caller_phone": "13900008888", "description": "区间报表测试",
                                      "answer": "已答复", "link": False})  # at least one ticket today
    supervisor = demo.login("supervisor")
    today = datetime.now(timezone.utc).astimezone(timezone(timedelta(hours=8))).date()
    first, yesterday = (today - timedelta(days=40)).isoformat(), (today - timedelta(days=1)).isoformat()

    def api(query: str) -> dict:
        return demo.get(f"/api/reports/kpi?{query}", supervisor)["report"]["volume"]

    page = browser.new_page(viewport={"width": 1600, "height": 1100}, accept_downloads=True)
    watch = ConsoleWatch(page)
    kpi_requests: list[str] = []
    page.on("request", lambda r: kpi_requests.append(r.url) if "/api/reports/kpi" in r.url else None)
    login_page(page, demo.base, "supervisor", "/reports")
    loaded(page, "period=day")
    assert page.is_hidden("#r-range") and page.is_visible("#r-date")

    # 自定义 starts from the period shown (today), then any range of days
    assert page.text_content(".tabs [data-kind='range']") == "自定义"
    page.click(".tabs [data-kind='range']")
    loaded(page, f"period=range&from={today}&to={today}")
    assert page.get_attribute(".tabs [data-kind='range']", "aria-selected") == "true"
    assert page.is_visible("#r-range") and page.is_hidden("#r-date")
    _choose_range(page, first, yesterday)
    loaded(page, f"period=range&from={first}&to={yesterday}")
    assert page.text_content("#r-heading") == f"调度指挥中心区间报表 {first} 至 {yesterday}"
    before = api(f"period=range&from={first}&to={yesterday}")["tickets"]
    assert int(_tile(page, "tickets")) == before
    _choose_range(page, first, today.isoformat())
    loaded(page, f"period=range&from={first}&to={today}")
    assert page.text_content("#r-heading") == f"调度指挥中心区间报表 {first} 至 {today}"
    after = api(f"period=range&from={first}&to={today}")["tickets"]
    assert int(_tile(page, "tickets")) == after > before  # the number changed with the range
    page.screenshot(path=str(ARTIFACTS / "reports-range.png"), full_page=True)

    # the export follows the range
    with page.expect_download() as download:
        page.click("#r-csv")
    assert download.value.suggested_filename.startswith("调度指挥中心区间报表")
    lines = list(csv.reader(io.StringIO(Path(download.value.path()).read_bytes().decode("utf-8-sig"))))
    assert lines[0] == [f"调度指挥中心区间报表 {first} 至 {today}"]
    assert {row[0]: row[1] for row in lines if len(row) > 1}["受理工单"] == str(after)

    # so does the drill-down: the tickets behind the received count
    page.click("[data-kpi='tickets'] a.drill")
    page.wait_for_function("n => (document.getElementById('drill').dataset.loaded || '') === 'created||' + n",
                           arg=after)
    page.click("#drill-close")

    # the URL keeps the choice: a reload shows the same report
    assert f"period=range&from={first}&to={today}" in page.url
    page.reload()
    loaded(page, f"period=range&from={first}&to={today}")
    assert page.input_value("#r-from") == first and page.input_value("#r-to") == today.isoformat()
    assert int(_tile(page, "tickets")) == after

    # a reversed range, or one longer than the API takes: the message, and no request
    asked = len(kpi_requests)
    _choose_range(page, today.isoformat(), first)
    page.wait_for_selector("#r-message:not(.hidden)")
    assert page.text_content("#r-message") == "开始日期不能晚于结束日期。"
    page.click("[data-lang-toggle]")
    assert page.text_content("#r-message") == "The first day must not be after the last day."
    assert page.text_content(".tabs [data-kind='range']") == "Custom"
    page.click("[data-lang-toggle]")
    _choose_range(page, "2000-01-01", today.isoformat())
    assert page.text_content("#r-message") == f"区间最多 {MAX_RANGE_DAYS} 天。"
    assert len(kpi_requests) == asked and f"from={first}&to={today}" in page.url
    page.screenshot(path=str(ARTIFACTS / "reports-range-reversed.png"))

    # quick choices, in the center's zone: last quarter as a range, this year as the yearly report
    page.click("[data-quick='last_quarter']")
    start, end = _previous_quarter(today)
    loaded(page, f"period=range&from={start}&to={end}")
    assert page.is_hidden("#r-message")
    assert page.text_content("#r-heading") == f"调度指挥中心区间报表 {start} 至 {end}"
    assert int(_tile(page, "tickets")) == api(f"period=range&from={start}&to={end}")["tickets"]
    page.click("[data-quick='this_year']")
    loaded(page, f"period=year&date={today}")
    assert page.get_attribute(".tabs [data-kind='year']", "aria-selected") == "true"
    assert int(_tile(page, "tickets")) == api(f"period=year&date={today}")["tickets"]

    # a shared link with a reversed range asks nothing; the API's 400 is shown readably
    asked = len(kpi_requests)
    page.goto(demo.base + f"/reports?period=range&from={today}&to={first}")
    page.wait_for_selector("#r-message:not(.hidden)")
    assert page.text_content("#r-message") == "开始日期不能晚于结束日期。" and len(kpi_requests) == asked
    page.goto(demo.base + "/reports?period=month&category=bogus")
    page.wait_for_selector("#r-message:not(.hidden)")
    assert page.text_content("#r-message").startswith("报表加载失败（类别）：'bogus' is not one of")
    page.close()
    assert [f.split("?")[0] for f in watch.failed] == [f"400 GET {demo.base}/api/reports/kpi"]
    assert all("status of 400" in e for e in watch.errors), watch.errors
