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
from .service import DEFAULT_APP, DEFAULT_LISTEN, DotwistService, makeApplication


class Options(service.Options):
    """``twistd dotwist``'s options: a mistake ends the command with one line."""

    def parseOptions(self, options: Optional[list[str]] = None) -> None:
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            raise SystemExit(f"twistd dotwist: {e}\n(see: twistd dotwist --help)") from None


def makeService(options: service.Options, reactor: Any = None) -> DotwistService:
    """``service.makeService``, with the data directory locked now, so that a directory another
    process serves ends the command with one line."""
    built = service.makeService(options, reactor)
    if built.lock is not None:
        try:
            built.lock.acquire()
        except DataDirLocked as e:
            raise SystemExit(f"twistd dotwist: {e}") from None
    return built


__all__ = ["DEFAULT_APP", "DEFAULT_LISTEN", "DotwistService", "Options", "makeApplication", "makeService"]
