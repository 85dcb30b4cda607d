"""Render police-linkage messages as OASIS CAP 1.2 XML (Common Alerting Protocol).

The output validates against CAP-v1.2.xsd. CAP times carry a numeric offset and whole seconds
(``2026-11-22T13:30:00+08:00``); the letter ``Z`` is forbidden and UTC is written ``-00:00``.
Pure: built with xml.etree.ElementTree, which escapes ``<``, ``&`` and quotes; characters XML 1.0
cannot carry (control characters) are replaced by U+FFFD.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from command.police import (
    Handover,
    IncidentTransfer,
    PoliceMessage,
    PoliceStatus,
    ResultReport,
)

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
CHINA_TZ = ZoneInfo("Asia/Shanghai")
RESTRICTION = "110联动：仅限公安110与公用事业调度指挥中心"

# emergency kind → (CAP categories, event label shown to people)
KIND_EVENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "gas_leak": (("Fire", "Safety"), "燃气泄漏"),
    "electrical_fire": (("Fire",), "电气火灾"),
    "fallen_live_wire": (("Safety", "Infra"), "带电导线落地"),
    "people_trapped": (("Rescue",), "人员被困"),
    "road_collapse": (("Geo", "Transport"), "道路塌陷"),
    "main_burst_flooding": (("Infra", "Transport"), "供水主管爆管淹路"),
    "dispatcher_manual": (("Safety",), "调度员转110"),
}
# ticket category (ours, or 110's hint) → (CAP categories, label)
CATEGORY_EVENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "water": (("Infra",), "供水"),
    "power": (("Infra",), "供电"),
    "gas": (("Infra", "Safety"), "燃气"),
    "heating": (("Infra",), "供热"),
    "drainage": (("Infra", "Met"), "排水"),
    "sanitation": (("Env",), "环卫"),
    "other": (("Other",), "其他"),
}
# our urgency → CAP (urgency, severity, certainty); anything else maps to Unknown
URGENCY_MAP: dict[str, tuple[str, str, str]] = {
    "emergency": ("Immediate", "Extreme", "Observed"),
    "urgent": ("Immediate", "Severe", "Likely"),
    "high": ("Expected", "Severe", "Likely"),
    "normal": ("Expected", "Moderate", "Likely"),
    "low": ("Future", "Minor", "Possible"),
}
_UNKNOWN = ("Unknown", "Unknown", "Unknown")
STATUS_LABELS = {"received": "110已接收", "dispatched": "110已派警", "on_scene": "民警已到场", "closed": "110已结案"}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_CAP_TOKEN = re.compile(r"[^\s,<&]+")  # identifier, sender: no whitespace, commas, < or &


class CapError(ValueError):
    """A message cannot be expressed in CAP (e.g. a sender with spaces or commas)."""


def cap_time(value: datetime, tz: ZoneInfo = CHINA_TZ) -> str:
    """CAP dateTime: whole seconds with a numeric offset, ``-00:00`` for UTC, never ``Z``."""
    if value.tzinfo is None:
        raise CapError("CAP times need a timezone-aware datetime")
    utc_offset = value.astimezone(tz).utcoffset() or timedelta(0)
    minutes = round(utc_offset.total_seconds() / 60)  # historic LMT offsets have seconds
    local = (value.astimezone(timezone.utc) + timedelta(minutes=minutes)).replace(tzinfo=None, microsecond=0)
    sign = "-" if minutes <= 0 else "+"  # CAP writes UTC as -00:00
    return f"{local.isoformat()}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n"))


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    node = ET.SubElement(parent, tag)
    node.text = _clean(text)
    return node


def _pair(parent: ET.Element, tag: str, name: str, value: str) -> None:
    node = ET.SubElement(parent, tag)
    _sub(node, "valueName", name)
    _sub(node, "value", value)


def _token(name: str, value: str) -> str:
    if not _CAP_TOKEN.fullmatch(value):
        raise CapError(f"CAP {name} {value!r} must be non-empty without spaces, commas, < or &")
    return value


def _describe(msg: PoliceMessage) -> dict:
    """Everything that differs per message kind, as plain values."""
    if isinstance(msg, Handover):
        categories, event = KIND_EVENTS.get(msg.kind, (("Safety",), msg.kind))
        return dict(msg_type="Alert", sent=msg.created_at, categories=categories, event=event,
                    event_code=("kind", msg.kind), ucs=URGENCY_MAP.get(msg.urgency, _UNKNOWN),
                    headline=f"{event}：{msg.address}", description=msg.summary, contact=msg.caller,
                    incidents=(msg.ticket_number,), area=msg.address, point=(msg.lon, msg.lat),
                    parameters=(("ticket_number", msg.ticket_number), ("urgency", msg.urgency)))
    if isinstance(msg, ResultReport):
        categories, label = CATEGORY_EVENTS.get(msg.category, CATEGORY_EVENTS["other"])
        return dict(msg_type="Update", sent=msg.created_at, categories=categories, event=f"{label}警情办结反馈",
                    event_code=("category", msg.category), ucs=("Past", "Minor", "Observed"),
                    headline=f"办结反馈：{msg.ticket_number}", description=msg.outcome, contact=msg.unit,
                    incidents=(msg.police_incident_id, msg.ticket_number), area="", point=(None, None),
                    parameters=(("ticket_number", msg.ticket_number), ("police_incident_id", msg.police_incident_id),
                                ("resolved_at", cap_time(msg.resolved_at)), ("unit", msg.unit)))
    if isinstance(msg, PoliceStatus):
        label = STATUS_LABELS[msg.status]
        ucs = ("Past", "Unknown", "Observed") if msg.status == "closed" else ("Immediate", "Unknown", "Observed")
        ids = tuple(i for i in (msg.police_incident_id, msg.ticket_number) if i)
        return dict(msg_type="Ack" if msg.status == "received" else "Update", sent=msg.at, categories=("Safety",),
                    event=label, event_code=("police_status", msg.status), ucs=ucs, headline=label,
                    description=msg.note, contact="", incidents=ids, area="", point=(None, None),
                    parameters=tuple((k, v) for k, v in (("ticket_number", msg.ticket_number),
                                     ("police_incident_id", msg.police_incident_id)) if v))
    if isinstance(msg, IncidentTransfer):
        categories, label = CATEGORY_EVENTS.get(msg.category_hint, CATEGORY_EVENTS["other"])
        return dict(msg_type="Alert", sent=msg.at, categories=categories, event=f"110转办非警务警情（{label}）",
                    event_code=("category", msg.category_hint), ucs=("Unknown", "Unknown", "Likely"),
                    headline=f"110转办：{msg.address}", description=msg.description,
                    contact=f"{msg.caller_name} {msg.caller_phone}".strip(), incidents=(msg.police_incident_id,),
                    area=msg.address, point=(msg.lon, msg.lat),
                    parameters=(("police_incident_id", msg.police_incident_id),))
    raise CapError(f"no CAP rendering for {type(msg).__name__}")


def to_cap(msg: PoliceMessage, *, sender: str, tz: ZoneInfo = CHINA_TZ, radius_km: float = 0.1) -> bytes:
    """One CAP 1.2 ``<alert>`` (UTF-8 XML bytes) for any police-linkage message."""
    d = _describe(msg)
    alert = ET.Element("alert", xmlns=CAP_NAMESPACE)
    _sub(alert, "identifier", _token("identifier", msg.message_id))
    _sub(alert, "sender", _token("sender", sender))
    _sub(alert, "sent", cap_time(d["sent"], tz))
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", d["msg_type"])
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction", RESTRICTION)
    incidents = [i for i in d["incidents"] if _CAP_TOKEN.fullmatch(i)]
    if incidents:
        _sub(alert, "incidents", " ".join(incidents))
    info = ET.SubElement(alert, "info")
    _sub(info, "language", "zh-CN")
    for category in d["categories"]:
        _sub(info, "category", category)
    _sub(info, "event", d["event"])
    urgency, severity, certainty = d["ucs"]
    _sub(info, "urgency", urgency)
    _sub(info, "severity", severity)
    _sub(info, "certainty", certainty)
    _pair(info, "eventCode", *d["event_code"])
    _sub(info, "headline", d["headline"])
    if d["description"]:
        _sub(info, "description", d["description"])
    if d["contact"]:
        _sub(info, "contact", d["contact"])
    for name, value in d["parameters"]:
        _pair(info, "parameter", name, value)
    lon, lat = d["point"]
    if d["area"] or lon is not None:
        area = ET.SubElement(info, "area")
        _sub(area, "areaDesc", d["area"] or f"{lat:.6f},{lon:.6f}")
        if lon is not None:
            _sub(area, "circle", f"{lat:.6f},{lon:.6f} {radius_km:g}")
    return ET.tostring(alert, encoding="utf-8", xml_declaration=True)
