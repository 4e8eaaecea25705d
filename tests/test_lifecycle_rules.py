"""The pure decisions of the lifecycle and of alarms, called directly: no runtime, no clock."""

from __future__ import annotations

import random

import pytest

from dotwist.alarms import MAX_RETRIES, nextRetry
from dotwist.lifecycle import LifecycleError, ObjectLifecycle, idleDelay, leaveAs, pinned, transition

L = ObjectLifecycle


@pytest.mark.parametrize(
    "start,to,allowed",
    [
        (L.CONSTRUCTING, L.LIVE, True),
        (L.CONSTRUCTING, L.BROKEN, True),
        (L.CONSTRUCTING, L.EVICTED, False),
        (L.LIVE, L.HIBERNATED, True),
        (L.LIVE, L.EVICTED, True),
        (L.LIVE, L.BROKEN, True),
        (L.LIVE, L.CONSTRUCTING, False),
        (L.HIBERNATED, L.LIVE, False),
        (L.EVICTED, L.BROKEN, False),
        (L.BROKEN, L.LIVE, False),
    ],
)
def test_transitions_are_exactly_the_allowed_ones(start, to, allowed):
    """Each state moves only where the lifecycle allows; a final state goes nowhere."""
    if allowed:
        assert transition(start, to) is to
    else:
        with pytest.raises(LifecycleError):
            transition(start, to)


def test_in_memory_and_final_states():
    """Constructing and live objects are in memory; the other three states are final."""
    assert {s for s in L if s.inMemory} == {L.CONSTRUCTING, L.LIVE}
    assert {s for s in L if s.final} == {L.HIBERNATED, L.EVICTED, L.BROKEN}


def idle(**overrides):
    base = dict(
        running=0, waitingAtGate=0, gateLocked=False, outputHeld=False, liveSockets=0,
        storageBusy=False, waitUntilSince=[], now=100.0, waitUntilTimeout=30.0,
    )
    base.update(overrides)
    return pinned(**base)


@pytest.mark.parametrize(
    "reason",
    [
        {"running": 1},
        {"waitingAtGate": 2},
        {"gateLocked": True},
        {"outputHeld": True},
        {"liveSockets": 1},
        {"storageBusy": True},
        {"waitUntilSince": [80.0]},
    ],
)
def test_each_reason_pins_an_object(reason):
    """Anything in progress keeps an object in memory however long it has been idle."""
    assert idle(**reason)


def test_nothing_pins_an_idle_object_and_old_waitUntil_tasks_stop_pinning():
    """With nothing in progress an object is not pinned; a waitUntil task older than its cap no
    longer pins it."""
    assert not idle()
    assert not idle(waitUntilSince=[69.0])


def test_hibernation_comes_sooner_than_eviction():
    """An object with hibernatable sockets leaves after the hibernation delay, as HIBERNATED;
    one without, after the eviction delay, as EVICTED."""
    assert idleDelay(True, 10.0, 70.0) == 10.0 and leaveAs(True) is L.HIBERNATED
    assert idleDelay(False, 10.0, 70.0) == 70.0 and leaveAs(False) is L.EVICTED


def test_alarm_retries_back_off_then_stop():
    """After a failed run: retries 1 to 6 with delays of 2**n seconds plus up to 25% jitter; after
    the sixth, none."""
    rng = random.Random(3)
    for run in range(MAX_RETRIES):
        number, delay = nextRetry(run, rng)
        assert number == run + 1 and 2 ** number <= delay <= 2 ** number * 1.25
    assert nextRetry(MAX_RETRIES, rng) is None
