"""Every file and Python name the README spells in code quotes exists: a path under one of the
project's folders (``store/live.py``, ``store/migrations/``) is in the tree, and a dotted name
(``command.limits.stamp``, ``web.app.build_services``) imports and resolves."""
from __future__ import annotations

import importlib
import re

import pytest

from tests.conftest import ROOT

FOLDERS = ("center", "config", "runtime", "store", "messaging", "servers", "command", "gis", "services", "ingest",
           "web", "field", "simulators", "bench", "tests")
_QUOTED = re.compile(r"`([^`\s]+)`")
_PATH = re.compile(rf"(?:{'|'.join(FOLDERS)})/[\w./-]*")
_DOTTED = re.compile(rf"(?:{'|'.join(FOLDERS)})(?:\.[A-Za-z_]\w*)+")
_FILE_SUFFIX = re.compile(r"\.(?:py|toml|sql|json|js|html|tsv|txt|md)$")


def quoted() -> set[str]:
    """The README's code-quoted words."""
    return set(_QUOTED.findall((ROOT / "README.md").read_text(encoding="utf-8")))


def paths() -> list[str]:
    """Quoted paths inside the project's folders (globs such as ``servers/broker*.py`` left out)."""
    return sorted(word for word in quoted() if _PATH.fullmatch(word) and "*" not in word)


def dotted() -> list[str]:
    """Quoted dotted Python names under the project's packages (file names left out)."""
    return sorted(word for word in quoted() if _DOTTED.fullmatch(word) and not _FILE_SUFFIX.search(word))


def resolves(name: str) -> bool:
    """Whether `name` is a module, or an attribute path under the longest importable module."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_the_readme_quotes_paths_and_names_at_all():
    assert len(paths()) > 100 and len(dotted()) > 15  # the patterns still find what they look for


def test_every_quoted_path_exists():
    missing = [path for path in paths() if not (ROOT / path).exists()]
    assert missing == [], f"README names paths that do not exist: {missing}"


@pytest.mark.parametrize("name", dotted())
def test_every_quoted_dotted_name_resolves(name):
    assert resolves(name), f"README names {name}, which does not import or resolve"
