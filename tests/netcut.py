"""A TCP relay a test can cut: the phone's network in the browser tests.

Chromium's offline emulation (``context.set_offline``) sets ``navigator.onLine`` and fails most
requests, but not all: a request from a document that is just starting, or one the browser races
against a service worker, has reached the server in CI. A real phone without a connection sends
nothing, so the offline tests put this relay between the browser and the server and cut it while
they say the phone is offline. Cutting closes every open connection and refuses new ones (accepted
and closed at once); restoring lets new connections through again.
"""
from __future__ import annotations

import socket
import threading



class NetCut:
    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._cut = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="netcut", daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            doomed, self._open = self._open, set()
        for sock in doomed:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self.cut()
        _close(self._listener)
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return                                  # closed
            with self._lock:
                cut = self._cut
            if cut:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with self._lock:
                    self._open.discard(sock)
                _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def go_offline(context, page, relay: NetCut) -> None:
    """The phone loses its connection: the page sees ``navigator.onLine`` false, the server nothing.
    The field page first finishes loading (its map's base layers drawn): a cut kills a request in
    flight, which the browser reports as a console error, as a real phone would."""
    page.wait_for_function("() => ['districts', 'roads'].every(k => "
                           "(document.getElementById('field-map').dataset.layers || '').split(',').includes(k))",
                           timeout=30_000)
    context.set_offline(True)
    relay.cut()
    page.wait_for_function("() => !navigator.onLine")


def go_online(context, relay: NetCut) -> None:
    relay.restore()
    context.set_offline(False)


def relay_to(base: str) -> NetCut:
    """A relay to the server at ``base`` (``http://host:port``)."""
    host, port = base.rsplit("/", 1)[1].rsplit(":", 1)
    return NetCut(host, int(port))
