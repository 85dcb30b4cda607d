"""Browser test of the 单位考核 table on the report page, in Debian's chromium against the demo started
as real processes (no simulated callers, crews, callbacks or scenario: the month holds the tickets
this test files): the table lists the API's unit rows in its order, a count opens exactly the
tickets behind it (phones masked), the English switch names it, and nothing is logged to the
console. A screenshot in test-artifacts/."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.conftest import ARTIFACTS, BROWSER_MARKS, ConsoleWatch, login_page
from tests.pages import file_tickets, loaded

pytestmark = BROWSER_MARKS


def test_the_unit_table_shows_the_apis_rows_and_opens_their_tickets(demo, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    file_tickets(demo)  # repairs in every district: each goes to its station
    supervisor = demo.login("supervisor")
    today = datetime.now(timezone.utc).astimezone(timezone(timedelta(hours=8))).date().isoformat()
    api = demo.get(f"/api/reports/units?period=month&date={today}", supervisor)["units"]
    assert api and {u["level"] for u in api} == {2, 3}  # stations and their departments

    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "supervisor", "/reports")
    loaded(page, "period=day")
    page.click(".tabs [data-kind='month']")
    loaded(page, "period=month")
    page.wait_for_function("n => document.getElementById('units').dataset.rows === n", arg=str(len(api)))
    assert page.text_content("#units h2") == "单位考核"
    lines = page.locator("#t-units tbody tr")
    assert [lines.nth(i).locator("td").nth(2).text_content().split(" ")[0] for i in range(len(api))] == [
        u["unit_id"] for u in api]
    first = api[0]
    cells = lines.nth(0).locator("td")
    assert (cells.nth(0).text_content(), cells.nth(1).text_content()) == ("二级", "1")
    assert float(cells.nth(3).text_content()) == first["score"] and int(cells.nth(4).text_content()) == first["tickets"]

    cells.nth(4).locator("a.unit-drill").click()
    page.wait_for_function("u => (document.getElementById('drill').dataset.loaded || '').startsWith(u + ':tickets|')",
                           arg=first["unit_id"])
    rows = page.locator("#drill-table tbody tr")
    assert rows.count() == first["tickets"]
    own = {first["unit_id"]} | {u["unit_id"] for u in api if u["parent_id"] == first["unit_id"]}
    assert {c.split(" ")[0] for c in page.locator("#drill-table tbody tr td:nth-child(6)").all_text_contents()} <= own
    phones = page.locator("#drill-table tbody tr td:last-child").all_text_contents()
    assert phones and all("****" in p for p in phones)
    page.screenshot(path=str(ARTIFACTS / "reports-units.png"), full_page=True)

    page.click("[data-lang-toggle]")
    assert page.text_content("#units h2") == "Unit assessment"
    assert page.text_content("#t-units thead th:nth-child(2)") == "Rank"
    page.click("[data-lang-toggle]")
    page.close()
    assert watch.errors == []
