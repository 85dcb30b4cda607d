"""The settings files of time limits and of the working calendar: CALENDAR_FILE and LIMITS_FILE
(TOML, each entry with a line of help) read into the `command.limits.LimitPolicy` the ticket
manager and the dispatch service use. Empty settings: the files shipped in ``config/``
(``calendar.toml``: working hours, weekends, the holidays and make-up working days of 2026, and
2027 as a provisional placeholder; ``limits.toml``: the default limits table).
"""
from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

from config.files import TableError, load_table, path_of
from command.calendar import WorkCalendar, calendar_from_config
from command.limits import LimitPolicy, policy_from_config

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent
SHIPPED_CALENDAR = SHIPPED / "calendar.toml"
SHIPPED_LIMITS = SHIPPED / "limits.toml"


def load_calendar(path: Path = SHIPPED_CALENDAR, *, zone: str = "Asia/Shanghai",
                  today: date | None = None) -> WorkCalendar:
    """The working calendar of a calendar file; SettingsError names the file and the bad key.
    With `today`, logs a warning when this year or the next has no table or is provisional."""
    calendar, listed = load_table("CALENDAR_FILE", path, lambda data: (
        calendar_from_config(data, zone=zone), {int(y) for y in data.get("years", {})}))
    if today is not None:
        for year in (today.year, today.year + 1):
            if year not in listed:
                log.warning("%s lists no holidays for %d: working days there are weekdays only", path, year)
            elif year in calendar.provisional_years:
                log.warning("%s: the holidays of %d are a provisional placeholder, update them from the "
                            "State Council's schedule", path, year)
    return calendar


def load_limits(path: Path = SHIPPED_LIMITS, *, calendar: WorkCalendar) -> LimitPolicy:
    """The limit policy of a limits file (its entries over the built-in defaults) on `calendar`."""
    return load_table("LIMITS_FILE", path, lambda data: _policy(data, calendar))


def _policy(data: dict[str, Any], calendar: WorkCalendar) -> LimitPolicy:
    """The limit policy of a limits file's table."""
    unknown = set(data) - {"warn_share", "limits"}
    if unknown:
        raise TableError(f"unknown key {sorted(unknown)[0]!r}")
    entries = data.get("limits", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TableError("limits must be a list of tables")
    warn_share = data.get("warn_share", 0.8)
    if isinstance(warn_share, bool) or not isinstance(warn_share, (int, float)):
        raise TableError("warn_share must be a number")
    return policy_from_config(entries, warn_share=float(warn_share), calendar=calendar)


def load_policy(settings: Any, *, today: date | None = None) -> LimitPolicy:
    """The policy of the settings CALENDAR_FILE, LIMITS_FILE and TIME_ZONE (empty files: the shipped ones)."""
    calendar = load_calendar(path_of(settings, "CALENDAR_FILE", SHIPPED_CALENDAR), zone=settings.TIME_ZONE, today=today)
    return load_limits(path_of(settings, "LIMITS_FILE", SHIPPED_LIMITS), calendar=calendar)
