"""Address search of what callers say round the address (issue #24): 喂，我家在王家庄村3组这边,
那个人民医院对面那儿 ... The filler words go, names that contain them (在水一方) stay, 附近 stays near."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gis.address import AddressIndex
from gis.address_text import LEADING_FILLER, TRAILING_FILLER, ParsedAddress, normalize, parse, strip_filler


@pytest.mark.parametrize(
    ("said", "address"),
    [
        ("我家在王家庄村3组这边", "王家庄村3组"),
        ("我这里是朝阳新村4号楼3单元", "朝阳新村4栋3单元"),
        ("就在东风路173号门口这块", "东风路173号门口"),
        ("那个人民医院对面那儿", "人民医院对面"),
        ("喂，我住在银杏苑8号楼2单元502", "银杏苑8栋2单元502"),
        ("地址是密水大街与凤凰大街交叉口那边", "密水大街与凤凰大街交叉口"),
        ("你好，我家就在那个东风路173号", "东风路173号"),
        ("我家住东风路一百七十三号这一块吧", "东风路173号"),
        ("我家的具体地址是高密市人民路125号", "人民路125号"),  # the city prefix after the filler goes too
        ("位置在王家庄村3组附近这边", "王家庄村3组附近"),  # 附近 is no filler: it stays
        ("东风路173号这附近", "东风路173号附近"),
        ("人民医院的对面", "人民医院对面"),
        ("人民医院往东100米这里", "人民医院往东100米"),
        ("东风路173号", "东风路173号"),
        ("王家庄村这边3组", "王家庄村这边3组"),  # only the ends: never inside
        ("这边", "这边"),  # never down to nothing
        ("在", "在"),
        ("那个吧", "那个"),  # one word is left
        ("就在附近", "附近"),
        ("", ""),
    ],
)
def test_strip_filler(said: str, address: str) -> None:
    assert strip_filler(normalize(said)) == address


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("我家在王家庄村3组这边", ParsedAddress("王家庄村", group=3)),
        ("就在东风路173号门口这块", ParsedAddress("东风路", number=173, near=True)),
        ("东风路173号这附近", ParsedAddress("东风路", number=173, near=True)),
        ("我这里是人民医院往西五十米那儿", ParsedAddress("人民医院", near=True, east_m=-50.0)),
    ],
)
def test_filler_keeps_the_details_and_the_offset(said: str, expected: ParsedAddress) -> None:
    assert parse(strip_filler(normalize(said))) == expected


def test_keep_stops_at_a_name_as_written() -> None:
    def keep(text: str) -> bool:
        return parse(text).name in {"在水一方", "星空酒吧"}

    assert strip_filler(normalize("在水一方2号楼1单元"), keep=keep) == "在水一方2栋1单元"
    assert strip_filler(normalize("我家就在在水一方2号楼"), keep=keep) == "在水一方2栋"
    assert strip_filler(normalize("星空酒吧"), keep=keep) == "星空酒吧"
    assert strip_filler(normalize("我家住星空酒吧这边吧"), keep=keep) == "星空酒吧"
    assert strip_filler(normalize("就在在水一方的对面那儿"), keep=keep) == "在水一方对面"
    assert strip_filler(normalize("星空酒吧")) == "星空酒"  # without the address book 吧 is a particle


# A compound whose name begins with 在, a bar (吧), a hospital, a village, a road; ~ 9 m per 0.0001 degree.
_ENTRIES = [  # (id, text, kind)
    ("C0", "在水一方", "poi"),
    *[(f"C{b}{u}", f"在水一方{b}号楼{u}单元", "address") for b in (1, 2, 3) for u in (1, 2)],
    ("B1", "星空酒吧", "poi"),
    ("H1", "人民医院", "poi"),
    ("V1", "王家庄村", "village"),
    *[(f"V1G{g}", f"王家庄村{g}组", "village") for g in (1, 2, 3)],
    *[(f"D{n}", f"东风路{n}号", "address") for n in (169, 173, 181)],
]
_CROSSINGS = [("密水大街", "凤凰大街", 119.79, 36.39)]


@pytest.fixture(scope="module")
def index() -> AddressIndex:
    ids, texts, kinds = zip(*_ENTRIES)
    lons = np.array([119.75 + 0.0001 * i for i in range(len(ids))])
    return AddressIndex(list(ids), list(texts), lons, np.full(len(ids), 36.38), list(kinds), crossings=_CROSSINGS)


@pytest.mark.parametrize(
    ("query", "expected_id", "match"),
    [
        ("在水一方", "C0", "exact"),  # a name beginning with 在 is a name
        ("在水一方2号楼1单元", "C21", "exact"),
        ("在水一方这边", "C0", "exact"),
        ("我家就在在水一方2号楼1单元这边", "C21", "exact"),
        ("喂，我住在在水一方3号楼2单元502", "C32", "approximate"),  # no rooms in the data
        ("星空酒吧", "B1", "exact"),  # 吧 ends the name: it stays
        ("我在星空酒吧门口呢", "B1", "approximate"),
        ("我家住星空酒吧这边", "B1", "exact"),  # 这边 goes, 吧 stays
        ("在水一方的对面这边", "C0", "approximate"),
        ("我在在水一方这附近吧", "C0", "approximate"),
        ("那个人民医院对面那儿", "H1", "approximate"),
        ("人民医院那边", "H1", "exact"),
        ("我家在王家庄村3组这边", "V1G3", "exact"),
        ("我家在王家庄三组", "V1G3", "exact"),
        ("就在东风路173号门口这块", "D173", "approximate"),  # 门口: near, as without the filler
        ("你好，我家就在东风路173号", "D173", "exact"),
        ("地址是密水大街与凤凰大街交叉口那边", "X:凤凰大街|密水大街", "exact"),
    ],
)
def test_search_through_filler(index: AddressIndex, query: str, expected_id: str, match: str) -> None:
    found = index.search(query, limit=3)
    assert found, query
    assert (found[0].id, found[0].match) == (expected_id, match)


def test_filler_costs_no_score(index: AddressIndex) -> None:
    for plain, said in (("王家庄村3组", "喂，我家在王家庄村3组这边吧"), ("人民医院对面", "那个人民医院对面那儿"),
                        ("东风路175号", "我家住东风路175号这一块")):
        assert index.search(said, limit=3) == index.search(plain, limit=3)


def test_spoken_offset_still_moves_the_point(index: AddressIndex) -> None:
    plain, said = index.search("人民医院往东100米")[0], index.search("我这里是人民医院往东100米这边")[0]
    assert (said.id, said.offset, said.lon, said.lat) == (plain.id, "往东100米", plain.lon, plain.lat)


_FILLER_ALPHABET = st.sampled_from(sorted(set("".join(LEADING_FILLER + TRAILING_FILLER) + "在水一方王家庄村3组东风路173号附近往东100米，")))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_FILLER_ALPHABET, max_size=24))
def test_strip_filler_is_idempotent_and_never_empties(text: str) -> None:
    normalized = normalize(text)
    once = strip_filler(normalized)
    assert strip_filler(once) == once
    assert bool(once) == bool(normalized)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=_FILLER_ALPHABET, max_size=24))
def test_search_of_filler_never_raises(index: AddressIndex, text: str) -> None:
    found = index.search(text, limit=5)
    assert len(found) <= 5
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)


def test_query_set_spoken_rows_wrap_rows_of_every_form() -> None:
    with open(Path(__file__).with_name("data") / "address_queries.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    spoken = [r for r in rows if r["form"] == "spoken"]
    assert len(spoken) >= 150
    made_from = set()
    for row in spoken:  # each keeps the answer of a row of another form whose query it contains
        base = [r for r in rows if r["form"] != "spoken" and r["query"] in row["query"] and r["query"] != row["query"]
                and all(r[k] == row[k] for k in ("expected_id", "lon", "lat", "tolerance_m"))]
        assert base, row["query"]
        made_from.add(base[0]["form"])
    assert made_from == {r["form"] for r in rows} - {"spoken"}
