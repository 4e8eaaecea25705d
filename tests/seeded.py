"""Random test data that a failing test can replay.

One seed per test run: ``DOTWIST_TEST_SEED`` if set, else a fresh one. pytest prints it in its
header, and beside every failure (tests/conftest.py), so ``DOTWIST_TEST_SEED=N pytest ...`` gives
the same data again. Each use draws from its own stream, named by ``salt``, so adding a test does
not change the data of the others.
"""

from __future__ import annotations

import os
import random

SEED = int(os.environ.get("DOTWIST_TEST_SEED") or random.SystemRandom().randrange(2**32))


def rng(salt: str, seed: int | None = None) -> random.Random:
    """A generator for one named use, seeded from the run's seed (or from ``seed``, for a test
    that checks what other seeds would give)."""
    return random.Random(f"{SEED if seed is None else seed}:{salt}")


def randbytes(n: int, salt: str) -> bytes:
    return rng(salt).randbytes(n)
