"""The admin page's responsible units in chromium against the demo as real processes: the demo
city's tree (center → departments → stations, indented), an edit of a station's name, phone and
parent (only units of a higher level offered) with its audit row, a refusal shown readably, the English switch; no console
errors."""
from __future__ import annotations

from tests.conftest import ARTIFACTS, BROWSER_MARKS, ConsoleWatch, login_page


pytestmark = BROWSER_MARKS


def test_the_admin_page_shows_the_unit_tree_and_edits_a_unit(demo, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "admin", "/admin")
    page.wait_for_selector("#unit-rows tr[data-unit='SAN12']", timeout=15_000)
    rows = page.locator("#unit-rows tr")
    assert rows.first.get_attribute("data-unit") == "CENTER" and rows.count() == 54
    assert page.text_content("#unit-rows tr[data-unit='PWR00'] td:nth-child(3)") == "二级单位"
    assert page.text_content("#unit-rows tr[data-unit='SAN01'] td:nth-child(4)") == "环卫"

    form = "#unit-form"
    page.click("#unit-rows button[data-edit-unit='SAN01']")
    assert page.input_value(f"{form} select[name=parent_id]") == "SAN00"
    parents = page.eval_on_selector_all(f"{form} select[name=parent_id] option", "os => os.map(o => o.value)")
    assert parents == ["CENTER", "DRN00", "GAS00", "HEAT00", "OTH00", "PWR00", "SAN00", "WAT00"]  # higher levels only
    page.fill(f"{form} input[name=phone]", "call me")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("#toast.error", timeout=10_000)
    assert page.text_content("#toast") == "操作失败: 电话最多 32 位数字、+ - ( ) 或空格"
    page.fill(f"{form} input[name=name]", "醴泉街道环卫所（东片）")
    page.fill(f"{form} input[name=phone]", "0536-2380099")
    page.select_option(f"{form} select[name=parent_id]", "CENTER")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("#unit-form.hidden", state="attached", timeout=10_000)
    page.wait_for_function("() => document.querySelector(\"#unit-rows tr[data-unit='SAN01'] td:nth-child(2)\")"
                           ".textContent === '醴泉街道环卫所（东片）'", timeout=10_000)
    page.wait_for_selector("#audit-rows tr[data-action='unit.update']", timeout=10_000)
    assert "0536-2380099" in page.text_content("#audit-rows tr[data-action='unit.update']")
    page.click("[data-lang-toggle]")
    assert page.text_content("#units h2") == "Responsible units"
    assert page.text_content("#unit-rows tr[data-unit='PWR01'] td:nth-child(3)") == "Station (level 3)"
    page.screenshot(path=str(ARTIFACTS / "admin-units.png"), full_page=True)
    token = demo.login("admin")
    units = {u["unit_id"]: u for u in demo.get("/api/units", token)["units"]}
    assert (units["SAN01"]["parent_id"], units["SAN01"]["phone"], units["SAN01"]["depth"]) == ("CENTER", "0536-2380099", 1)
    page.close()
    assert [e for e in watch.errors if "400" not in e] == [] and len(watch.errors) <= 1  # the refused phone only
