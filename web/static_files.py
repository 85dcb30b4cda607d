"""Static files (`/static/...`): tornado's StaticFileHandler, refusing malformed paths with 400.

Tornado maps a path straight onto the file system; a NUL byte in it (``/static/..%00/x``) makes
the operating system call raise ValueError deep inside the handler, which answered 500 with a
logged traceback. Such a path, and any other that is not plain relative path text (a backslash, a
control character, a ``..`` segment however spelled), is refused here before the file system is
asked. Everything else is tornado's own behaviour (403 outside the root, 404 when absent).
"""
from __future__ import annotations

import re
from typing import Any

import tornado.web

from web.base import SecurityHeaders

_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


class StaticFiles(SecurityHeaders, tornado.web.StaticFileHandler):
    """The application's ``static_handler_class``: 400 for a malformed path, never a 500; the
    security headers of every response (web.base.SecurityHeaders)."""

    def parse_url_path(self, url_path: str) -> str:
        """The path below the static root, or HTTP 400 when it is malformed."""
        if _CONTROL.search(url_path) or ".." in url_path.split("/"):
            raise tornado.web.HTTPError(400, "malformed static path")
        return super().parse_url_path(url_path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        """Tornado's check, with the operating system's refusal of a path turned into a 400."""
        try:
            return super().validate_absolute_path(root, absolute_path)
        except ValueError:  # e.g. "embedded null byte" from os.stat
            raise tornado.web.HTTPError(400, "malformed static path") from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A short plain-text error, never a traceback."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")
