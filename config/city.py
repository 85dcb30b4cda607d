"""The city the services work on: the configured profile, or the demo city generated on first run."""
from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

DEMO_SUBDIR = "city/democity"


def ensure_city(settings, progress: Callable[[str], None] | None = None) -> Path:
    """Path of the city profile TOML; generates the demo city into DATA_DIR when none is set (again
    when the cached one was written by another `simulators.democity.GENERATOR_VERSION`)."""
    if settings.CITY_PROFILE:
        path = Path(settings.CITY_PROFILE)
        if not path.is_file():
            raise FileNotFoundError(f"CITY_PROFILE {path} does not exist")
        return path
    out = settings.data_dir / DEMO_SUBDIR
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".generate.lock", "w") as lock:  # one generator at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        profile = out / "profile.toml"
        from simulators import democity

        if not profile.is_file() or _generator_of(profile) != democity.GENERATOR_VERSION:
            (progress or log.info)(f"generating the demo city into {out} ...")
            profile = democity.generate(out, seed=settings.SIM_SEED)
        return profile


def _generator_of(profile: Path) -> int | None:
    """The demo generator version a cached profile was written by (None: older or unreadable)."""
    import tomllib

    try:
        with profile.open("rb") as handle:
            version = tomllib.load(handle).get("city", {}).get("generator")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return version if isinstance(version, int) else None


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
