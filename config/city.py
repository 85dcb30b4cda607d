"""The city the services work on: its layers loaded for serving (`load_city`), and where the demo city
is generated when no CITY_PROFILE is set (`DEMO_SUBDIR`, under DATA_DIR; the generator is
`simulators.democity.ensure_city`)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

DEMO_SUBDIR = "city/democity"


class CityLayers:
    """The loaded city's layers for the web: counts and GeoJSON encoded once per layer."""

    def __init__(self, city: Any):
        self.city = city
        self._geojson: dict[str, bytes] = {}

    def frame(self, kind: str):
        """The GeoDataFrame of a layer kind, or None."""
        frame = getattr(self.city, kind, None)
        return frame if frame is not None and hasattr(frame, "geometry") else None

    def count(self, kind: str) -> int:
        """Number of features in a layer (0 when absent)."""
        frame = self.frame(kind)
        return 0 if frame is None else len(frame)

    def geojson(self, kind: str) -> bytes:
        """The layer as GeoJSON bytes (WGS84), cached."""
        if kind not in self._geojson:
            frame = self.frame(kind)
            self._geojson[kind] = frame.to_json(drop_id=True, to_wgs84=False).encode("utf-8")
        return self._geojson[kind]


def load_city(profile: Path, progress: Callable[[str], None] | None = None) -> CityLayers:
    """Load a city profile's layers for serving."""
    from gis.layers import load_profile

    return CityLayers(load_profile(profile, progress=progress or (lambda msg: log.info("%s", msg))))
