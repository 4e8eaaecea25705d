"""Helpers of the cluster tests: a PostgreSQL schema of their own, and asyncio tests.

The PostgreSQL tests use the local server at 127.0.0.1:5432 (trust authentication), database
``test`` (``DOTWIST_TEST_POSTGRES`` overrides the connection string). Each test gets a fresh schema,
dropped afterwards. When PostgreSQL is unreachable they skip with one line, or fail when
``DOTWIST_REQUIRE_SERVICES=1`` (as in CI).
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred

_T = TypeVar("_T")

_CANDIDATES = [
    "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=3",
    "host=127.0.0.1 port=5432 dbname=test user=root connect_timeout=3",
]


@functools.cache
def _postgres() -> tuple[str | None, str]:
    """(a working connection string, or None) and why not."""
    try:
        import psycopg
    except ImportError as e:
        return None, f"psycopg is not installed ({e})"
    candidates = [os.environ["DOTWIST_TEST_POSTGRES"]] if "DOTWIST_TEST_POSTGRES" in os.environ else _CANDIDATES
    problem = ""
    for conninfo in candidates:
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return conninfo, ""
        except psycopg.Error as e:
            problem = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None, problem


def requirePostgres() -> str:
    """The connection string of the test database; skips (or fails, in CI) if unreachable."""
    conninfo, problem = _postgres()
    if conninfo is None:
        message = f"PostgreSQL at 127.0.0.1:5432 (database test) is unreachable: {problem}"
        if os.environ.get("DOTWIST_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " (DOTWIST_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(message)
    return conninfo


@dataclass
class Pg:
    """A test's PostgreSQL: the connection string and the schema that is the test's alone."""

    conninfo: str
    schema: str

    def sync(self) -> Any:
        """A plain (blocking) autocommit connection, for the test's own checks and meddling."""
        import psycopg

        return psycopg.connect(self.conninfo, autocommit=True)


def pgSchema() -> Iterator[Pg]:
    """A fresh schema of the test database, dropped at the end (the ``pg`` fixture)."""
    conninfo = requirePostgres()
    schema = f"dwtest_{uuid.uuid4().hex[:16]}"
    yield Pg(conninfo, schema)
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def asyncioTest(fn: Callable[..., Awaitable[_T]]) -> Callable[..., Deferred[_T]]:
    """Run an ``async def`` test as an asyncio task on the (asyncio) reactor's loop."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Deferred[_T]:
        return Deferred.fromFuture(asyncio.ensure_future(fn(*args, **kwargs)))

    return wrapper


@asynccontextmanager
async def opened(*stores: Any) -> AsyncIterator[None]:
    """Open stores (in order), close them all at the end."""
    done = []
    try:
        for store in stores:
            await store.open()
            done.append(store)
        yield
    finally:
        for store in reversed(done):
            await store.close()


class FaultProxy:
    """A TCP proxy to PostgreSQL that the test controls, to cut a client's link at a chosen point.

    ``arm(action)`` applies to the next bytes a client sends (one shot):

    - ``"dropRequest"``: those bytes never reach the server; both sides are closed.
    - ``"dropResponse"``: they are forwarded; the server's answer is not: both sides are closed
      when it arrives (the write happened, the client cannot know).
    - ``"hold"``: the client's side is closed at once and the bytes are kept with the server's
      side open; :meth:`releaseHeld` sends them later (a request that arrives late).

    ``triggered`` fires when the armed action has happened; ``answered`` when the server answered
    released held bytes.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 5432) -> None:
        self.target = (host, port)
        self.action: str | None = None
        self.triggered: asyncio.Event = asyncio.Event()
        self.answered: asyncio.Event = asyncio.Event()
        self._held: tuple[bytes, asyncio.StreamWriter] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def conninfo(self, base: str) -> str:
        parts = [p for p in base.split() if not p.startswith(("host=", "port="))]
        return " ".join([f"host=127.0.0.1 port={self.port}", *parts])

    def arm(self, action: str) -> None:
        assert action in ("dropRequest", "dropResponse", "hold")
        self.action = action
        self.triggered.clear()
        self.answered.clear()

    async def releaseHeld(self) -> None:
        assert self._held is not None, "nothing is held"
        data, server = self._held
        self._held = None
        server.write(data)
        await server.drain()

    async def _accept(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection(*self.target)
        self._writers.update((cwriter, swriter))
        state = {"dropResponse": False, "held": False}

        def close(*writers: asyncio.StreamWriter) -> None:
            for w in writers:
                w.close()

        async def up() -> None:
            while data := await creader.read(65536):
                action, self.action = self.action, None
                if action == "dropRequest":
                    close(cwriter, swriter)
                    self.triggered.set()
                    return
                if action == "hold":
                    self._held = (data, swriter)
                    state["held"] = True
                    close(cwriter)
                    self.triggered.set()
                    return
                if action == "dropResponse":
                    state["dropResponse"] = True
                swriter.write(data)
                await swriter.drain()

        async def down() -> None:
            while data := await sreader.read(65536):
                if state["dropResponse"]:
                    close(cwriter, swriter)
                    self.triggered.set()
                    return
                if state["held"]:
                    self.answered.set()
                    close(swriter)
                    return
                cwriter.write(data)
                await cwriter.drain()

        for coro in (up(), down()):
            task = asyncio.ensure_future(_quietly(coro))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def _quietly(coro: Awaitable[None]) -> None:
    try:
        await coro
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll ``check`` (each poll a query, no sleeping) until it is true; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
