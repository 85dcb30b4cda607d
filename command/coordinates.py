"""Coordinates at the boundary: the one rule every entry point that takes a point applies.

A point is WGS84 decimal degrees (lon, lat). It is accepted when both are real, finite numbers
(not booleans, not strings, not NaN or Infinity), within the ranges Redis's GEO commands take
(|lon| <= 180, |lat| <= 85.05112878: the Web Mercator limit, so a ticket's point can always be
indexed), and inside the service area: the city profile's extent plus a margin, or the
configured ``SERVICE_AREA`` box. Each failure raises a typed error with a stable code:
``bad_coordinates`` (`CoordinateError`) or ``outside_service_area`` (`OutsideServiceArea`).

Pure: no I/O. The store repeats the range check inside its write script (`geo_pair_ok`'s
bounds), so a point that slipped past this rule still leaves nothing half-saved.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from command.errors import ValidationError

LON_LIMIT = 180.0
GEO_LAT_LIMIT = 85.05112878  # Redis GEOADD/GEOSEARCH refuse latitudes beyond this
DEFAULT_MARGIN_DEG = 0.2  # around the city's extent: about 22 km north-south, 18 km east-west at 36°N


class CoordinateError(ValidationError):
    """A point is not a usable WGS84 pair (wrong type, NaN/Infinity, out of range, half given)."""

    code = "bad_coordinates"


class OutsideServiceArea(CoordinateError):
    """A valid WGS84 point lies outside the center's service area."""

    code = "outside_service_area"


@dataclass(frozen=True)
class ServiceArea:
    """A lon/lat box (WGS84 degrees, edges included) the center serves."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def __post_init__(self) -> None:
        values = (self.min_lon, self.min_lat, self.max_lon, self.max_lat)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ValueError("service area edges must be finite numbers")
        if not (-LON_LIMIT <= self.min_lon < self.max_lon <= LON_LIMIT
                and -GEO_LAT_LIMIT <= self.min_lat < self.max_lat <= GEO_LAT_LIMIT):
            raise ValueError(f"service area {values} is not minlon,minlat,maxlon,maxlat within the WGS84 ranges")

    def contains(self, lon: float, lat: float) -> bool:
        """Whether the point lies in the box (edges included)."""
        return self.min_lon <= lon <= self.max_lon and self.min_lat <= lat <= self.max_lat

    def text(self) -> str:
        """The box as ``minlon,minlat,maxlon,maxlat``."""
        return ",".join(f"{v:g}" for v in (self.min_lon, self.min_lat, self.max_lon, self.max_lat))

    @classmethod
    def parse(cls, text: str) -> "ServiceArea | None":
        """``"minlon,minlat,maxlon,maxlat"`` as a box; None for an empty text; ValueError otherwise."""
        text = text.strip()
        if not text:
            return None
        parts = text.split(",")
        if len(parts) != 4:
            raise ValueError(f"service area must be minlon,minlat,maxlon,maxlat: {text!r}")
        return cls(*(float(p) for p in parts))

    @classmethod
    def around(cls, bounds: Sequence[float], margin_deg: float = DEFAULT_MARGIN_DEG) -> "ServiceArea":
        """The extent (minlon, minlat, maxlon, maxlat) grown by a margin, clipped to the ranges."""
        min_lon, min_lat, max_lon, max_lat = (float(v) for v in bounds)
        return cls(max(-LON_LIMIT, min_lon - margin_deg), max(-GEO_LAT_LIMIT, min_lat - margin_deg),
                   min(LON_LIMIT, max_lon + margin_deg), min(GEO_LAT_LIMIT, max_lat + margin_deg))


def geo_pair_ok(lon: float, lat: float) -> bool:
    """Whether Redis's GEO commands take the pair (finite, |lon| <= 180, |lat| <= 85.05112878)."""
    return (math.isfinite(lon) and math.isfinite(lat)
            and -LON_LIMIT <= lon <= LON_LIMIT and -GEO_LAT_LIMIT <= lat <= GEO_LAT_LIMIT)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CoordinateError(name, f"must be a number of degrees, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond a double
        raise CoordinateError(name, "is out of range") from None
    if not math.isfinite(number):
        raise CoordinateError(name, "must be a finite number")
    return number


def check_point(lon: Any, lat: Any, area: ServiceArea | None = None) -> tuple[float, float]:
    """The point as (lon, lat) floats, or CoordinateError / OutsideServiceArea naming the field."""
    if lon is None or lat is None:
        raise CoordinateError("lon" if lon is None else "lat", "lon and lat must be given together")
    x, y = _number(lon, "lon"), _number(lat, "lat")
    if not -LON_LIMIT <= x <= LON_LIMIT:
        raise CoordinateError("lon", f"must be within ±180, got {x:g}")
    if not -GEO_LAT_LIMIT <= y <= GEO_LAT_LIMIT:
        raise CoordinateError("lat", f"must be within ±{GEO_LAT_LIMIT}, got {y:g}")
    if area is not None and not area.contains(x, y):
        raise OutsideServiceArea("lon", f"point {x:g},{y:g} is outside the service area {area.text()}")
    return x, y


def check_optional_point(lon: Any, lat: Any, area: ServiceArea | None = None) -> tuple[float, float] | None:
    """`check_point` for an optional point: None when neither is given."""
    if lon is None and lat is None:
        return None
    return check_point(lon, lat, area)


def parse_point(raw_lon: str | None, raw_lat: str | None, area: ServiceArea | None = None, *,
                required: bool = True) -> tuple[float, float] | None:
    """A point from text (query arguments): decimal numbers only ("nan", "inf", "1e999" refused).
    Empty or absent both: None unless `required`."""
    raw_lon = None if raw_lon is None or not raw_lon.strip() else raw_lon.strip()
    raw_lat = None if raw_lat is None or not raw_lat.strip() else raw_lat.strip()
    if raw_lon is None and raw_lat is None and not required:
        return None
    values = []
    for name, raw in (("lon", raw_lon), ("lat", raw_lat)):
        if raw is None:
            values.append(None)
            continue
        try:
            values.append(float(raw))
        except ValueError:
            raise CoordinateError(name, f"must be a decimal number, got {raw[:40]!r}") from None
    return check_point(values[0], values[1], area)
