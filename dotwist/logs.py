"""Logging for operators: one line per HTTP request, and JSON output.

Everything dotwist logs goes through ``twisted.logger`` with its fields as keys of the event, so
the same event prints as a line of text (twistd's default observer) or as one JSON object per line
(``--log-format json``: ``twisted.logger.jsonFileLogObserver``, which keeps every field, so a log
shipper sees ``objectId``, ``status`` or ``durationMs`` as values, not as text to parse).

Request lines: namespace ``dotwist.access``, level info, text like a combined log line plus the
time the response took::

    127.0.0.1 "GET /counter/a HTTP/1.1" 200 12 1.9ms "curl/8.5.0"

with fields ``client``, ``method``, ``path``, ``protocol``, ``status``, ``bytes``, ``durationMs``,
``userAgent`` and ``referer``. A WebSocket upgrade gets its line (status 101) when the socket is
handed over. ``--no-access-log`` turns them off.
"""

from __future__ import annotations

import io
import sys
from typing import IO, Any, Optional, cast

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    Logger,
    formatEventAsClassicLogText,
    formatTime,
    jsonFileLogObserver,
    timeFormatRFC3339,
)

__all__ = ["ClassicText", "accessLogger", "logRequest", "makeObserver"]

accessLogger = Logger(namespace="dotwist.access")


def _text(value: Optional[bytes]) -> str:
    return value.decode("latin-1") if value is not None else "-"


def logRequest(request: Any, durationMs: float, status: Optional[int] = None) -> None:
    """Emit one request's line (``request``: a ``twisted.web`` request that finished, or was
    handed over to a WebSocket with ``status`` 101)."""
    try:
        client = request.getClientAddress()
        host = getattr(client, "host", None) or "-"
    except Exception:  # pragma: no cover - a transport without an address
        host = "-"
    method, path, protocol = _text(request.method), _text(request.uri), _text(request.clientproto)
    code = status if status is not None else request.code
    sent = request.sentLength
    userAgent = _text(request.getHeader(b"user-agent"))
    # The line is made here with one %-format: twisted.logger's own formatting of a format
    # string with a dozen fields doubles the cost of the line.
    accessLogger.info(
        "{line}",
        line='%s "%s %s %s" %d %d %.1fms "%s"' % (host, method, path, protocol, code, sent, durationMs, userAgent),
        client=host,
        method=method,
        path=path,
        protocol=protocol,
        status=code,
        bytes=sent,
        durationMs=durationMs,
        userAgent=userAgent,
        referer=_text(request.getHeader(b"referer")),
    )


class ClassicText:
    """twisted.logger's classic text, as twistd writes it (``formatEventAsClassicLogText`` with
    the default time format), byte for byte, for less: the time stamp is made once per second, and
    an event whose format is just ``{line}`` (every request line) is written without the
    format-string machinery, which made a request line cost about 12 µs against 1 µs now.
    Anything else is formatted by twisted.logger itself."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = "-"

    def formatTime(self, when: Optional[float]) -> str:
        if when is None:
            return "-"
        second = int(when)
        # The stamp shows whole seconds, but the time is rounded to microseconds first: within
        # half a microsecond of the next second it shows that one, so it is not cached there.
        if second != self._second or when - second >= 0.9999995:
            self._stamp = formatTime(when, timeFormatRFC3339)
            self._second = second
        return self._stamp

    def __call__(self, event: dict[str, Any]) -> Optional[str]:
        if event.get("log_format") == "{line}" and event.get("log_system") is None and "log_failure" not in event:
            line = event.get("line")
            if type(line) is str and line:
                level = event.get("log_level")
                text = "%s [%s#%s] %s" % (
                    self.formatTime(event.get("log_time")),
                    event.get("log_namespace", "-"),
                    "-" if level is None else level.name,
                    line,
                )
                return text.replace("\n", "\n\t") + "\n"
        return formatEventAsClassicLogText(event, formatTime=self.formatTime)


def makeObserver(
    fmt: str, logfile: Optional[str] = None, foreground: bool = True
) -> ILogObserver:
    """The observer for ``--log-format`` (``text`` or ``json``), writing where twistd would:
    ``logfile`` if given (``-``: standard output), else standard output in the foreground and
    ``twistd.log`` as a daemon. Text is twistd's classic text (:class:`ClassicText`)."""
    out: IO[Any]
    if logfile == "-" or (not logfile and foreground):
        out = sys.stdout
    else:
        from twisted.python.logfile import LogFile

        out = LogFile.fromFullPath(logfile or "twistd.log")
    observer: Any = jsonFileLogObserver(out) if fmt == "json" else FileLogObserver(out, ClassicText())
    return cast(ILogObserver, observer)


def jsonLines(observerOutput: str) -> list[dict[str, Any]]:
    """Parse what a JSON observer wrote (records separated by ``\\x1e``, one per line)."""
    import json

    return [json.loads(line.strip("\x1e")) for line in io.StringIO(observerOutput) if line.strip("\x1e\n")]
