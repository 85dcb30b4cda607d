"""The relay the browser tests cut to take the phone offline (tests/netcut.py)."""
from __future__ import annotations

import socket
import threading

import pytest

from tests.netcut import NetCut


def _echo(conn: socket.socket) -> None:
    with conn:
        try:
            while data := conn.recv(4096):
                conn.sendall(data)
        except OSError:
            pass


@pytest.fixture
def echo():
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def _roundtrip(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        return sock.recv(4096)


def test_the_relay_passes_bytes_until_cut_and_again_after_restore(echo):
    relay = NetCut("127.0.0.1", echo)
    try:
        assert relay.base == f"http://127.0.0.1:{relay.port}"
        assert _roundtrip(relay.port, b"hello") == b"hello"
        open_conn = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
        open_conn.sendall(b"one")
        assert open_conn.recv(16) == b"one"

        relay.cut()
        assert open_conn.recv(16) == b""                 # the open connection is closed
        open_conn.close()
        assert _roundtrip(relay.port, b"lost") == b""    # a new one is accepted and closed at once

        relay.restore()
        assert _roundtrip(relay.port, b"back") == b"back"
    finally:
        relay.close()
