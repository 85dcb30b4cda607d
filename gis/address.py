"""Address search for call agents (地址匹配) and reverse geocoding.

`gis.address_text` reads a text (`normalize`, `parse`); `AddressIndex` matches a query against an
address/POI/village list given as plain arrays and answers nearest-address questions by coordinate.

Search works in two steps so that it never runs a full fuzzy scorer over every entry:

1. Every entry is split into a *name* (the road, POI or village part, e.g. "人民路", "幸福小区",
   "王家庄村") and its *details* (lane 弄, house number 号, sub-number, building 栋, unit 单元,
   room 室, group 组). Entries that share a name share one *key*; a key keeps its entries sorted by
   house number. An entry may have other names (aliases: 汽车站 for 高密汽车总站): more keys.
2. A query is split the same way. Candidate keys come from an inverted index of the key's
   characters and padded character bigrams (IDF-weighted, so "路" counts for little); only the
   best few dozen are scored with rapidfuzz (optimal string alignment, so one wrong, missing or
   swapped character is one edit, plus a partial score for a part of a POI name). The house
   number is then looked up by binary search in each good key; a number that does not exist
   yields the nearest numbers on that road, ranked by numeric distance, with a lower score.

A spoken offset (往东100米) moves every candidate's point that far that way (`Candidate.offset`).
The caller's words round the address (我家在…这边) are taken off first (`strip_filler`), unless the
text names an entry as written (在水一方).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA
from scipy.spatial import cKDTree

from gis.crossings import crossing_id, split_crossing
from gis.address_text import (DEFAULT_PREFIXES, VILLAGE, ParsedAddress, normalize, offset_text, parse, peel_near,
                               split_road, strip_filler)
from gis.crs import from_metres, gk_zone_epsg, to_metres

__all__ = ["Candidate", "AddressIndex", "AddressIndexError", "normalize", "parse", "ParsedAddress"]

_MIN_NAME_SIMILARITY = 0.5  # keys scoring below this are not candidates
_KEY_CANDIDATES = 48  # keys per query that get a full fuzzy score
_KEYS_EXPANDED = 8  # best keys whose entries are ranked
_MAX_DETAIL_SCAN = 4096  # entries of one key scored for a building/unit/room asked without a number
_ROAD_MATCHES = 3  # road names tried for each side of a crossing
_ROAD_PRESELECT = 16  # road names given a full similarity per side, picked by a fast C ratio
_DETAILS = ("lane", "number", "sub", "building", "unit", "room", "group")
_NEAR_FACTOR = 0.9  # score multiplier for a place said to be near the match
# what a detail that differs from the one asked costs; a missing one costs 0.04, so the right
# building with another unit (0.97) ranks above the compound alone (0.92) and the wrong building;
# another group of the village (0.9) ranks below the village itself (0.96)
_DETAIL_MISMATCH = {"lane": 0.12, "sub": 0.08, "building": 0.12, "unit": 0.03, "room": 0.02, "group": 0.1}


class AddressIndexError(ValueError):
    """The arrays handed to `AddressIndex` do not describe one address list."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One search or reverse-geocoding answer; `score` is 0..100, higher is better."""

    id: str
    text: str
    lon: float
    lat: float
    score: float
    kind: str
    offset: str = ""  # the spoken offset the point was moved by ("往东100米"), "" when not moved

    @property
    def match(self) -> str:
        """"exact" for a score of 100 (everything asked for was found), else "approximate"."""
        return "exact" if self.score >= 100.0 else "approximate"


def _grams(name: str) -> set[str]:
    """Characters and padded bigrams of a name: the inverted index's terms."""
    padded = f"\x02{name}\x03"
    return set(name) | {padded[i : i + 2] for i in range(len(padded) - 1)}


class _RoadName:
    """A road name as `_name_similarity` compares it (the crossings' roads)."""

    __slots__ = ("name", "stem", "road_type")

    def __init__(self, name: str) -> None:
        self.name = name
        self.stem, self.road_type = split_road(name)


def _name_similarity(query: str, query_road: tuple[str, str], key: _Key | _RoadName) -> float:
    """0..1 similarity of a query name and a key name.

    Optimal string alignment (one wrong, missing or swapped character is one edit); a part of a
    longer name ("人民医院" in "第二人民医院") scores by how much of it is covered; a road with the
    same stem and another or no type ("人民街", "人民" for "人民路") scores 0.8-0.9; a village said
    without 村 ("王家庄" for "王家庄村") is compared by its stem alone, a road never with a village.
    """
    name = key.name
    similarity = OSA.normalized_similarity(query, name)
    if len(query) >= 2 and len(name) > len(query):
        partial = fuzz.partial_ratio(query, name) / 100.0  # squared: a typo costs more in a part
        similarity = max(similarity, partial * partial * (0.7 + 0.25 * len(query) / len(name)))
    query_stem, query_type = query_road
    if key.road_type and query_type != key.road_type and len(query_stem) >= 2:
        if VILLAGE in (query_type, key.road_type):
            type_factor = 0.0 if query_type else 1.0
        elif not query_type or {query_type, key.road_type} == {"街", "大街"}:
            type_factor = 0.9
        else:
            type_factor = 0.8
        similarity = max(similarity, OSA.normalized_similarity(query_stem, key.stem) * type_factor)
    return similarity


def _detail_factor(query: ParsedAddress, entry: ParsedAddress) -> float:
    """Multiplier below 1 for lane/building/unit/room/group details that disagree or are missing."""
    factor = 1.0
    for field, mismatch in _DETAIL_MISMATCH.items():
        wanted, have = getattr(query, field), getattr(entry, field)
        if wanted is None:
            factor -= 0.01 if have is not None else 0.0  # the plain address ranks first
        elif have is None:
            factor -= 0.04
        elif have != wanted:
            factor -= mismatch
    return factor


def _nearest_number_factor(distance: int) -> float:
    """Score multiplier for an address whose number is `distance` away from the one asked for."""
    return 0.9 - 0.2 * min(1.0, math.log1p(distance) / math.log1p(500))


class _Key:
    """Entries sharing one name, sorted by house number (entries without a number first)."""

    __slots__ = ("name", "stem", "road_type", "rows", "numbers", "first_numbered", "has_buildings", "has_details")

    def __init__(self, name: str, rows: list[int], parsed: list[ParsedAddress]) -> None:
        def order(row: int) -> tuple[int, ...]:
            """Sort key: details in order, missing ones (-1) first, then the row."""
            p = parsed[row]
            return tuple(-1 if getattr(p, f) is None else getattr(p, f) for f in _DETAILS[1:]) + (row,)

        rows.sort(key=order)
        self.name = name
        self.stem, self.road_type = split_road(name)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.numbers = np.asarray([-1 if parsed[r].number is None else parsed[r].number for r in rows], dtype=np.int64)
        self.first_numbered = int(np.searchsorted(self.numbers, 0))
        self.has_buildings = any(parsed[r].building is not None for r in rows)
        self.has_details = any(not (parsed[r].building is parsed[r].unit is parsed[r].room is parsed[r].group is None)
                               for r in rows)


class AddressIndex:
    """Searchable address/POI list: text search with ranked candidates, and reverse geocoding.

    A search score is 100 x name similarity x detail factor: 1 for the number asked for, 0.9
    falling to 0.70 with the numeric distance for the nearest other numbers on that road, 0.8
    for a road's addresses when no number was asked, small deductions for building/unit/room/group
    that differ, x 0.9 for a place said to be near the match. The KD-tree for `reverse` is built on
    its first call.
    """

    def __init__(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        lons: np.ndarray,
        lats: np.ndarray,
        kinds: Sequence[str] | None = None,
        prefixes: Sequence[str] = DEFAULT_PREFIXES,
        crossings: Sequence[tuple[str, str, float, float]] = (),
        aliases: Mapping[int, Sequence[str]] | None = None,
    ) -> None:
        """Index parallel arrays; `kinds` defaults to "address" for texts with a house number, else "poi".

        `crossings` are (road, road, lon, lat) points where two roads meet (`gis.crossings.road_crossings`):
        with them, "A路与B路交叉口" finds the crossing point. `aliases` maps a row to the other names
        people use for it (汽车站 for 高密汽车总站): each is searched like the row's own name.
        """
        lons, lats = np.asarray(lons, dtype=np.float64), np.asarray(lats, dtype=np.float64)
        sizes = {"ids": len(ids), "texts": len(texts), "lons": len(lons), "lats": len(lats)}
        if kinds is not None:
            sizes["kinds"] = len(kinds)
        if len(set(sizes.values())) > 1:
            raise AddressIndexError(f"address arrays differ in length: {sizes}")
        if not (np.all(np.isfinite(lons)) and np.all(np.isfinite(lats))):
            raise AddressIndexError("address coordinates must be finite numbers")
        self._prefixes = tuple(prefixes)
        self._ids = list(ids)
        self._texts = list(texts)
        self._lons, self._lats = lons, lats
        self._parsed = [parse(normalize(text, self._prefixes)) for text in self._texts]
        if kinds is None:
            kinds = ["address" if p.number is not None else "poi" for p in self._parsed]
        self._kinds = list(kinds)
        by_name: dict[str, list[int]] = defaultdict(list)
        for row, parsed in enumerate(self._parsed):
            if parsed.name:
                by_name[parsed.name].append(row)
        for row, names in (aliases or {}).items():
            if not 0 <= row < len(self._ids):
                raise AddressIndexError(f"alias for row {row}: no such row")
            for alias in {parse(normalize(name, self._prefixes)).name for name in names} - {self._parsed[row].name, ""}:
                by_name[alias].append(row)  # the alias's name part: 阚家镇王家庄村 for 阚家镇王家庄村3组
        self._keys = [_Key(name, rows, self._parsed) for name, rows in by_name.items()]
        self._key_of_name = {key.name: i for i, key in enumerate(self._keys)}
        postings: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(self._keys):
            for gram in _grams(key.name):
                postings[gram].append(i)
        n_keys = max(1, len(self._keys))
        self._postings = {g: np.asarray(p, dtype=np.int64) for g, p in postings.items()}
        self._idf = {g: math.log(1.0 + n_keys / len(p)) for g, p in postings.items()}
        self._crossings: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        for first, second, lon, lat in crossings:
            self._crossings[(first, second) if first < second else (second, first)].append((float(lon), float(lat)))
        self._roads = [_RoadName(name) for name in sorted({n for pair in self._crossings for n in pair})]
        self._road_names = [r.name for r in self._roads]
        self._roads_by_stem: dict[str, list[int]] = defaultdict(list)
        for i, road in enumerate(self._roads):
            self._roads_by_stem[road.stem].append(i)
        self._tree: cKDTree | None = None
        self._epsg = 0  # Gauss-Krüger zone of the data's mean longitude: one plane for all points

    def __len__(self) -> int:
        """Number of indexed entries."""
        return len(self._ids)

    def search(self, query: str, limit: int = 10) -> list[Candidate]:
        """Ranked candidates (best first, at most `limit`) for free text; [] when nothing fits."""
        if limit <= 0 or not isinstance(query, str):
            return []
        normalized = strip_filler(normalize(query, self._prefixes), self._prefixes, self._is_name)
        if self._crossings:
            text, near, offset = peel_near(normalized)
            pair = split_crossing(text) or (None if text in self._key_of_name else split_crossing(text, loose=True))
            found = self._search_crossing(*pair, near, limit) if pair else []
            if found:
                return self._moved(found, *offset)
        wanted = parse(normalized)
        if not wanted.name or not self._keys:
            return []
        near = _NEAR_FACTOR if wanted.near else 1.0
        best: dict[int, tuple[float, float, int, int]] = {}  # row -> (score, name similarity, distance, row)
        ranked: list[tuple[float, float, int, int]] = []
        for key_index, similarity in self._best_keys(wanted.name):
            if len(ranked) >= limit and 100.0 * similarity * near < ranked[limit - 1][0]:
                break  # keys come best first and a factor never exceeds 1: nothing better can follow
            for factor, distance, row in self._rank_in_key(self._keys[key_index], wanted, limit):
                item = (100.0 * similarity * factor * near, similarity, distance, row)
                if row not in best or item[0] > best[row][0]:  # a row found by its name and an alias: once
                    best[row] = item
            ranked = sorted(best.values(), key=lambda s: (-s[0], -s[1], s[2], s[3]))
        found = [self._candidate(row, score) for score, _, _, row in ranked[:limit]]
        return self._moved(found, wanted.east_m, wanted.north_m)

    def _is_name(self, normalized: str) -> bool:
        """Whether the text names an entry as written (在水一方3号楼): then no word of it is filler."""
        return parse(normalized).name in self._key_of_name

    def reverse(self, lon: float, lat: float, limit: int = 1, max_m: float = 200) -> list[Candidate]:
        """Nearest entries within `max_m` metres, nearest first; score 100 at 0 m falling to 0 at max_m."""
        if limit <= 0 or not self._ids or not (math.isfinite(lon) and math.isfinite(lat)) or max_m <= 0:
            return []
        if self._tree is None:
            self._epsg = gk_zone_epsg(float(self._lons.mean()))
            self._tree = cKDTree(np.column_stack(to_metres(self._lons, self._lats, epsg=self._epsg)))
        point = to_metres(float(lon), float(lat), epsg=self._epsg)
        distances, rows = self._tree.query(point, k=min(limit, len(self._ids)), distance_upper_bound=max_m)
        pairs = zip(np.atleast_1d(distances), np.atleast_1d(rows))
        return [
            self._candidate(int(row), 100.0 * (1.0 - float(d) / max_m))
            for d, row in pairs
            if math.isfinite(d)
        ]

    def _moved(self, found: list[Candidate], east_m: float, north_m: float) -> list[Candidate]:
        """The candidates with their points moved by a spoken offset (往东100米); unchanged without one."""
        said = offset_text(east_m, north_m)
        if not said or not found:
            return found
        if not self._epsg:
            self._epsg = gk_zone_epsg(float(np.mean([c.lon for c in found])))
        xs, ys = to_metres(np.array([c.lon for c in found]), np.array([c.lat for c in found]), epsg=self._epsg)
        lons, lats = from_metres(np.asarray(xs) + east_m, np.asarray(ys) + north_m, epsg=self._epsg)
        return [replace(c, lon=float(lon), lat=float(lat), offset=said) for c, lon, lat in zip(found, lons, lats)]

    def _search_crossing(self, first: str, second: str, near: bool, limit: int) -> list[Candidate]:
        """Crossing points of the roads best matching the two names; [] when no such roads meet."""
        out: list[Candidate] = []
        factor = 100.0 * (_NEAR_FACTOR if near else 1.0)
        for a, score_a in self._match_roads(first):
            for b, score_b in self._match_roads(second):
                points = self._crossings.get((a, b) if a < b else (b, a), [])
                score = round(min(100.0, factor * score_a * score_b), 2)
                out.extend(Candidate(id=crossing_id(a, b, k), text=f"{a}与{b}交叉口", lon=lon, lat=lat,
                                     score=score, kind="crossing") for k, (lon, lat) in enumerate(points))
        out.sort(key=lambda c: -c.score)
        return out[:limit]

    def _match_roads(self, part: str) -> list[tuple[str, float]]:
        """The few crossing road names most like `part`, each with its similarity."""
        road = split_road(part)
        pool = {i for _, _, i in process.extract(part, self._road_names, scorer=fuzz.ratio, limit=_ROAD_PRESELECT)}
        pool.update(self._roads_by_stem.get(road[0], ()))  # 凤凰 for 凤凰大街, 凤凰路 for 凤凰大街
        scored = sorted(((_name_similarity(part, road, self._roads[i]), self._roads[i].name) for i in pool),
                        reverse=True)
        return [(name, s) for s, name in scored[:_ROAD_MATCHES] if s >= 0.6]

    def _candidate(self, row: int, score: float) -> Candidate:
        return Candidate(
            id=self._ids[row],
            text=self._texts[row],
            lon=float(self._lons[row]),
            lat=float(self._lats[row]),
            score=round(min(100.0, max(0.0, score)), 2),
            kind=self._kinds[row],
        )

    def _best_keys(self, name: str) -> list[tuple[int, float]]:
        """Keys worth expanding, best first, each with its name similarity."""
        terms = [g for g in _grams(name) if g in self._postings]
        if terms:
            counts = np.bincount(
                np.concatenate([self._postings[g] for g in terms]),
                weights=np.concatenate([np.full(len(self._postings[g]), self._idf[g]) for g in terms]),
                minlength=len(self._keys),
            )
            take = min(_KEY_CANDIDATES, int(np.count_nonzero(counts)))
            pool = np.argpartition(-counts, take - 1)[:take] if take < len(counts) else np.flatnonzero(counts)
        else:  # no shared character at all: a small full scan of key names, never of entries
            pool = np.arange(len(self._keys)) if len(self._keys) <= 4 * _KEY_CANDIDATES else np.array([], np.int64)
        exact = self._key_of_name.get(name)
        road = split_road(name)
        ranked = {int(i): _name_similarity(name, road, self._keys[int(i)]) for i in pool}
        if exact is not None:
            ranked[exact] = 1.0
        good = sorted(((s, -i) for i, s in ranked.items() if s >= _MIN_NAME_SIMILARITY), reverse=True)
        return [(-i, s) for s, i in good[:_KEYS_EXPANDED]]

    def _rank_in_key(self, key: _Key, wanted: ParsedAddress, limit: int) -> list[tuple[float, int, int]]:
        """(factor, numeric distance, row) for the best entries of one key."""
        rows, numbers, parsed = key.rows, key.numbers, self._parsed
        if wanted.number is not None and wanted.building is None and key.has_buildings \
                and key.first_numbered == len(rows):  # 朝阳新村4号3单元: a compound's 号 is its 号楼
            wanted = replace(wanted, number=None, building=wanted.number)
        asked = any(getattr(wanted, f) is not None for f in _DETAIL_MISMATCH)
        if wanted.number is None and asked and key.has_details:  # a plain road: its first entries are its best
            ranked = sorted(  # the exact building/unit/room wherever it sits in the key, then the closest
                (((1.0 if parsed[r].number is None else 0.8) * _detail_factor(wanted, parsed[r]), 0, int(r))
                 for r in rows[:_MAX_DETAIL_SCAN]),
                key=lambda item: -item[0],
            )
            return ranked[:limit]
        if wanted.number is None:
            chosen = rows[:limit]  # unnumbered entries (the POI itself) first, then the lowest numbers
            return [
                ((1.0 if parsed[r].number is None else 0.8) * _detail_factor(wanted, parsed[r]), 0, int(r))
                for r in chosen
            ]
        lo = int(np.searchsorted(numbers, wanted.number, side="left"))
        hi = int(np.searchsorted(numbers, wanted.number, side="right"))
        out = [(_detail_factor(wanted, parsed[r]), 0, int(r)) for r in rows[lo:hi][: 4 * limit]]
        left, right = lo - 1, hi  # then walk outwards to the nearest other numbers, nearest first
        while len(out) < limit and (left >= key.first_numbered or right < len(rows)):
            d_left = wanted.number - numbers[left] if left >= key.first_numbered else None
            d_right = numbers[right] - wanted.number if right < len(rows) else None
            if d_right is None or (d_left is not None and d_left <= d_right):  # a whole run of one number
                distance, start = int(d_left), int(np.searchsorted(numbers, numbers[left], side="left"))
                run, left = rows[start : left + 1], start - 1
            else:
                distance, end = int(d_right), int(np.searchsorted(numbers, numbers[right], side="right"))
                run, right = rows[right:end], end
            factor = _nearest_number_factor(distance)
            out.extend((factor * _detail_factor(wanted, parsed[r]), distance, int(r)) for r in run)
        if not out:  # a POI asked for with a number: the POI itself, lower
            out = [(0.6 * _detail_factor(wanted, parsed[r]), 0, int(r)) for r in rows[:limit]]
        return out
