"""Which tickets are real emergencies for 110 (110联动), read from the citizen's whole description.

Pure: no I/O, no clock. `assess_police` says whether a ticket needs 110, as which emergency kind,
and how sure the rules are: ``high`` (handed over automatically) or ``ambiguous`` (suggested to the
dispatcher, who confirms with the console's 转110 button). `needs_police` is the automatic part.

How the text is read, in this order (each rule written once, as data below):

1. Misleading phrases are blanked out first (`MISLEADING_PHRASES`): 打不着火 / 点不着火 is a
   stove that does not light, not a fire; 困难 is a difficulty, not people trapped.
2. A rule (`EmergencyRule`) matches when every group of ``all_of`` has a word in the text (AND of
   ORs); a word counts only where it is not negated (`_negated`: 没有, 不是, 没有闻到, ... at most
   2 characters before it in the same clause; 有没有 and 是不是 are questions, not negations).
3. A match is ``high`` when the rule is and every group has a word in a clause without a hedge
   (`HEDGES`: 好像, 可能, 有没有, 上次, ...); otherwise ``ambiguous``. The first high rule wins,
   else the first ambiguous one.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

HIGH = "high"  # handed over to 110 automatically
AMBIGUOUS = "ambiguous"  # suggested to the dispatcher (meta ``police_suggested``)
CONFIDENCES = (HIGH, AMBIGUOUS)


@dataclass(frozen=True)
class EmergencyRule:
    """One row of the emergency table: when does a ticket go to 110, and as which kind.

    A rule matches when the ticket's category is in ``categories`` (empty = any category) and
    either a tag equals ``kind`` or is in ``tags``, or the text matches ``all_of``: every group
    must have at least one of its words in the text (AND of ORs), a word counting only where it
    is not negated (没有煤气味 does not match 煤气味). ``confidence`` is the rule's own: a
    ``high`` rule is downgraded to ``ambiguous`` when its words are only found hedged.
    """

    kind: str
    all_of: tuple[tuple[str, ...], ...] = ()
    categories: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    confidence: str = HIGH

    def __post_init__(self) -> None:
        if self.confidence not in CONFIDENCES:
            raise ValueError(f"confidence {self.confidence!r} not in {CONFIDENCES}")


@dataclass(frozen=True)
class PoliceCall:
    """The rules' answer for one ticket: the emergency ``kind`` and the ``confidence``."""

    kind: str
    confidence: str

    @property
    def automatic(self) -> bool:
        """True when the ticket is handed over without the dispatcher (high confidence)."""
        return self.confidence == HIGH


_GAS = ("燃气", "煤气", "天然气", "液化气")
_GAS_PIPE = ("燃气管", "煤气管", "天然气管", "液化气管", "燃气立管", "燃气阀", "调压箱", "调压站")
_DAMAGED = ("挖断", "挖破", "挖坏", "挖漏", "挖到", "撞断", "撞坏", "压断", "砸断", "砸坏", "断裂", "破裂", "断了", "破了")
_WIRE = ("电线", "高压线", "电缆", "导线", "电力线", "架空线")
_WIRE_DOWN = ("落地", "掉在地", "掉地上", "掉到地", "掉下来", "掉下", "拖在地", "垂到地", "垂下来", "耷拉", "断落",
              "刮断", "拉断", "砸断", "压断", "烧断", "断了", "断在", "搭在", "掉在", "冒火花", "打火花")
_FIRE = ("着火", "起火", "冒烟", "火灾", "冒火苗", "窜火", "燃烧", "烧起来", "烧着", "爆炸", "爆燃", "浓烟", "明火")
_ROAD = ("路面", "马路", "道路", "路上", "街道", "路口", "公路", "人行道", "桥下", "隧道", "地道", "小区门口", "大街")
_FLOOD = ("淹", "积水", "漫", "冒水", "喷水", "成河", "水柱", "涌出", "往外涌", "冲出", "喷出", "哗哗", "冒到", "流到")
_BURST = ("爆管", "水管爆裂", "管道爆裂", "主管破裂", "水管破裂", "供水管爆", "水管爆了", "管子爆了", "水管崩",
          "大水管", "供水主管", "总水管", "自来水管道破", "管道破裂", "水管断了", "水管挖断", "水管被挖断", "水管挖破")
_TRAPPED = ("被困", "困人", "困在", "困了", "困住", "关在电梯", "卡在电梯", "关在里面", "出不来")
_PEOPLE = ("人", "孩子", "小孩", "老人", "乘客", "学生")
_COLLAPSE = ("塌陷", "地陷", "坍塌", "天坑", "路面下沉", "塌了", "塌方", "塌出", "陷下去", "陷了")

DEFAULT_EMERGENCY_RULES: tuple[EmergencyRule, ...] = (
    EmergencyRule("people_trapped", (("被困", "困人", "困在", "困住", "关在电梯", "卡在电梯"),), tags=frozenset({"被困"})),
    EmergencyRule("people_trapped", (_TRAPPED, _PEOPLE)),
    EmergencyRule("people_trapped", (("电梯",), _TRAPPED + ("在里面", "在里头", "在电梯里"))),
    EmergencyRule("people_trapped", (("掉下去", "掉进", "掉到井", "跌进", "摔进", "掉到坑"),
                                     ("有人", "行人", "孩子", "小孩", "老人"))),
    EmergencyRule("people_trapped", (("电梯",), ("有没有人", "里面有人", "里头有人"))),
    EmergencyRule("gas_leak", (("燃气泄漏", "煤气泄漏", "天然气泄漏", "液化气泄漏", "煤气味", "燃气味", "天然气味",
                                "液化气味", "闻到煤气", "闻到燃气", "闻到天然气", "闻到液化气", "漏煤气", "漏燃气",
                                "漏天然气", "煤气漏", "燃气漏", "天然气漏", "液化气漏", "煤气的味", "燃气的味",
                                "天然气的味", "液化气的味", "一股煤气", "一股燃气", "一股天然气", "一股液化气"),),
                  tags=frozenset({"燃气泄漏"})),
    EmergencyRule("gas_leak", (_GAS_PIPE, _DAMAGED)),
    EmergencyRule("gas_leak", (_GAS, ("漏气", "泄漏", "泄露", "嘶嘶"))),
    EmergencyRule("gas_leak", (("漏气", "泄漏", "泄露", "嘶嘶", "气味", "爆炸", "爆燃") + _FIRE,),
                  categories=frozenset({"gas"})),
    EmergencyRule("gas_leak", (("异味", "怪味", "臭味", "味道"),), categories=frozenset({"gas"}), confidence=AMBIGUOUS),
    EmergencyRule("fallen_live_wire", (("电线落地", "电线掉落", "电线断落", "电线掉在地上", "高压线断", "高压线掉",
                                        "断线落地", "电线杆倒", "电杆倒", "电线杆被撞倒", "电线杆被刮倒"),),
                  tags=frozenset({"电线落地"})),
    EmergencyRule("fallen_live_wire", (_WIRE, _WIRE_DOWN)),
    EmergencyRule("fallen_live_wire", (("电线杆", "电杆"), ("歪", "倾斜", "裂", "快倒")), confidence=AMBIGUOUS),
    EmergencyRule("electrical_fire", (("电线着火", "电线起火", "变压器着火", "变压器起火", "配电箱着火",
                                       "配电箱起火", "电表箱着火", "电表箱起火", "电缆着火", "电缆起火",
                                       "变压器冒烟", "电表箱冒烟", "配电箱冒烟", "变压器爆炸"),)),
    EmergencyRule("electrical_fire", (_FIRE,), categories=frozenset({"power"})),
    EmergencyRule("electrical_fire", (("冒火花", "打火", "火花", "焦糊味", "烧焦"),), categories=frozenset({"power"}),
                  confidence=AMBIGUOUS),
    EmergencyRule("road_collapse", (_COLLAPSE,), tags=frozenset({"塌陷"})),
    EmergencyRule("road_collapse", (_ROAD, ("下沉", "沉降", "大坑", "深坑", "裂开", "洞")), confidence=AMBIGUOUS),
    EmergencyRule("main_burst_flooding", (_BURST, _FLOOD, _ROAD), tags=frozenset({"爆管"})),
    EmergencyRule("main_burst_flooding", (_BURST, _ROAD), confidence=AMBIGUOUS),
    EmergencyRule("main_burst_flooding", (_ROAD + ("消防栓",), ("冒水", "喷水", "水喷", "往外冒水", "水柱")),
                  confidence=AMBIGUOUS),
    EmergencyRule("electrical_fire", (("变压器", "配电箱", "配电房", "电缆"), ("巨响", "响了一声", "炸了", "爆了")),
                  confidence=AMBIGUOUS),
    EmergencyRule("fire", (("着火", "起火", "火灾", "烧起来", "明火", "浓烟"),), confidence=AMBIGUOUS),  # 119's: suggested
)
EXCLUDED_TICKET_TYPES = frozenset({"suggestion", "praise"})

# phrases whose keywords mean no emergency: blanked out before any rule reads the text
MISLEADING_PHRASES: tuple[str, ...] = (
    "不着火", "着不了火", "打不着", "点不着", "打着火", "点着火", "着火就灭", "火苗小", "火小",
    "困难", "困扰", "贫困", "犯困", "困了想", "困惑",
    "不出来", "水出不来", "气出不来", "热水出不来",
    "掉闸", "跳闸", "断电", "断水", "断气", "断网", "出不来水", "出不来气", "防爆",
)
# a hedge in the clause of a word makes its match ambiguous
HEDGES: tuple[str, ...] = (
    "好像", "似乎", "可能", "怀疑", "是不是", "有没有", "不确定", "不清楚", "不知道", "隐约", "有点", "一点点", "淡淡", "偶尔", "担心", "会不会", "差点",
    "差一点", "险些", "上次", "上周", "上个月", "之前", "以前", "修好", "处理好", "处理完", "处理得", "已经好了", "吗",
)
_BREAK = "，,。.;；!！?？\\s"
_CLAUSE = re.compile(f"[{_BREAK}]")
_NEGATED = re.compile(
    "(?:没有闻到|没闻到|未闻到|闻不到|没有发现|没发现|未发现|不存在|并无|并未|并非|(?<!有)没有|(?<!有)没|无|未|(?<!是)不是)"
    f"[^{_BREAK}]{{0,2}}$"
    f"|(?<![是有])不(?![停断时住知是])$"  # 不漏气 (not 不停冒烟, not 是不是)
)
_BLANK = "＿"


def _negated(before: str) -> bool:
    """A negation ends at most 2 characters before the keyword, within the same clause (a lone
    不 directly before it): 没有煤气味, 不是着火, 没有闻到煤气味; 有没有人被困 is a question."""
    return _NEGATED.search(before[-8:]) is not None


@functools.lru_cache(maxsize=1)
def _misleading(phrases: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(map(re.escape, sorted(phrases, key=len, reverse=True))))


def _blank_misleading(text: str, phrases: tuple[str, ...] = MISLEADING_PHRASES) -> str:
    """The text with every misleading phrase replaced by blanks of the same length."""
    return _misleading(phrases).sub(lambda m: _BLANK * len(m.group()), text)


def _hedged(text: str, start: int, end: int) -> bool:
    """True when the clause around text[start:end] holds a hedge (好像, 可能, 有没有, ...)."""
    left = max((m.end() for m in _CLAUSE.finditer(text, 0, start)), default=0)
    right = _CLAUSE.search(text, end)
    clause = text[left:right.start() if right else len(text)]
    return any(h in clause for h in HEDGES)


def _mentions(text: str, word: str) -> str | None:
    """How the (blanked) text mentions ``word``: HIGH for a plain mention, AMBIGUOUS when every
    mention not negated is hedged, None when it is absent or only negated."""
    found = None
    start = text.find(word)
    while start != -1:
        if not _negated(text[:start]):
            if not _hedged(text, start, start + len(word)):
                return HIGH
            found = AMBIGUOUS
        start = text.find(word, start + 1)
    return found


@functools.lru_cache(maxsize=256)
def _any_word(group: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for a group's words: most texts mention none, and one search says so."""
    return re.compile("|".join(map(re.escape, group)))


def _group(text: str, group: tuple[str, ...]) -> str | None:
    if _any_word(tuple(group)).search(text) is None:
        return None
    found = None
    for word in group:
        seen = _mentions(text, word)
        if seen == HIGH:
            return HIGH
        found = found or seen
    return found


def _rule_match(rule: EmergencyRule, text: str, tag_set: set[str]) -> str | None:
    """The confidence with which ``rule`` matches, or None."""
    if rule.kind in tag_set or rule.tags & tag_set:
        return rule.confidence
    if not rule.all_of:
        return None
    seen = [_group(text, group) for group in rule.all_of]
    if None in seen:
        return None
    return HIGH if rule.confidence == HIGH and all(s == HIGH for s in seen) else AMBIGUOUS


def assess_police(
    category: str,
    ticket_type: str,
    text: str = "",
    tags: Iterable[str] = (),
    *,
    rules: Iterable[EmergencyRule] = DEFAULT_EMERGENCY_RULES,
    excluded_types: frozenset[str] = EXCLUDED_TICKET_TYPES,
) -> PoliceCall | None:
    """Whether a ticket needs 110: its kind and confidence (first high rule, else first
    ambiguous one), or None."""
    if ticket_type in excluded_types:
        return None
    tag_set, blanked = set(tags), _blank_misleading(text or "")
    maybe = None
    for rule in rules:
        if rule.categories and category not in rule.categories:
            continue
        confidence = _rule_match(rule, blanked, tag_set)
        if confidence == HIGH:
            return PoliceCall(rule.kind, HIGH)
        if confidence is not None and maybe is None:
            maybe = PoliceCall(rule.kind, AMBIGUOUS)
    return maybe


def needs_police(
    category: str,
    ticket_type: str,
    text: str = "",
    tags: Iterable[str] = (),
    *,
    rules: Iterable[EmergencyRule] = DEFAULT_EMERGENCY_RULES,
    excluded_types: frozenset[str] = EXCLUDED_TICKET_TYPES,
) -> str | None:
    """Emergency kind of a ticket handed over to 110 automatically (high confidence), or None."""
    call = assess_police(category, ticket_type, text, tags, rules=rules, excluded_types=excluded_types)
    return call.kind if call is not None and call.automatic else None
