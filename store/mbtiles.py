"""The base map's tile file: an MBTiles 1.3 SQLite file (tables ``metadata`` and ``tiles``).

This module owns that file's SQL: `write_mbtiles` writes a whole tile set into a new file and
puts it in place in one rename (a reader never sees half a set); `MBTiles` reads tiles from it
read-only, one connection per process shared under a lock, reopened when the file is replaced.
Tiles are addressed in XYZ (y from the north) everywhere else; the file keeps the spec's TMS
rows (y from the south), flipped here and only here.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["MBTiles", "MBTilesError", "write_mbtiles", "read_metadata", "tms_row"]

_SCHEMA = (
    "CREATE TABLE metadata (name TEXT NOT NULL, value TEXT)",
    "CREATE TABLE tiles (zoom_level INTEGER NOT NULL, tile_column INTEGER NOT NULL, "
    "tile_row INTEGER NOT NULL, tile_data BLOB NOT NULL)",
    "CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)",
    "CREATE UNIQUE INDEX name ON metadata (name)",
)


class MBTilesError(RuntimeError):
    """The tile file cannot be read (absent, not SQLite, not MBTiles)."""


def tms_row(z: int, y: int) -> int:
    """An XYZ row (from the north) as the MBTiles row (from the south), and back."""
    return (1 << z) - 1 - y


def write_mbtiles(path: Path, metadata: Mapping[str, str], tiles: Iterable[tuple[int, int, int, bytes]]) -> int:
    """Write (z, x, y, data) tiles, y in XYZ, and the metadata into a new MBTiles file at path,
    replacing any file there in one rename at the end; the number of tiles written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    count = 0
    conn = sqlite3.connect(partial)
    try:
        conn.execute("PRAGMA journal_mode=OFF")  # a new file, renamed into place only when whole
        conn.execute("PRAGMA synchronous=OFF")
        for statement in _SCHEMA:
            conn.execute(statement)
        batch: list[tuple[int, int, int, bytes]] = []
        for z, x, y, data in tiles:
            batch.append((z, x, tms_row(z, y), data))
            if len(batch) >= 256:
                conn.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", batch)
                count += len(batch)
                batch.clear()
        conn.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", batch)
        count += len(batch)
        conn.executemany("INSERT INTO metadata VALUES (?, ?)", sorted(metadata.items()))
        conn.commit()
    except BaseException:
        conn.close()
        partial.unlink(missing_ok=True)
        raise
    conn.close()
    os.replace(partial, path)
    return count


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata table of an MBTiles file (MBTilesError when it cannot be read)."""
    conn = _open(Path(path))
    try:
        return dict(conn.execute("SELECT name, value FROM metadata").fetchall())
    except sqlite3.Error as exc:
        raise MBTilesError(f"{path}: not an MBTiles file ({exc})") from None
    finally:
        conn.close()


def _open(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise MBTilesError(f"{path}: no such file")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise MBTilesError(f"{path}: {exc}") from None


class MBTiles:
    """Read-only tiles of one MBTiles file; safe to call from any thread. A file replaced by a
    new rendering (another inode) is reopened at the next read."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None

    def available(self) -> bool:
        """Whether the file is there."""
        return self.path.is_file()

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """The tile at XYZ z/x/y, or None when the set has none there (MBTilesError when the file
        cannot be read)."""
        with self._lock:
            conn = self._connection()
            try:
                row = conn.execute("SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? "
                                   "AND tile_row = ?", (z, x, tms_row(z, y))).fetchone()
            except sqlite3.Error as exc:
                self._close()
                raise MBTilesError(f"{self.path}: {exc}") from None
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        """Close the connection (reopened by the next read)."""
        with self._lock:
            self._close()

    def _connection(self) -> sqlite3.Connection:
        try:
            stat = self.path.stat()
        except OSError:
            self._close()
            raise MBTilesError(f"{self.path}: no such file") from None
        inode = (stat.st_dev, stat.st_ino)
        if self._conn is None or inode != self._inode:
            self._close()
            self._conn = _open(self.path)
            self._inode = inode
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._inode = None, None
