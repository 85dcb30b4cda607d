"""What the simulated sensors are and what they read undisturbed: a sensor's spec (the registry
joined with its asset: DMA, rated kVA, feeder) and the daily curves in the city's local time
(transformer load: night trough ~30 %, evening peak ~80 % of rated; water pressure 0.25-0.35 MPa
with a night rise and a morning dip; a DMA's inflow the mirror of its pressure).

`simulators.sensors.SensorSimulator` adds the seeded noise, the scenario effects and the publishing.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["FLOW_CURVE", "LOAD_CURVE", "PRESSURE_CURVE", "SensorSpec", "flow_share", "load_percent",
           "pressure_offset", "specs_from_city", "substation_of"]

# (local hour, % of rated kVA): a residential/commercial mix, trough ~4:00, peak ~20:00.
LOAD_CURVE = ((0, 42.0), (2, 33.0), (4, 30.0), (6, 36.0), (8, 52.0), (10, 58.0), (12, 62.0),
              (14, 58.0), (16, 60.0), (18, 72.0), (20, 80.0), (22, 62.0), (24, 42.0))
# (local hour, MPa offset from the point's base): night rise, morning dip, evening dip.
PRESSURE_CURVE = ((0, 0.015), (3, 0.030), (5, 0.025), (7, -0.030), (8, -0.035), (10, -0.010),
                  (12, -0.015), (15, 0.000), (19, -0.020), (21, -0.005), (24, 0.015))
# (local hour, share of the DMA's peak inflow): the mirror of the pressure curve.
FLOW_CURVE = ((0, 0.30), (3, 0.22), (5, 0.30), (7, 0.95), (8, 1.00), (10, 0.70), (12, 0.80),
              (15, 0.60), (19, 0.90), (21, 0.65), (24, 0.30))


@dataclass(frozen=True)
class SensorSpec:
    """One simulated sensor, from the registry joined with its asset (DMA, rated kVA, feeder)."""

    sensor_id: str
    kind: str           # transformer_load | pressure | flow | any other (generic)
    quantity: str
    unit: str
    asset_id: str
    period_s: float
    lon: float
    lat: float
    dma_id: str | None = None
    rated_kva: float | None = None
    feeder: str | None = None
    low_critical: float | None = None
    high_critical: float | None = None


def _interp(curve: Sequence[tuple[float, float]], hour: float) -> float:
    """Cosine interpolation of a (hour, value) table over a day."""
    hour %= 24.0
    for (h0, v0), (h1, v1) in zip(curve, curve[1:]):
        if h0 <= hour <= h1:
            f = (1 - math.cos(math.pi * (hour - h0) / (h1 - h0))) / 2
            return v0 + (v1 - v0) * f
    return curve[-1][1]


def load_percent(hour: float) -> float:
    """Typical transformer load, % of rated kVA, at a local hour of the day."""
    return _interp(LOAD_CURVE, hour)


def pressure_offset(hour: float) -> float:
    """Daily pressure swing in MPa at a local hour (add to a point's base pressure)."""
    return _interp(PRESSURE_CURVE, hour)



def flow_share(hour: float) -> float:
    """A DMA's inflow at a local hour, as a share of its peak inflow."""
    return _interp(FLOW_CURVE, hour)


def substation_of(feeder: str | None) -> str | None:
    """The supplying station of a feeder name: ``10kV城区3线`` -> ``10kV城区``."""
    return re.sub(r"\d*线$", "", feeder) if feeder else None


def _opt(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def specs_from_city(city) -> list[SensorSpec]:
    """Every sensor of a loaded ``gis.layers.City``, joined with DMA, rated kVA and feeder."""
    transformers = {str(r.asset_id): r for r in city.transformers.itertuples()}
    dma_of_point = {str(r.sensor_id): str(r.dma_id) for r in city.pressure_points.itertuples()}
    mains = city.mains
    dma_of_main = ({str(m): str(d) for m, d in zip(mains["main_id"], mains["dma_id"])}
                   if "dma_id" in mains.columns else {})
    specs = []
    for row in city.sensors.itertuples():
        asset = str(row.asset_id)
        transformer = transformers.get(asset)
        specs.append(SensorSpec(
            sensor_id=str(row.sensor_id), kind=str(row.kind), quantity=str(row.quantity),
            unit=str(row.unit), asset_id=asset, period_s=float(row.period_s),
            lon=float(row.geometry.x), lat=float(row.geometry.y),
            dma_id=dma_of_point.get(str(row.sensor_id)) or dma_of_main.get(asset),
            rated_kva=_opt(transformer.rated_kva) if transformer is not None else None,
            feeder=str(transformer.feeder) if transformer is not None else None,
            low_critical=_opt(getattr(row, "low_critical", None)),
            high_critical=_opt(getattr(row, "high_critical", None))))
    return specs
