"""Every file and Python name the README spells in code quotes exists: a path under one of the
project's folders (``store/live.py``, ``store/migrations/``) is in the tree, a dotted name
(``command.limits.stamp``, ``web.app.build_services``) imports and resolves, and a class member
(``TicketManager.annotate``) is one of that class's (or its bases')."""
from __future__ import annotations

import ast
import importlib
import re

import pytest

from tests.conftest import ROOT

FOLDERS = ("center", "config", "runtime", "store", "messaging", "servers", "command", "gis", "services", "ingest",
           "web", "field", "simulators", "bench", "tests")
_QUOTED = re.compile(r"`([^`\s]+)`")
_PATH = re.compile(rf"(?:{'|'.join(FOLDERS)})/[\w./-]*")
_DOTTED = re.compile(rf"(?:{'|'.join(FOLDERS)})(?:\.[A-Za-z_]\w*)+")
_MEMBER = re.compile(r"[A-Z][A-Za-z0-9]+\.[a-z_]\w*")
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


def _members_of(node: ast.ClassDef) -> set[str]:
    """A class's own members: methods, fields, class attributes and ``self.<name> = ...``."""
    names = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(item.name)
    for inner in ast.walk(node):
        targets = inner.targets if isinstance(inner, ast.Assign) else (
            [inner.target] if isinstance(inner, ast.AnnAssign) else [])
        for target in targets:
            if isinstance(target, ast.Name) and inner in node.body:
                names.add(target.id)
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                names.add(target.attr)
    return names


def class_members() -> dict[str, set[str]]:
    """Every class of the project's code and of the test harness by name: its members, with those
    of its bases that are classes of the project too."""
    own: dict[str, set[str]] = {}
    bases: dict[str, set[str]] = {}
    files = [path for folder in FOLDERS if folder != "tests" for path in (ROOT / folder).rglob("*.py")]
    for path in files + [ROOT / "tests" / "conftest.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                own.setdefault(node.name, set()).update(_members_of(node))
                bases.setdefault(node.name, set()).update(b.id for b in node.bases if isinstance(b, ast.Name))

    def members(name: str, seen: frozenset[str]) -> set[str]:
        found = set(own.get(name, ()))
        for base in bases.get(name, set()) - seen:
            found |= members(base, seen | {name})
        return found

    return {name: members(name, frozenset()) for name in own}


def test_every_quoted_class_member_exists():
    """``TicketManager.annotate``, ``Servers.revive``: a class of that name has that member."""
    quoted_members = sorted(word for word in quoted() if _MEMBER.fullmatch(word))
    classes = class_members()
    missing = [word for word in quoted_members
               if word.split(".")[1] not in classes.get(word.split(".")[0], set())]
    assert len(quoted_members) > 5 and missing == [], f"README names members that do not exist: {missing}"
