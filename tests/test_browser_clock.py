"""The pages' clock in chromium (`I18N.now`, `I18N.span` in web/static/js/i18n.js): the center's
time from the body's anchor and speed-up, the wall clock without them; limits in wall seconds
span speed-up times as many of the center's seconds, as `runtime.clock.Clock.span` has it."""
from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import BROWSER_MARKS

pytestmark = BROWSER_MARKS
I18N = Path(__file__).resolve().parent.parent / "web" / "static" / "js" / "i18n.js"


def _clock(browser, body: str) -> tuple[float, float, float]:
    page = browser.new_page()
    try:
        page.set_content(f"<html><head></head>{body}</html>")
        page.add_script_tag(path=str(I18N))
        return tuple(page.evaluate("() => [window.I18N.now(), Date.now() / 1000, window.I18N.span(30)]"))
    finally:
        page.close()


def test_the_page_clock_follows_the_center_clock(browser):
    anchor = time.time() - 100.0
    now, wall, span = _clock(browser, f'<body data-clock-anchor="{anchor!r}" data-clock-speedup="60.0"></body>')
    assert abs(now - (anchor + (wall - anchor) * 60.0)) < 1.0 and now - wall > 5000  # 100 s of wall: 6,000 s
    assert span == 1800.0
    now, wall, span = _clock(browser, '<body data-clock-anchor="1000.0" data-clock-speedup="1.0"></body>')
    assert abs(now - wall) < 0.01 and span == 30.0
    now, wall, span = _clock(browser, "<body></body>")  # a page without the attributes: the wall clock
    assert abs(now - wall) < 0.01 and span == 30.0
