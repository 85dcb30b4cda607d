"""GET /api/layers and /api/layers/<kind>: the city's base layers as GeoJSON (WGS84)."""
from __future__ import annotations

from web.base import ApiError, BaseHandler

# Layers a console may draw; sensitive ones (crews with plates) are served elsewhere.
MAP_LAYERS = ("districts", "streets", "grids", "units", "roads", "stations", "transformers",
              "supply_areas", "dmas", "mains", "valves", "sensors")
# Layers served for what they join, not drawn: a pressure point's DMA (the wall's sensor zone)
JOIN_LAYERS = ("pressure_points",)


class LayerIndex(BaseHandler):
    """The layers available, with feature counts."""

    def get(self) -> None:
        self.require()
        city = self.services.city
        self.write_json({"layers": [{"kind": k, "features": city.count(k)} for k in MAP_LAYERS
                                    if city is not None and city.count(k)]})


class LayerGeoJSON(BaseHandler):
    """One layer as a GeoJSON FeatureCollection, encoded once and cached."""

    def get(self, kind: str) -> None:
        self.require()
        city = self.services.city
        if kind not in MAP_LAYERS + JOIN_LAYERS or city is None or not city.count(kind):
            raise ApiError(404, "layer_not_found", f"no layer {kind}")
        self.set_header("Content-Type", "application/geo+json; charset=utf-8")
        self.set_header("Cache-Control", "private, max-age=300")
        self.finish(city.geojson(kind))


routes = [(r"/api/layers", LayerIndex), (r"/api/layers/([a-z_]+)", LayerGeoJSON)]
