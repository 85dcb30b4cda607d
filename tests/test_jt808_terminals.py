"""JT/T 808 terminals bound to vehicles: the registration rule as a table (pure), the admin API
in process with the real PostgreSQL (`admin_api`: the river city, vehicles V01-V06; bind, list, unbind, refusals with stable codes and nothing
saved, other roles refused, an audit entry for every change, answers checked against the OpenAPI
document) and the service's registration and authentication on the real store (the code issued
once, only its hash kept, a wrong code refused, a new registration replacing the code)."""
from __future__ import annotations

import pytest

from command.jt808_registration import (REGISTER_NO_TERMINAL, REGISTER_NO_VEHICLE, REGISTER_OK,
                                        REGISTER_TERMINAL_TAKEN, REGISTER_VEHICLE_TAKEN, registration_result)
from ingest.jt808 import Registration
from services.devices import Actor
from services.jt808_terminals import TerminalService, code_hash, phone_key
from store.jt808 import Terminal, TerminalStore

pytestmark = [pytest.mark.integration]


def sent(terminal_id: str = "T1", plate: str = "", colour: int = 0) -> Registration:
    return Registration(37, 100, "MAKER", "M1", terminal_id, colour, plate, 2013)


BOUND = Terminal("13912345678", "", "", "", "", "V01", "", None, 0.0, "admin")
PINNED = Terminal("13912345678", "T1", "", "", "", "V01", "", None, 0.0, "admin")


@pytest.mark.parametrize("terminal, active, holder, registration, result", [
    (None, None, None, sent(), REGISTER_NO_TERMINAL),
    (BOUND, False, None, sent(), REGISTER_NO_VEHICLE),
    (BOUND, None, None, sent(), REGISTER_NO_VEHICLE),
    (PINNED, True, None, sent("T2"), REGISTER_TERMINAL_TAKEN),
    (BOUND, True, "13800000000", sent(plate="鲁G12345", colour=1), REGISTER_VEHICLE_TAKEN),
    (BOUND, True, "13912345678", sent(plate="鲁G12345", colour=1), REGISTER_OK),
    (BOUND, True, None, sent("any"), REGISTER_OK),
    (PINNED, True, None, sent("T1"), REGISTER_OK),
])
def test_registration_result(terminal, active, holder, registration, result):
    assert registration_result(terminal is not None, terminal.terminal_id if terminal else "", active,
                               terminal.phone if terminal else "", holder, registration.terminal_id) == result


@pytest.mark.parametrize("phone, key", [("013912345678", "13912345678"), ("00000000013912345678", "13912345678"),
                                        ("000000000000", "0")])
def test_phone_key_joins_2013_and_2019_numbers(phone, key):
    assert phone_key(phone) == key


async def test_an_admin_binds_lists_and_unbinds_a_terminal(admin_api):
    api = admin_api
    made = await api.admin("POST", "/api/admin/jt808/terminals", expect=201,
                           body={"phone": "013912345678", "vehicle_id": "V01", "terminal_id": "T1", "maker": "ACME"})
    assert made["terminal"] == {**made["terminal"], "phone": "13912345678", "vehicle_id": "V01", "terminal_id": "T1",
                                "maker": "ACME", "registered": False, "bound_by": "admin"}
    listed = (await api.admin("GET", "/api/admin/jt808/terminals"))["terminals"]
    assert [t["phone"] for t in listed] == ["13912345678"]
    refused = [
        ({"phone": "13912345678", "vehicle_id": "V02"}, 409, "terminal_exists"),
        ({"phone": "13800000000", "vehicle_id": "V01"}, 409, "vehicle_has_terminal"),
        ({"phone": "139-1234", "vehicle_id": "V02"}, 400, "bad_phone"),
        ({"phone": 13900000000, "vehicle_id": "V02"}, 400, "bad_phone"),
        ({"phone": "13800000000", "vehicle_id": "V99"}, 400, "unknown_vehicle"),
        ({"phone": "13800000000", "vehicle_id": "V02", "maker": "x" * 31}, 400, "bad_field"),
        ({"phone": "13800000000"}, 400, "unknown_vehicle"),
    ]
    for body, status, code in refused:
        answer = await api.admin("POST", "/api/admin/jt808/terminals", body, expect=status)
        assert answer["error"]["code"] == code, body
    assert len((await api.admin("GET", "/api/admin/jt808/terminals"))["terminals"]) == 1
    gone = await api.admin("POST", "/api/admin/jt808/terminals/13912345678/unbind", {})
    assert gone["terminal"]["vehicle_id"] == "V01"
    missing = await api.admin("POST", "/api/admin/jt808/terminals/13912345678/unbind", {}, expect=404)
    assert missing["error"]["code"] == "terminal_not_found"
    entries = (await api.admin("GET", "/api/admin/audit?target=jt808:13912345678"))["entries"]
    assert sorted((e["action"], e["by"]) for e in entries) == [("jt808.bind", "admin"), ("jt808.unbind", "admin")]


@pytest.mark.parametrize("user", ["agent", "dispatcher", "supervisor"])
async def test_other_roles_may_not_touch_terminals(admin_api, user):
    api = admin_api
    await api.admin("POST", "/api/admin/jt808/terminals", {"phone": "1391", "vehicle_id": "V01"}, expect=201)
    for method, path, body in [("GET", "/api/admin/jt808/terminals", None),
                               ("POST", "/api/admin/jt808/terminals", {"phone": "1392", "vehicle_id": "V02"}),
                               ("POST", "/api/admin/jt808/terminals/1391/unbind", {})]:
        code, _ = await api.call(method, path, user, body)
        assert code == 403
    assert [t["phone"] for t in (await api.admin("GET", "/api/admin/jt808/terminals"))["terminals"]] == ["1391"]


async def test_registration_issues_a_code_kept_as_a_hash(admin_api):
    api = admin_api
    service = TerminalService(api.store.db)
    admin = Actor("admin")
    assert (await service.register("013912345678", sent())).result == REGISTER_NO_TERMINAL
    await service.bind({"phone": "13912345678", "vehicle_id": "V01"}, by=admin)
    assert await service.authenticate("013912345678", "") is None  # nothing issued yet
    first = await service.register("013912345678", sent("T1"))
    assert first.result == REGISTER_OK and len(first.code) == 16 and first.vehicle_id == "V01"
    stored = await TerminalStore(api.store.db).get("13912345678")
    assert stored.code_hash == code_hash(first.code) and first.code not in repr(stored)
    assert stored.terminal_id == "T1" and stored.maker == "MAKER" and stored.registered_at
    assert await service.authenticate("00000000013912345678", first.code) == "V01"  # 2019 header, same terminal
    assert await service.authenticate("013912345678", first.code + "0") is None
    assert (await service.register("013912345678", sent("T2"))).result == REGISTER_TERMINAL_TAKEN
    second = await service.register("013912345678", sent("T1"))
    assert second.result == REGISTER_OK and second.code != first.code
    assert await service.authenticate("013912345678", first.code) is None
    assert await service.authenticate("013912345678", second.code) == "V01"
    assert await service.bind_many([("1380", "V02"), ("13912345678", "V01")], by=admin) == 1
    text = str(await api.admin("GET", "/api/admin/jt808/terminals"))
    assert second.code not in text and stored.code_hash not in text
