"""NMEA 0183 sentence writers for the vehicle simulator: GGA, RMC, GSA, VTG with checksums."""
from __future__ import annotations

from datetime import datetime

from ingest.nmea import format_sentence

KMH_PER_KNOT = 1.852


def _lat(lat: float) -> tuple[str, str]:
    hemi = "N" if lat >= 0 else "S"
    lat = abs(lat)
    deg = int(lat)
    minutes = (lat - deg) * 60.0
    text = f"{deg:02d}{minutes:010.7f}"
    if text[2:4] == "60":  # rounding up to 60 minutes
        text = f"{deg + 1:02d}{0.0:010.7f}"
    return text, hemi


def _lon(lon: float) -> tuple[str, str]:
    hemi = "E" if lon >= 0 else "W"
    lon = abs(lon)
    deg = int(lon)
    minutes = (lon - deg) * 60.0
    text = f"{deg:03d}{minutes:010.7f}"
    if text[3:5] == "60":
        text = f"{deg + 1:03d}{0.0:010.7f}"
    return text, hemi


def _hms(t: datetime) -> str:
    return t.strftime("%H%M%S.") + f"{t.microsecond // 10000:02d}"


def gga(t: datetime, lat: float, lon: float, *, quality: int = 1, sats: int = 10, hdop: float = 0.9,
        alt_m: float = 45.0, talker: str = "GP") -> str:
    """$--GGA: time, lat, N/S, lon, E/W, quality, satellites, HDOP, altitude M, geoid sep M, age, station."""
    la, ns = _lat(lat)
    lo, ew = _lon(lon)
    return format_sentence(f"{talker}GGA,{_hms(t)},{la},{ns},{lo},{ew},{quality},{sats:02d},{hdop:.1f},"
                           f"{alt_m:.1f},M,6.0,M,,")


def rmc(t: datetime, lat: float, lon: float, *, speed_kmh: float, course_deg: float, valid: bool = True,
        mode: str = "A", talker: str = "GP") -> str:
    """$--RMC: time, status A/V, lat, N/S, lon, E/W, speed knots, course, date ddmmyy, magvar, E/W, mode."""
    la, ns = _lat(lat)
    lo, ew = _lon(lon)
    return format_sentence(f"{talker}RMC,{_hms(t)},{'A' if valid else 'V'},{la},{ns},{lo},{ew},"
                           f"{speed_kmh / KMH_PER_KNOT:.2f},{course_deg % 360:.1f},{t.strftime('%d%m%y')},,,{mode}")


def gsa(*, mode3d: bool = True, prns: tuple[int, ...] = (3, 6, 9, 12, 17, 19, 22, 25), pdop: float = 1.6,
        hdop: float = 0.9, vdop: float = 1.3, talker: str = "GP") -> str:
    """$--GSA: selection A/M, fix mode 1/2/3, 12 satellite PRNs, PDOP, HDOP, VDOP."""
    ids = [f"{p:02d}" for p in prns[:12]] + [""] * (12 - min(12, len(prns)))
    return format_sentence(f"{talker}GSA,A,{3 if mode3d else 2},{','.join(ids)},{pdop:.1f},{hdop:.1f},{vdop:.1f}")


def vtg(*, speed_kmh: float, course_deg: float, mode: str = "A", talker: str = "GP") -> str:
    """$--VTG: course true T, course magnetic M, speed knots N, speed km/h K, mode."""
    return format_sentence(f"{talker}VTG,{course_deg % 360:.1f},T,,M,{speed_kmh / KMH_PER_KNOT:.2f},N,"
                           f"{speed_kmh:.2f},K,{mode}")


def gga_no_fix(t: datetime, *, sats: int = 0, talker: str = "GP") -> str:
    """$--GGA without a position: quality 0 (as a receiver in a tunnel sends)."""
    return format_sentence(f"{talker}GGA,{_hms(t)},,,,,0,{sats:02d},,,M,,M,,")


def rmc_void(t: datetime, *, talker: str = "GP") -> str:
    """$--RMC with status V (void) and no position, mode N (no fix)."""
    return format_sentence(f"{talker}RMC,{_hms(t)},V,,,,,,,{t.strftime('%d%m%y')},,,N")
