"""Fixtures of the cluster tests (the helpers are in ``clustersupport``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clustersupport import Pg, pgSchema


@pytest.fixture
def pg() -> Iterator[Pg]:
    """A PostgreSQL schema that is the test's alone; skips (or fails in CI) without PostgreSQL."""
    yield from pgSchema()
