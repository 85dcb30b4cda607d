"""Helpers the browser tests share: tickets made through a demo's API, waits on a page, a PNG."""
from __future__ import annotations

import json
import struct
import time
import urllib.error
import zlib

from shapely.geometry import shape

CATEGORIES = ("water", "power", "gas")  # the trades `file_tickets` spreads over the districts


def dispatch_to_c01(demo, number: str, token: str, settle_s: float = 1.5) -> None:
    """Dispatch the ticket to crew C01 and wait until the dispatch service (which may have
    dispatched it on its own, or annotate it) leaves it alone for `settle_s`."""
    deadline = time.monotonic() + 20
    seen, since = None, time.monotonic()
    while time.monotonic() < deadline:
        ticket = demo.get(f"/api/tickets/{number}", token)
        if not (ticket["state"] == "dispatched" and ticket["crew_id"] == "C01"):
            try:
                demo.post(f"/api/tickets/{number}/actions/dispatch", token,
                          {"expected_version": ticket["version"], "crew_id": "C01"})
            except urllib.error.HTTPError as exc:  # the dispatch service got there first: look again
                assert exc.code == 409, exc.read()
            continue
        if ticket["version"] != seen:
            seen, since = ticket["version"], time.monotonic()
        elif time.monotonic() - since >= settle_s:
            return
        time.sleep(0.2)
    raise AssertionError(f"ticket {number} did not settle on crew C01")


def png() -> bytes:
    """A real 2×2 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def file_tickets(demo) -> dict[str, int]:
    """Tickets in every district (a point inside each district's polygon); count per district."""
    agent = demo.login("agent")
    districts = demo.get("/api/layers/districts", agent)["features"]
    per_district: dict[str, int] = {}
    for d, feature in enumerate(districts):
        point = shape(feature["geometry"]).representative_point()
        for c, category in enumerate(CATEGORIES[:1 + d % len(CATEGORIES)]):
            made = demo.post("/api/tickets", agent, {
                "channel": "phone", "category": category, "type": "repair", "description": "报修测试",
                "caller_phone": f"1390000{d:02d}{c:02d}", "lon": point.x, "lat": point.y, "link": False})
            district = made["ticket"]["district"]
            per_district[district] = per_district.get(district, 0) + 1
    return per_district


def loaded(page, fragment: str) -> None:
    """Wait until the report page says it loaded a query holding `fragment`."""
    page.wait_for_function(f"() => (document.body.dataset.loaded || '').includes({json.dumps(fragment)})", timeout=20_000)
