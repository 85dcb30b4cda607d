"""HTML pages: the home redirect by role, the dispatcher's map console, and the field page's
service worker."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from web.base import BaseHandler, page

FIELD_SHELL = ("vendor/leaflet/leaflet.css", "css/field.css", "vendor/leaflet/leaflet.js", "js/basemap.js", "js/i18n.js", "js/api.js",
               "js/field.js", "favicon.svg")
"""Static files of the field page (web/templates/field.html), precached by its service worker."""

HOME_BY_ROLE = {"dispatcher": "/console", "supervisor": "/console", "admin": "/console",
                "agent": "/desk", "crew": "/field", "unit": "/unit"}


class Home(BaseHandler):
    """GET /: to the login page, or to the role's own page."""

    @page()
    def get(self) -> None:
        self.redirect(HOME_BY_ROLE.get(self.account.role, "/console"))


class Console(BaseHandler):
    """GET /console: the live map console (调度台)."""

    @page("dispatcher", "supervisor", "agent", "team_leader", "coordinator", "director")  # reviewers: their queue
    def get(self) -> None:
        self.render("console.html", account=self.account, zone=self.config.TIME_ZONE,
                    stale_s=self.config.VEHICLE_STALE_S, offline_s=self.config.VEHICLE_OFFLINE_S)


class UnitDesk(BaseHandler):
    """GET /unit: a responsible unit's desk (责任单位工作台): its inbox, 受理, 退单, 延期, handing a
    repair to one of its crews (a station), 办理结果反馈 (web/static/js/unit.js). The crews offered
    are the active crews of the liaison's units."""

    @page("unit")
    async def get(self) -> None:
        dispatch = self.services.dispatch
        units = set(self.account.unit_ids)
        if dispatch is not None:
            await dispatch.crews.refresh()
        crews = [] if dispatch is None else [
            {"crew_id": c.crew_id, "crew_name": c.crew_name} for c in dispatch.crews.crews
            if c.unit_id in units or c.station_id in units]
        self.render("unit.html", account=self.account, zone=self.config.TIME_ZONE, crews=json.dumps(crews))


class Favicon(BaseHandler):
    """GET /favicon.ico: browsers ask for it on every page; answer with the vendored icon."""

    def get(self) -> None:
        self.redirect(self.static_url("favicon.svg"), permanent=True)


class FieldServiceWorker(BaseHandler):
    """GET /field/sw.js: the field page's service worker (web/templates/field_sw.js), scope /field.
    Its cache is named by a hash of the page template, the worker and the versioned static URLs of
    the shell, so a deploy that changes any of them installs a new cache and drops the old one."""

    @page("crew")
    def get(self) -> None:
        shell = [self.static_url(path) for path in FIELD_SHELL]
        version = shell_version(shell, Path(self.get_template_path()))
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.set_header("Service-Worker-Allowed", "/field")  # the script sits below the page it serves
        self.set_header("Cache-Control", "no-cache")
        self.finish(self.render_string("field_sw.js", version=version, shell=json.dumps(shell)))


def shell_version(shell: list[str], templates: Path) -> str:
    """The field shell's version: a hash of its static URLs (each carries its file's hash) and of
    the page and worker templates."""
    digest = hashlib.sha256(json.dumps(shell).encode())
    for name in ("field.html", "field_sw.js"):
        digest.update((templates / name).read_bytes())
    return digest.hexdigest()[:16]


routes = [(r"/", Home), (r"/console", Console), (r"/unit", UnitDesk), (r"/favicon.ico", Favicon), (r"/field/sw\.js", FieldServiceWorker)]
