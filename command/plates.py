"""Chinese licence plates (车牌): one spelling for every way a person or a terminal writes one.
Pure; a module of its own so that what needs only plates (the JT/T 808 gateway) does not load the
dispatch domain."""
from __future__ import annotations

import re
from typing import Any

__all__ = ["PLATE_RE", "normalize_plate"]

PLATE_RE = re.compile(r"^([京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼])([A-HJ-NP-Z])"
                      r"[·•・.\s-]?([A-HJ-NP-Z0-9]{5,6}|[A-HJ-NP-Z0-9]{4}[挂学警港澳])$")


def normalize_plate(text: Any) -> str | None:
    """A Chinese licence plate (车牌) in one spelling, ``鲁G·U1632`` (5 characters after the
    issuing letter, 6 for new-energy plates), or None when it is not one."""
    if not isinstance(text, str):
        return None
    found = PLATE_RE.match(text.strip().upper())
    return None if found is None else f"{found[1]}{found[2]}·{found[3]}"
