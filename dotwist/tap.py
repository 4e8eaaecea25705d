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
        #: The command line as given (``--workers`` starts its workers with it).
        self["argv"] = list(options) if options is not None else []
        try:
            usage.Options.parseOptions(self, options)
        except usage.UsageError as e:
            raise SystemExit(f"twistd dotwist: {e}\n(see: twistd dotwist --help)") from None


def makeService(options: service.Options, reactor: Any = None) -> Any:
    """``service.makeService``, with the data directory locked now; a configuration that cannot
    start (a migration the data directory refuses, a directory another process serves) ends the
    command with one line. With ``--workers N``, the service that starts and supervises the N
    worker processes (``dotwist.cluster.workers``)."""
    if options.get("workers"):
        return makeWorkers(options, reactor)
    try:
        built = service.makeService(options, reactor)
    except ConfigError as e:
        raise SystemExit(f"twistd dotwist: {e}") from None
    if options.get("worker"):
        from .cluster.workers import watchParent

        built.reactor.callWhenRunning(watchParent, built.reactor)
    if built.lock is not None:
        try:
            built.lock.acquire()
        except DataDirLocked as e:
            raise SystemExit(f"twistd dotwist: {e}") from None
    return built


def makeWorkers(options: service.Options, reactor: Any = None) -> Any:
    from .cluster.nodeservice import defaultNodeId
    from .cluster.workers import WorkersService, installSigterm

    workers = WorkersService(
        options.get("argv") or [], options["workers"], options["node-id"] or defaultNodeId(), reactor
    )
    reactor = workers.reactor
    reactor.callWhenRunning(installSigterm, reactor, reactor.stop)
    return workers


__all__ = ["DEFAULT_APP", "DEFAULT_LISTEN", "DotwistService", "Options", "makeApplication", "makeService"]
