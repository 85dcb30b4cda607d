"""Navigation for crews: the site in WGS84 for our map, and in GCJ-02 with an AMap link for the
phone's own map app (Chinese map apps expect GCJ-02 coordinates)."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from gis.crs import wgs84_to_gcj02

AMAP_MARKER = "https://uri.amap.com/marker?position={lon:.6f},{lat:.6f}&name={name}&coordinate=gaode&callnative=1"


def navigation(lon: float | None, lat: float | None, name: str) -> dict[str, Any] | None:
    """Where to drive: WGS84 for our map, GCJ-02 and an AMap link for the phone's own map app."""
    if lon is None or lat is None:
        return None
    glon, glat = wgs84_to_gcj02(lon, lat)
    return {"wgs84": [lon, lat], "gcj02": [round(glon, 7), round(glat, 7)],
            "amap_uri": AMAP_MARKER.format(lon=glon, lat=glat, name=quote(name or "现场"))}
