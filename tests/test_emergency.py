"""Which descriptions go to 110 (`command.emergency`): the labelled table, confidence, negation."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from command.emergency import (
    AMBIGUOUS,
    HIGH,
    EmergencyRule,
    PoliceCall,
    _blank_misleading,
    _negated,
    assess_police,
    needs_police,
)

TABLE = Path(__file__).parent / "data" / "emergency_descriptions.tsv"
CATEGORIES = {"water", "power", "gas", "heating", "drainage", "sanitation", "other"}
KINDS = {"gas_leak", "electrical_fire", "people_trapped", "fallen_live_wire", "road_collapse", "main_burst_flooding"}


def table() -> list[dict[str, str]]:
    """The labelled descriptions: description, category, type, expected kind (empty: not for 110)."""
    with TABLE.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_the_table_covers_every_trade_and_every_emergency():
    rows = table()
    emergencies = [r for r in rows if r["expected"]]
    assert len(rows) >= 150 and len(emergencies) >= 40 and len(rows) - len(emergencies) >= 90
    assert {r["expected"] for r in emergencies} == KINDS
    assert {r["category"] for r in rows if not r["expected"]} == CATEGORIES
    assert all(r["category"] in CATEGORIES and r["description"].strip() for r in rows)


def test_precision_and_recall_on_needs_110():
    """Recall: an emergency flagged at all (automatic or suggested) with its kind; precision: the
    automatic handovers that are real emergencies of that kind."""
    missed, false_auto, automatic, true_auto = [], [], 0, 0
    rows = table()
    for row in rows:
        call = assess_police(row["category"], row["type"], row["description"])
        expected = row["expected"] or None
        if expected and (call is None or call.kind != expected):
            missed.append((row["description"], expected, call))
        if call is not None and call.automatic:
            automatic += 1
            if call.kind == expected:
                true_auto += 1
            else:
                false_auto.append((row["description"], expected, call))
    emergencies = sum(1 for r in rows if r["expected"])
    recall = (emergencies - len(missed)) / emergencies
    precision = true_auto / automatic
    assert recall >= 0.95 and precision >= 0.95, (
        f"recall {recall:.3f} precision {precision:.3f}; missed: {missed}; wrongly automatic: {false_auto}")


@pytest.mark.parametrize(
    "category, text, expected",
    [
        ("gas", "燃气灶打不着火", None),
        ("gas", "燃气灶点不着火，没有闻到煤气味", None),
        ("gas", "燃气灶打不着火，而且有很浓的煤气味", PoliceCall("gas_leak", HIGH)),
        ("gas", "燃气灶着火了", PoliceCall("gas_leak", HIGH)),
        ("other", "挖掘机挖断燃气管道", PoliceCall("gas_leak", HIGH)),
        ("other", "电梯里困了人", PoliceCall("people_trapped", HIGH)),
        ("other", "电梯停了，里面没有人", None),
        ("other", "电梯坏了，老人上楼很困难", None),
        ("other", "电梯停了，不知道有没有人被困", PoliceCall("people_trapped", AMBIGUOUS)),
        ("power", "暴雨后一根电线掉在地上", PoliceCall("fallen_live_wire", HIGH)),
        ("power", "好像有电线掉下来了", PoliceCall("fallen_live_wire", AMBIGUOUS)),
        ("power", "总闸跳闸，断电了", None),
        ("gas", "厨房好像有点煤气味", PoliceCall("gas_leak", AMBIGUOUS)),
        ("gas", "上次燃气泄漏已经修好了", PoliceCall("gas_leak", AMBIGUOUS)),
        ("other", "不是着火，是邻居烧烤的烟", None),
        ("power", "插座冒火花", PoliceCall("electrical_fire", AMBIGUOUS)),
        ("power", "配电箱冒烟", PoliceCall("electrical_fire", HIGH)),
        ("power", "不停冒烟", PoliceCall("electrical_fire", HIGH)),
        ("water", "路上水管爆了", PoliceCall("main_burst_flooding", AMBIGUOUS)),
        ("water", "厨房水管漏水", None),
        ("gas", "家里煤气灶打火打不着，是不是没气了", None),
        ("sanitation", "垃圾桶着火了", PoliceCall("fire", AMBIGUOUS)),  # 119's fire: the dispatcher decides
        ("water", "路边消防栓被撞坏了，水喷得老高", PoliceCall("main_burst_flooding", AMBIGUOUS)),
        ("drainage", "下雨后路面坍塌，行人差点掉下去", PoliceCall("road_collapse", HIGH)),
    ],
)
def test_confidence_reads_the_whole_description(category, text, expected):
    assert assess_police(category, "repair", text) == expected
    assert needs_police(category, "repair", text) == (expected.kind if expected and expected.automatic else None)


def test_a_first_ambiguous_rule_gives_way_to_a_later_high_one():
    text = "电梯停了，不知道里面有没有人，楼道里还有很浓的煤气味"
    assert assess_police("other", "repair", text) == PoliceCall("gas_leak", HIGH)


@pytest.mark.parametrize(
    "before, negated",
    [("没有", True), ("没有闻到", True), ("不是", True), ("是不是", False), ("有没有人", False), ("已经不", True),
     ("不停", False), ("没关阀门，", False), ("无人", True)],
)
def test_negation_window(before, negated):
    assert _negated(before) is negated


def test_misleading_phrases_are_blanked_to_the_same_length():
    blanked = _blank_misleading("燃气灶打不着火，生活困难")
    assert len(blanked) == len("燃气灶打不着火，生活困难") and "着火" not in blanked and "困" not in blanked


def test_rules_refuse_an_unknown_confidence():
    with pytest.raises(ValueError):
        EmergencyRule("gas_leak", (("漏气",),), confidence="maybe")
