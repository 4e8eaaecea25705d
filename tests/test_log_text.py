"""dotwist's text log observer: twistd's classic lines, byte for byte, for less."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest
from twisted.logger import FileLogObserver, LogLevel, formatEventAsClassicLogText, formatTime
from twisted.python.failure import Failure

from dotwist.logs import ClassicText, makeObserver
from dotwist.service import Options, logObserverFor

NOW = 1_764_849_600.25  # a fixed time: the stamps do not depend on when the test runs


def _access(**extra: Any) -> dict[str, Any]:
    event = {
        "log_format": "{line}",
        "line": '127.0.0.1 "GET /x HTTP/1.1" 200 12 1.9ms "curl/8.5.0"',
        "client": "127.0.0.1",
        "status": 200,
        "log_namespace": "dotwist.access",
        "log_level": LogLevel.info,
        "log_time": NOW,
    }
    event.update(extra)
    return event


def _failure() -> Failure:
    try:
        raise ValueError("boom")
    except ValueError:
        return Failure()


EVENTS = {
    "request line": _access(),
    "request line with a newline": _access(line="a\nb\n"),
    "empty line": _access(line=""),
    "line that is not a str": _access(line=12345),
    "with log_system": _access(log_system="HTTPChannel,3,127.0.0.1"),
    "with a failure": _access(log_failure=_failure()),
    "no level": {k: v for k, v in _access().items() if k != "log_level"},
    "no namespace": {k: v for k, v in _access().items() if k != "log_namespace"},
    "no time": {k: v for k, v in _access().items() if k != "log_time"},
    "another format": _access(log_format="{client} answered {status}"),
    "no format": {k: v for k, v in _access().items() if k != "log_format"},
    "just before a second": _access(log_time=1_764_849_600.9999997),
    "half a microsecond before": _access(log_time=1_764_849_600.9999994),
}


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_sameTextAsTwisted(name: str) -> None:
    """Every kind of event comes out exactly as twisted.logger's classic text makes it."""
    event = EVENTS[name]
    assert ClassicText()(event) == formatEventAsClassicLogText(event)


def test_theStampIsMadeOncePerSecondAndFollowsTheClock() -> None:
    """One stamp per second, and a new one as soon as the second changes (either way)."""
    made: list[float] = []
    text = ClassicText()
    original = formatTime

    def counting(when: float, fmt: Any) -> str:
        made.append(when)
        return original(when, fmt)

    import dotwist.logs

    # NOW + 0.7499997 is within half a microsecond of the next second, which its stamp shows.
    times = [NOW, NOW + 0.5, NOW + 0.7, NOW + 0.7499997, NOW + 1.0, NOW + 1.2, NOW - 3, NOW + 1.3]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dotwist.logs, "formatTime", counting)
        lines = [text(_access(log_time=t)) for t in times]
    assert lines == [formatEventAsClassicLogText(_access(log_time=t)) for t in times]
    assert lines[3] == lines[4]  # shown as the same second as NOW + 1.0
    assert made == [NOW, NOW + 0.7499997, NOW + 1.0, NOW - 3, NOW + 1.3]


def test_observerWritesTheLines() -> None:
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        observer = makeObserver("text", "-")
    observer(_access())
    observer(_access(line=""))  # nothing to write
    assert out.getvalue() == formatEventAsClassicLogText(_access())


class _Twistd(dict[str, Any]):
    """twistd's own options, as a subcommand's ``parent``."""


def _options(parent: dict[str, Any] | None, *argv: str) -> Options:
    options = Options()
    if parent is not None:
        options.parent = _Twistd(parent)  # type: ignore[attr-defined]
    options.parseOptions(list(argv))
    return options


@pytest.mark.parametrize(
    "parent, argv, expected",
    [
        ({"nodaemon": True, "logfile": None, "syslog": False, "logger": None}, (), "classic"),
        ({"nodaemon": True, "logfile": "-", "syslog": False, "logger": None}, (), "classic"),
        ({"nodaemon": True, "logfile": "x.log", "syslog": False, "logger": None}, (), None),
        ({"nodaemon": False, "logfile": None, "syslog": False, "logger": None}, (), None),
        ({"nodaemon": True, "logfile": None, "syslog": True, "logger": None}, (), None),
        ({"nodaemon": True, "logfile": None, "syslog": False, "logger": "my.observer"}, (), None),
        (None, (), None),  # a .tac file (makeApplication): twistd's own, wherever it was told
        ({"nodaemon": True, "logfile": None, "syslog": False, "logger": None}, ("--log-format", "json"), "json"),
    ],
)
def test_theTextObserverStandsInOnlyForTwistdsStandardOutput(
    parent: dict[str, Any] | None, argv: tuple[str, ...], expected: str | None
) -> None:
    """dotwist's text observer replaces twistd's only where twistd would write text to standard
    output itself: a log file (which twistd rotates on SIGUSR1), syslog, --logger and .tac files
    keep twistd's."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", out)  # where twistd -n writes
        observer = logObserverFor(_options(parent, *argv))
    if expected is None:
        assert observer is None
    else:
        assert isinstance(observer, FileLogObserver)
        observer(_access())
        if expected == "classic":
            assert out.getvalue() == formatEventAsClassicLogText(_access())
        else:
            assert out.getvalue().startswith("\x1e{")
