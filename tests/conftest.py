"""Shared fixtures: a fake clock, and a way to serve an app on a real loopback port."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()
