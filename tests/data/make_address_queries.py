"""Write tests/data/address_queries.tsv: address queries in the way callers say them, with answers.

Run once (`.venv/bin/python -m tests.data.make_address_queries`); the file is then kept as data,
so a change to the generator or the demo city does not silently change the test set. Every row is
drawn from the demo city (`simulators.democity`, default seed) and names the entry a dispatcher would
pick: an address id (A000123), a POI id (POI00012) or a crossing id (X:密水大街|百合路), and its
point (lon, lat); where `tolerance_m` is given the point found must lie within it (a spoken
offset, 往东100米, moves the point). `--forms poi,village` regenerates only those forms and keeps
the other rows as they are: compound, street, landmark and intersection were made from the demo
city of generator 2 (whose POI list was shorter, so sampling it again would draw other rows).

Forms (column 1):
- compound: 小区/新村/苑 + building (号楼, 栋, 幢, 座, 楼 before 单元, 号) + unit, Arabic or
  Chinese numerals, a room (502, 502室, 3-2-502), one wrong/missing/swapped character in
  names of four characters or more;
- street: road + house number, with the city prefix, Chinese numerals, spaces, 號, a typo,
  and 附近/旁边/对面/往东100米; and 50 numbers that do not exist, answered by the one nearest
  number on that road (only where that nearest number is unique);
- landmark: a POI's name + 附近/旁边/对面/门口/往北50米 (villages left out);
- intersection: two roads that meet exactly once: A与B交叉口, A和B路口, AB口, A跟B交叉路口, A与B,
  the road types left out (A与B交叉口 with stems), a typo in one name, 附近, A/B, A、B十字路口;
- poi: schools, hospitals, markets, stations, parks, banks and shops by name, short name (高密市,
  高密 and a town's 镇 left out) or alias (汽车站, 火车站, 市医院, 工行 ...), with 对面/旁边/门口/东门 ...,
  one typo in names of five characters or more, and 往东/往西/往南/往北 N米 (Arabic or Chinese
  numerals), the expected point moved that way (tolerance 5 m);
- village: a village's groups as 王家庄村3组, 王家庄三组, 王家庄村三组, 王家庄3组, 王家庄村第三小组,
  王家庄村3队, with the town (阚家镇王家庄村3组), 附近, 往北100米, and one typo that leaves the name
  closest to that village only; the village itself as 王家庄村委会, 王家庄村委, 王家庄;
- spoken: 30 rows of each form above wrapped in a caller's words (我家在…这边, 喂，我住在…,
  地址是…那边, 那个…对面那儿 is the landmark form's 对面 plus 那个…那儿), expected id, point and
  tolerance as the row it was made from; made from the rows in the file (`--forms spoken` remakes
  only these, without the city).
"""
from __future__ import annotations

import argparse
import csv
import math
import random
import tempfile
from pathlib import Path
from typing import Any

from rapidfuzz.distance import OSA

from simulators import democity
from gis.crossings import crossing_id, road_crossings
from gis.layers import load_profile

OUT = Path(__file__).with_name("address_queries.tsv")
SEED = 25
PLACE_SEED = 26
SPOKEN_SEED = 27
SPOKEN_PER_FORM = 30
HEADER = ("form", "query", "expected_id", "lon", "lat", "tolerance_m")
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


def build_rows(city: Any) -> list[tuple[str, str, str, float, float]]:
    """(form, query, expected id, lon, lat) rows of the older forms from the loaded demo city."""
    rng = random.Random(SEED)
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


_POI_CLASSES = ("医院", "学校", "市场", "交通", "公园", "银行", "商场")
_QUALIFIERS = ("对面", "旁边", "门口", "东门", "南门", "附近", "西侧", "北门")
_WAYS = {"东": (1, 0), "西": (-1, 0), "南": (0, -1), "北": (0, 1)}


def moved(lon: float, lat: float, way: str, metres: float) -> tuple[float, float]:
    """The point `metres` east/west/south/north of (lon, lat) on a sphere (within 2 m of the
    projected answer at these distances; the rows allow 5 m)."""
    dx, dy = _WAYS[way]
    return (lon + dx * metres / (111_320.0 * math.cos(math.radians(lat))), lat + dy * metres / 111_320.0)


def _short(name: str) -> str:
    """How a caller shortens a POI's name: no 高密市/高密 in front, a town without its 镇."""
    for prefix in ("高密市", "高密"):
        if name.startswith(prefix) and len(name) > len(prefix) + 1:
            name = name[len(prefix):]
    return name.replace("镇", "", 1) if "镇" in name[:4] else name


def _offset(rng: random.Random, lon: float, lat: float, chinese: bool) -> tuple[str, float, float]:
    way, metres = rng.choice(tuple(_WAYS)), rng.choice((50, 100, 150, 200, 300))
    said = f"往{way}{cn_number(metres) if chinese else metres}米"
    return (said, *moved(lon, lat, way, metres))


def _poi_rows(rng: random.Random, frame: Any) -> list[tuple[str, str, str, float, float, str]]:
    pois = [r for r in frame.itertuples() if r.kind == "poi" and r.poi_type in _POI_CLASSES]
    rows = []
    for n, poi in enumerate(rng.sample(pois, min(90, len(pois)))):
        name, lon, lat = poi.name, poi.geometry.x, poi.geometry.y
        qualifier, tolerance = rng.choice(_QUALIFIERS), "1"
        kind = n % 6
        if kind in (1, 3):  # moved by a spoken offset
            said, lon, lat = _offset(rng, lon, lat, chinese=kind == 3)
            text, tolerance = (f"{name}{said}" if kind == 1 else f"{_short(name)}{qualifier}{said}"), "5"
        elif kind == 2:
            text = f"{_short(name)}{qualifier}"
        elif kind == 4 and len(name) >= 5:
            text = f"{typo(rng, name)}{qualifier}"
        else:
            text = f"{name}{qualifier}"
        rows.append(("poi", text, poi.addr_id, lon, lat, tolerance))
    for poi in (r for r in frame.itertuples() if r.kind == "poi" and isinstance(r.alias, str) and r.alias):
        for k, alias in enumerate(poi.alias.split(";")):
            lon, lat, tolerance, text = poi.geometry.x, poi.geometry.y, "1", f"{alias}{rng.choice(_QUALIFIERS)}"
            if k == 0:  # 汽车站旁边往东100米
                said, lon, lat = _offset(rng, lon, lat, chinese=False)
                text, tolerance = f"{text}{said}", "5"
            rows.append(("poi", text, poi.addr_id, lon, lat, tolerance))
    return rows


def _unique_typo(rng: random.Random, stem: str, stems: list[str]) -> str | None:
    """One typo in a village's name that leaves it closer to that village than to any other."""
    for _ in range(10):
        wrong = typo(rng, stem + "村")[:-1] if len(stem) >= 2 else stem
        scores = sorted(((OSA.distance(wrong, other), other) for other in stems))
        if wrong != stem and scores[0][1] == stem and scores[1][0] > scores[0][0]:
            return wrong
    return None


def _village_rows(rng: random.Random, frame: Any) -> list[tuple[str, str, str, float, float, str]]:
    villages = {r.name: r for r in frame.itertuples() if r.kind == "village" and r.poi_type == "村庄"}
    groups = [r for r in frame.itertuples() if r.kind == "village" and r.poi_type == "村民小组"]
    stems = [name[:-1] for name in villages]
    rows = []
    for n, group in enumerate(rng.sample(groups, min(100, len(groups)))):
        village = villages[group.name[: group.name.rindex("村") + 1]]
        stem, g = village.name[:-1], int(group.name[len(village.name):-1])
        town = village.alias[: -len(village.name)]
        lon, lat, tolerance = group.geometry.x, group.geometry.y, "1"
        forms = (f"{stem}村{g}组", f"{stem}{cn_number(g)}组", f"{stem}村{cn_number(g)}组", f"{stem}{g}组",
                 f"{town}{stem}村{g}组", f"{stem}村{g}组附近", f"{stem}村第{cn_number(g)}小组", f"{stem}村{g}队")
        text = forms[n % len(forms)]
        if n % 10 == 8 and (wrong := _unique_typo(rng, stem, stems)):
            text = f"{wrong}村{g}组"
        elif n % 10 == 9:
            said, lon, lat = _offset(rng, lon, lat, chinese=n % 20 == 19)
            text, tolerance = f"{stem}村{g}组{said}", "5"
        rows.append(("village", text, group.addr_id, lon, lat, tolerance))
    for n, village in enumerate(villages.values()):
        stem = village.name[:-1]
        for text in (f"{stem}村委会", (f"{stem}村委", stem, f"{stem}村村委会")[n % 3]):
            rows.append(("village", text, village.addr_id, village.geometry.x, village.geometry.y, "1"))
    return rows


def build_place_rows(city: Any) -> list[tuple[str, str, str, float, float, str]]:
    """(form, query, expected id, lon, lat, tolerance_m) rows of the forms poi and village."""
    rng = random.Random(PLACE_SEED)
    return _poi_rows(rng, city.addresses) + _village_rows(rng, city.addresses)


_LEADS = ("我家在", "我这里是", "就在", "那个", "喂，我住在", "地址是", "你好，我家就在", "位置在", "在", "我们这边是",
          "嗯，我在", "我家住", "喂，你好，那个", "具体位置是", "就是")
_TAILS = ("这边", "那边", "这里", "那儿", "这块", "这一块", "那块儿", "呢", "吧", "的位置", "")


def spoken_rows(rows: list[tuple[str, str, str, float, float, str]]) -> list[tuple[str, str, str, float, float, str]]:
    """Rows of the form spoken: SPOKEN_PER_FORM rows of every other form with a caller's words round the
    query (a lead, a tail, or both; never neither), the expected id, point and tolerance kept."""
    rng = random.Random(SPOKEN_SEED)
    out = []
    for form in sorted({row[0] for row in rows} - {"spoken"}):
        base = [row for row in rows if row[0] == form]
        for n, (_, query, expected, lon, lat, tolerance) in enumerate(rng.sample(base, min(SPOKEN_PER_FORM, len(base)))):
            lead = "" if n % 5 == 4 else rng.choice(_LEADS)
            tail = rng.choice(_TAILS[:-1]) if n % 5 in (2, 4) else rng.choice(_TAILS)
            out.append(("spoken", f"{lead}{query}{tail}", expected, lon, lat, tolerance))
    return out


def _read_kept() -> list[tuple[str, str, str, float, float, str]]:
    with open(OUT, encoding="utf-8") as handle:
        return [(r["form"], r["query"], r["expected_id"], float(r["lon"]), float(r["lat"]), r.get("tolerance_m") or "")
                for r in csv.DictReader(handle, delimiter="\t")]


def main(argv: list[str] | None = None) -> None:
    """Generate the demo city in a temporary directory and write the TSV (all forms, or only --forms)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forms", help="comma-separated forms to regenerate; the other rows are kept")
    args = parser.parse_args(argv)
    wanted = set(args.forms.split(",")) if args.forms else None
    rows: list[tuple[str, str, str, float, float, str]] = []
    if wanted is None or wanted - {"spoken"}:
        with tempfile.TemporaryDirectory() as tmp:
            city = load_profile(democity.generate(Path(tmp)))
            rows = [(*row, "") for row in build_rows(city)] + build_place_rows(city)
    if wanted is not None:
        rows = [row for row in _read_kept() if row[0] not in wanted] + [row for row in rows if row[0] in wanted]
    if wanted is None or "spoken" in wanted:
        rows = [row for row in rows if row[0] != "spoken"] + spoken_rows(rows)
    lines = ["\t".join(HEADER)]
    lines += [f"{form}\t{query}\t{expected}\t{lon:.7f}\t{lat:.7f}\t{tolerance}"
              for form, query, expected, lon, lat, tolerance in rows]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(rows)} rows -> {OUT}")


if __name__ == "__main__":
    main()
