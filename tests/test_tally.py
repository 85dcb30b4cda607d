"""Tally: the ingest's named counts behave as collections.Counter's do where the ingest uses them."""
from __future__ import annotations

import collections
from datetime import datetime, timezone

import pytest

from ingest.tally import Tally
from ingest.vehicles import VehicleBatch, VehicleIngest
from simulators import nmea_out


def test_missing_names_read_zero_and_are_not_added():
    tally = Tally()
    assert tally["never"] == 0 and "never" not in tally
    tally["fix_ok"] += 1
    tally["fix_ok"] += 2
    assert tally == {"fix_ok": 3} == collections.Counter(fix_ok=3)


def test_a_copy_is_a_tally_that_counts_on_its_own():
    tally = Tally(accepted=2)
    copy = tally.copy()
    assert type(copy) is Tally and copy == tally
    copy["accepted"] += 1
    copy["rejected:jump"] += 1
    assert tally == {"accepted": 2} and copy == {"accepted": 3, "rejected:jump": 1}


def test_item_assignment_is_dicts_own():
    # the reason for the class: Counter's overridden __delitem__ gives it a Python-level slot
    assert type(Tally()).__setitem__ is dict.__setitem__
    assert Tally.__delitem__ is dict.__delitem__ and collections.Counter.__delitem__ is not dict.__delitem__


def test_the_fast_lane_counts_into_any_dict_and_refuses_anything_else():
    t = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
    payload = ("\r\n".join([nmea_out.gga(t, 36.4, 119.7), nmea_out.rmc(t, 36.4, 119.7, speed_kmh=30.0,
                                                                          course_deg=90.0)]) + "\r\n").encode()
    for stats in (Tally(), collections.Counter(), {}):
        batch = VehicleBatch()
        VehicleIngest().handle("V1", payload, t.timestamp() + 0.3, False, batch, stats)
        assert len(batch.fixes) == 1 and stats == {"nmea:sentences_ok": 2, "nmea:fix": 1, "fix_ok": 1}
    with pytest.raises(TypeError, match="dict of counts"):
        VehicleIngest().handle("V1", payload, t.timestamp() + 0.3, False, VehicleBatch(), [])
