"""The record the ingest hands to the store: one accepted fix on its way to Redis.

Its own module so that the decoders import no store types and the store imports this small
type instead of the ingest's modules.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["FixRecord"]


class FixRecord(NamedTuple):
    """One accepted fix: where it goes (live position, track) and its values; ``t`` is UTC epoch
    seconds (``fix.time.timestamp()``)."""

    vehicle_id: str
    t: float
    lat: float
    lon: float
    speed_kmh: float | None
    course_deg: float | None
    alt_m: float | None
    quality: int | None
    mode: str | None
    sats: int | None
    hdop: float | None
    talker: str
    live: bool
    track: bool
