"""The demo city's street base map drawn into an MBTiles file, as `make demo` does once per city.

Figures: basemap_render_s (wall seconds of `services.basemap.render_city` over the demo city at
the demo's zooms, 11-15, loading the layers included: what a first `make demo` waits),
basemap_tiles (how many), basemap_tile_ms (per tile, the deepest zoom alone: the cost a deeper
zoom adds, about four times as many tiles per zoom) and basemap_mbtiles_mb.

`python -m bench.basemap_render [--zooms N-M]` (`make bench` runs it with the others).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import emit, progress
from config.settings import load
from gis.basemap import BaseMap
from gis.layers import load_profile
from services.basemap import font_path, parse_zooms, render_city
from simulators import democity


def main() -> None:
    """Generate the demo city, draw its tile set, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zooms", default="11-15", help="zooms to draw, N-M (the demo's: 11-15)")
    args = parser.parse_args()
    zooms = parse_zooms(args.zooms)
    font = font_path(load({"CONFIG_FILE": "/nonexistent.toml"}))
    with tempfile.TemporaryDirectory() as tmp:
        progress("generating the demo city ...")
        profile = democity.generate(Path(tmp) / "city", seed=democity.DEFAULT_SEED)
        out = Path(tmp) / "city.mbtiles"
        report = render_city(profile, out, font=font, zooms=zooms, progress=progress)
        emit("basemap_render_s", round(report["seconds"], 2), "s")
        emit("basemap_tiles", report["tiles"], "tiles")
        emit("basemap_mbtiles_mb", round(out.stat().st_size / 1e6, 2), "MB")
        city = load_profile(profile)
        basemap = BaseMap.from_city(city, font)
        deepest = basemap.tiles([zooms[-1]])
        basemap.labels(zooms[-1])  # placed once per zoom, before the tiles
        started = time.perf_counter()
        for tile in deepest:
            basemap.tile_png(tile.z, tile.x, tile.y)
        emit("basemap_tile_ms", round((time.perf_counter() - started) * 1000 / len(deepest), 2), "ms")


if __name__ == "__main__":
    main()
