"""The fleet-administration rules of ``services.fleet_admin`` that are pure: the fields of a crew,
a vehicle and an account, the member moves, what a change records, what may change when (tier 1:
tables; the HTTP and PostgreSQL side is tests/test_admin_crews.py)."""
from __future__ import annotations

import pytest

from command.errors import CommandError
from services.fleet_admin import (
    Admin, changes_between, check_flag, crew_fields, crew_update, member_moves, member_names, new_record,
    password_of, role_fields, vehicle_fields,
)

BY = Admin("admin", "admin", 1_800_000_000.0)
CREW = {"crew_id": "C01", "crew_name": "抢修一班", "unit_id": "U01", "station_id": "", "skills": ["power"],
        "vehicle_id": "V01", "active": True, "source": "city", "updated_at": 1.0, "updated_by": "system"}


def refusal(call) -> tuple[int, str, str | None]:
    """(status, code, field) of the domain error a call raises."""
    with pytest.raises(CommandError) as caught:
        call()
    return caught.value.status, caught.value.code, caught.value.details.get("field")


@pytest.mark.parametrize("body, field", [
    ({"crew_name": ""}, "crew_name"),
    ({"crew_name": "x" * 51}, "crew_name"),
    ({"crew_name": 5}, "crew_name"),
    ({"skills": []}, "skills"),
    ({"skills": ["power", "fire"]}, "skills"),
    ({"skills": "power"}, None),  # a comma list is accepted
    ({"vehicle_id": "bad id!"}, "vehicle_id"),
    ({"vehicle_id": 7}, "vehicle_id"),
    ({"unit_id": "U99"}, "unit_id"),  # not among the city's units
    ({"unit_id": "bad id!"}, "unit_id"),
    ({"station_id": "S99"}, "station_id"),
])
def test_crew_fields_name_the_field_they_refuse(body, field):
    if field is None:
        assert crew_fields(body, CREW, units={"U01"})["skills"] == ["power"]
    else:
        assert refusal(lambda: crew_fields(body, CREW, units={"U01"}, stations={"S01"})) == (
            400, "validation_error", field)


def test_crew_fields_keep_the_current_values_and_normalise():
    fields = crew_fields({"crew_name": "  二班 ", "skills": ["water", "power", "water"]}, CREW, units={"U01"})
    assert fields == {"crew_name": "二班", "unit_id": "U01", "station_id": "", "skills": ["power", "water"],
                      "vehicle_id": "V01"}
    assert crew_fields({"vehicle_id": None}, CREW)["vehicle_id"] is None  # null: no vehicle
    assert crew_fields({"unit_id": "U77"}, CREW)["unit_id"] == "U77"  # a city without units: any id


def test_a_new_crew_needs_its_unit():
    assert refusal(lambda: crew_fields({"crew_name": "a", "skills": ["power"]}, {})) == (400, "validation_error",
                                                                                          "unit_id")


def test_deactivating_a_crew_releases_its_vehicle_and_a_missing_crew_is_404():
    off = crew_update(dict(CREW), "C01", {}, False, BY)
    assert (off["active"], off["vehicle_id"], off["updated_by"], off["updated_at"]) == (False, None, "admin", BY.at)
    assert crew_update(dict(CREW), "C01", {"crew_name": "新名"}, None, BY)["vehicle_id"] == "V01"
    assert refusal(lambda: crew_update(None, "C09", {}, None, BY)) == (404, "crew_not_found", None)


def test_a_record_is_created_once():
    made = new_record(None, "crew_exists", "crew C02", {"crew_id": "C02"}, BY)
    assert made == {"crew_id": "C02", "active": True, "source": "admin", "updated_at": BY.at, "updated_by": "admin"}
    assert refusal(lambda: new_record(CREW, "crew_exists", "crew C01", {}, BY)) == (409, "crew_exists", None)


@pytest.mark.parametrize("body, field", [
    ({"plate": "not a plate", "kind": "repair", "unit_id": "U01"}, "plate"),
    ({"plate": "鲁G·U1632", "kind": "tank", "unit_id": "U01"}, "kind"),
    ({"plate": "鲁G·U1632", "kind": "repair"}, "unit_id"),
])
def test_vehicle_fields_name_the_field_they_refuse(body, field):
    assert refusal(lambda: vehicle_fields(body, {}, units={"U01"})) == (400, "validation_error", field)


def test_vehicle_fields_normalise_the_plate_and_keep_the_current_one():
    fields = vehicle_fields({"plate": "鲁GU1632", "kind": "repair", "unit_id": "U01"}, {}, units={"U01"})
    assert fields["plate"] == "鲁G·U1632"
    current = {"plate": "鲁G·U1632", "kind": "repair", "unit_id": "U01"}
    assert vehicle_fields({"kind": "repair"}, current) == current


@pytest.mark.parametrize("wanted, had, moves", [
    (None, ["a"], {}),
    (["a", "b"], ["a"], {"b": "C01"}),
    ([], ["a", "c"], {"a": "", "c": ""}),
    (["b"], ["a"], {"a": "", "b": "C01"}),
])
def test_member_moves(wanted, had, moves):
    assert member_moves("C01", wanted, had) == moves


@pytest.mark.parametrize("members", ["a", [1], ["x"] * 51])
def test_members_must_be_a_short_list_of_names(members):
    assert refusal(lambda: member_names({"members": members})) == (400, "validation_error", "members")


def test_changes_leave_bookkeeping_out():
    assert changes_between(CREW, {**CREW, "crew_name": "新", "updated_at": 9.0, "source": "admin"}) == {
        "crew_name": ["抢修一班", "新"]}


@pytest.mark.parametrize("body, crews, unit_active, expected", [
    ({"role": "crew", "crew_id": "C01"}, {"C01"}, None, {"role": "crew", "crew_id": "C01", "unit_id": ""}),
    ({"role": "crew", "crew_id": "C09"}, set(), None, {"role": "crew", "crew_id": "C09", "unit_id": ""}),
    ({"role": "unit", "unit_id": "U01", "crew_id": "C01"}, {"C01"}, True, {"role": "unit", "crew_id": "",
                                                                           "unit_id": "U01"}),
    ({"role": "agent", "crew_id": "C01", "unit_id": "U01"}, {"C01"}, True, {"role": "agent", "crew_id": "",
                                                                            "unit_id": ""}),
])
def test_an_account_is_tied_to_a_crew_or_a_unit_by_its_role(body, crews, unit_active, expected):
    fields = role_fields(body, None, crews=crews, unit_active=unit_active)
    assert {k: fields[k] for k in expected} == expected


@pytest.mark.parametrize("body, crews, unit_active, field", [
    ({"role": "wizard"}, set(), None, "role"),
    ({"role": "agent", "display": "x" * 51}, set(), None, "display"),
    ({"role": "crew", "crew_id": "C09"}, {"C01"}, None, "crew_id"),
    ({"role": "crew"}, {"C01"}, None, "crew_id"),
    ({"role": "unit", "unit_id": "U01"}, set(), False, "unit_id"),  # deactivated unit
    ({"role": "unit", "unit_id": "U09"}, set(), None, "unit_id"),  # unknown unit
])
def test_account_fields_refused(body, crews, unit_active, field):
    assert refusal(lambda: role_fields(body, None, crews=crews, unit_active=unit_active)) == (
        400, "validation_error", field)


def test_passwords_and_flags():
    password, generated = password_of({})
    assert generated and len(password) >= 8
    assert password_of({"password": "long enough"}) == ("long enough", False)
    assert refusal(lambda: password_of({"password": "short"})) == (400, "validation_error", "password")
    assert check_flag({}, "active") is None and check_flag({"active": False}, "active") is False
    assert refusal(lambda: check_flag({"active": "no"}, "active")) == (400, "validation_error", "active")
