"""The fleet registry, shifts, accounts, device credentials and the admin audit as a record in
PostgreSQL: a Redis FLUSHALL loses none of them; the database itself refuses a duplicate plate, a vehicle held by two
crews, an unknown or inactive vehicle and deactivating a held vehicle, also when two
administrators race; a change and its audit row are one transaction (an audit row that cannot be
written leaves no change behind)."""
from __future__ import annotations

import asyncio

import psycopg
import pytest

from store.accounts import AccountStore
from store.fleet import AdminStore, Audit, FleetRefused, FleetStore
from store.devices import Device, DeviceStore
from tests.conftest import PASSWORD, T0

pytestmark = [pytest.mark.integration]

LIVE_FIELDS = ("vehicle_state", "state")  # a vehicle's live state lives in Redis and goes with it


def _without_live(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in LIVE_FIELDS} for row in rows]


async def _record(admin_api) -> dict:
    """Everything the admin API shows of the record."""
    users = (await admin_api.admin("GET", "/api/admin/users"))["users"]
    crews = (await admin_api.admin("GET", "/api/admin/crews"))["crews"]
    vehicles = (await admin_api.admin("GET", "/api/admin/vehicles"))["vehicles"]
    audit = (await admin_api.admin("GET", "/api/admin/audit?limit=500"))["entries"]
    devices = (await admin_api.admin("GET", "/api/admin/devices"))["devices"]
    return {"users": users, "crews": _without_live(crews), "vehicles": _without_live(vehicles), "audit": audit,
            "devices": devices}


async def test_a_redis_flushall_loses_no_account_crew_vehicle_shift_device_or_audit_entry(admin_api):
    await admin_api.admin("POST", "/api/admin/users", {"name": "crew9", "role": "crew", "crew_id": "C01",
                                                       "password": PASSWORD}, expect=201)
    await admin_api.admin("POST", "/api/admin/vehicles", {"vehicle_id": "V20", "plate": "鲁G·F0020", "kind": "suction",
                                                          "unit_id": "WAT01"}, expect=201)
    await admin_api.admin("POST", "/api/admin/crews", {"crew_id": "C20", "crew_name": "排水抢险班", "unit_id": "WAT01",
                                                       "skills": ["drainage"], "vehicle_id": "V20", "members": ["crew9"]},
                          expect=201)
    await admin_api.admin("PUT", "/api/admin/crews/C20/shift", {"on_shift": False, "ends_at": "2026-11-22T10:00:00Z"})
    await admin_api.admin("PATCH", "/api/admin/users/agent", {"display": "坐席 王芳(夜班)"})
    await admin_api.admin("POST", "/api/admin/devices", {"kind": "vehicle", "device_id": "V20"}, expect=201)
    before = await _record(admin_api)
    assert {"user.create", "vehicle.create", "crew.create", "shift.set", "user.update", "fleet.seed",
            "device.issue"} <= {e["action"] for e in before["audit"]}

    await admin_api.store.redis.flushall()
    admin_api.tokens.clear()  # the sessions were in Redis: everyone logs in again, with the same passwords
    after = await _record(admin_api)
    assert after == before
    crew20 = next(c for c in after["crews"] if c["crew_id"] == "C20")
    assert (crew20["vehicle_id"], crew20["plate"], crew20["members"], crew20["on_shift"], crew20["shift_ends_at"]) == \
        ("V20", "鲁G·F0020", ["crew9"], False, "2026-11-22T10:00:00Z")
    code, me = await admin_api.call("GET", "/api/field/assignments", "crew9")
    assert code == 200 and me["crew_id"] == "C20"
    code, board = await admin_api.call("GET", "/api/crews")  # dispatch's registry still knows the crew
    assert code == 200 and "C20" in {r["crew_id"] for r in board["crews"]}


async def test_two_admins_racing_for_one_plate_or_one_vehicle_leave_one_winner(admin_api):
    for n in range(3):
        plate = f"鲁G·R00{n}1"
        replies = await asyncio.gather(*(admin_api.call("POST", "/api/admin/vehicles", "admin", {
            "vehicle_id": f"R{n}{side}", "plate": plate, "kind": "repair", "unit_id": "PWR01"}) for side in "AB"))
        codes = sorted((code, (reply.get("error") or {}).get("code")) for code, reply in replies)
        assert codes == [(201, None), (409, "plate_taken")], replies
        rows = await admin_api.store.db.fetch("SELECT vehicle_id FROM vehicles WHERE plate = %s", (plate,))
        assert len(rows) == 1

    await admin_api.admin("POST", "/api/admin/vehicles", {"vehicle_id": "V30", "plate": "鲁G·R0030", "kind": "repair",
                                                          "unit_id": "PWR01"}, expect=201)
    replies = await asyncio.gather(*(admin_api.call("PATCH", f"/api/admin/crews/{crew}", "admin", {"vehicle_id": "V30"})
                                     for crew in ("C05", "C06")))
    codes = sorted((code, (reply.get("error") or {}).get("code")) for code, reply in replies)
    assert codes == [(200, None), (409, "vehicle_assigned")], replies
    holders = await admin_api.store.db.fetch("SELECT crew_id FROM crews WHERE vehicle_id = 'V30'")
    assert len(holders) == 1
    log = (await admin_api.admin("GET", "/api/admin/audit?target=vehicle:V30"))["entries"]
    assert [e["action"] for e in log] == ["vehicle.create"]  # the refused side left no audit row


async def test_many_concurrent_writers_of_one_plate_one_succeeds(database_url):
    fleet = FleetStore(_db(database_url))
    try:
        async def create(vid: str):
            record = {"vehicle_id": vid, "plate": "鲁G·M0001", "kind": "repair", "unit_id": None, "active": True,
                      "source": "admin", "updated_at": T0.timestamp(), "updated_by": "test"}
            return await fleet.write_vehicle(vid, "", record, Audit("test", "admin", "vehicle.create",
                                                                    f"vehicle:{vid}", {}, T0.timestamp()))
        results = await asyncio.gather(*(create(f"M{i}") for i in range(8)), return_exceptions=True)
        won = [r for r in results if isinstance(r, int)]
        lost = [r for r in results if isinstance(r, FleetRefused)]
        assert len(won) == 1 and len(lost) == 7, results
        owner = (await fleet.db.fetchone("SELECT vehicle_id FROM vehicles WHERE plate = '鲁G·M0001'"))["vehicle_id"]
        assert {(r.code, r.other) for r in lost} == {("plate_taken", owner)}
        assert [e["target"] for e in await fleet.audit_log(20)] == [f"vehicle:{owner}"]
    finally:
        await fleet.db.close()


@pytest.mark.parametrize("statement, constraint", [
    ("INSERT INTO vehicles (vehicle_id, plate, kind, source, updated_at, updated_by)"
     " VALUES ('X1', '鲁G·A0001', 'repair', 'admin', now(), 'sql')", "vehicles_plate"),
    ("INSERT INTO crews (crew_id, crew_name, vehicle_id, source, updated_at, updated_by)"
     " VALUES ('CX', 'x', 'A1', 'admin', now(), 'sql')", "crews_one_per_vehicle"),
    ("INSERT INTO crews (crew_id, crew_name, vehicle_id, source, updated_at, updated_by)"
     " VALUES ('CX', 'x', 'NOPE', 'admin', now(), 'sql')", ("crews_vehicle_known", "crews_vehicle_active")),
    ("INSERT INTO crews (crew_id, crew_name, vehicle_id, source, updated_at, updated_by)"
     " VALUES ('CX', 'x', 'OFF', 'admin', now(), 'sql')", "crews_vehicle_active"),
    ("UPDATE vehicles SET active = false WHERE vehicle_id = 'A1'", "crews_vehicle_active"),
    ("INSERT INTO accounts (name, role) VALUES ('boss', 'king')", "accounts_role_check"),
])
def test_the_database_itself_enforces_the_registry_rules(database_url, statement, constraint):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO vehicles (vehicle_id, plate, kind, source, updated_at, updated_by) VALUES"
                     " ('A1', '鲁G·A0001', 'repair', 'admin', now(), 'sql'),"
                     " ('OFF', '', 'repair', 'admin', now(), 'sql')")
        conn.execute("UPDATE vehicles SET active = false WHERE vehicle_id = 'OFF'")
        conn.execute("INSERT INTO crews (crew_id, crew_name, vehicle_id, source, updated_at, updated_by)"
                     " VALUES ('CA', 'a', 'A1', 'admin', now(), 'sql')")
        with pytest.raises(psycopg.errors.IntegrityError) as refused:
            conn.execute(statement)
        expected = constraint if isinstance(constraint, tuple) else (constraint,)
        assert refused.value.diag.constraint_name in expected


def _bad_audit(action: str, target: str) -> Audit:
    """An audit entry PostgreSQL cannot store (a NUL in a text column): its insert fails."""
    return Audit("bad\x00actor", "admin", action, target, {}, T0.timestamp())


def _db(url: str):
    from store.db import Database

    return Database(url, max_size=4)


async def test_a_change_and_its_audit_row_are_one_transaction(database_url):
    db = _db(database_url)
    fleet, admin, accounts = FleetStore(db), AdminStore(db, None), AccountStore(db)
    try:
        at = T0.timestamp()
        vehicle = {"vehicle_id": "T1", "plate": "鲁G·T0001", "kind": "repair", "unit_id": None, "active": True,
                   "source": "admin", "updated_at": at, "updated_by": "test"}
        crew = {"crew_id": "CT", "crew_name": "测试班", "unit_id": "PWR01", "station_id": None, "skills": ["power"],
                "vehicle_id": "T1", "active": True, "source": "admin", "updated_at": at, "updated_by": "test"}
        await accounts.put("member", {"role": "crew", "crew_id": "C01", "active": "1", "hash": "x"})
        audit_rows = await db.fetchone("SELECT count(*) AS n FROM admin_audit")
        revision = await fleet.revision()

        with pytest.raises(psycopg.DataError):
            await fleet.write_vehicle("T1", "", vehicle, _bad_audit("vehicle.create", "vehicle:T1"))
        assert await fleet.vehicle("T1") is None
        await fleet.write_vehicle("T1", "", vehicle, Audit("test", "admin", "vehicle.create", "vehicle:T1", {}, at))
        revision += 1
        with pytest.raises(psycopg.DataError):
            await fleet.write_crew("CT", "", crew, _bad_audit("crew.create", "crew:CT"), members={"member": "CT"})
        assert await fleet.crew("CT") is None and (await accounts.get("member"))["crew_id"] == "C01"
        assert await fleet.assignments() == {}
        with pytest.raises(psycopg.DataError):
            await admin.put_account("ghost", {"role": "agent", "active": "1", "hash": "x"},
                                    _bad_audit("user.create", "user:ghost"), only_new=True)
        assert await accounts.get("ghost") is None
        await fleet.write_crew("CT", "", crew, Audit("test", "admin", "crew.create", "crew:CT", {}, at))
        revision += 1
        with pytest.raises(psycopg.DataError):  # the audit function's row cannot be stored
            await admin.set_shift("CT", False, by="test", at=at, audit=lambda b, a: _bad_audit("shift.set", "crew:CT"))
        assert (await admin.shifts(["CT"]))["CT"]["on_shift"] is True
        devices = DeviceStore(db)
        with pytest.raises(psycopg.DataError):
            await devices.put(Device("T1", "vehicle", "$7$x"), _bad_audit("device.issue", "device:T1"))
        assert await devices.get("T1") is None and await devices.revision() == ""

        assert await fleet.revision() == revision  # the failed changes did not move the revision
        rows = await db.fetchone("SELECT count(*) AS n FROM admin_audit")
        assert rows["n"] == audit_rows["n"] + 2  # the two changes that were made, nothing of the others
        with pytest.raises(FleetRefused) as stale:  # optimistic concurrency: a write from an old read
            await fleet.write_crew("CT", "0", {**crew, "crew_name": "旧"}, Audit("t", "admin", "crew.update",
                                                                                "crew:CT", {}, at))
        assert stale.value.code == "conflict"
    finally:
        await db.close()


async def test_without_postgresql_logins_and_admin_changes_answer_503(tmp_path, redis_url):
    """The record's server unreachable (a port nobody listens on): a login and the admin API's
    reads and changes answer 503 database_unavailable (each change is one transaction: the
    transaction tests above show a failed one leaves nothing)."""
    import json

    import tornado.httpclient
    import tornado.httpserver

    from store.db import Database
    from servers.embedded import free_port
    from store.live import Store
    from tests.conftest import test_settings
    from web import app as webapp

    gone = Database(f"postgresql://center:x@127.0.0.1:{free_port()}/center", timeout_s=1.0)
    store = Store(Store.from_url(redis_url).redis, gone)
    await store.put_session("admin-token", {"name": "admin", "role": "admin", "crew_id": None, "display": ""}, 60)
    server = tornado.httpserver.HTTPServer(webapp.make_app(webapp.build_services(test_settings(tmp_path), store),
                                                          cookie_secret="test-secret"))
    port = free_port()
    server.listen(port, "127.0.0.1")
    http = tornado.httpclient.AsyncHTTPClient()
    base = f"http://127.0.0.1:{port}"
    try:
        login = await http.fetch(base + "/api/login", method="POST", raise_error=False,
                                 body=json.dumps({"username": "admin", "password": PASSWORD}))
        changes = [("GET", "/api/admin/crews", None),
                   ("POST", "/api/admin/vehicles", {"vehicle_id": "V40", "plate": "鲁G·D0040", "kind": "repair",
                                                    "unit_id": "PWR01"}),
                   ("POST", "/api/admin/users", {"name": "newbie", "role": "agent", "password": PASSWORD}),
                   ("PUT", "/api/admin/crews/C01/shift", {"on_shift": False})]
        replies = [await http.fetch(base + path, method=method, raise_error=False,
                                    headers={"Authorization": "Bearer admin-token"},
                                    body=None if body is None else json.dumps(body)) for method, path, body in changes]
        for response in [login, *replies]:
            assert response.code == 503, response.body
            assert json.loads(response.body)["error"]["code"] == "database_unavailable"
    finally:
        server.stop()
        await gone.close()
        await store.redis.aclose()


async def test_seeding_adds_once_and_never_overwrites(database_url):
    db = _db(database_url)
    fleet = FleetStore(db)
    try:
        at = T0.timestamp()

        def item(crew_id: str, vehicle_id: str) -> tuple[dict, dict]:
            return ({"crew_id": crew_id, "crew_name": f"city {crew_id}", "unit_id": "PWR01", "station_id": None,
                     "skills": ["power"], "vehicle_id": vehicle_id, "active": True, "source": "city",
                     "updated_at": at, "updated_by": "system"},
                    {"vehicle_id": vehicle_id, "plate": "", "kind": "repair", "unit_id": "PWR01", "active": True,
                     "source": "city", "updated_at": at, "updated_by": "system"})
        assert await fleet.seed([item("C1", "V1")], at) == ["vehicle:V1", "crew:C1"]
        read, crew = await fleet.crew("C1")
        await fleet.write_crew("C1", read, {**crew, "crew_name": "renamed", "vehicle_id": None},
                               Audit("admin", "admin", "crew.update", "crew:C1", {}, at))
        revision = await fleet.revision()
        assert await fleet.seed([item("C1", "V1")], at) == []  # known: left as the admin made it
        assert (await fleet.crew("C1"))[1]["crew_name"] == "renamed" and await fleet.revision() == revision
        await fleet.write_crew("C1", (await fleet.crew("C1"))[0], {**crew, "vehicle_id": "V1"},
                               Audit("admin", "admin", "crew.update", "crew:C1", {}, at))
        assert await fleet.seed([item("C2", "V1")], at) == ["crew:C2"]  # V1 is held: C2 comes without it
        assert (await fleet.crew("C2"))[1]["vehicle_id"] is None
        seeds = [e for e in await fleet.audit_log(10) if e["action"] == "fleet.seed"]
        assert [e["changes"] for e in seeds] == [{"added": ["crew:C2"]}, {"added": ["vehicle:V1", "crew:C1"]}]
    finally:
        await db.close()


async def test_a_dispatcher_s_shift_change_is_audited_too(admin_api):
    code, reply = await admin_api.call("POST", "/api/crews/C03/shift", "dispatcher",
                                       {"on_shift": False, "ends_at": "2026-11-22T12:00:00Z"})
    assert code == 200, reply
    entry = (await admin_api.admin("GET", "/api/admin/audit?target=crew:C03"))["entries"][0]
    assert (entry["action"], entry["by"], entry["role"]) == ("shift.set", "dispatcher", "dispatcher")
    assert entry["changes"] == {"on_shift": [True, False], "ends_at": [None, "2026-11-22T12:00:00Z"]}
    crew = next(c for c in (await admin_api.admin("GET", "/api/admin/crews"))["crews"] if c["crew_id"] == "C03")
    assert (crew["on_shift"], crew["shift_set_by"]) == (False, "dispatcher")
