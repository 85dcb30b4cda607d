"""Write tests/data/address_queries.tsv: address queries in the way callers say them, with answers.

Run once (`.venv/bin/python -m tests.data.make_address_queries`); the file is then kept as data,
so a change to the generator or the demo city does not silently change the test set. Every row is
drawn from the demo city (`gis.democity`, default seed) and names the entry a dispatcher would
pick: an address id (A000123), a POI id (POI00012) or a crossing id (X:密水大街|百合路).

Forms (column 1):
- compound: 小区/新村/苑 + building (号楼, 栋, 幢, 座, 楼 before 单元, 号) + unit, Arabic or
  Chinese numerals, a room (502, 502室, 3-2-502), one wrong/missing/swapped character in
  names of four characters or more;
- street: road + house number, with the city prefix, Chinese numerals, spaces, 號, a typo,
  and 附近/旁边/对面/往东100米; and 50 numbers that do not exist, answered by the one nearest
  number on that road (only where that nearest number is unique);
- landmark: a POI's name + 附近/旁边/对面/门口/往北50米 (villages left out);
- intersection: two roads that meet exactly once: A与B交叉口, A和B路口, AB口, A跟B交叉路口, A与B,
  the road types left out (A与B交叉口 with stems), a typo in one name, 附近, A/B, A、B十字路口.
"""
from __future__ import annotations

import random
import tempfile
from pathlib import Path

from gis import democity
from gis.crossings import crossing_id, road_crossings
from gis.layers import load_profile

OUT = Path(__file__).with_name("address_queries.tsv")
SEED = 25
_TYPO_CHARS = "的一是在有人和中大上国以时来用们生到地于出分成会可发年同工能下子产面方后多定行学法所民家电力里水高自理起小物现实加量都体机当点业本去好应开合还"
_CN = "零一二三四五六七八九"
_NEAR = ("附近", "旁边", "对面", "往东100米", "门口", "往北50米", "西侧")
_ROAD_TYPES = ("公路", "大街", "大道", "路", "街")
_SOUNDALIKE = {"苑": "园", "园": "院", "湾": "弯", "城": "成", "府": "府"}


def cn_number(number: int, digitwise: bool = False) -> str:
    """Chinese numeral for 0 < number < 1000 (十二, 一百零三) or digit by digit (一零三)."""
    if digitwise:
        return "".join(_CN[int(d)] for d in str(number))
    hundreds, tens, ones = number // 100, number // 10 % 10, number % 10
    text = f"{_CN[hundreds]}百" if hundreds else ""
    if tens:
        text += f"{_CN[tens]}十" if hundreds or tens > 1 else "十"
    elif hundreds and ones:
        text += "零"
    return text + (_CN[ones] if ones else "")


def typo(rng: random.Random, name: str) -> str:
    """One wrong, missing or swapped character inside a name (never its last character)."""
    position = rng.randrange(len(name) - 1)
    kind = rng.choice(("wrong", "missing", "swapped"))
    if kind == "wrong":
        return name[:position] + rng.choice(_TYPO_CHARS) + name[position + 1:]
    if kind == "missing":
        return name[:position] + name[position + 1:]
    return name[:position] + name[position + 1] + name[position] + name[position + 2:]


def _compound_query(rng: random.Random, name: str, building: int, unit: int, n: int) -> str:
    room = rng.choice((101, 202, 301, 502, 602, 1101, 1502))
    b_cn, u_cn = cn_number(building), cn_number(unit)
    forms = (
        f"{name}{building}号楼{unit}单元",
        f"{name}{b_cn}号楼{u_cn}单元",
        f"{name}{building}号楼{unit}单元{room}",
        f"{name}{building}栋{unit}单元{room}室",
        f"{name}{building}幢{unit}单元",
        f"{name}{b_cn}栋{u_cn}单元",
        f"{name}{building}-{unit}-{room}",
        f"{name}{building}座{unit}单元",
        f"{name}{building}楼{unit}单元",
        f"{name}{building}号{unit}单元",
        f"高密市{name}{building}号楼{unit}单元{room}室",
        f"{name} {building}号楼 {unit}单元",
    )
    text = forms[n % len(forms)]
    if n % 5 == 4:  # one typo; a three-character name only gets a wrong last character (苑 -> 园)
        wrong = typo(rng, name) if len(name) >= 4 else name[:-1] + _SOUNDALIKE.get(name[-1], name[-1])
        text = text.replace(name, wrong, 1)
    return text


def _street_query(rng: random.Random, road: str, number: int, n: int) -> str:
    forms = (
        f"{road}{number}号",
        f"高密市{road}{number}号",
        f"{road}{cn_number(number)}号" if number < 1000 else f"{road}{number}号",
        f"{road}{number}号{rng.choice(_NEAR)}",
        f"{road} {number} 號",
        f"{typo(rng, road)}{number}号" if len(road) >= 3 else f"{road}{number}#",
        f"{road}{number}号{rng.choice(_NEAR)}",
        f"{road}{number}",
    )
    return forms[n % len(forms)]


def _stem(road: str) -> str:
    return next((road[: -len(t)] for t in _ROAD_TYPES if road.endswith(t) and len(road) > len(t) + 1), road)


def _crossing_query(rng: random.Random, a: str, b: str, n: int) -> str:
    forms = (
        f"{a}与{b}交叉口",
        f"{a}和{b}路口",
        f"{a}{b}口",
        f"{a}跟{b}交叉路口",
        f"{a}与{b}",
        f"{_stem(a)}与{_stem(b)}交叉口",
        f"{typo(rng, a) if len(a) >= 4 else a}与{b}交叉口",
        f"{a}和{b}交叉口附近",
        f"{a}/{b}",
        f"{a}、{b}十字路口",
    )
    return forms[n % len(forms)]


def build_rows(city_dir: Path) -> list[tuple[str, str, str, float, float]]:
    """(form, query, expected id, lon, lat) rows from the demo city written to `city_dir`."""
    rng = random.Random(SEED)
    city = load_profile(democity.generate(city_dir))
    frame = city.addresses
    rows: list[tuple[str, str, str, float, float]] = []
    compound_rows = [(r.addr_id, r.name, r.address, r.geometry) for r in frame.itertuples()
                     if r.kind == "address" and "单元" in r.address]
    for n, (addr_id, name, address, point) in enumerate(rng.sample(compound_rows, 300)):
        building, unit = (int(x) for x in address[len(name):].replace("号楼", " ").replace("单元", "").split())
        rows.append(("compound", _compound_query(rng, name, building, unit, n), addr_id, point.x, point.y))
    street_rows = [(r.addr_id, r.road, int(r.house_number), r.geometry) for r in frame.itertuples()
                   if r.kind == "address" and isinstance(r.road, str) and r.road]
    for n, (addr_id, road, number, point) in enumerate(rng.sample(street_rows, 200)):
        rows.append(("street", _street_query(rng, road, number, n), addr_id, point.x, point.y))
    numbers: dict[str, set[int]] = {}
    for _, road, number, _ in street_rows:
        numbers.setdefault(road, set()).add(number)
    missing = 0
    for addr_id, road, number, point in rng.sample(street_rows, len(street_rows)):
        asked = number + rng.choice((-3, -2, -1, 1, 2, 3))
        others = sorted(numbers[road], key=lambda k: abs(k - asked))
        if asked <= 0 or asked in numbers[road] or others[0] != number \
                or abs(others[1] - asked) == abs(number - asked):
            continue  # the number exists, or the nearest one is not unique
        rows.append(("street", f"{road}{asked}号{_NEAR[missing % 2]}" if missing % 3 == 0 else f"{road}{asked}号",
                     addr_id, point.x, point.y))
        missing += 1
        if missing == 50:
            break
    pois = [(r.addr_id, r.name, r.geometry) for r in frame.itertuples() if r.kind == "poi" and r.poi_type != "村庄"]
    for n, (poi_id, name, point) in enumerate(rng.sample(pois, 60)):
        rows.append(("landmark", f"{name}{_NEAR[n % len(_NEAR)]}", poi_id, point.x, point.y))
    crossings = road_crossings(list(city.roads["name"]), list(city.roads.geometry))
    pairs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for a, b, lon, lat in crossings:
        pairs.setdefault((a, b), []).append((lon, lat))
    single = [(a, b, pts[0]) for (a, b), pts in sorted(pairs.items()) if len(pts) == 1 and "村" not in a + b]
    for n, (a, b, (lon, lat)) in enumerate(rng.sample(single, 120)):
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        rows.append(("intersection", _crossing_query(rng, first, second, n), crossing_id(a, b), lon, lat))
    return rows


def main() -> None:
    """Generate the demo city in a temporary directory and write the TSV."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = build_rows(Path(tmp))
    lines = ["form\tquery\texpected_id\tlon\tlat"]
    lines += [f"{form}\t{query}\t{expected}\t{lon:.7f}\t{lat:.7f}" for form, query, expected, lon, lat in rows]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(rows)} rows -> {OUT}")


if __name__ == "__main__":
    main()
