"""The settings files of time limits and of the working calendar: CALENDAR_FILE and LIMITS_FILE
(TOML, each entry with a line of help) read into the `command.limits.LimitPolicy` the ticket
manager and the dispatch service use. Empty settings: the files shipped in ``center/config/``
(``calendar.toml``: working hours, weekends, the holidays and make-up working days of 2026, and
2027 as a provisional placeholder; ``limits.toml``: the default limits table).
"""
from __future__ import annotations

import logging
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

from center.settings import SettingsError
from command.calendar import WorkCalendar, calendar_from_config
from command.errors import ValidationError
from command.limits import LimitPolicy, policy_from_config

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent / "config"
SHIPPED_CALENDAR = SHIPPED / "calendar.toml"
SHIPPED_LIMITS = SHIPPED / "limits.toml"


def _read(path: Path, setting: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{setting} {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{setting} {path}: {exc}") from None


def load_calendar(path: Path = SHIPPED_CALENDAR, *, zone: str = "Asia/Shanghai",
                  today: date | None = None) -> WorkCalendar:
    """The working calendar of a calendar file; SettingsError names the file and the bad key.
    With `today`, logs a warning when this year or the next has no table or is provisional."""
    data = _read(path, "CALENDAR_FILE")
    try:
        calendar = calendar_from_config(data, zone=zone)
    except ValidationError as exc:
        raise SettingsError(f"CALENDAR_FILE {path}: {exc.message}") from None
    if today is not None:
        listed = {int(y) for y in data.get("years", {})}
        for year in (today.year, today.year + 1):
            if year not in listed:
                log.warning("%s lists no holidays for %d: working days there are weekdays only", path, year)
            elif year in calendar.provisional_years:
                log.warning("%s: the holidays of %d are a provisional placeholder, update them from the "
                            "State Council's schedule", path, year)
    return calendar


def load_limits(path: Path = SHIPPED_LIMITS, *, calendar: WorkCalendar) -> LimitPolicy:
    """The limit policy of a limits file (its entries over the built-in defaults) on `calendar`."""
    data = _read(path, "LIMITS_FILE")
    unknown = set(data) - {"warn_share", "limits"}
    if unknown:
        raise SettingsError(f"LIMITS_FILE {path}: unknown key {sorted(unknown)[0]!r}")
    entries = data.get("limits", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SettingsError(f"LIMITS_FILE {path}: limits must be a list of tables")
    warn_share = data.get("warn_share", 0.8)
    if isinstance(warn_share, bool) or not isinstance(warn_share, (int, float)):
        raise SettingsError(f"LIMITS_FILE {path}: warn_share must be a number")
    try:
        return policy_from_config(entries, warn_share=float(warn_share), calendar=calendar)
    except ValidationError as exc:
        raise SettingsError(f"LIMITS_FILE {path}: {exc.message}") from None


def load_policy(settings: Any, *, today: date | None = None) -> LimitPolicy:
    """The policy of the settings CALENDAR_FILE, LIMITS_FILE and TIME_ZONE (empty files: the shipped ones)."""
    calendar = load_calendar(Path(settings.CALENDAR_FILE or SHIPPED_CALENDAR), zone=settings.TIME_ZONE, today=today)
    return load_limits(Path(settings.LIMITS_FILE or SHIPPED_LIMITS), calendar=calendar)
