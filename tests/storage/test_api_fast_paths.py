"""``ctx.storage.get(key)`` and ``ctx.storage.put(key, value)`` with one ``str`` key and no
options take a shorter path in ``dotwist/durable_storage.py`` (no option parsing, no ``Mapping``
check). These tests hold it to what the general path does: same values, same counters, the same
batch, commit and output gate, errors as failed Deferreds, and options still honoured when given.
Deterministic: a ``task.Clock``, no reactor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from dotwist.context import CURRENT
from dotwist.durable_storage import StorageSession
from dotwist.errors import DurableObjectError
from dotwist.gates import InputGate, OutputGate
from dotwist.storage import MISSING, SqliteBackend, StorageClosedError, StorageLimitError, StorageLimits

NAMESPACE = "TestObject"
OBJECT_ID = "0123456789abcdef" * 4


class Harness:
    def __init__(self, tmp: Path, **limits: Any) -> None:
        self.clock = Clock()
        self.backend = SqliteBackend(tmp, StorageLimits(**limits) if limits else None)
        self.store = self.backend.open(NAMESPACE, OBJECT_ID)
        self.outputGate = OutputGate()
        self.failures: list[DurableObjectError] = []
        self.session = StorageSession(
            self.store,
            clock=self.clock,
            inputGate=InputGate(CURRENT, "owner"),
            outputGate=self.outputGate,
            onFailure=self.failures.append,
            onAlarmSet=lambda millis: None,
            hasAlarmHandler=lambda: False,
        )
        self.api = self.session.api
        self.commits = 0
        commit = self.store.commit

        def counted() -> Any:
            self.commits += 1
            return commit()

        self.store.commit = counted  # type: ignore[method-assign]

    def ops(self) -> dict[str, int]:
        return dict(self.session.stats.storageOps)


@pytest.fixture
def harness(tmp_path: Path) -> Any:
    h = Harness(tmp_path)
    yield h
    h.backend.close()


def resultOf(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


def test_fast_put_joins_the_batch_holds_output_and_commits_at_the_end_of_the_turn(harness: Any) -> None:
    before = harness.ops()
    d = harness.api.put("k", {"n": 1})
    assert resultOf(d) is None
    assert harness.ops().get("write", 0) == before.get("write", 0) + 1
    assert harness.store.hasPendingWrites and harness.outputGate.held
    assert harness.commits == 0
    harness.api.put("k2", [1, 2])  # same turn: same batch
    harness.clock.advance(0)
    assert harness.commits == 1
    assert not harness.store.hasPendingWrites and not harness.outputGate.held
    assert harness.store.get("k") == {"n": 1} and harness.store.get("k2") == [1, 2]


def test_fast_get_returns_the_value_or_none_and_counts_a_read(harness: Any) -> None:
    harness.api.put("k", "v")
    harness.clock.advance(0)
    before = harness.ops().get("read", 0)
    assert resultOf(harness.api.get("k")) == "v"
    assert resultOf(harness.api.get("absent")) is None  # not the store's MISSING
    assert harness.ops().get("read", 0) == before + 2


def test_fast_get_returns_a_fresh_copy_of_a_mutable_value(harness: Any) -> None:
    harness.api.put("k", {"a": [1]})
    harness.clock.advance(0)
    first = resultOf(harness.api.get("k"))
    first["a"].append(2)
    assert resultOf(harness.api.get("k")) == {"a": [1]}


def test_fast_put_of_a_value_too_large_fails_its_deferred_and_writes_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path, maxKeyValueSize=1000)
    try:
        d = h.api.put("k", "x" * 2000)  # must not raise here: the error is the Deferred's
        failure = resultOf(d)
        assert failure.check(StorageLimitError)
        assert not h.store.hasPendingWrites and not h.outputGate.held
        h.clock.advance(0)
        assert h.commits == 0 and h.store.get("k") is MISSING  # nothing stored
        assert resultOf(h.api.get("k")) is None
    finally:
        h.backend.close()


def test_fast_paths_on_a_closed_store_fail_their_deferreds(harness: Any) -> None:
    harness.store.close()
    assert resultOf(harness.api.get("k")).check(StorageClosedError)
    assert resultOf(harness.api.put("k", 1)).check(StorageClosedError)
    assert not harness.outputGate.held


def test_options_still_take_the_general_path(harness: Any) -> None:
    """With options (even empty ones) or keyword options, the general path runs: ``noCache``
    and ``allowUnconfirmed`` are honoured, and unknown options are refused."""
    harness.api.put("k", "v", {"allowUnconfirmed": True})
    assert harness.store.hasPendingWrites and not harness.outputGate.held
    harness.clock.advance(0)
    entries = harness.store.cacheStats["entries"]
    harness.api.put("n", "w", noCache=True)  # not kept in the value cache
    harness.clock.advance(0)
    assert harness.store.cacheStats["entries"] == entries
    stats = harness.store.cacheStats
    assert resultOf(harness.api.get("n", {"noCache": True})) == "w"  # a miss, not cached
    assert resultOf(harness.api.get("n")) == "w"  # the fast path: a miss again, now cached
    assert resultOf(harness.api.get("n")) == "w"  # a hit
    after = harness.store.cacheStats
    assert (after["misses"] - stats["misses"], after["hits"] - stats["hits"]) == (2, 1)
    with pytest.raises(TypeError):
        harness.api.get("k", bogus=True)
    with pytest.raises(TypeError):
        harness.api.put("k", "v", {"bogus": True})
    with pytest.raises(TypeError):
        harness.api.put("k")  # no value


def test_keys_that_are_not_str_are_converted_as_before(harness: Any) -> None:
    harness.api.put(3, "three")
    harness.clock.advance(0)
    assert resultOf(harness.api.get("3")) == "three"
    assert resultOf(harness.api.get(3)) == "three"
