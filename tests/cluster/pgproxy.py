"""A TCP proxy between one cluster node (a subprocess) and PostgreSQL that the test controls, with
threads and blocking sockets (the fault tests drive subprocesses, with no reactor of their own).

- :meth:`PgLinkProxy.cut` closes every proxied connection and refuses new ones (the node's link
  to PostgreSQL is cut); :meth:`PgLinkProxy.restore` lets connections through again.
- :meth:`PgLinkProxy.holdNext` holds the next bytes the node sends that match a predicate (a
  commit, say): the node's side of that connection is closed at once (the node cannot know
  whether its statement ran), the server's side is kept open, and :meth:`PgLinkProxy.releaseHeld`
  delivers the bytes later: a write that arrives late.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable, Optional


class PgLinkProxy:
    def __init__(self, host: str = "127.0.0.1", port: int = 5432) -> None:
        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.isCut = False
        self.closed = False
        self.holdPredicate: Optional[Callable[[bytes], bool]] = None
        self.held: Optional[tuple[bytes, socket.socket]] = None
        self.heldEvent = threading.Event()
        self.answered = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def conninfo(self, base: str) -> str:
        parts = [p for p in base.split() if not p.startswith(("host=", "port="))]
        return " ".join([f"host=127.0.0.1 port={self.port}", *parts])

    def cut(self) -> None:
        with self.lock:
            self.isCut = True
            sockets, self.sockets = self.sockets, set()
        for s in sockets:
            _close(s)

    def restore(self) -> None:
        with self.lock:
            self.isCut = False

    def holdNext(self, predicate: Callable[[bytes], bool]) -> None:
        self.heldEvent.clear()
        self.answered.clear()
        self.holdPredicate = predicate

    def releaseHeld(self) -> None:
        assert self.held is not None, "nothing is held"
        data, server = self.held
        server.sendall(data)

    def close(self) -> None:
        self.closed = True
        _close(self.listener)
        self.cut()
        if self.held is not None:
            _close(self.held[1])

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.isCut:
                    _close(client)
                    continue
                try:
                    server = socket.create_connection(self.target, timeout=5)
                    server.settimeout(None)
                except OSError:
                    _close(client)
                    continue
                self.sockets.update((client, server))
            state = {"held": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(client, server, state), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, state: dict[str, bool]) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                predicate = self.holdPredicate
                if predicate is not None and predicate(data):
                    self.holdPredicate = None
                    self.held = (data, server)
                    state["held"] = True
                    with self.lock:
                        self.sockets.discard(server)  # kept open past a cut, for the release
                    _close(client)
                    self.heldEvent.set()
                    return
                server.sendall(data)
        except OSError:
            pass
        if not state["held"]:
            _close(server)
        _close(client)

    def _down(self, client: socket.socket, server: socket.socket, state: dict[str, bool]) -> None:
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                if state["held"]:
                    self.answered.set()
                    continue
                client.sendall(data)
        except OSError:
            pass
        if not state["held"]:
            _close(client)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
