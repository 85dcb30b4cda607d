"""The test harness itself (tests/conftest.py): given servers (DATABASE_URL, REDIS_URL) are never
emptied of data the tests did not write. A pytest run inside the test, with the given URLs, shows it:
on a given PostgreSQL the tests work in a database of their own and drop it; a given Redis that
holds keys is refused before any test runs. And no test file imports another."""
from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
import redis

from tests.conftest import ROOT, drop_own_database, redis_keys_held, sibling_database

pytestmark = [pytest.mark.integration]

INNER_CONFTEST = 'pytest_plugins = ["tests.conftest"]\n'
INNER_TEST = '''
import psycopg


def test_works_in_a_database_of_its_own(database_url):
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0].startswith("center_given_test_")
        assert conn.execute("SELECT to_regclass('public.given_marker')").fetchone()[0] is None
        conn.execute("INSERT INTO day_sequences (kind, day, last) VALUES ('ticket', date '2000-01-01', 1)")
'''


def _pytest(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """A pytest run of INNER_TEST under the tests' conftest, with `env` added (its own DATA_DIR)."""
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST, encoding="utf-8")
    (tmp_path / "test_inner.py").write_text(INNER_TEST, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MQTT_URL")}
    environ.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-c", str(ROOT / "pytest.ini"), "--rootdir",
                           str(tmp_path), "--basetemp", str(tmp_path / "basetemp"), "test_inner.py"],
                          cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=110)


def _databases(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def test_a_given_database_is_never_emptied_the_tests_use_one_of_their_own(servers, tmp_path):
    given = sibling_database(servers.database_url, "given")  # stands for someone's DATABASE_URL
    try:
        with psycopg.connect(given, autocommit=True) as conn:
            conn.execute("CREATE TABLE given_marker (note text)")
            conn.execute("INSERT INTO given_marker VALUES ('not the tests''')")
        before = _databases(given)
        run = _pytest(tmp_path, DATABASE_URL=given)
        assert run.returncode == 0, run.stdout + run.stderr
        with psycopg.connect(given) as conn:
            assert conn.execute("SELECT note FROM given_marker").fetchall() == [("not the tests'",)]
            assert conn.execute("SELECT to_regclass('public.day_sequences')").fetchone()[0] is None  # not migrated
        assert _databases(given) == before  # its own database dropped at the end, no other touched
        with pytest.raises(AssertionError, match="not the tests' own database"):
            drop_own_database(given, given)
    finally:
        with psycopg.connect(servers.database_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS center_given WITH (FORCE)")


def test_a_given_redis_that_holds_keys_is_refused_and_kept(servers, tmp_path):
    url = servers.redis_url.rsplit("/", 1)[0] + "/9"
    client = redis.Redis.from_url(url)
    try:
        client.set("someone:else", "data")
        assert redis_keys_held(url)["db9"] >= 1
        run = _pytest(tmp_path, REDIS_URL=url)
        assert run.returncode == 2 and "REDIS_URL's server holds keys" in run.stdout + run.stderr, run.stdout + run.stderr
        assert "passed" not in run.stdout
        assert client.get("someone:else") == b"data"
    finally:
        client.delete("someone:else")
        client.close()


def test_no_test_file_imports_another():
    """What test files share is a conftest fixture or a plain helper module: a test module
    imported by another would run its fixtures as copies in the importer's namespace."""
    import ast

    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module == "tests":
                names = [f"tests.{alias.name}" for alias in node.names]
            offenders += [f"{path.name}:{node.lineno} {name}" for name in names if name.startswith("tests.test_")]
    assert offenders == []
