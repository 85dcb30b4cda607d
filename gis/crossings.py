"""Road crossings (路口) for address search: where two named roads meet, and how callers say it.

`road_crossings` finds the points where two differently named roads of a roads layer touch or
cross (the demo city's network is noded, so these are shared segment ends; a T-junction counts
too). `split_crossing` recognises a spoken intersection in a `normalize`d query:
"密水大街与凤凰大街交叉口", "人民路和光明街路口", "人民路光明街口", "人民路与光明街".
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import shapely

__all__ = ["road_crossings", "split_crossing", "crossing_id"]

_ROAD_END = r"(?:公路|大街|大道|胡同|路|街|巷)"
_JOINERS = r"(?:与|和|跟|同|及|至)"
_SUFFIX = r"(?:十字路口|丁字路口|交叉路口|交叉口|交汇处|交界处|交会处|交口|路口|口)"
_WITH_JOINER_RE = re.compile(rf"^(.+?){_JOINERS}(.+?){_SUFFIX}?$")
_WITHOUT_JOINER_RE = re.compile(rf"^(.+?{_ROAD_END})(.+?{_ROAD_END}){_SUFFIX}$")
_TWO_ROADS_RE = re.compile(rf"^(.+?{_ROAD_END})(.+?{_ROAD_END})$")
_DIGITS_RE = re.compile(r"[0-9]")


def split_crossing(normalized: str, loose: bool = False) -> tuple[str, str] | None:
    """The two road names of an intersection query, or None when the text is not one.

    With a joiner (与 和 跟 同 及) the suffix (交叉口, 路口, 口 ...) is optional but both parts must
    end in a road type; without one ("人民路光明街口") the suffix is required. Parts with digits
    are house numbers, not crossings. `loose` also takes two road names run together with no
    suffix ("人民路光明街", what "人民路/光明街" normalizes to); the caller decides when that is safe.
    """
    if _DIGITS_RE.search(normalized):
        return None
    match = _WITH_JOINER_RE.match(normalized)
    if match is not None:
        parts = match.group(1), match.group(2)
        has_suffix = match.end(2) < len(normalized)
        if min(map(len, parts)) >= 2 and (has_suffix or all(re.search(f"{_ROAD_END}$", p) for p in parts)):
            return parts
    match = _WITHOUT_JOINER_RE.match(normalized)
    if match is None and loose:
        match = _TWO_ROADS_RE.match(normalized)
    if match is not None and min(len(match.group(1)), len(match.group(2))) >= 3:
        return match.group(1), match.group(2)
    return None


def crossing_id(first: str, second: str, k: int = 0) -> str:
    """Stable id of the k-th crossing of two roads, whichever order they are named in."""
    a, b = sorted((first, second))
    return f"X:{a}|{b}" + (f":{k}" if k else "")


def road_crossings(names: Sequence[str], geoms: Sequence[Any]) -> list[tuple[str, str, float, float]]:
    """(road, road, x, y) for every point where two differently named roads meet, sorted.

    `geoms` are line geometries in the coordinates the answer should be in; unnamed lines are
    skipped. A pair that meets several times gives several points (rounded to 1e-7 and deduplicated).
    """
    by_name: dict[str, list[Any]] = defaultdict(list)
    for name, geom in zip(names, geoms):
        if name and isinstance(name, str) and geom is not None and not geom.is_empty:
            by_name[name].append(geom)
    road_names = sorted(by_name)
    lines = [shapely.union_all(by_name[n]) for n in road_names]
    tree = shapely.STRtree(lines)
    out: set[tuple[str, str, float, float]] = set()
    for i, line in enumerate(lines):
        for j in tree.query(line, predicate="intersects"):
            if j <= i:
                continue
            meet = shapely.intersection(line, lines[int(j)])
            points = shapely.get_coordinates(shapely.extract_unique_points(meet))
            for x, y in points:
                out.add((road_names[i], road_names[int(j)], round(float(x), 7), round(float(y), 7)))
    return sorted(out)
