"""The field page offline across a reload: Debian's chromium driven by Playwright against the demo
started as real processes. A crew on a phone-size viewport loads /field (its service worker
precaches the shell), loses the connection, accepts a ticket (queued), RELOADS the page without a
connection (served from the cache, the pending action still shown), gets the connection back, and
the action lands exactly once (the ticket's audit timeline). No console errors. The browser reaches
the demo through a relay the test cuts while the phone is offline (tests/netcut.py). Also: the worker's
headers and precache list match the page, and its cache version follows the deployed files."""
from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, BROWSER_MARKS, PHONE_SCREEN, ConsoleWatch, login_page
from tests.netcut import go_offline, go_online
from tests.pages import dispatch_to_c01
from tests.procs import start_demo
from web.handlers.pages import FIELD_SHELL, shell_version

pytestmark = BROWSER_MARKS

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_city_profile):
    tmp = tmp_path_factory.mktemp("browser-offline-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=3, city=demo_city_profile, SIM_CREWS="0", SIM_CALLERS="0",
                         SIM_CALLBACKS="0", SIM_SCENARIO="")  # the crew is us, and nothing else happens
    yield running
    running.stop()


@pytest.fixture(scope="module")
def number(demo):
    """A ticket dispatched to crew C01 (the demo user `crew`)."""
    agent, dispatcher = demo.login("agent"), demo.login("dispatcher")
    created = demo.post("/api/tickets", agent, {
        "channel": "phone", "category": "water", "type": "repair", "urgency": "normal",
        "description": "小区水管漏水", "caller_phone": "13907775678", "lon": 119.755, "lat": 36.381, "link": False})
    number = created["ticket"]["number"]
    dispatch_to_c01(demo, number, dispatcher)
    return number


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _cookie_get(demo, path: str, cookie: str):
    request = urllib.request.Request(demo.base + path, headers={"Cookie": cookie})
    return urllib.request.urlopen(request, timeout=10)


def _session_cookie(context) -> str:
    return "; ".join(f"{c['name']}={c['value']}" for c in context.cookies())


def _shell_keys(page) -> list[str]:
    return page.evaluate("""async () => {
        const out = [];
        for (const name of await caches.keys()) {
            const cache = await caches.open(name);
            for (const request of await cache.keys()) { out.push(name + ' ' + new URL(request.url).pathname); }
        }
        return out.sort();
    }""")


def test_field_page_survives_a_reload_offline_and_sends_the_action_once(demo, browser, number, network):
    dispatcher = demo.login("dispatcher")
    context = browser.new_context(**PHONE_SCREEN)
    page = context.new_page()
    watch = ConsoleWatch(page)
    login_page(page, network.base, "crew", "/field")
    card = f"article[data-number='{number}']"
    page.wait_for_selector(card, timeout=15_000)
    page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=15_000)  # installed and claimed
    keys = _shell_keys(page)
    names = {k.split(" ")[0] for k in keys}
    assert len(names) == 1 and names.pop().startswith("field-shell-")
    assert {k.split(" ")[1] for k in keys} >= {"/field", "/static/js/field.js", "/static/js/api.js",
                                               "/static/vendor/leaflet/leaflet.js"}

    go_offline(context, page, network)
    page.click(f"{card} [data-action=accept]")
    page.wait_for_selector(f"{card}[data-state='accepted']")
    assert page.text_content("#pending") == "待发送 1"

    served: list[bool] = []
    page.on("response", lambda r: served.append(r.from_service_worker))
    page.reload()                                       # no connection: the worker answers from its cache
    page.wait_for_selector(f"{card}[data-state='accepted'] .unsent", timeout=15_000)
    assert len(served) >= len(FIELD_SHELL) and all(served)   # the page and every file of its shell
    assert page.text_content("#pending") == "待发送 1"
    assert page.text_content("#net") == "离线"
    assert page.evaluate("navigator.serviceWorker.controller !== null")
    assert page.text_content(".field-bar strong") == "外勤"
    assert demo.get(f"/api/tickets/{number}", dispatcher)["state"] == "dispatched"   # nothing sent yet
    page.screenshot(path=str(ARTIFACTS / "field-offline-reloaded.png"))

    served.clear()
    go_online(context, network)
    page.wait_for_selector("#pending.hidden", state="attached", timeout=15_000)
    page.wait_for_function("() => document.body.dataset.loaded === '1'", timeout=15_000)  # fresh from the server
    assert demo.get(f"/api/tickets/{number}", dispatcher)["state"] == "accepted"
    page.reload()                                       # online again: nothing is left to send
    page.wait_for_function("() => document.body.dataset.loaded === '1'", timeout=15_000)
    assert page.evaluate("JSON.parse(localStorage.getItem('field.queue.crew'))") == []
    assert page.get_attribute(card, "data-state") == "accepted"
    events = demo.get(f"/api/tickets/{number}/timeline", dispatcher)["events"]
    assert [e["action"] for e in events].count("accept") == 1
    context.close()
    assert watch.failed == [] and watch.errors == [], (watch.failed, watch.errors)


def test_the_service_worker_serves_the_field_shell_with_its_scope(demo, browser):
    context = browser.new_context()
    page = context.new_page()
    login_page(page, demo.base, "crew", "/field")
    cookie = _session_cookie(context)
    with _cookie_get(demo, "/field/sw.js", cookie) as response:
        assert response.headers["Service-Worker-Allowed"] == "/field"
        assert response.headers["Content-Type"].startswith("text/javascript")
        script = response.read().decode()
    with _cookie_get(demo, "/field", cookie) as response:
        html = response.read().decode()
    context.close()
    shell = json.loads(re.search(r"var SHELL = (\[.*?\]);", script).group(1))
    assert len(shell) == len(FIELD_SHELL)
    used = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html))
    assert used == set(shell)                          # every static file of the page is precached
    version = re.search(r'var VERSION = "([0-9a-f]{16})";', script).group(1)
    assert version == shell_version(shell, TEMPLATES)
    with pytest.raises(urllib.error.HTTPError) as refused:   # no login, no worker
        urllib.request.build_opener(_NoRedirect).open(demo.base + "/field/sw.js", timeout=10)
    refused.value.close()
    assert refused.value.code == 302 and refused.value.headers["Location"].startswith("/login")


def test_a_deploy_changes_the_shell_version(tmp_path):
    for name in ("field.html", "field_sw.js"):
        shutil.copy(TEMPLATES / name, tmp_path / name)
    shell = ["/static/js/field.js?v=aaaa", "/static/js/api.js?v=bbbb"]
    first = shell_version(shell, tmp_path)
    assert shell_version(list(shell), tmp_path) == first
    assert shell_version(["/static/js/field.js?v=cccc", shell[1]], tmp_path) != first   # a script changed
    (tmp_path / "field.html").write_text((TEMPLATES / "field.html").read_text() + "\n<!-- new -->\n")
    assert shell_version(shell, tmp_path) != first                                         # the page changed
