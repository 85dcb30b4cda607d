"""GET /ws/live: one WebSocket per console, relaying the live feed (snapshot, then deltas) of the
account's view (`web.live_views`: office roles, agents, reviewers, the account's own crew or unit);
GET /wall: the wall display (大屏) that shows the same feed in zones (map, alarm ticker, counters)."""
from __future__ import annotations

import logging
from urllib.parse import urlparse

import tornado.websocket

from web.base import BaseHandler, page
from web.live import LiveFeed, decode_client_message
from web.live_views import view_name

log = logging.getLogger(__name__)

MAX_BUFFERED_BYTES = 4 * 1024 * 1024  # a console this far behind is cut off and must resync


def _closed_is_fine(future) -> None:
    """A console that went away while a frame was being written is not an error (on_close follows)."""
    if not future.cancelled():
        future.exception()


class LiveSocket(BaseHandler, tornado.websocket.WebSocketHandler):
    """Relays the frames of the account's view; the console may send {"resume": seq} to continue
    after a reconnect (sequence numbers are the view's own)."""

    view = ""

    @property
    def feed(self) -> LiveFeed:
        """The shared live feed."""
        return self.services.live

    def check_origin(self, origin: str) -> bool:
        """Same-origin browsers only (a cross-site page must not ride the session cookie)."""
        return urlparse(origin).netloc == self.request.headers.get("Host")

    async def get(self, *args, **kwargs) -> None:
        if self.account is None:
            self.set_status(401)
            self.finish({"error": {"code": "unauthenticated", "message": "login required"}})
            return
        await super().get(*args, **kwargs)

    async def open(self) -> None:
        """Send the frames after ?since=<seq> if still kept, else a snapshot, then register.

        A console registers only once it is up to date, so its first frame is the snapshot (or the
        first frame it missed) and no delta overtakes it."""
        self.set_nodelay(True)
        self.view = view_name(self.account.role, self.account.crew_id, self.account.unit_id)
        since = self.get_argument("since", "")
        await self._catch_up(int(since) if since.isdigit() else None)

    async def _catch_up(self, since: int | None) -> None:
        """Send the frames after ``since`` while the feed still keeps them, else a snapshot; the
        console is registered once it is up to date."""
        frames = None if since is None else self.feed.frames_since(since, self.view)
        if frames is None:
            await self._send_snapshot()
        else:
            self.send_frames(frames)
            self.feed.add(self, self.view)

    async def _send_snapshot(self) -> None:
        """Send a snapshot and the frames ticked while it was being read, then (re)register.

        The console is out of the feed while the snapshot is awaited; from ``frames_since`` to
        ``add`` nothing awaits, so no frame is lost or sent twice."""
        self.feed.remove(self)
        while True:
            seq, frame = await self.feed.snapshot_at(self.view)
            later = self.feed.frames_since(seq, self.view)
            if later is not None:
                break
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        self.send_frames([frame, *later])
        self.feed.add(self, self.view)

    async def on_message(self, message: str | bytes) -> None:
        data = decode_client_message(message)
        if data is None:
            self.send_frame(b'{"type":"error","code":"bad_message"}')
            return
        if "resume" in data and isinstance(data["resume"], int):
            await self._catch_up(data["resume"])

    def send_frames(self, frames: list[bytes]) -> None:
        """`send_frame` each of ``frames``, in order."""
        for frame in frames:
            self.send_frame(frame)

    def send_frame(self, frame: bytes) -> None:
        """Queue a pre-encoded text frame; drop a console whose buffer overflows."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            self.feed.remove(self)
            return
        if self._buffered_bytes() > MAX_BUFFERED_BYTES:
            log.warning("console %s too slow, closing so it resyncs", self.request.remote_ip)
            self.feed.remove(self)
            self.close(1013, "too slow; reconnect")
            return
        try:
            sent = self.write_message(frame, binary=False)  # bytes sent as a UTF-8 text frame, encoded once
        except tornado.websocket.WebSocketClosedError:
            self.feed.remove(self)
            return
        sent.add_done_callback(_closed_is_fine)

    def _buffered_bytes(self) -> int:
        """Bytes written to this console but not yet sent (tornado keeps no public counter)."""
        stream = getattr(self.ws_connection, "stream", None)
        buffer = getattr(stream, "_write_buffer", None)
        return len(buffer) if buffer is not None else 0

    def on_close(self) -> None:
        self.feed.remove(self)


class WallPage(BaseHandler):
    """GET /wall: the full-screen overview for the control room screen, in zones (web/static/js/wall*.js)."""

    @page("dispatcher", "supervisor")
    def get(self) -> None:
        self.render("wall.html", account=self.account, zone=self.config.TIME_ZONE, stale_s=self.config.VEHICLE_STALE_S,
                    offline_s=self.config.VEHICLE_OFFLINE_S)


routes = [(r"/ws/live", LiveSocket), (r"/wall", WallPage)]
