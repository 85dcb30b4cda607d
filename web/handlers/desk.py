"""The call agent desk (坐席受理) and the field crew page (外勤): their pages and the small APIs
only they use — address search and reverse geocoding, the crew's assignments with navigation
coordinates (GCJ-02 for the phone's map app), and site photos (size-limited, type-checked by
their magic bytes, stored under DATA_DIR/photos/<ticket>/ with server-chosen names)."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.web

from store.fleet import FleetStore
from command.ticket_model import Actor, Role
from gis.address import AddressIndex, Candidate
from gis.crossings import road_crossings
from field.navigation import navigation
from field.photos import MAX_PHOTO_BYTES, PHOTO_TYPES, photo_dir, photo_kind, write_private
from gis.crs import distance_m
from web.base import ApiError, BaseHandler, BoundedBody, page
from web.handlers.tickets import NUMBER, OFFICE, READERS, TicketHandler

PHOTO_ID = r"([0-9a-f]{32}\.(?:jpg|png|webp))"
CURRENT_STATES = ("accepted", "en_route", "on_site")


NAMED_KINDS = ("poi", "village")  # entries found by their name (and aliases) rather than their address


def _text(value: Any) -> str:
    """A frame cell as text: "" for a missing one (None, NaN)."""
    return "" if value is None or value != value else str(value)


class AddressBook:
    """The city's addresses, POIs and villages as one search index; POIs and villages are found by
    their name and their aliases."""

    def __init__(self, index: AddressIndex, rows: dict[str, dict[str, str]]) -> None:
        self.index = index
        self.rows = rows

    @classmethod
    def from_frame(cls, frame: Any, roads: Any = None) -> "AddressBook":
        """Build from an addresses GeoDataFrame (addr_id, address, kind, name, optional poi_type and
        alias: ";"-separated other names; WGS84 points).

        With the roads layer (name; WGS84 lines) the book also finds crossings ("A路与B路交叉口").
        """
        ids = [str(v) for v in frame["addr_id"]]
        addresses = [str(v) for v in frame["address"]]
        kinds = [str(v) for v in frame["kind"]] if "kind" in frame.columns else ["address"] * len(ids)
        column = lambda name: [_text(v) for v in frame[name]] if name in frame.columns else [""] * len(ids)
        names, classes = column("name"), column("poi_type")
        texts = [name if kind in NAMED_KINDS and name else address
                 for name, kind, address in zip(names, kinds, addresses)]
        aliases = {row: alias.split(";") for row, alias in enumerate(column("alias")) if alias}
        crossings = road_crossings(list(roads["name"]), list(roads.geometry)) \
            if roads is not None and len(roads) and "name" in roads.columns else []
        index = AddressIndex(ids, texts, frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy(), kinds,
                             crossings=crossings, aliases=aliases)
        rows = {i: {"address": a, "name": n, "poi_type": c} for i, a, n, c in zip(ids, addresses, names, classes)}
        return cls(index, rows)

    def view(self, candidate: Candidate) -> dict[str, Any]:
        """A candidate as the API returns it: a POI labelled 名称（地址）, a village by its address
        (which names the town), a point moved by a spoken offset with it (…往东100米)."""
        row = self.rows.get(candidate.id, {})
        name = row.get("name") or ""
        address = row.get("address") or candidate.text
        label = (f"{name}（{address}）" if candidate.kind == "poi" and name else address) + candidate.offset
        return {"id": candidate.id, "label": label, "address": address, "name": name or None,
                "kind": candidate.kind, "poi_type": row.get("poi_type") or None,
                "offset": candidate.offset or None, "lon": round(candidate.lon, 7), "lat": round(candidate.lat, 7),
                "score": candidate.score, "match": candidate.match}


class AddressBooks:
    """The city's address book, built once off the event loop: the web process starts it at
    start-up (``start``; it takes seconds on a real city), the desk's searches and the ticket
    manager's geocoder await it (a process that did not start it starts it then)."""

    def __init__(self, city: Any) -> None:
        self.layers = getattr(city, "city", city)
        self._task: asyncio.Future | None = None

    def start(self) -> None:
        """Begin building the book in a thread; nothing without an address layer."""
        frame = getattr(self.layers, "addresses", None) if self.layers is not None else None
        if self._task is None and frame is not None and hasattr(frame, "geometry") and len(frame):
            self._task = asyncio.ensure_future(asyncio.to_thread(
                AddressBook.from_frame, frame, getattr(self.layers, "roads", None)))

    async def book(self) -> AddressBook:
        """The address book (503 without an address layer)."""
        self.start()
        if self._task is None:
            raise ApiError(503, "addresses_unavailable", "the city has no address layer")
        return await self._task


GEOCODE_CANDIDATES = 3  # the best few: enough to see whether the best one is ambiguous


def address_geocoder(books: AddressBooks) -> Callable[[str], Awaitable[list[dict[str, Any]] | None]]:
    """The ticket manager's geocoder (`services.tickets.TicketManager`): the same address book and
    search as GET /api/address/search, candidates as `AddressBook.view`; None when the city has no
    address layer."""

    async def geocode(text: str) -> list[dict[str, Any]] | None:
        try:
            book = await books.book()
        except ApiError:
            return None
        return [book.view(c) for c in book.index.search(text, GEOCODE_CANDIDATES)]

    return geocode


class DeskPage(BaseHandler):
    """GET /desk: the call agent's intake form and callback queue (坐席受理)."""

    @page("agent", "supervisor")
    def get(self) -> None:
        self.render("desk.html", account=self.account, zone=self.config.TIME_ZONE)


class FieldPage(BaseHandler):
    """GET /field: the crew's phone page (外勤)."""

    @page("crew")
    def get(self) -> None:
        self.render("field.html", account=self.account, zone=self.config.TIME_ZONE)


class AddressSearch(TicketHandler):
    """GET /api/address/search?q=&limit=: ranked address/POI candidates for free text."""

    async def get(self) -> None:
        self.require(*OFFICE)
        query = self.get_argument("q", "").strip()
        if len(query) > 100:
            raise ApiError(400, "bad_request", "q is longer than 100 characters")
        limit = self.int_arg("limit", 8, 1, 20)
        book = await self.services.addresses.book()
        found = book.index.search(query, limit) if query else []
        self.write_json({"q": query, "candidates": [book.view(c) for c in found]})


class AddressReverse(TicketHandler):
    """GET /api/address/reverse?lon=&lat=&max_m=: the nearest addresses to a point, nearest first."""

    async def get(self) -> None:
        self.require(*OFFICE)
        lon, lat = self.point_arg()  # 400 bad_coordinates / outside_service_area
        max_m = self.float_arg("max_m") or 300.0
        if not 0 < max_m <= 2000:
            raise ApiError(400, "bad_request", "max_m must be within 0..2000")
        book = await self.services.addresses.book()
        found = book.index.reverse(lon, lat, limit=self.int_arg("limit", 3, 1, 10), max_m=max_m)
        rows = []
        for candidate in found:
            row = book.view(candidate)
            row["distance_m"] = round(float(distance_m(lon, lat, candidate.lon, candidate.lat)), 1)
            rows.append(row)
        self.write_json({"lon": lon, "lat": lat, "candidates": rows})


class FieldAssignments(TicketHandler):
    """GET /api/field/assignments: the crew's current and queued tickets with navigation targets
    (WGS84, GCJ-02, an AMap link) and the crew vehicle's last fix."""

    async def get(self) -> None:
        account = self.require("crew")
        if account.role != "crew" or not account.crew_id:
            raise ApiError(403, "forbidden", "only a crew member has assignments")
        actor = Actor(account.name, Role.CREW, account.crew_id)
        records, _ = await self.tickets.list(actor, limit=100)
        vehicle = await self._vehicle(account.crew_id)
        fix = (vehicle or {}).get("fix")
        rows = []
        for record in records:
            view = self.view(record, actor)
            view["nav"] = navigation(view.get("lon"), view.get("lat"), view.get("address") or view["number"])
            view["distance_m"] = None if fix is None or view["nav"] is None else round(
                float(distance_m(fix["lon"], fix["lat"], view["lon"], view["lat"])), 1)
            rows.append(view)
        rows.sort(key=lambda v: v["state"] not in CURRENT_STATES)  # stable: keeps the queue order
        self.write_json({"crew_id": account.crew_id, "vehicle": vehicle, "assignments": rows,
                         "now": view_now(self)})

    async def _vehicle(self, crew_id: str) -> dict[str, Any] | None:
        """The crew's vehicle as the fleet registry holds it now (admins may reassign it); the
        city's crews layer while the registry does not know the crew yet."""
        found = await FleetStore(self.store.db, self.store.redis).crew(crew_id)
        vehicle_id = found[1].get("vehicle_id") if found else self._city_vehicle(crew_id)
        if not vehicle_id:
            return None
        cfg = self.config
        view = await self.store.vehicle(vehicle_id, stale_s=cfg.VEHICLE_STALE_S, offline_s=cfg.VEHICLE_OFFLINE_S)
        return view or {"id": vehicle_id, "state": "offline", "fix": None}

    def _city_vehicle(self, crew_id: str) -> str | None:
        city = self.services.city
        crews = getattr(getattr(city, "city", city), "crews", None) if city is not None else None
        if crews is None or "crew_id" not in crews.columns:
            return None
        match = crews[crews["crew_id"] == crew_id]
        return str(match.iloc[0]["vehicle_id"]) if len(match) else None


def view_now(handler: TicketHandler) -> str:
    """The manager's clock as the API spells times (UTC with Z)."""
    return handler.tickets.clock().isoformat().replace("+00:00", "Z")


@tornado.web.stream_request_body
class PhotoUpload(BoundedBody, TicketHandler):
    """POST /api/tickets/<number>/photos: one site photo (multipart field `photo`, or the raw image
    as the body); stored under a server-chosen name and noted on the ticket's timeline. The body
    is streamed: the server's small limit is raised to a photo's (plus a multipart envelope) for
    a logged-in user only."""

    body_limit = MAX_PHOTO_BYTES + 64 * 1024
    too_large = ("photo_too_large", f"a photo may be at most {MAX_PHOTO_BYTES // (1024 * 1024)} MB")
    body_needs_login = True

    async def post(self, number: str) -> None:
        self.take_body()
        actor = self.actor("crew", "dispatcher", "supervisor", "unit")  # a unit: its feedback's photos
        await self.tickets.get(number, actor)  # crews and units see only their own tickets (404 otherwise)
        files = self.request.files.get("photo") or []
        if self.request.files and not files:
            raise ApiError(400, "validation_error", "the multipart field must be named photo", field="photo")
        data = files[0]["body"] if files else self.request.body
        if not data:
            raise ApiError(400, "validation_error", "no photo in the request", field="photo")
        ext = photo_kind(data)  # PhotoRejected: 413 or 415
        photo_id = f"{uuid.uuid4().hex}.{ext}"
        path = photo_dir(self.config.data_dir, number) / photo_id
        await asyncio.to_thread(write_private, path, data)
        try:
            record = await self._note(number, photo_id, len(data), actor)
        except BaseException:
            await asyncio.to_thread(path.unlink, True)
            raise
        self.write_json({"id": photo_id, "type": PHOTO_TYPES[ext], "bytes": len(data),
                         "url": f"/api/tickets/{number}/photos/{photo_id}",
                         "ticket": self.view(record, actor)}, status=201)

    async def _note(self, number: str, photo_id: str, size: int, actor: Actor) -> Any:
        # no expected_version: the manager absorbs concurrent changes by re-applying the note
        return await self.tickets.act(number, "note", {"note": "现场照片", "data": {"photo": photo_id, "bytes": size}},
                                      actor, expected_version=None)


class PhotoFile(TicketHandler):
    """GET /api/tickets/<number>/photos/<id>: a stored photo, for whoever may read the ticket."""

    async def get(self, number: str, photo_id: str) -> None:
        actor = self.actor(*READERS)
        await self.tickets.get(number, actor)
        path = photo_dir(self.config.data_dir, number) / photo_id
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ApiError(404, "photo_not_found", f"no photo {photo_id} on ticket {number}") from None
        self.set_header("Content-Type", PHOTO_TYPES[photo_id.rsplit(".", 1)[1]])
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "private, max-age=86400")
        self.finish(data)


routes = [
    (r"/desk", DeskPage),
    (r"/field", FieldPage),
    (r"/api/address/search", AddressSearch),
    (r"/api/address/reverse", AddressReverse),
    (r"/api/field/assignments", FieldAssignments),
    (rf"/api/tickets/{NUMBER}/photos", PhotoUpload),
    (rf"/api/tickets/{NUMBER}/photos/{PHOTO_ID}", PhotoFile),
]
