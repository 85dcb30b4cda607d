"""How a ticket that arrives with address text only is placed (地址定位, issue #24).

The address search (`gis.address`, served by the desk's address book) ranks candidates with a
score of 0-100 and says `exact` (everything asked for was found) or `approximate`. `placement`
takes the best one only when it is sure enough and unambiguous; otherwise the ticket stays without
a point (``match: none``) and the agent places it on the map. It never guesses.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

MIN_SCORE = 85.0
"""The lowest score placed automatically. At 85 and above the name was found as said and the point
is within about a building of what the caller named: another unit of the named building (97), a
room the data does not list (96), the compound when the building is unknown (92), a place said to be
附近/旁边 of it (90), a house number one or two off on that road (88, 86). Below it the name itself is
in doubt (one wrong character in a four-character name scores 75), no house number was given on a
road (80: any point on the road) or the number is further off: the agent decides on the map."""

AMBIGUOUS_M = 100.0
"""Two best candidates with the same score further apart than this (two places with one name, two
roads meeting twice) are ambiguous: no point is taken."""

NONE: dict[str, Any] = {"match": "none"}


def placement(candidates: Sequence[Mapping[str, Any]], *,
              distance_fn: Callable[[float, float, float, float], float],
              ) -> tuple[dict[str, Any], tuple[float, float] | None]:
    """(the ``geocode`` record, the point) of a text-only ticket from the search's ranked candidates
    (each with lon, lat, score, match, address): ``{"match": "exact"|"approximate", "score",
    "address"}`` and (lon, lat) for a sure match, else ``({"match": "none"}, None)``.
    `distance_fn(lon1, lat1, lon2, lat2)` in metres (`gis.crs.distance_m`)."""
    if not candidates:
        return dict(NONE), None
    best = candidates[0]
    score = float(best["score"])
    if score < MIN_SCORE:
        return dict(NONE), None
    for other in candidates[1:]:
        if float(other["score"]) >= score and \
                float(distance_fn(best["lon"], best["lat"], other["lon"], other["lat"])) > AMBIGUOUS_M:
            return dict(NONE), None
    record = {"match": "exact" if best.get("match") == "exact" else "approximate", "score": round(score, 2),
              "address": str(best.get("label") or best.get("address") or "")}
    return record, (float(best["lon"]), float(best["lat"]))


__all__ = ["AMBIGUOUS_M", "MIN_SCORE", "placement"]
