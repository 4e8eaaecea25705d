"""``twistd dotwist``: options, and the service that serves one app on one or more ports."""

from __future__ import annotations

import math
import os
from typing import Any, Optional

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python import usage

from ._transport import DirectWriteEndpoint
from .config import Limits
from .errors import ConfigError
from ._http import effectiveBacklog, withBacklog
from .ids import DEFAULT_SECRET
from .objects import DurableObject
from .storage.limits import StorageLimits
from .worker import App, Runtime, loadApp, loadObject

DEFAULT_APP = "dotwist.examples.websocket_server"
DEFAULT_LISTEN = "tcp:8080"


class OptionsError(SystemExit):
    """A bad option or app: exits with one clear line instead of twistd's help text."""

    def __init__(self, message: str) -> None:
        super().__init__(f"twistd dotwist: {message}\n(see: twistd dotwist --help)")
        self.message = message


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve a Worker and its Durable Objects over HTTP and WebSockets on one port. "
        "With no options, serves Cloudflare's WebSocket server example on port 8080."
    )
    optParameters = [
        ["app", "a", DEFAULT_APP,
         "The app to serve: a module (its `app` attribute) or module:attribute, naming a dotwist.App."],
        ["max-message-size", None, None,
         "Largest WebSocket message accepted, in bytes (default 33554432 = 32 MiB); larger ones close with 1009."],
        ["max-request-body", None, None,
         "Largest HTTP request body accepted, in bytes (default 100000000); larger ones get 413."],
        ["header-timeout", None, None,
         "Seconds a client has to send a request's headers, from connecting or from its previous "
         "response (default 20); later: 408 and the connection closes."],
        ["request-timeout", None, None,
         "Seconds a client has to send a whole request, body included (default 300); later: 408."],
        ["backlog", None, None,
         "Listen queue length for --listen endpoints without backlog= (default 4096, capped by "
         "/proc/sys/net/core/somaxconn)."],
        ["max-sql-query-duration", None, None,
         "Milliseconds one ctx.storage.sql.exec may run before it is interrupted (default 30000)."],
        ["data-dir", None, "dotwist-data",
         "Where Durable Object storage lives (one SQLite file per object); created on first use."],
        ["storage", None, "sqlite",
         "Storage backend: sqlite (durable, in --data-dir) or memory (lost on exit; for tests and demos)."],
        ["id-secret", None, None,
         "Secret that keys Durable Object IDs (default: $DOTWIST_ID_SECRET, else a built-in value). "
         "Keep it stable: IDs minted under one secret are refused under another."],
    ]
    optFlags = [
        ["access-log", None, "Log every HTTP request (off by default: it costs on every request)."],
        ["no-tuning", None, "Leave the reactor's per-event log context and the garbage collector's "
         "settings as Python and Twisted have them (see docs/operating.md)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["bindings"] = {}
        self["vars"] = {}

    def opt_listen(self, description: str) -> None:
        """Where to listen: a Twisted endpoint description, e.g. tcp:8080:interface=127.0.0.1 (repeatable; default tcp:8080)."""
        self["listen"].append(description)

    opt_l = opt_listen

    def opt_binding(self, value: str) -> None:
        """Bind a Durable Object class: NAME=module:Class (repeatable; replaces the app's binding of that name)."""
        name, sep, spec = value.partition("=")
        if not sep or not name or not spec:
            raise OptionsError(f"--binding expects NAME=module:Class, not {value!r}")
        self["bindings"][name] = spec

    def opt_var(self, value: str) -> None:
        """Set a plain env binding: NAME=value (repeatable)."""
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise OptionsError(f"--var expects NAME=value, not {value!r}")
        self["vars"][name] = text

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        from twisted.internet import endpoints

        for description in self["listen"]:
            try:
                endpoints._parseServer(description, None)
            except Exception as e:
                raise OptionsError(f"--listen {description!r} is not a valid endpoint: {e}")
        limits: dict[str, Any] = {}
        for option, limit, parse, kind in (
            ("max-message-size", "maxMessageSize", int, "whole number of bytes"),
            ("max-request-body", "maxRequestBodySize", int, "whole number of bytes"),
            ("header-timeout", "headerTimeout", float, "number of seconds"),
            ("request-timeout", "requestTimeout", float, "number of seconds"),
            ("backlog", "listenBacklog", int, "whole number"),
            ("max-sql-query-duration", "maxSqlQueryDurationMs", int, "whole number of milliseconds"),
        ):
            if self[option] is not None:
                try:
                    limits[limit] = parse(self[option])
                    if not 0 < limits[limit] < math.inf:
                        raise ValueError()
                except ValueError:
                    raise OptionsError(f"--{option} must be a positive {kind}, not {self[option]!r}")
        sqlDuration = limits.pop("maxSqlQueryDurationMs", None)
        self["limits"] = Limits().replace(**limits)
        self["storageLimits"] = StorageLimits(**({} if sqlDuration is None else {"maxSqlQueryDurationMs": sqlDuration}))
        if self["storage"] not in ("sqlite", "memory"):
            raise OptionsError(f"--storage must be sqlite or memory, not {self['storage']!r}")
        secret = self["id-secret"] or os.environ.get("DOTWIST_ID_SECRET")
        self["idSecret"] = secret.encode("utf-8") if secret else DEFAULT_SECRET
        try:
            self["appObject"] = buildApp(self["app"], self["bindings"], self["vars"])
        except ConfigError as e:
            raise OptionsError(str(e))


def buildApp(spec: str, bindings: dict[str, str], vars: dict[str, str]) -> App:
    """Load an app and apply a deployment's binding overrides."""
    app = loadApp(spec)
    classes = {}
    for name, classSpec in bindings.items():
        cls = loadObject(classSpec)
        if not (isinstance(cls, type) and issubclass(cls, DurableObject)):
            raise ConfigError(f"--binding {name}: {classSpec!r} is not a DurableObject subclass")
        classes[name] = cls
    if classes or vars:
        app = app.withBindings(classes, vars)
    return app


def makeStorage(options: Options) -> tuple[Any, Any]:
    """The storage backend and alarm index the options ask for."""
    from .alarms import MemoryAlarmIndex
    from .storage.alarmindex import SqliteAlarmIndex
    from .storage import MemoryBackend, SqliteBackend

    limits = options.get("storageLimits")
    if options["storage"] == "memory":
        return MemoryBackend(limits), MemoryAlarmIndex()
    return SqliteBackend(options["data-dir"], limits), SqliteAlarmIndex(os.path.join(options["data-dir"], "alarms.sqlite"))


class DotwistService(service.MultiService):
    """One runtime, served on every ``--listen`` endpoint. Stopping it closes open WebSockets
    with 1001 (Going Away) and waits, within a limit, for their close handshakes."""

    def __init__(self, runtime: Runtime, listen: list[str], reactor: Any = None, accessLog: bool = False) -> None:
        super().__init__()
        from .server import makeSite

        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.runtime = runtime
        self.site, self.factory = makeSite(runtime, reactor=reactor, accessLog=accessLog)
        backlog = effectiveBacklog(runtime.limits.listenBacklog)
        for description in listen:
            description = withBacklog(description, backlog)
            endpoint = DirectWriteEndpoint(serverFromString(reactor, description))
            listening = StreamServerEndpointService(endpoint, self.site)
            listening._raiseSynchronously = True  # as strports.service: a port in use fails startup
            listening.setServiceParent(self)

    def startService(self) -> None:
        self.factory.startFactory()
        self.runtime.start()
        super().startService()

    def stopService(self) -> Deferred[Any]:
        # Stop accepting first, then say goodbye to the sockets we have.
        stopped = maybeDeferred(super().stopService)
        closing = self.factory.closeAll(
            1001, "Server shutting down", self.runtime.limits.shutdownTimeout, self.reactor
        )
        stopped.addCallback(lambda _: closing)
        stopped.addBoth(lambda r: (self.factory.stopFactory(), self.runtime.close(), r)[2])
        return stopped


def raiseFileLimit() -> None:
    """Every socket and every live object's SQLite database holds file descriptors: take the
    hard limit rather than the (often 1024) soft one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20), hard))
    except (ImportError, ValueError, OSError):
        pass


def makeService(options: Options, reactor: Any = None) -> DotwistService:
    raiseFileLimit()
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    storage, alarmIndex = makeStorage(options)
    runtime = Runtime(
        options["appObject"],
        reactor,
        limits=options["limits"],
        idSecret=options["idSecret"],
        storage=storage,
        alarmIndex=alarmIndex,
    )
    served = DotwistService(runtime, options["listen"], reactor=reactor, accessLog=bool(options["access-log"]))
    if not options["no-tuning"]:
        from ._tuning import tuneGarbageCollector, withoutEventContext

        withoutEventContext(reactor)
        tuneGarbageCollector()
    return served


def makeApplication(
    app: str = DEFAULT_APP,
    listen: Optional[list[str]] = None,
    bindings: Optional[dict[str, str]] = None,
    **options: Any,
) -> service.Application:
    """Build a twistd ``Application`` (for ``.tac`` files) from the same options as the command.

    Option names are the command line's: ``makeApplication("myapp", ["tcp:8080"],
    **{"max-message-size": "1048576"})``.
    """
    config = Options()
    argv = ["--app", app]
    for description in listen or [DEFAULT_LISTEN]:
        argv += ["--listen", description]
    for name, spec in (bindings or {}).items():
        argv += ["--binding", f"{name}={spec}"]
    for name, value in options.items():
        if value is True:
            argv.append(f"--{name}")
        else:
            argv += [f"--{name}", str(value)]
    config.parseOptions(argv)
    application = service.Application("dotwist")
    makeService(config).setServiceParent(application)
    return application
