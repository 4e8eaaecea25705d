"""The lease clock: when a node may answer, from its monotonic clock alone."""

from __future__ import annotations

import pytest

from dotwist.cluster.lease import LeaseClock


def test_noAnswerBeforeTheFirstLease() -> None:
    """A node that has not joined yet may not answer, and should renew (join) at once."""
    clock = LeaseClock(10.0)
    assert not clock.mayAnswer(0.0)
    assert clock.deadline() is None
    assert clock.remaining(0.0) == 0.0
    assert clock.renewDue(0.0)


def test_deadlineIsLeaseShrunkByDriftAndMargin() -> None:
    """The node answers until sentAt + length * (1 - drift) - margin, and not at that instant."""
    clock = LeaseClock(10.0, maxDrift=0.05, margin=1.0)
    clock.renewed(100.0)
    assert clock.deadline() == pytest.approx(100.0 + 10.0 * 0.95 - 1.0)
    assert clock.mayAnswer(108.49)
    assert not clock.mayAnswer(108.5)
    assert clock.remaining(104.0) == pytest.approx(4.5)
    assert clock.remaining(200.0) == 0.0


def test_measuredFromTheSendingNotTheReply() -> None:
    """A slow renewal reply does not stretch the lease: the deadline counts from when it was sent."""
    clock = LeaseClock(3.0, maxDrift=0.0, margin=0.0)
    sentAt = 50.0
    # The reply arrives 2.5 s later; the database set its lease at some instant after 50.0.
    clock.renewed(sentAt)
    assert clock.mayAnswer(52.9)
    assert not clock.mayAnswer(53.0)


def test_lateReplyOfAnOlderRenewalNeverMovesTheDeadlineBack() -> None:
    """Two renewals in flight: the older one's success, reported last, keeps the newer deadline."""
    clock = LeaseClock(10.0, maxDrift=0.0, margin=0.0)
    clock.renewed(20.0)
    clock.renewed(15.0)
    assert clock.deadline() == 30.0


def test_lostIsFinal() -> None:
    """After the database said the lease lapsed, no answer and no renewal, even if a late success
    of an earlier renewal comes in."""
    clock = LeaseClock(10.0, maxDrift=0.0, margin=0.0)
    clock.renewed(0.0)
    clock.lost()
    assert clock.isLost
    assert not clock.mayAnswer(1.0)
    clock.renewed(0.5)
    assert not clock.mayAnswer(1.0)
    assert not clock.renewDue(1.0)


def test_renewDueAtAThirdOfTheLease() -> None:
    """Renewal is due a third of the lease after the last successful one was sent."""
    clock = LeaseClock(9.0)
    clock.renewed(0.0)
    assert not clock.renewDue(2.99)
    assert clock.renewDue(3.0)


def test_driftBoundHolds() -> None:
    """If the local clock runs up to maxDrift slow against the database's, the local deadline
    still comes before the database's lease end (checked over a range of drifts)."""
    length, drift, margin = 10.0, 0.02, 0.0
    clock = LeaseClock(length, maxDrift=drift, margin=margin)
    sentAt = 1000.0
    clock.renewed(sentAt)
    deadline = clock.deadline()
    assert deadline is not None
    for rate in (1 - drift, 1.0, 1 + drift):
        # Local seconds elapsed when the database's lease ends (it started no earlier than sentAt),
        # with the local clock running at `rate` times the database's.
        localAtExpiry = sentAt + length * rate
        assert deadline <= localAtExpiry + 1e-9
    # A clock drifting more than allowed breaks the bound: what the assumption is for.
    assert deadline > sentAt + length * (1 - 2 * drift)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"leaseSeconds": 0}, "leaseSeconds must be positive"),
        ({"leaseSeconds": 10, "maxDrift": 1.0}, "maxDrift must be in"),
        ({"leaseSeconds": 10, "margin": -1}, "margin must be >= 0"),
        ({"leaseSeconds": 1, "margin": 1}, "leaves no time to answer"),
        ({"leaseSeconds": 10, "renewEvery": 1}, "renewEvery must be in"),
    ],
)
def test_badSettingsRefused(kwargs: dict[str, float], message: str) -> None:
    """Settings that make no sense are refused with a message naming the setting."""
    with pytest.raises(ValueError, match=message):
        LeaseClock(**kwargs)
