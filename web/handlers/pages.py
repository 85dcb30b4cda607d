"""HTML pages: the home redirect by role, and the dispatcher's map console."""
from __future__ import annotations

from web.base import BaseHandler, page

HOME_BY_ROLE = {"dispatcher": "/console", "supervisor": "/console", "admin": "/console",
                "agent": "/desk", "crew": "/field"}


class Home(BaseHandler):
    """GET /: to the login page, or to the role's own page."""

    @page()
    def get(self) -> None:
        self.redirect(HOME_BY_ROLE.get(self.account.role, "/console"))


class Console(BaseHandler):
    """GET /console: the live map console (调度台)."""

    @page("dispatcher", "supervisor", "agent")
    def get(self) -> None:
        self.render("console.html", account=self.account, zone=self.config.TIME_ZONE)


class Favicon(BaseHandler):
    """GET /favicon.ico: browsers ask for it on every page; answer with the vendored icon."""

    def get(self) -> None:
        self.redirect(self.static_url("favicon.svg"), permanent=True)


routes = [(r"/", Home), (r"/console", Console), (r"/favicon.ico", Favicon)]
