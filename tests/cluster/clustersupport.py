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
