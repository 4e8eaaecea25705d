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

from twisted.logger import ILogObserver, Logger, jsonFileLogObserver, textFileLogObserver

__all__ = ["accessLogger", "logRequest", "makeObserver"]

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


def makeObserver(
    fmt: str, logfile: Optional[str] = None, foreground: bool = True
) -> ILogObserver:
    """The observer for ``--log-format`` (``text`` or ``json``), writing where twistd would:
    ``logfile`` if given (``-``: standard output), else standard output in the foreground and
    ``twistd.log`` as a daemon."""
    out: IO[Any]
    if logfile == "-" or (not logfile and foreground):
        out = sys.stdout
    else:
        from twisted.python.logfile import LogFile

        out = LogFile.fromFullPath(logfile or "twistd.log")
    observer: Any = jsonFileLogObserver(out) if fmt == "json" else textFileLogObserver(out)
    return cast(ILogObserver, observer)


def jsonLines(observerOutput: str) -> list[dict[str, Any]]:
    """Parse what a JSON observer wrote (records separated by ``\\x1e``, one per line)."""
    import json

    return [json.loads(line.strip("\x1e")) for line in io.StringIO(observerOutput) if line.strip("\x1e\n")]
