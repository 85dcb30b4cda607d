"""The review chains' settings file, REVIEW_FILE (TOML, a line of help per entry), read into the
`command.review.ReviewTable` the ticket manager uses. Empty setting: the file shipped in
``config/review.toml`` (the built-in defaults)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from config.files import load_table, path_of
from command.review import ReviewTable, table_from_config

SHIPPED_REVIEW = Path(__file__).resolve().parent / "review.toml"


def load_review_file(path: Path = SHIPPED_REVIEW) -> ReviewTable:
    """The review table of a review file; SettingsError names the file and the bad key."""
    return load_table("REVIEW_FILE", path, table_from_config)


def load_review(settings: Any) -> ReviewTable:
    """The review table of the setting REVIEW_FILE (empty: the shipped file)."""
    return load_review_file(path_of(settings, "REVIEW_FILE", SHIPPED_REVIEW))
