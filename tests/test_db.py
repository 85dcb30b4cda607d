"""The database layer: the embedded PostgreSQL, the migrations and the pool, against real servers."""
from __future__ import annotations

import psycopg
import pytest

from store import db
from tests.conftest import sibling_database


def test_migrations_apply_once_in_order(servers, tmp_path):
    url = sibling_database(servers.database_url, "migrations")
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE a (x int);", encoding="utf-8")
    (tmp_path / "0002_second.sql").write_text("ALTER TABLE a ADD COLUMN y text;", encoding="utf-8")
    assert db.schema_version(url) == 0
    assert db.migrate(url, tmp_path) == [1, 2]
    assert db.migrate(url, tmp_path) == []  # applied once
    assert db.schema_version(url) == 2
    (tmp_path / "0003_broken.sql").write_text("ALTER TABLE a ADD COLUMN z nonsense_type;", encoding="utf-8")
    with pytest.raises(psycopg.errors.UndefinedObject):
        db.migrate(url, tmp_path)
    assert db.schema_version(url) == 2  # the failed file left nothing behind


def test_migration_names_are_checked(tmp_path):
    (tmp_path / "0001_a.sql").write_text("", encoding="utf-8")
    (tmp_path / "0001_b.sql").write_text("", encoding="utf-8")
    with pytest.raises(RuntimeError, match="two migrations numbered 1"):
        db.migration_files(tmp_path)
    (tmp_path / "0001_b.sql").unlink()
    (tmp_path / "1_bad.sql").write_text("", encoding="utf-8")
    with pytest.raises(RuntimeError, match="not NNNN_name.sql"):
        db.migration_files(tmp_path)


def test_project_migrations_are_applied(database_url):
    versions = [v for v, _ in db.migration_files()]
    assert db.schema_version(database_url) == (max(versions) if versions else 0)


async def test_transaction_commits_or_rolls_back(database_url):
    database = db.Database(database_url, max_size=2)
    try:
        await database.execute("CREATE TEMP TABLE IF NOT EXISTS t (x int)")  # temp: one connection only
        await database.execute("DROP TABLE IF EXISTS db_test_t")
        await database.execute("CREATE TABLE db_test_t (x int PRIMARY KEY)")
        async with database.transaction() as conn:
            await conn.execute("INSERT INTO db_test_t VALUES (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            async with database.transaction() as conn:
                await conn.execute("INSERT INTO db_test_t VALUES (2)")
                await conn.execute("INSERT INTO db_test_t VALUES (1)")
        rows = await database.fetch("SELECT x FROM db_test_t ORDER BY x")
        assert rows == [{"x": 1}]  # the second transaction left nothing
    finally:
        await database.execute("DROP TABLE IF EXISTS db_test_t")
        await database.close()
