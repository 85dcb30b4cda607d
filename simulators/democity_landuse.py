"""Demo city, part four: land use for the street base map (`gis/basemap.py`): the parks (公园, 植物园)
around their POIs, a lake in each park named after one (夷安湖公园: 夷安湖), and the 胶河 river
running north to south west of the town. It draws from a random stream of its own (the seed and
4), after every other layer is built, so that no other layer changes with it."""
from __future__ import annotations

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString

from simulators.democity_areas import Layer, Model, blob

__all__ = ["build_landuse", "RIVER_NAME"]

RIVER_NAME = "胶河"
RIVER_HALF_WIDTH_M = 35.0
PARK_TYPES = ("公园",)


def _lake_name(park: str) -> str | None:
    """The lake a park is named after (夷安湖公园 → 夷安湖, 南湖植物园 → 南湖), or None."""
    if "湖" not in park:
        return None
    return park[:park.index("湖") + 1]


def build_landuse(model: Model, seed: int) -> None:
    """The `landuse` layer: parks, lakes and the river (landuse park or water), in local metres."""
    rng = np.random.default_rng([seed, 4])
    out = Layer()
    pois = model.layers["pois"]
    for row, spot in zip(pois.rows, pois.geoms):
        if row.get("poi_type") not in PARK_TYPES:
            continue
        radius = rng.uniform(160.0, 260.0)
        park = affinity.translate(blob(rng, radius, radius * rng.uniform(0.7, 1.0), 0.08, n=48), spot.x, spot.y)
        out.add(park, name=row["name"], landuse="park")
        lake = _lake_name(row["name"])
        if lake:
            water = affinity.translate(blob(rng, radius * 0.55, radius * 0.4, 0.1, n=48),
                                       spot.x + radius * 0.15, spot.y - radius * 0.1)
            out.add(water.intersection(park), name=lake, landuse="water")
    west = shapely.bounds(model.urban)[0] - 1200.0  # west of the town, as the real 胶河 runs
    y = np.linspace(-16000.0, 16000.0, 161)
    x = west + 500.0 * np.sin(y / 2600.0 + rng.uniform(0, 6.28)) + 250.0 * np.sin(y / 900.0 + rng.uniform(0, 6.28))
    river = LineString(np.column_stack([x, y])).buffer(RIVER_HALF_WIDTH_M, quad_segs=4).intersection(model.city)
    if not river.is_empty:
        out.add(river, name=RIVER_NAME, landuse="water")
    for k, row in enumerate(out.rows):
        row["landuse_id"] = f"LU{k + 1:03d}"
    model.layers["landuse"] = out
