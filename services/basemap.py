"""The street base map: rendering a city's tile set into its MBTiles file, the demo's cached set,
and what the web process needs to serve tiles and tell its pages where the base map is.

The drawing is `gis.basemap` (pure); the file is `store.mbtiles`. The pages' tile source is one
of: BASEMAP_URL (an intranet 天地图, the GIS department's tile server: any XYZ or WMTS URL on the
Web Mercator grid), else our own ``/tiles/{z}/{x}/{y}.png`` when the MBTiles file is there, else
none (the map shows the city's layers alone, as before there was a base map).
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config.settings import Settings
from gis.basemap import DEFAULT_ZOOMS, RENDERER_VERSION, BaseMap
from gis.layers import load_profile
from store.mbtiles import MBTiles, MBTilesError, read_metadata, write_mbtiles

__all__ = ["BasemapService", "render_city", "ensure_demo_tiles", "mbtiles_path", "font_path", "parse_zooms",
           "OWN_TILES_URL"]

log = logging.getLogger(__name__)

OWN_TILES_URL = "/tiles/{z}/{x}/{y}.png"
BASEMAP_SUBDIR = "basemap"


def mbtiles_path(settings: Settings) -> Path:
    """BASEMAP_MBTILES, else DATA_DIR/basemap/city.mbtiles (where `tiles` and the demo write)."""
    if settings.BASEMAP_MBTILES:
        return Path(settings.BASEMAP_MBTILES)
    return settings.data_dir / BASEMAP_SUBDIR / "city.mbtiles"


def font_path(settings: Settings) -> str:
    """BASEMAP_FONT, else Noto Sans SC shipped by the pylopdf-fonts-zh-cn wheel (OFL)."""
    if settings.BASEMAP_FONT:
        return settings.BASEMAP_FONT
    import pylopdf_fonts_zh_cn

    return str(pylopdf_fonts_zh_cn.sans_path())


def parse_zooms(text: str) -> range:
    """'11-15' (or '14') as the zooms to render, 0..20, first <= last (ValueError otherwise)."""
    first, _, last = text.strip().partition("-")
    lo, hi = int(first), int(last or first)
    if not 0 <= lo <= hi <= 20:
        raise ValueError(f"zooms must be N or N-M within 0..20: {text!r}")
    return range(lo, hi + 1)


def render_city(profile: Path, out: Path, *, font: str, zooms: Sequence[int] = DEFAULT_ZOOMS,
                source: str = "", progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Draw the city's base map at these zooms into the MBTiles file `out` (replaced whole at the
    end); what was written: tiles, seconds, bounds."""
    started = time.perf_counter()
    city = load_profile(profile)
    name = getattr(getattr(city, "profile", None), "name", "") or Path(profile).parent.name
    basemap = BaseMap.from_city(city, font)
    west, south, east, north = basemap.bounds()
    total = len(basemap.tiles(zooms))
    progress(f"base map: {total} tiles at zooms {zooms[0]}-{zooms[-1]} over {west:.4f},{south:.4f},"
             f"{east:.4f},{north:.4f} into {out}")
    metadata = {
        "name": f"{name} base map", "format": "png", "type": "baselayer", "version": str(RENDERER_VERSION),
        "description": "streets, districts and names drawn from the city profile's own layers",
        "attribution": "city profile layers", "minzoom": str(zooms[0]), "maxzoom": str(zooms[-1]),
        "bounds": f"{west:.6f},{south:.6f},{east:.6f},{north:.6f}",
        "center": f"{(west + east) / 2:.6f},{(south + north) / 2:.6f},{min(max(zooms[0], 13), zooms[-1])}",
        "source": source,
    }
    count = write_mbtiles(out, metadata, basemap.render(zooms, progress=lambda m: progress("base map: " + m)))
    seconds = time.perf_counter() - started
    progress(f"base map: {count} tiles written in {seconds:.1f} s")
    return {"tiles": count, "seconds": seconds, "bounds": (west, south, east, north)}


def _source_key(profile: Path, zooms: Sequence[int]) -> str:
    """What a cached demo tile set was drawn from: the profile's text (the generator's version and
    seed), the renderer's version and the zooms."""
    digest = hashlib.sha256(Path(profile).read_bytes())
    digest.update(f"renderer {RENDERER_VERSION} zooms {list(zooms)}".encode())
    return digest.hexdigest()[:16]


def ensure_demo_tiles(settings: Settings, profile: Path, *, zooms: Sequence[int] = DEFAULT_ZOOMS,
                      progress: Callable[[str], None] = lambda m: None) -> Path | None:
    """The demo's base map: rendered into DATA_DIR/basemap once, again when the city (its
    generator version or seed) or the renderer changed. None when the demo draws none
    (DEMO_BASEMAP off, or a BASEMAP_URL or BASEMAP_MBTILES of the center's own)."""
    if not settings.DEMO_BASEMAP or settings.BASEMAP_URL or settings.BASEMAP_MBTILES:
        return None
    out = mbtiles_path(settings)
    source = _source_key(profile, zooms)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".render.lock", "w") as lock:  # one renderer at a time (two demos starting)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if read_metadata(out).get("source") == source:
                return out
        except MBTilesError:
            pass
        render_city(profile, out, font=font_path(settings), zooms=zooms, source=source, progress=progress)
    return out


class BasemapService:
    """The web process's base map: the pages' tile source (`page_config`) and our own tiles."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tiles = MBTiles(mbtiles_path(settings))
        self._own: tuple[Any, Any] = (None, None)

    def page_config(self) -> dict[str, Any]:
        """What a page's map needs: url template, datum (wgs84 or gcj02), attribution, zooms;
        {} when there is no base map."""
        s = self.settings
        datum = "gcj02" if s.BASEMAP_DATUM == "gcj02" else "wgs84"  # CGCS2000 is WGS84 at map scale
        if s.BASEMAP_URL:
            return {"url": s.BASEMAP_URL, "datum": datum, "attribution": s.BASEMAP_ATTRIBUTION,
                    "max_zoom": s.BASEMAP_MAX_ZOOM, "max_native_zoom": s.BASEMAP_MAX_ZOOM}
        own = self._own_set()
        if own is None:
            return {}
        (min_zoom, max_zoom), bounds = own
        return {"url": OWN_TILES_URL, "datum": datum, "attribution": s.BASEMAP_ATTRIBUTION,
                "max_zoom": max(s.BASEMAP_MAX_ZOOM, max_zoom), "min_native_zoom": min_zoom,
                "max_native_zoom": max_zoom, "bounds": bounds}

    def image_origin(self) -> str:
        """The origin of an outside tile server (for the pages' Content-Security-Policy), '' for ours."""
        parts = urlsplit(self.settings.BASEMAP_URL)
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""

    async def tile(self, z: int, x: int, y: int) -> bytes | None:
        """Our tile at z/x/y, None when there is none (no file, or outside the set)."""
        if not self.tiles.available():
            return None
        return await asyncio.to_thread(self.tiles.tile, z, x, y)

    def _own_set(self) -> tuple[tuple[int, int], list[list[float]] | None] | None:
        """((minzoom, maxzoom), [[south, west], [north, east]]) of our MBTiles file (so that the
        maps ask for no tile outside it), read again when the file is replaced; None without a
        readable file."""
        try:
            stat = self.tiles.path.stat()
        except OSError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns)
        if self._own[0] != key:
            try:
                meta = read_metadata(self.tiles.path)
                zooms = (int(meta.get("minzoom", 0)), int(meta.get("maxzoom", 22)))
                box = [float(v) for v in meta["bounds"].split(",")] if meta.get("bounds") else None
                own = (zooms, None if box is None else [[box[1], box[0]], [box[3], box[2]]])
            except (MBTilesError, ValueError, IndexError) as exc:
                log.warning("base map %s unreadable: %s", self.tiles.path, exc)
                own = None
            self._own = (key, own)
        return self._own[1]
