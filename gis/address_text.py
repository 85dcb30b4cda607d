"""How an address text is read (地址文本): one canonical form, then name, details and offset.

`normalize` turns free text into one canonical form; `parse` splits it into the name (road, POI,
compound or village) and its numeric details (lane 弄, house number 号, building 栋, unit 单元,
room 室, village group 组), and reads a trailing qualifier: 附近/旁边/对面/门口 ... say the place is
near the match, 往东100米 also says how far and which way (`ParsedAddress.east_m`/`north_m`).
`strip_filler` takes off the words a caller wraps round the address (喂，我家在…这边: `LEADING_FILLER`,
`TRAILING_FILLER`). `gis.address` matches the parsed text against an address list.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIXES", "LEADING_FILLER", "TRAILING_FILLER", "ParsedAddress", "normalize", "parse", "peel_near",
           "offset_text", "split_road", "strip_filler"]

DEFAULT_PREFIXES: tuple[str, ...] = ("中华人民共和国", "中国", "山东省", "潍坊市", "高密市")
"""Leading administrative prefixes removed by `normalize` (the demo city's own hierarchy)."""

LEADING_FILLER: tuple[str, ...] = (
    "喂", "哎", "嗯", "呃", "啊", "哦", "你好", "您好",  # greetings and hesitation
    "我们家", "我家", "我们这里", "我们这边", "我这里", "我这边", "我这儿", "我这", "我们", "我",  # who speaks
    "这里", "这边", "这儿",  # 这里是…
    "具体", "详细", "的", "地址", "住址", "位置", "地点",  # 我家的具体地址是…
    "我家住", "我住", "家住", "住在", "就在", "是在", "在", "就是", "是", "就",  # the verb (never 住 alone: 住建局)
    "那个", "这个",  # particles
)
"""Words a caller says before the address (喂，我家就在那个…, 地址是…), taken off one at a time
(longest first) by `strip_filler`: `gis.address` keeps a word when the text from it on is an entry's
name as written (在水一方)."""

TRAILING_FILLER: tuple[str, ...] = (
    "这一块", "那一块", "这块儿", "那块儿", "这块", "那块", "这边", "那边", "这里", "那里", "这儿", "那儿",
    "这个地方", "那个地方", "这地方", "那地方", "这个位置", "这位置", "地方", "位置",  # where it is
    "呢", "啊", "吧", "呀", "哈", "嘛", "了", "的",  # particles
)
"""Words a caller says after the address (…3组这边, …门口这块, …对面那儿). 附近/一带/旁边/对面 ... are not
filler: they stay and mark the place as near (`peel_near`); 这/那/的 right before them go (这附近)."""

MAX_NUMBER = 10**9  # larger digit runs are clamped, so numbers always fit numpy's int64
MAX_OFFSET_M = 5000.0  # a spoken offset further than this is kept as 附近 only: no one walks 50 km
ROAD_TYPES = ("大街", "大道", "胡同", "公路", "路", "街", "巷")  # longest first
VILLAGE = "村"  # compared like a road type: 王家庄 is 王家庄村
_VARIANT_CHARS = str.maketrans({"號": "号", "單": "单", "棟": "栋", "樓": "楼", "門": "门", "衚": "胡", "衕": "同"})
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_NUMERAL_RE = re.compile(r"([零〇一二两三四五六七八九十百千]+)(?=号|弄|栋|幢|座|单元|室|层|楼|组|小组|队|米|公里)")
_NOT_WORD_RE = re.compile(r"[^\w#-]|_")
_LONE_DASH_RE = re.compile(r"(?<![0-9])-|-(?![0-9])")
_HASH_RE = re.compile(r"([0-9]+)#")
_BUILDING_RE = re.compile(r"([0-9]+)(?:号楼|幢|座)")
_ROOM_RE = re.compile(r"([0-9]+)(?:房|户)(?![0-9])")
_FLOOR_AS_BUILDING_RE = re.compile(r"([0-9]+)楼(?=[0-9]+单元)")  # 4楼3单元: 楼 before a unit is the building
_COMMITTEE_RE = re.compile(r"村(?:民委员会|委会|委|部|两委)+")  # 王家庄村委会 is where 王家庄村 is
_TRIPLE_RE = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)$")  # 3-2-301: building-unit-room
_TAIL_RES = (  # peeled off the end of a normalized address, in this order
    ("room", re.compile(r"([0-9]+)室$|(?<=栋|元)([0-9]{3,4})$")),  # 3单元502: a bare room
    ("unit", re.compile(r"([0-9]+)单元$")),
    ("building", re.compile(r"([0-9]+)栋$")),
)
_NUMBER_RE = re.compile(r"([0-9]+)(?:-([0-9]+))?号$")
_BARE_NUMBER_RE = re.compile(r"(?<=[^0-9-])([0-9]+)$")
_GROUP_RE = re.compile(r"第?([0-9]+)(?:村民小组|小组|组|队)$")  # 王家庄村3组, 王家庄第三小组
_LANE_RE = re.compile(r"([0-9]+)弄$")
_DIRECTIONS = {"东": (1.0, 0.0), "西": (-1.0, 0.0), "南": (0.0, -1.0), "北": (0.0, 1.0)}
_OFFSET = r"(?:往|向|朝)?([东南西北]{1,2})(?:方向|边|侧)?走?约?([0-9]+)(米|公里)(?:左右|处|远)?"
_OFFSET_RE = re.compile(_OFFSET)
_LEADING_FILLER_RE = re.compile("|".join(map(re.escape, sorted(LEADING_FILLER, key=len, reverse=True))))
# the words at the end, matched on the reversed text: one anchored match, never a search from every position
_TRAILING_FILLER_REVERSED_RE = re.compile("|".join(re.escape(w[::-1]) for w in sorted(TRAILING_FILLER, key=len,
                                                                                          reverse=True)))
_BEFORE_NEAR_FILLER_REVERSED_RE = re.compile(r"(?:这|那|的|个这|个那)+")  # 这附近, 医院的对面
_NEAR_RE = re.compile(  # 附近, 旁边, 对面, 往东100米 ... at the end: the place is near, not at, the match
    rf"(?:附近|旁边|边上|对面|门口|周边|周围|一带|左右|后面|前面|院内|{_OFFSET}|[东南西北](?:侧|边|头|门))+$"
)


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    """A normalized address split into its name (road, POI, compound, village) and numeric details.

    `near` is set by a trailing 附近/旁边/对面/往东100米 ...; `east_m`/`north_m` is the spoken offset
    (往东100米: east 100, 往西南50米: about 35 west and 35 south), 0 when none was said.
    """

    name: str
    lane: int | None = None
    number: int | None = None
    sub: int | None = None
    building: int | None = None
    unit: int | None = None
    room: int | None = None
    group: int | None = None
    near: bool = False
    east_m: float = 0.0
    north_m: float = 0.0


def _cn_to_int(text: str) -> int | None:
    """Value of a Chinese numeral ("一百二十五", "一二五", "十二", "两百零五"), None if malformed."""
    if not any(ch in _CN_UNITS for ch in text):  # digit by digit: 一二五 -> 125
        return int("".join(str(_CN_DIGITS[ch]) for ch in text))
    total, digit, last_unit = 0, None, 10**9
    for ch in text:
        if ch in _CN_DIGITS:
            if digit is not None and _CN_DIGITS[ch] != 0:
                return None  # two digits in a row inside a positional numeral
            digit = _CN_DIGITS[ch] if _CN_DIGITS[ch] != 0 else None
        else:
            unit = _CN_UNITS[ch]
            if unit >= last_unit:
                return None  # 十百, 百百: units must fall
            total += (1 if digit is None else digit) * unit
            digit, last_unit = None, unit
    return total + (digit or 0)


def _replace_cn_numeral(match: re.Match[str]) -> str:
    value = _cn_to_int(match.group(1))
    return match.group(1) if value is None else str(value)


def normalize(text: str, prefixes: Sequence[str] = DEFAULT_PREFIXES) -> str:
    """Canonical form of an address or POI name; rules apply in the order listed.

    1. Unicode NFKC: full-width digits, letters, spaces and punctuation become half-width
       ("１２５" -> "125"), circled digits become digits; ASCII letters are lower-cased.
    2. Traditional/variant characters: 號->号, 單->单, 棟->栋, 樓->楼, 門->门, 衚衕->胡同.
    3. Spaces and punctuation are removed (also brackets: "超市(人民路店)" -> "超市人民路店");
       a dash survives only between digits ("3-2-301", "125-1号").
    4. "125#" means "125号"; any other "#" is removed.
    5. Chinese numerals directly before a marker (号 弄 栋 幢 座 单元 室 层 楼 组 小组 队 米 公里)
       become digits: "一百二十五号" -> "125号", "三单元" -> "3单元", "三组" -> "3组", "一百米" -> "100米".
    6. Building variants after a number: 号楼/幢/座 -> 栋 ("3号楼" -> "3栋"); a room written with
       房 or 户 -> 室. 弄, 单元 and 室 are already canonical. Road types 路/街/大街/大道/巷 are kept as
       written: they name different roads, and `AddressIndex` compares them by their stem.
    7. The village committee is the village: 村委会/村委/村民委员会/村部/村两委 -> 村.
    8. Leading administrative prefixes are removed, repeatedly ("山东省潍坊市高密市人民路" ->
       "人民路"), unless nothing would remain or the prefix ends in 市 and 场 follows (市场).
    """
    text = unicodedata.normalize("NFKC", text).lower().translate(_VARIANT_CHARS)
    text = _NOT_WORD_RE.sub("", text)
    text = _LONE_DASH_RE.sub("", text)
    text = _HASH_RE.sub(r"\1号", text).replace("#", "")
    text = _CN_NUMERAL_RE.sub(_replace_cn_numeral, text)
    text = _BUILDING_RE.sub(r"\1栋", text)
    text = _ROOM_RE.sub(r"\1室", text)
    text = _FLOOR_AS_BUILDING_RE.sub(r"\1栋", text)
    text = _COMMITTEE_RE.sub(VILLAGE, text)
    return _strip_prefixes(text, prefixes)


def _strip_prefixes(text: str, prefixes: Sequence[str]) -> str:
    """`normalize` rule 8: the leading administrative prefixes removed."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in prefixes:
            rest = text[len(prefix):]
            if text.startswith(prefix) and rest and not (prefix.endswith("市") and rest[0] == "场"):
                text, stripped = rest, True
    return text


def strip_filler(normalized: str, prefixes: Sequence[str] = DEFAULT_PREFIXES,
                 keep: Callable[[str], bool] | None = None) -> str:
    """A `normalize`d text without the caller's words round the address: "喂我家就在王家庄村3组这边"
    -> "王家庄村3组", "那个人民医院对面那儿" -> "人民医院对面", "地址是高密市人民路125号" -> "人民路125号".

    Only the ends are touched, never the inside of a name, and never down to nothing: first the
    `TRAILING_FILLER` words, then the `LEADING_FILLER` words (each followed by the administrative
    prefixes), one word at a time; 这/那/的 right before a 附近/对面/往东100米 ... go too, while the
    qualifier stays (the place is still near). When `keep` is given, the least stripped text that it
    says is a name as written (在水一方, 星空酒吧), leaving off at most the last three words at
    each end, is taken instead of the fully stripped one.
    """
    ends = [len(normalized)]
    backwards = normalized[::-1]
    while (word := _TRAILING_FILLER_REVERSED_RE.match(backwards, len(normalized) - ends[-1])) \
            and word.end() < len(normalized):
        ends.append(len(normalized) - word.end())
    starts = [0]
    while (word := _LEADING_FILLER_RE.match(normalized, starts[-1], ends[-1])) and word.end() < ends[-1]:
        rest = _strip_prefixes(normalized[word.end():ends[-1]], prefixes)
        starts.append(ends[-1] - len(rest))
    if keep is not None and len(starts) + len(ends) > 2:  # some filler: is a less stripped text a name?
        for start in starts[-4:]:
            for end in ends[-4:]:
                if keep(text := _drop_before_near(normalized[start:end])):
                    return text
    return _drop_before_near(normalized[starts[-1]:ends[-1]])


def _drop_before_near(text: str) -> str:
    """这/那/的 right before a trailing 附近/对面/往东100米 ... taken out (东风路173号这附近)."""
    near = _NEAR_RE.search(text)
    before = _BEFORE_NEAR_FILLER_REVERSED_RE.match(text[: near.start()][::-1]) if near else None
    if near is None or before is None or before.end() >= near.start():
        return text
    return text[: near.start() - before.end()] + text[near.start():]


def _as_number(digits: str) -> int:
    return min(int(digits), MAX_NUMBER)


def parse(normalized: str) -> ParsedAddress:
    """Split a `normalize`d text into name and details ("人民路125号3栋" -> 人民路, 125, building 3).

    A trailing 附近/旁边/对面/往东100米 sets `near` (and the offset); a bare 3-4 digit number after 栋
    or 单元 is the room ("4栋3单元502"); 3组/3小组/3队 after a village is its group.
    """
    rest, near, (east_m, north_m) = peel_near(normalized)
    found: dict[str, str | None] = {}
    triple = _TRIPLE_RE.search(rest)
    if triple and triple.start() > 0:
        found = {"building": triple.group(1), "unit": triple.group(2), "room": triple.group(3)}
        rest = rest[: triple.start()]
    else:
        for field, regex in _TAIL_RES:
            match = regex.search(rest)
            if match and match.start() > 0:
                found[field] = match.group(1) or match.group(2)
                rest = rest[: match.start()]
    match = _NUMBER_RE.search(rest)
    if match and match.start() > 0:
        found["number"], found["sub"] = match.group(1), match.group(2)
        rest = rest[: match.start()]
    elif not found and (match := _BARE_NUMBER_RE.search(rest)):
        found["number"] = match.group(1)  # "人民路125": a bare trailing number is the house number
        rest = rest[: match.start()]
    for field, regex in (("group", _GROUP_RE), ("lane", _LANE_RE)):
        match = regex.search(rest)
        if match and match.start() > 0:
            found[field] = match.group(1)
            rest = rest[: match.start()]
    details = {k: _as_number(v) for k, v in found.items() if v is not None}
    return ParsedAddress(rest, **details, near=near, east_m=east_m, north_m=north_m)  # type: ignore[arg-type]


def peel_near(normalized: str) -> tuple[str, bool, tuple[float, float]]:
    """The text without a trailing 附近/旁边/对面/往东100米 ..., whether there was one, and the
    offset it says in metres (east, north): several add up, one further than 5 km counts as none."""
    near = _NEAR_RE.search(normalized)
    if near is None or near.start() == 0:
        return normalized, False, (0.0, 0.0)
    east = north = 0.0
    for match in _OFFSET_RE.finditer(normalized, near.start()):
        metres = float(match.group(2)) * (1000.0 if match.group(3) == "公里" else 1.0)
        dx = sum(_DIRECTIONS[ch][0] for ch in match.group(1))
        dy = sum(_DIRECTIONS[ch][1] for ch in match.group(1))
        length = math.hypot(dx, dy)
        if length and metres <= MAX_OFFSET_M:
            east, north = east + metres * dx / length, north + metres * dy / length
    return normalized[: near.start()], True, (round(east, 1), round(north, 1))


def offset_text(east_m: float, north_m: float) -> str:
    """How an offset is said back ("往东100米", "往东北71米"); "" for none."""
    metres = math.hypot(east_m, north_m)
    if metres < 0.5:
        return ""
    angle = math.degrees(math.atan2(north_m, east_m)) % 360.0  # 0 east, 90 north
    names = ("东", "东北", "北", "西北", "西", "西南", "南", "东南")
    return f"往{names[int((angle + 22.5) // 45) % 8]}{round(metres)}米"


def split_road(name: str) -> tuple[str, str]:
    """("人民", "路") for "人民路", ("王家庄", "村") for "王家庄村"; (name, "") when the name ends in
    neither a road type nor 村."""
    for road_type in (*ROAD_TYPES, VILLAGE):
        if name.endswith(road_type) and len(name) > len(road_type):
            return name[: -len(road_type)], road_type
    return name, ""
