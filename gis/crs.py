"""Coordinate systems: WGS84, CGCS2000, Gauss-Krüger zones, Web Mercator, GCJ-02 and BD-09.

The internal CRS of the system is WGS84 longitude/latitude (EPSG:4326): what GPS sends, what is
stored and what is displayed. Metric work (distances, buffers, routing) happens in CGCS2000
3-degree Gauss-Krüger, the zone picked from the longitude. WGS84 and CGCS2000 differ by far less
than a metre, so PROJ's "ballpark" (identity) datum step between them is right for dispatch; we
still go through pyproj for every EPSG code so that axis order and projection maths are PROJ's.

GCJ-02 (AMap, Tencent) and BD-09 (Baidu) are not EPSG systems. Their forward formulas are the
widely published ones; the inverses iterate the forward formula to better than 1e-9 degree
(~0.1 mm), where the usual one-step inverse is off by metres. Points outside mainland China are
not shifted, judged by the usual rough bounding box (see `in_china`).
"""
from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import shapely
from pyproj import Geod, Transformer
from pyproj.exceptions import CRSError as _PyprojCRSError

__all__ = [
    "CRSError", "WGS84", "CGCS2000", "WEB_MERCATOR", "GCJ02", "BD09",
    "gk_zone", "gk_zone_epsg", "in_china", "transform", "to_metres", "from_metres",
    "distance_m", "buffer_m",
    "wgs84_to_gcj02", "gcj02_to_wgs84", "gcj02_to_bd09", "bd09_to_gcj02",
    "wgs84_to_bd09", "bd09_to_wgs84",
    "wgs84_to_gcj02_array", "gcj02_to_wgs84_array", "gcj02_to_bd09_array",
    "bd09_to_gcj02_array", "wgs84_to_bd09_array", "bd09_to_wgs84_array",
]

WGS84 = 4326
CGCS2000 = 4490
WEB_MERCATOR = 3857
GCJ02 = "gcj02"
BD09 = "bd09"

_NAMED_EPSG = {"wgs84": WGS84, "cgcs2000": CGCS2000, "webmercator": WEB_MERCATOR}
_NON_EPSG = (GCJ02, BD09)

# CGCS2000 3-degree Gauss-Krüger: zones 25..45, central meridian 3 * zone (75E..135E).
GK_FIRST_ZONE = 25
GK_LAST_ZONE = 45
GK_PREFIX_EPSG_BASE = 4513  # "CGCS2000 / 3-degree Gauss-Kruger zone 25": x carries the zone
GK_CM_EPSG_BASE = 4534  # "CGCS2000 / 3-degree Gauss-Kruger CM 75E": x without the prefix

# Rough mainland-China bounding box used by every GCJ-02 implementation (Tokyo, Seoul, Manila
# and most of Mongolia's east fall outside; Taiwan, Hong Kong and Macau fall inside).
CHINA_LON_MIN, CHINA_LON_MAX = 72.004, 137.8347
CHINA_LAT_MIN, CHINA_LAT_MAX = 0.8293, 55.8271

_GCJ_A = 6378245.0  # Krasovsky 1940 semi-major axis, as in the GCJ-02 formula
_GCJ_EE = 0.00669342162296594323  # its first eccentricity squared
_BD_X_PI = math.pi * 3000.0 / 180.0
_BD_DLON, _BD_DLAT = 0.0065, 0.006
_INVERSE_TOLERANCE_DEG = 1e-10
_INVERSE_MAX_ITERATIONS = 30

_GEOD = Geod(ellps="WGS84")


class CRSError(ValueError):
    """A coordinate system that is unknown, or coordinates it cannot represent."""


# ---------------------------------------------------------------- zones and pyproj transformers

def gk_zone(lon: float) -> int:
    """The CGCS2000 3-degree Gauss-Krüger zone (25..45) for a longitude; boundaries go east."""
    if not math.isfinite(lon):
        raise CRSError(f"longitude {lon!r} is not a finite number")
    zone = int(math.floor(lon / 3.0 + 0.5))
    if not GK_FIRST_ZONE <= zone <= GK_LAST_ZONE:
        raise CRSError(
            f"longitude {lon:.6f} is outside the CGCS2000 3-degree Gauss-Krüger zones "
            f"(73.5°E to 136.5°E); pass an explicit projected EPSG code instead")
    return zone


def gk_zone_epsg(lon: float, *, prefix: bool = False) -> int:
    """EPSG code of the 3-degree GK zone for `lon`: 4534..4554, or 4513..4533 with zone prefix."""
    zone = gk_zone(lon)
    base = GK_PREFIX_EPSG_BASE if prefix else GK_CM_EPSG_BASE
    return base + zone - GK_FIRST_ZONE


_local = threading.local()


def _transformer(src: int, dst: int) -> Transformer:
    """A cached always_xy Transformer; one cache per thread, as pyproj advises."""
    cache: dict[tuple[int, int], Transformer] | None = getattr(_local, "transformers", None)
    if cache is None:
        cache = _local.transformers = {}
    key = (src, dst)
    found = cache.get(key)
    if found is None:
        try:
            found = Transformer.from_crs(src, dst, always_xy=True)
        except _PyprojCRSError as error:
            raise CRSError(f"no transformation from EPSG:{src} to EPSG:{dst}: {error}") from None
        cache[key] = found
    return found


def _normalise(crs: str | int) -> int | str:
    """EPSG int for a named or numeric CRS, or "gcj02"/"bd09"; raises CRSError when unknown."""
    if isinstance(crs, (int, np.integer)) and not isinstance(crs, bool):
        return int(crs)
    if isinstance(crs, str):
        name = crs.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
        if name in _NON_EPSG:
            return name
        if name in _NAMED_EPSG:
            return _NAMED_EPSG[name]
        if name.startswith("epsg:") and name[5:].isdigit():
            return int(name[5:])
    raise CRSError(
        f"unknown coordinate system {crs!r}: use an EPSG code or one of "
        f"'wgs84', 'cgcs2000', 'webmercator', 'gcj02', 'bd09'")


# ---------------------------------------------------------------- GCJ-02 and BD-09, per point

def in_china(lon: float, lat: float) -> bool:
    """True inside the rough mainland-China box where GCJ-02/BD-09 shift coordinates."""
    return CHINA_LON_MIN <= lon <= CHINA_LON_MAX and CHINA_LAT_MIN <= lat <= CHINA_LAT_MAX


def _gcj_delta(lon: float, lat: float) -> tuple[float, float]:
    """The GCJ-02 offset (dlon, dlat) in degrees at a WGS84 point (published formula)."""
    x, y = lon - 105.0, lat - 35.0
    pi = math.pi
    common = (20.0 * math.sin(6.0 * x * pi) + 20.0 * math.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    dlat += common
    dlat += (20.0 * math.sin(y * pi) + 40.0 * math.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(y / 12.0 * pi) + 320.0 * math.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    dlon += common
    dlon += (20.0 * math.sin(x * pi) + 40.0 * math.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * math.sin(x / 12.0 * pi) + 300.0 * math.sin(x / 30.0 * pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * pi
    magic = 1.0 - _GCJ_EE * math.sin(radlat) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * pi)
    dlon = (dlon * 180.0) / (_GCJ_A / sqrt_magic * math.cos(radlat) * pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """WGS84 to GCJ-02 for one point; unchanged outside China."""
    if not in_china(lon, lat):
        return lon, lat
    dlon, dlat = _gcj_delta(lon, lat)
    return lon + dlon, lat + dlat


def _gcj_bd_forward(lon: float, lat: float) -> tuple[float, float]:
    """The BD-09 offset formula applied to a GCJ-02 point (no China test)."""
    z = math.hypot(lon, lat) + 0.00002 * math.sin(lat * _BD_X_PI)
    theta = math.atan2(lat, lon) + 0.000003 * math.cos(lon * _BD_X_PI)
    return z * math.cos(theta) + _BD_DLON, z * math.sin(theta) + _BD_DLAT


def gcj02_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 to BD-09 for one point; unchanged outside China."""
    if not in_china(lon, lat):
        return lon, lat
    return _gcj_bd_forward(lon, lat)


def wgs84_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """WGS84 to BD-09 for one point; unchanged outside China."""
    if not in_china(lon, lat):
        return lon, lat
    dlon, dlat = _gcj_delta(lon, lat)
    return _gcj_bd_forward(lon + dlon, lat + dlat)


def _invert(forward: Any, lon: float, lat: float) -> tuple[float, float]:
    """Solve forward(x, y) == (lon, lat) by fixed-point iteration (the Jacobian is ~identity)."""
    x, y = lon, lat
    for _ in range(_INVERSE_MAX_ITERATIONS):
        fx, fy = forward(x, y)
        ex, ey = fx - lon, fy - lat
        x -= ex
        y -= ey
        if abs(ex) < _INVERSE_TOLERANCE_DEG and abs(ey) < _INVERSE_TOLERANCE_DEG:
            break
    return x, y


def _wgs_gcj_forward(lon: float, lat: float) -> tuple[float, float]:
    dlon, dlat = _gcj_delta(lon, lat)
    return lon + dlon, lat + dlat


def _wgs_bd_forward(lon: float, lat: float) -> tuple[float, float]:
    dlon, dlat = _gcj_delta(lon, lat)
    return _gcj_bd_forward(lon + dlon, lat + dlat)


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 to WGS84 for one point, iterated to ~1e-10 degree; unchanged outside China."""
    if not in_china(lon, lat):
        return lon, lat
    return _invert(_wgs_gcj_forward, lon, lat)


def bd09_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """BD-09 to GCJ-02 for one point, iterated to ~1e-10 degree; unchanged outside China."""
    if not in_china(lon, lat):
        return lon, lat
    return _invert(_gcj_bd_forward, lon, lat)


def bd09_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """BD-09 to WGS84 for one point, iterated to ~1e-10 degree; unchanged outside China."""
    if not in_china(lon, lat):
        return lon, lat
    return _invert(_wgs_bd_forward, lon, lat)


# ---------------------------------------------------------------- GCJ-02 and BD-09, vectorised

def _as_arrays(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    if x.shape != y.shape:
        raise CRSError(f"longitude shape {x.shape} differs from latitude shape {y.shape}")
    return x, y


def _in_china_array(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return ((lon >= CHINA_LON_MIN) & (lon <= CHINA_LON_MAX)
            & (lat >= CHINA_LAT_MIN) & (lat <= CHINA_LAT_MAX))


def _gcj_delta_array(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised `_gcj_delta`."""
    x, y = lon - 105.0, lat - 35.0
    pi = np.pi
    common = (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    dlat = dlat + common
    dlat += (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    dlon = dlon + common
    dlon += (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * pi
    magic = 1.0 - _GCJ_EE * np.sin(radlat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * pi)
    dlon = (dlon * 180.0) / (_GCJ_A / sqrt_magic * np.cos(radlat) * pi)
    return dlon, dlat


def _wgs_gcj_array(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dlon, dlat = _gcj_delta_array(lon, lat)
    return lon + dlon, lat + dlat


def _gcj_bd_array(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _BD_X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _BD_X_PI)
    return z * np.cos(theta) + _BD_DLON, z * np.sin(theta) + _BD_DLAT


def _wgs_bd_array(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _gcj_bd_array(*_wgs_gcj_array(lon, lat))


def _forward_array(forward: Any, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_arrays(lon, lat)
    inside = _in_china_array(x, y)
    fx, fy = forward(x, y)
    return np.where(inside, fx, x), np.where(inside, fy, y)


def _inverse_array(forward: Any, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    tx, ty = _as_arrays(lon, lat)
    inside = _in_china_array(tx, ty)
    x, y = tx.copy(), ty.copy()
    for _ in range(_INVERSE_MAX_ITERATIONS):
        fx, fy = forward(x, y)
        ex, ey = fx - tx, fy - ty
        x -= ex
        y -= ey
        if not np.any(inside & ((np.abs(ex) >= _INVERSE_TOLERANCE_DEG)
                                | (np.abs(ey) >= _INVERSE_TOLERANCE_DEG))):
            break
    return np.where(inside, x, tx), np.where(inside, y, ty)


def wgs84_to_gcj02_array(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised WGS84 to GCJ-02; points outside China unchanged."""
    return _forward_array(_wgs_gcj_array, lon, lat)


def gcj02_to_wgs84_array(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised iterative GCJ-02 to WGS84; points outside China unchanged."""
    return _inverse_array(_wgs_gcj_array, lon, lat)


def gcj02_to_bd09_array(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised GCJ-02 to BD-09; points outside China unchanged."""
    return _forward_array(_gcj_bd_array, lon, lat)


def bd09_to_gcj02_array(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised iterative BD-09 to GCJ-02; points outside China unchanged."""
    return _inverse_array(_gcj_bd_array, lon, lat)


def wgs84_to_bd09_array(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised WGS84 to BD-09; points outside China unchanged."""
    return _forward_array(_wgs_bd_array, lon, lat)


def bd09_to_wgs84_array(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised iterative BD-09 to WGS84; points outside China unchanged."""
    return _inverse_array(_wgs_bd_array, lon, lat)


# ---------------------------------------------------------------- general transform

_TO_WGS84 = {GCJ02: gcj02_to_wgs84_array, BD09: bd09_to_wgs84_array}
_FROM_WGS84 = {GCJ02: wgs84_to_gcj02_array, BD09: wgs84_to_bd09_array}


def transform(xs: Any, ys: Any, src: str | int, dst: str | int) -> tuple[np.ndarray, np.ndarray]:
    """Transform coordinate arrays between EPSG codes and "wgs84"/"cgcs2000"/"webmercator"/
    "gcj02"/"bd09"; geographic systems are (lon, lat) in degrees, projected ones (x, y) metres."""
    source, target = _normalise(src), _normalise(dst)
    x, y = _as_arrays(xs, ys)
    if source == target:
        return x.copy(), y.copy()
    if source == GCJ02 and target == BD09:
        return gcj02_to_bd09_array(x, y)
    if source == BD09 and target == GCJ02:
        return bd09_to_gcj02_array(x, y)
    if isinstance(source, str):
        x, y = _TO_WGS84[source](x, y)
        source = WGS84
    if isinstance(target, str):
        if source != WGS84:
            x, y = _pyproj(x, y, source, WGS84)
        return _FROM_WGS84[target](x, y)
    return _pyproj(x, y, source, target)


def _pyproj(x: np.ndarray, y: np.ndarray, src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Run a cached pyproj Transformer; infinite output means the point is not representable."""
    if src == dst:
        return x.copy(), y.copy()
    out_x, out_y = _transformer(src, dst).transform(x, y)
    return np.asarray(out_x, dtype=np.float64), np.asarray(out_y, dtype=np.float64)


# ---------------------------------------------------------------- metres

def _metric_epsg(lon: np.ndarray) -> int:
    finite = lon[np.isfinite(lon)]
    if finite.size == 0:
        raise CRSError("cannot pick a Gauss-Krüger zone: no finite longitude given")
    return gk_zone_epsg(float(finite.mean()))


def to_metres(lon: Any, lat: Any, *, epsg: int | None = None) -> tuple[Any, Any]:
    """WGS84 lon/lat to metric CGCS2000 Gauss-Krüger (x east, y north), the one way to metres.

    The zone comes from the mean longitude unless `epsg` is given; pass the same `epsg` to keep
    several calls in one plane. Scalars in give floats out, arrays give arrays.
    """
    if isinstance(lon, (float, int)) and isinstance(lat, (float, int)):
        target = gk_zone_epsg(lon) if epsg is None else epsg
        return _transformer(WGS84, target).transform(float(lon), float(lat))
    x, y = _as_arrays(lon, lat)
    target = _metric_epsg(np.atleast_1d(x)) if epsg is None else epsg
    out_x, out_y = _pyproj(x, y, WGS84, target)
    if x.ndim == 0:
        return float(out_x), float(out_y)
    return out_x, out_y


def from_metres(x: Any, y: Any, *, epsg: int) -> tuple[Any, Any]:
    """Metric (x, y) in the projected `epsg` back to WGS84 lon/lat; the inverse of `to_metres`."""
    if isinstance(x, (float, int)) and isinstance(y, (float, int)):
        return _transformer(epsg, WGS84).transform(float(x), float(y))
    xs, ys = _as_arrays(x, y)
    lon, lat = _pyproj(xs, ys, epsg, WGS84)
    if xs.ndim == 0:
        return float(lon), float(lat)
    return lon, lat


def distance_m(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any:
    """Distance in metres between WGS84 points: geodesic on the WGS84 ellipsoid (pyproj.Geod).

    Geodesic rather than planar Gauss-Krüger because it is exact everywhere, needs no zone and
    does not break for pairs in different zones; inside one 3-degree zone the two agree to
    better than 3e-4 of the distance. Scalars give a float, arrays an array.
    """
    a, b = _as_arrays(lon1, lat1)
    c, d = _as_arrays(lon2, lat2)
    if a.ndim == 0 and c.ndim == 0:
        return float(_GEOD.inv(float(a), float(b), float(c), float(d))[2])
    a, b, c, d = np.broadcast_arrays(a, b, c, d)
    _, _, dist = _GEOD.inv(a, b, c, d)
    return np.asarray(dist, dtype=np.float64)


def buffer_m(
    geom_wgs84: shapely.Geometry, metres: float, **buffer_options: Any,
) -> shapely.Geometry:
    """Buffer a WGS84 shapely geometry by `metres`, computed in its Gauss-Krüger zone (picked
    from the middle of its bounds); `buffer_options` go to shapely.buffer."""
    if geom_wgs84.is_empty:
        return geom_wgs84
    min_lon, _, max_lon, _ = geom_wgs84.bounds
    epsg = gk_zone_epsg((min_lon + max_lon) / 2.0)

    def forward(coords: np.ndarray) -> np.ndarray:
        """WGS84 to the zone."""
        return np.column_stack(_pyproj(coords[:, 0], coords[:, 1], WGS84, epsg))

    def inverse(coords: np.ndarray) -> np.ndarray:
        """The zone to WGS84."""
        return np.column_stack(_pyproj(coords[:, 0], coords[:, 1], epsg, WGS84))

    metric = shapely.transform(geom_wgs84, forward)
    return shapely.transform(shapely.buffer(metric, metres, **buffer_options), inverse)
