"""Tally: the ingest's named counts behave as collections.Counter's do where the ingest uses them."""
from __future__ import annotations

import collections

from ingest.tally import Tally


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
