"""Site photos from field crews: accepted by content (not by name or declared type), size-limited,
stored under DATA_DIR/photos/<ticket>/ with server-chosen names, written atomically."""
from __future__ import annotations

import os
from pathlib import Path

from command.errors import Refused

MAX_PHOTO_BYTES = 5 * 1024 * 1024
PHOTO_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


class PhotoRejected(Refused, ValueError):
    """An uploaded file that is not an accepted image (or is too large): 413 or 415."""


def photo_kind(data: bytes) -> str:
    """The file extension of an accepted image judged by its magic bytes: jpg, png or webp."""
    if len(data) > MAX_PHOTO_BYTES:
        raise PhotoRejected(413, "photo_too_large", f"a photo may be at most {MAX_PHOTO_BYTES // (1024 * 1024)} MB")
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise PhotoRejected(415, "photo_type", "only JPEG, PNG or WebP images are accepted")


def photo_dir(data_dir: Path, number: str) -> Path:
    """Where a ticket's photos live (the number is checked by the route's pattern)."""
    return data_dir / "photos" / number


def write_private(path: Path, data: bytes) -> None:
    """Write a file atomically, readable by the service only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
