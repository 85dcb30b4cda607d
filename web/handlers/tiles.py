"""GET /tiles/<z>/<x>/<y>.png: the street base map's tiles from the MBTiles file (services.basemap),
for every logged-in role (the pages with a map: console, desk, field). Each tile carries an ETag
(tornado's, of its bytes: a tile drawn again gets a new one) and is kept an hour by the browser."""
from __future__ import annotations

import logging

from store.mbtiles import MBTilesError
from web.base import ApiError, BaseHandler

log = logging.getLogger(__name__)

MAX_ZOOM = 22
TILE_MAX_AGE_S = 3600


class Tile(BaseHandler):
    """One PNG tile; 404 for a tile the set does not hold (outside the city or its zooms), or when
    there is no tile file."""

    async def get(self, z: str, x: str, y: str) -> None:
        self.require()
        zoom, column, row = int(z), int(x), int(y)
        if zoom > MAX_ZOOM or column >= 1 << zoom or row >= 1 << zoom:
            raise ApiError(404, "tile_not_found", f"no tile {z}/{x}/{y}")
        basemap = self.services.basemap
        try:
            data = None if basemap is None else await basemap.tile(zoom, column, row)
        except MBTilesError as exc:  # a damaged or half-copied file: the center's to mend
            log.error("base map tiles unreadable: %s", exc)
            raise ApiError(503, "basemap_unavailable", "the base map's tile file cannot be read") from None
        if data is None:
            raise ApiError(404, "tile_not_found", f"no tile {z}/{x}/{y}")
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", f"private, max-age={TILE_MAX_AGE_S}")
        self.finish(data)


routes = [(r"/tiles/(\d{1,2})/(\d{1,7})/(\d{1,7})\.png", Tile)]
