"""The lease clock: may this node still answer for its objects? (Pure: no I/O, no reactor.)

A node's lease is granted by the database: ``lease_until = now() + length`` by the database's clock
at the moment the renewal ran. Another node may claim this node's objects once that time has
passed, again by the database's clock. This node cannot read the database's clock, so it measures
from the one local instant it knows came *before* the renewal ran: the moment it sent the request.
It then counts the lease as valid for ``length * (1 - maxDrift) - margin`` seconds of its own
monotonic clock from there. If the local clock runs at most ``maxDrift`` slower or faster than the
database's (a rate, e.g. 0.01 = 1%; no synchronised clocks needed), the local deadline falls before
the database's, by at least ``margin``: the node stops answering before anyone else can own its
objects. A process pause past the deadline is caught too: every answer asks first.

The lease only protects answers (reads served from the local copy). Writes are protected by the
epoch, checked by the database in the same statement as the write, whatever the clocks say.
"""

from __future__ import annotations

__all__ = ["LeaseClock"]


class LeaseClock:
    """Tracks one node's lease by the local monotonic clock.

    Every method takes ``now``, a reading of a monotonic clock in seconds (``time.monotonic()``,
    or the reactor's ``seconds()`` when it is monotonic); pass readings of the same clock.

    ``leaseSeconds`` is the length the database grants; ``maxDrift`` the allowed rate difference
    between this node's clock and the database's; ``margin`` seconds are kept back on top (for the
    time between asking and acting on the answer). ``renewEvery`` (a fraction of the lease) says
    when :meth:`renewDue` turns true: a third by default, so two renewals can fail before the lease
    runs out.
    """

    def __init__(
        self,
        leaseSeconds: float,
        *,
        maxDrift: float = 0.01,
        margin: float = 0.5,
        renewEvery: float = 1 / 3,
    ) -> None:
        if not leaseSeconds > 0:
            raise ValueError(f"leaseSeconds must be positive, not {leaseSeconds!r}")
        if not 0 <= maxDrift < 1:
            raise ValueError(f"maxDrift must be in [0, 1), not {maxDrift!r}")
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, not {margin!r}")
        if not 0 < renewEvery < 1:
            raise ValueError(f"renewEvery must be in (0, 1), not {renewEvery!r}")
        self.leaseSeconds = float(leaseSeconds)
        self.maxDrift = float(maxDrift)
        self.margin = float(margin)
        self.renewEvery = float(renewEvery)
        if self.usableSeconds <= 0:
            raise ValueError(
                f"a lease of {leaseSeconds} s with drift {maxDrift} and margin {margin} s leaves "
                "no time to answer in"
            )
        self._sentAt: float | None = None
        self._lost = False

    @property
    def usableSeconds(self) -> float:
        """How long after sending a successful renewal the node may answer."""
        return self.leaseSeconds * (1.0 - self.maxDrift) - self.margin

    def renewed(self, sentAt: float) -> None:
        """A join or renewal that was sent at ``sentAt`` (local time) succeeded.

        An older success reported late never moves the deadline back. After :meth:`lost`, nothing
        revives the clock: a node whose lease lapsed joins again, with a new clock.
        """
        if self._lost:
            return
        if self._sentAt is None or sentAt > self._sentAt:
            self._sentAt = sentAt

    def lost(self) -> None:
        """The database said the lease lapsed (renew raised ``LeaseLost``), or the node left."""
        self._lost = True
        self._sentAt = None

    @property
    def isLost(self) -> bool:
        return self._lost

    def deadline(self) -> float | None:
        """The local time until which the node may answer, or None if it may not at all."""
        if self._sentAt is None:
            return None
        return self._sentAt + self.usableSeconds

    def mayAnswer(self, now: float) -> bool:
        """Whether the node may still answer for its objects at ``now``."""
        deadline = self.deadline()
        return deadline is not None and now < deadline

    def remaining(self, now: float) -> float:
        """Seconds the node may still answer (0 if none)."""
        deadline = self.deadline()
        return 0.0 if deadline is None else max(0.0, deadline - now)

    def renewDue(self, now: float) -> bool:
        """Whether it is time to send the next renewal."""
        if self._lost:
            return False
        if self._sentAt is None:
            return True
        return now >= self._sentAt + self.leaseSeconds * self.renewEvery

    def __repr__(self) -> str:
        state = "lost" if self._lost else f"deadline={self.deadline()}"
        return f"<LeaseClock {self.leaseSeconds}s {state}>"
