"""``dotwist._tuning``: the context-free event dispatch and the garbage collector settings."""

from __future__ import annotations

import gc
import socket
from typing import Any

import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.selectreactor import SelectReactor
from twisted.logger import globalLogPublisher

from dotwist import _tuning


class Reader(FileDescriptor):
    def __init__(self, reactor: Any, sock: socket.socket, fail: bool = False) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.fail = fail
        self.reads: list[bytes] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> Any:
        if self.fail:
            raise RuntimeError("doRead broke")
        self.reads.append(self.sock.recv(100))
        return None

    def connectionLost(self, reason: Any) -> None:
        # An exception here escapes the reactor's own handling of the doRead failure.
        raise ValueError("connectionLost broke too")

    def logPrefix(self) -> str:
        return "TheReader"


@pytest.fixture
def epoll() -> Any:
    reactor = EPollReactor()
    yield reactor
    reactor._poller.close()
    reactor.waker.connectionLost(None)


def test_events_are_dispatched_without_the_context(epoll: Any) -> None:
    assert _tuning.withoutEventContext(epoll)
    assert "doIteration" in vars(epoll)
    assert not _tuning.withoutEventContext(epoll), "applied once only"
    a, b = socket.socketpair()
    try:
        reader = Reader(epoll, a)
        epoll.addReader(reader)
        b.send(b"hello")
        epoll.doIteration(1)
        assert reader.reads == [b"hello"]
        epoll.removeReader(reader)
    finally:
        a.close()
        b.close()


def test_an_escaping_error_is_logged_with_the_connections_prefix(epoll: Any) -> None:
    _tuning.withoutEventContext(epoll)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    a, b = socket.socketpair()
    try:
        reader = Reader(epoll, a, fail=True)
        epoll.addReader(reader)
        b.send(b"x")
        epoll.doIteration(1)  # must not raise
    finally:
        globalLogPublisher.removeObserver(events.append)
        epoll.removeReader(reader)
        a.close()
        b.close()
    failures = [(e, e.get("log_failure") or e.get("failure")) for e in events]
    escaped = [e for e, f in failures if f is not None and f.check(ValueError)]
    assert escaped, events
    assert escaped[0].get("log_system") == "TheReader" or escaped[0].get("system") == "TheReader"


def test_other_reactors_are_left_alone() -> None:
    other = SelectReactor()
    assert not _tuning.withoutEventContext(other)
    assert "doIteration" not in vars(other)


def test_the_garbage_collector_is_frozen_and_its_threshold_raised() -> None:
    before = gc.get_threshold()
    try:
        _tuning.tuneGarbageCollector()
        assert gc.get_threshold() == (_tuning.GC_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
        _tuning.tuneGarbageCollector(10)
        assert gc.get_threshold()[0] == 700, "never below Python's default"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize("noTuning", [False, True])
def test_twistd_dotwist_tunes_when_it_starts_unless_told_not_to(epoll: Any, noTuning: bool) -> None:
    """Building the service changes nothing; starting it applies the tuning (and logs it),
    unless --no-tuning."""
    from dotwist.tap import Options, makeService

    options = Options()
    options.parseOptions(
        ["--storage", "memory", "--listen", "tcp:0:interface=127.0.0.1"] + (["--no-tuning"] if noTuning else [])
    )
    before = gc.get_threshold()
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        service = makeService(options, reactor=epoll)
        assert "doIteration" not in vars(epoll) and gc.get_threshold() == before
        service.startService()
        assert ("doIteration" in vars(epoll)) is not noTuning
        assert (gc.get_threshold()[0] == _tuning.GC_THRESHOLD) is not noTuning
        tuningLines = [e for e in logged if e.get("log_namespace") == "dotwist.tuning"]
        assert bool(tuningLines) is not noTuning
        service.stopService()
    finally:
        globalLogPublisher.removeObserver(logged.append)
        gc.unfreeze()
        gc.set_threshold(*before)
