"""Heat map binning and emerging clusters (command.hotspots) with known answers."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from command.errors import ValidationError
from command.hotspots import emerging_clusters, heat_map, state_clusters, state_heat_map
from command.kpi import KpiState, day_period, week_period
from gis.crs import distance_m, from_metres, gk_zone_epsg

UTC = timezone.utc
EPSG = gk_zone_epsg(116.4)
X0, Y0 = 500_000.0, 4_420_000.0  # a cell corner (multiple of 250 m) near Beijing in this zone


def points_in_cells(spec, cell=250.0):
    """WGS84 points: `count` points inside cell (i, j) counted from (X0, Y0), away from its edges."""
    xs, ys = [], []
    for (i, j), count in spec.items():
        for k in range(count):
            xs.append(X0 + (i + 0.2 + 0.6 * k / max(count, 1)) * cell)
            ys.append(Y0 + (j + 0.3 + 0.4 * k / max(count, 1)) * cell)
    return from_metres(np.array(xs), np.array(ys), epsg=EPSG)


@pytest.mark.parametrize("spec", [
    {(0, 0): 5, (1, 0): 3, (0, -2): 1},
    {(3, 3): 7},
    {(0, 0): 2, (-1, -1): 2, (5, 0): 4},
])
def test_heat_map_counts_and_centers(spec):
    lon, lat = points_in_cells(spec)
    lon, lat = np.append(lon, np.nan), np.append(lat, np.nan)  # a ticket without a location is skipped
    result = heat_map(lon, lat, cell_m=250, epsg=EPSG)
    assert [c.count for c in result.cells] == sorted(spec.values(), reverse=True)
    by_index = {(c.ix - int(X0 // 250), c.iy - int(Y0 // 250)): c for c in result.cells}
    assert {k: c.count for k, c in by_index.items()} == spec
    for (i, j), c in by_index.items():
        clon, clat = from_metres(X0 + (i + 0.5) * 250, Y0 + (j + 0.5) * 250, epsg=EPSG)
        assert distance_m(c.lon, c.lat, clon, clat) < 0.01
    assert result.to_dict()["cells"][0]["count"] == max(spec.values())


def test_heat_map_cell_size_changes_binning_and_empty_input():
    lon, lat = points_in_cells({(0, 0): 2, (1, 0): 2, (0, 1): 2, (1, 1): 2})
    assert [c.count for c in heat_map(lon, lat, cell_m=500, epsg=EPSG).cells] == [8]
    assert heat_map([], [], epsg=EPSG).cells == []
    with pytest.raises(ValidationError):
        heat_map(lon, lat, cell_m=0)


WEEK0 = datetime(2026, 11, 16, tzinfo=timezone(timedelta(hours=8)))  # a Monday in Shanghai


def history_rows(area, category, weekly, start_number=1):
    """Tickets with `weekly[k]` of them in week k (k = 0..8, the last is the current week)."""
    rows = []
    n = start_number
    for k, count in enumerate(weekly):
        week_start = WEEK0 - timedelta(weeks=len(weekly) - 1 - k)
        for c in range(count):
            rows.append((area, category, (week_start + timedelta(hours=3 + c)).timestamp(), f"GD20261116-{n:04d}"))
            n += 1
    return rows


STEADY = [3, 4, 2, 3, 5, 3, 4, 3]


@pytest.mark.parametrize(("series", "flagged"), [
    ({("G1", "water"): STEADY + [15]}, [("G1", "water")]),
    ({("G1", "water"): STEADY + [4]}, []),
    ({("G1", "water"): STEADY + [7]}, []),  # within noise
    ({("G3", "gas"): [0] * 8 + [3]}, []),  # below the minimum count
    ({("G4", "gas"): [0] * 8 + [6]}, [("G4", "gas")]),
    ({("G1", "water"): STEADY + [15], ("G2", "water"): STEADY + [4], ("G4", "gas"): [0] * 8 + [6],
      ("G5", "power"): [10, 11, 9, 10, 12, 10, 9, 11] + [30]}, [("G5", "power"), ("G1", "water"), ("G4", "gas")]),  # by p: 4e-7, 3e-6, 1e-5
    ({("G6", "power"): [20, 0, 20, 0, 20, 0, 20, 0] + [25]}, []),  # bursty history: high std
])
def test_emerging_clusters(series, flagged):
    rows = []
    for (area, category), weekly in series.items():
        rows += history_rows(area, category, weekly, start_number=len(rows) + 1)
    rows.append(("G1", "water", (WEEK0 - timedelta(weeks=20)).timestamp(), "GD20260101-0001"))  # too old
    rows.append((None, "water", WEEK0.timestamp(), "GD20261116-9999"))  # no area
    area, category, created, numbers = map(list, zip(*rows))
    found = emerging_clusters(area, category, np.array(created), numbers, window_start=WEEK0)
    assert [(c.area, c.category) for c in found] == flagged
    for c in found:
        weekly = series[(c.area, c.category)]
        assert c.count == weekly[-1] and c.history == weekly[:-1]
        assert c.mean == pytest.approx(np.mean(weekly[:-1])) and len(c.numbers) == c.count
        assert c.p_value < 0.001 and c.z >= 3


def test_emerging_cluster_arguments():
    with pytest.raises(ValidationError):
        emerging_clusters(["G1"], ["water"], [WEEK0], ["x"], window_start=WEEK0, history=1)
    with pytest.raises(ValidationError):
        emerging_clusters(["G1"], ["water"], [WEEK0, WEEK0], ["x"], window_start=WEEK0)
    assert emerging_clusters(["G1"], ["water"], [WEEK0], ["x"], window_start=WEEK0) == []
    assert emerging_clusters([], [], [], [], window_start=WEEK0) == []  # no tickets at all: none, no error


def create_event(number, at, category, grid, lon, lat):
    return {"ticket_number": number, "action": "create", "from_state": None, "to_state": "new",
            "actor_id": "a1", "role": "agent", "at": at.isoformat(), "note": "",
            "data": {"channel": "phone", "category": category, "type": "repair", "district": "D1",
                     "grid": grid, "lon": lon, "lat": lat}}


def test_state_heat_map_and_clusters():
    state = KpiState()
    lon, lat = points_in_cells({(0, 0): 6, (2, 2): 2})
    n = 0
    for k, (x, y) in enumerate(zip(lon, lat)):
        n += 1
        category = "water" if k < 6 else "gas"
        state.apply(create_event(f"GD20261116-{n:04d}", WEEK0 + timedelta(hours=k), category, "G1", x, y))
    for week in range(1, 9):  # one gas ticket a week before: steady
        n += 1
        state.apply(create_event(f"GD20261116-{n:04d}", WEEK0 - timedelta(weeks=week), "gas", "G1", lon[0], lat[0]))
    start, end = week_period(date(2026, 11, 16))
    assert [c.count for c in state_heat_map(state, start, end, epsg=EPSG).cells] == [6, 2]
    assert [c.count for c in state_heat_map(state, start, end, category="gas", epsg=EPSG).cells] == [2]
    assert state_heat_map(state, *day_period(date(2026, 1, 1)), epsg=EPSG).cells == []
    clusters = state_clusters(state, start)
    assert [(c.area, c.category, c.count) for c in clusters] == [("G1", "water", 6)]
    with pytest.raises(ValidationError):
        state_clusters(state, start, area="street")
