"""``twistd dotwist``: the entry point twistd loads through the plugin.

This module is the only place where a bad option becomes a one-line message and an exit status
instead of an exception (twistd would otherwise print its whole help text). Library code, and
``.tac`` files, use ``dotwist.service`` (``makeApplication`` is re-exported here for them), which
raises.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.python import usage

from . import service
from .datadir import DataDirLocked
from .errors import ConfigError
from .service import DEFAULT_APP, DEFAULT_LISTEN, DotwistService, makeApplication


class Options(service.Options):
    """``twistd dotwist``'s options: a mistake ends the command with one line.

    Unless ``twistd -r`` chose a reactor, ``twistd dotwist`` runs on Twisted's asyncio reactor
    (``--loop`` picks the event loop), so that Workers and objects can use asyncio."""

    optParameters = service.Options.optParameters + [
        ["loop", None, "auto",
         "The event loop under Twisted's asyncio reactor: uvloop, asyncio (the standard library's), "
         "or auto (uvloop where it is installed). Ignored when twistd -r chose another reactor."],
    ]

    def postOptions(self) -> None:
        service.installAsyncioReactor(self["loop"])
        service.Options.postOptions(self)

    def parseOptions(self, options: Optional[list[str]] = None) -> None:
        try:
            usage.Options.parseOptions(self, options)
        except usage.UsageError as e:
            raise SystemExit(f"twistd dotwist: {e}\n(see: twistd dotwist --help)") from None


def makeService(options: service.Options, reactor: Any = None) -> DotwistService:
    """``service.makeService``, with the data directory locked now; a configuration that cannot
    start (a migration the data directory refuses, a directory another process serves) ends the
    command with one line."""
    try:
        built = service.makeService(options, reactor)
    except ConfigError as e:
        raise SystemExit(f"twistd dotwist: {e}") from None
    if built.lock is not None:
        try:
            built.lock.acquire()
        except DataDirLocked as e:
            raise SystemExit(f"twistd dotwist: {e}") from None
    return built


__all__ = ["DEFAULT_APP", "DEFAULT_LISTEN", "DotwistService", "Options", "makeApplication", "makeService"]
