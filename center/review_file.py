"""The review chains' settings file, REVIEW_FILE (TOML, a line of help per entry), read into the
`command.review.ReviewTable` the ticket manager uses. Empty setting: the file shipped in
``center/config/review.toml`` (the built-in defaults)."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from center.settings import SettingsError
from command.errors import ValidationError
from command.review import ReviewTable, table_from_config

SHIPPED_REVIEW = Path(__file__).resolve().parent / "config" / "review.toml"


def load_review_file(path: Path = SHIPPED_REVIEW) -> ReviewTable:
    """The review table of a review file; SettingsError names the file and the bad key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"REVIEW_FILE {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"REVIEW_FILE {path}: {exc}") from None
    try:
        return table_from_config(data)
    except ValidationError as exc:
        raise SettingsError(f"REVIEW_FILE {path}: {exc.message}") from None


def load_review(settings: Any) -> ReviewTable:
    """The review table of the setting REVIEW_FILE (empty: the shipped file)."""
    return load_review_file(Path(getattr(settings, "REVIEW_FILE", "") or SHIPPED_REVIEW))
