"""Shared fixtures: a test clock, and the run's random seed reported with every failure."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from dotwist.testing import TestClock

from seeded import SEED


@pytest.fixture
def clock() -> TestClock:
    """A ``twisted.internet.task.Clock`` at time 0, with ``settle`` and ``runReady``."""
    return TestClock(start=0)


def pytest_report_header(config: Any) -> str:
    return f"random test data: DOTWIST_TEST_SEED={SEED}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(("random test data", f"rerun with DOTWIST_TEST_SEED={SEED}"))
