"""The service that serves one app on one or more ports, its options, and the library calls that
build it (``makeService``, ``makeApplication`` for ``.tac`` files).

Everything here raises on bad input (``usage.UsageError``, ``ConfigError``) and never exits the
process; ``dotwist.tap``, the ``twistd dotwist`` entry point, is the only place that turns an
error into a one-line message and an exit status.
"""

from __future__ import annotations

import datetime
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Optional, Sequence

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.web.server import Site

from ._http import effectiveBacklog, withBacklog
from ._transport import DirectWriteEndpoint
from .alarms import AlarmIndex, MemoryAlarmIndex
from .datadir import NAMES_FILE, DataDirLock
from .errors import ConfigError
from .ids import DEFAULT_SECRET
from .limitoptions import LimitValueError, limitsFromOptions
from .limitoptions import optParameters as limitParameters
from .objects import DurableObject
from .storage.interface import StorageBackend
from .storage.limits import StorageLimits
from .worker import App, Runtime, loadApp, loadObject

DEFAULT_APP = "dotwist.examples.websocket_server"
DEFAULT_LISTEN = "tcp:8080"

_log = Logger(namespace="dotwist.service")


class Options(usage.Options):
    """The options of ``twistd dotwist``; ``parseOptions`` raises ``usage.UsageError``."""

    synopsis = "[options]"
    longdesc = (
        "Serve a Worker and its Durable Objects over HTTP and WebSockets on one port. "
        "With no options, serves Cloudflare's WebSocket server example on port 8080."
    )
    optParameters = [
        ["app", "a", None,
         "The app to serve: a module (its `app` attribute) or module:attribute, naming a dotwist.App "
         f"(default: the Wrangler file in the working directory if there is one, else {DEFAULT_APP})."],
        ["config", "c", None,
         "Serve the Python Worker a Wrangler file describes (wrangler.jsonc, wrangler.json or "
         "wrangler.toml): its main module, bindings, vars, .dev.vars secrets, migrations and crons."],
        ["env", "e", None, "With a Wrangler file: the environment (env.<name>) to use."],
        ["compatibility-date", None, None,
         "The compatibility date (YYYY-MM-DD) whose behaviour to follow; overrides the Wrangler "
         "file's (default: today's Cloudflare behaviour)."],
        ["max-sql-query-duration", None, None,
         "Milliseconds one ctx.storage.sql.exec may run before it is interrupted (default 30000)."],
        ["data-dir", None, "dotwist-data",
         "Where Durable Object storage lives (one SQLite file per object); created on first use."],
        ["storage", None, "sqlite",
         "Storage backend: sqlite (durable, in --data-dir) or memory (lost on exit; for tests and demos)."],
        ["id-secret", None, None,
         "Secret that keys Durable Object IDs (default: $DOTWIST_ID_SECRET, else a built-in value). "
         "Keep it stable: IDs minted under one secret are refused under another."],
        ["admin", None, None,
         "Serve the admin interface (JSON, and /metrics) on this endpoint, e.g. 9090 or "
         "tcp:9090:interface=127.0.0.1 (a bare port or a tcp: endpoint without interface= listens "
         "on 127.0.0.1 only). Off by default. Needs --admin-token or --admin-token-file."],
        ["admin-token", None, None,
         "The token admin requests must carry (Authorization: Bearer TOKEN); default "
         "$DOTWIST_ADMIN_TOKEN. Prefer --admin-token-file: a command line is visible to other users."],
        ["admin-token-file", None, None, "Read the admin token from the first line of this file."],
        ["metrics", None, None,
         "Also serve Prometheus metrics, without a token, on this endpoint (e.g. 9091; loopback "
         "unless interface= says otherwise). The admin endpoint serves them at /metrics anyway."],
        ["log-format", None, "text",
         "text (twistd's lines) or json (one JSON object per line, every field of every event)."],
        ["cluster", None, None,
         "Run as a node of a cluster whose coordination is in this PostgreSQL database (a libpq "
         "connection string or postgresql:// URL; see docs/cluster.md). Needs dotwist[cluster]."],
        ["node-id", None, None,
         "With --cluster: this node's id, unique in the cluster (default: host name and process id)."],
        ["node-listen", None, "tcp:0:interface=127.0.0.1",
         "With --cluster: the endpoint of the node's internal channel, which other nodes call."],
        ["advertise", None, None,
         "With --cluster: host:port at which other nodes reach the internal channel (default: "
         "the --node-listen interface and the port bound)."],
        ["lease", None, "10",
         "With --cluster: the node's lease in seconds; a node that dies loses its objects to the "
         "others after about this long."],
        ["cluster-schema", None, "dotwist",
         "With --cluster: the PostgreSQL schema that holds the cluster's tables."],
        ["workers", None, None,
         "With --cluster: run N worker processes (each a node of the cluster) on the same --listen "
         "TCP ports (SO_REUSEPORT), supervised by this one, to use N cores (docs/cluster.md)."],
        ["cluster-secret", None, None,
         "With --cluster: the secret nodes authenticate each other with (default "
         "$DOTWIST_CLUSTER_SECRET, else one made and kept in the cluster's schema)."],
    ] + limitParameters()
    optFlags = [
        ["allow-missing-bindings", None, "With a Wrangler file: start without the bindings dotwist "
         "does not have (KV, R2, D1, Queues, ...) instead of refusing; the Worker sees no such env "
         "attribute."],
        ["no-access-log", None, "Do not log a line per HTTP request (on by default)."],
        ["access-log", None, "Log a line per HTTP request (the default; kept for old command lines)."],
        ["worker", None, "Set by --workers for its worker processes: listen with SO_REUSEPORT."],
        ["no-tuning", None, "Leave the reactor's event dispatch, the garbage collector and the "
         "open-file limit as Python and Twisted have them (see docs/operating.md)."],
    ]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["listen"] = []
        self["bindings"] = {}
        self["vars"] = {}
        self["compatibility-flags"] = []
        self["wrangler"] = None
        self["worker"] = None
        self["compatibility"] = None

    def opt_listen(self, description: str) -> None:
        """Where to listen: a Twisted endpoint description, e.g. tcp:8080:interface=127.0.0.1 (repeatable; default tcp:8080)."""
        self["listen"].append(description)

    opt_l = opt_listen

    def opt_binding(self, value: str) -> None:
        """Bind a Durable Object class: NAME=module:Class (repeatable; replaces the app's binding of that name)."""
        name, sep, spec = value.partition("=")
        if not sep or not name or not spec:
            raise usage.UsageError(f"--binding expects NAME=module:Class, not {value!r}")
        self["bindings"][name] = spec

    def opt_var(self, value: str) -> None:
        """Set a plain env binding: NAME=value (repeatable)."""
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise usage.UsageError(f"--var expects NAME=value, not {value!r}")
        self["vars"][name] = text

    def opt_compatibility_flag(self, flag: str) -> None:
        """A compatibility flag (repeatable); with any, they replace the Wrangler file's flags."""
        self["compatibility-flags"].append(flag)

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        for description in self["listen"]:
            checkEndpoint(description)
        try:
            self["limits"] = limitsFromOptions(self)
        except LimitValueError as e:
            raise usage.UsageError(str(e)) from None
        sqlDuration = None
        if self["max-sql-query-duration"] is not None:
            try:
                sqlDuration = int(self["max-sql-query-duration"])
                if not 0 < sqlDuration < math.inf:
                    raise ValueError()
            except ValueError:
                raise usage.UsageError(
                    "--max-sql-query-duration must be a positive whole number of milliseconds, "
                    f"not {self['max-sql-query-duration']!r}"
                ) from None
        self._adminOptions()
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError(f"--log-format must be text or json, not {self['log-format']!r}")
        self["storageLimits"] = StorageLimits(
            **({} if sqlDuration is None else {"maxSqlQueryDurationMs": sqlDuration})
        )
        if self["storage"] not in ("sqlite", "memory"):
            raise usage.UsageError(f"--storage must be sqlite or memory, not {self['storage']!r}")
        self._clusterOptions()
        secret = self["id-secret"] or os.environ.get("DOTWIST_ID_SECRET")
        self["idSecret"] = secret.encode("utf-8") if secret else DEFAULT_SECRET
        configPath = self["config"]
        if configPath is not None and self["app"] is not None:
            raise usage.UsageError("--app and --config are alternatives: give one")
        if configPath is None and self["app"] is None:
            from .wrangler import findConfig

            configPath = findConfig(".")
        try:
            if configPath is not None:
                self.loadWrangler(configPath)
            else:
                if self["env"] is not None or self["allow-missing-bindings"]:
                    raise usage.UsageError("--env and --allow-missing-bindings need a Wrangler file (--config)")
                self["compatibility"] = compatibilityFrom(None, self["compatibility-date"], self["compatibility-flags"])
                self["appObject"] = buildApp(self["app"] or DEFAULT_APP, self["bindings"], self["vars"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        # Under twistd, where its own options say the log goes (for --log-format json).
        parent = getattr(self, "parent", None)
        self["twistdLogfile"] = parent.get("logfile") if parent is not None else None
        self["twistdForeground"] = bool(parent.get("nodaemon", True)) if parent is not None else True
        # twistd writes text to standard output itself (no --syslog, --logger or --logfile FILE):
        # the one case dotwist's cheaper text observer stands in for twistd's.
        self["twistdStdout"] = (
            parent is not None
            and self["twistdForeground"]
            and self["twistdLogfile"] in (None, "-")
            and not parent.get("syslog")
            and not parent.get("logger")
        )

    def _clusterOptions(self) -> None:
        if self["workers"] is not None:
            try:
                self["workers"] = int(self["workers"])
                if not 1 <= self["workers"] <= 256:
                    raise ValueError()
            except ValueError:
                raise usage.UsageError(f"--workers must be a whole number from 1 to 256, not {self['workers']!r}") from None
            if self["cluster"] is None:
                raise usage.UsageError("--workers needs --cluster (each worker is a node of the cluster)")
            for description in self["listen"]:
                if not description.strip().lower().startswith("tcp:"):
                    raise usage.UsageError(f"--workers needs tcp:PORT listen endpoints, not {description!r}")
                if description.split(":")[1] in ("0", "port=0"):
                    raise usage.UsageError("--workers needs a fixed --listen port (not 0)")
        if self["cluster"] is None:
            for option in ("node-id", "advertise", "cluster-secret"):
                if self[option] is not None:
                    raise usage.UsageError(f"--{option} needs --cluster")
            return
        if self["storage"] != "sqlite":
            raise usage.UsageError("--cluster keeps objects in SQLite files replicated to PostgreSQL: "
                                   "it cannot be combined with --storage memory")
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError:
            raise usage.UsageError("--cluster needs psycopg 3 and psycopg_pool: pip install 'dotwist[cluster]'") from None
        try:
            lease = float(self["lease"])
            if not 0.5 <= lease < math.inf:
                raise ValueError()
        except ValueError:
            raise usage.UsageError(f"--lease must be a number of seconds, at least 0.5, not {self['lease']!r}") from None
        self["leaseSeconds"] = lease
        checkEndpoint(self["node-listen"], "--node-listen")
        if self["advertise"] is not None:
            host, sep, port = self["advertise"].rpartition(":")
            if not sep or not host or not port.isdigit():
                raise usage.UsageError(f"--advertise expects host:port, not {self['advertise']!r}")
        import re

        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self["cluster-schema"]):
            raise usage.UsageError(
                f"--cluster-schema must be a lowercase PostgreSQL name, not {self['cluster-schema']!r}"
            )
        if self["node-id"] is not None and not (0 < len(self["node-id"]) <= 256):
            raise usage.UsageError("--node-id must be 1 to 256 characters")

    def _adminOptions(self) -> None:
        from .admin.http import adminEndpoint, readToken

        for option in ("admin", "metrics"):
            if self[option] is not None:
                self[option] = adminEndpoint(self[option])
                checkEndpoint(self[option], f"--{option}")
        try:
            token = readToken(
                self["admin-token"] or os.environ.get("DOTWIST_ADMIN_TOKEN"), self["admin-token-file"]
            )
        except (OSError, ValueError) as e:
            raise usage.UsageError(f"--admin-token-file: {e}") from None
        if self["admin"] is not None and not token:
            raise usage.UsageError(
                "--admin needs a token: --admin-token-file PATH, --admin-token TOKEN or $DOTWIST_ADMIN_TOKEN"
            )
        self["adminToken"] = token

    def loadWrangler(self, path: str) -> None:
        """Check the Wrangler file and load the Worker it names (nothing is started)."""
        from .compat.loader import loadWorker
        from .wrangler import loadConfig

        if self["bindings"]:
            raise usage.UsageError(
                f"--binding cannot be combined with a Wrangler file ({path}): change "
                "durable_objects.bindings in the file (with a migration if the class changes)"
            )
        config = loadConfig(
            path,
            self["env"],
            allowMissingBindings=bool(self["allow-missing-bindings"]),
            today=datetime.datetime.now(datetime.timezone.utc).date(),
        )
        for skipped in config.skipped:
            _log.warn(
                "{path}: {key}: dotwist has no {kind}; starting without {names}",
                path=path, key=skipped.key, kind=skipped.kind,
                names=", ".join(skipped.names) or "it",
            )
        compatibility = compatibilityFrom(config, self["compatibility-date"], self["compatibility-flags"])
        if compatibility is not config.compatibility:
            from dataclasses import replace

            config = replace(config, compatibility=compatibility)
        self["compatibility"] = compatibility
        self["wrangler"] = config
        self["worker"] = loadWorker(config, self["vars"])
        self["appObject"] = self["worker"].app


def compatibilityFrom(config: Any, date: Optional[str], flags: Sequence[str]) -> Any:
    """The compatibility to run with: the Wrangler file's, with ``--compatibility-date`` and
    ``--compatibility-flag`` overriding it (checked as workerd checks them)."""
    from .compat_flags import CompatibilityError, parseDate, resolveFlags

    if config is not None and date is None and not flags:
        return config.compatibility
    try:
        when = parseDate(date) if date is not None else (config.compatibilityDate if config else None)
        chosen = list(flags) if flags else list(config.compatibilityFlags if config else ())
        return resolveFlags(when, chosen)
    except CompatibilityError as e:
        raise usage.UsageError(f"--compatibility-date/--compatibility-flag: {e}") from None


def installAsyncioReactor(loop: str = "auto") -> bool:
    """Install Twisted's asyncio reactor, on a new event loop of the stdlib's asyncio or of
    uvloop (``auto``: uvloop where it is installed, as it is with dotwist on Linux and macOS),
    unless a reactor is installed already (by ``twistd -r``, or by an import). True if it
    installed one. Workers and Durable Objects can use asyncio only under this reactor."""
    if "twisted.internet.reactor" in sys.modules:
        return False
    import asyncio
    import importlib.util

    from twisted.internet import asyncioreactor

    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise usage.UsageError(
                "--loop uvloop needs the uvloop package (pip install uvloop)"
            ) from None
        eventloop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    elif loop == "asyncio":
        eventloop = asyncio.new_event_loop()
    else:
        raise usage.UsageError(f"--loop must be auto, uvloop or asyncio, not {loop!r}")
    asyncioreactor.install(eventloop)
    return True


def describeReactor(reactor: object) -> str:
    """What runs the server, for the log."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    name = type(reactor).__name__
    if isinstance(reactor, AsyncioSelectorReactor):
        return name
    return f"{name} (Workers and objects cannot use asyncio under it; see docs/asyncio.md)"


def checkEndpoint(description: str, option: str = "--listen") -> None:
    """Refuse a ``--listen`` description Twisted cannot parse (nothing listens yet)."""
    try:
        # Parsing builds the endpoint without listening; standard endpoints only keep the
        # reactor for later, so none is needed (and none is imported) to check a description.
        serverFromString(None, description)
    except Exception as e:
        raise usage.UsageError(f"{option} {description!r} is not a valid endpoint: {e}") from None


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


def makeStorage(options: Options) -> tuple[StorageBackend, AlarmIndex]:
    """The storage backend and alarm index the options ask for."""
    from .storage import MemoryBackend, SqliteBackend
    from .storage.alarmindex import SqliteAlarmIndex

    limits = options.get("storageLimits")
    if options["storage"] == "memory":
        return MemoryBackend(limits), MemoryAlarmIndex()
    from .config import Limits

    runtimeLimits = options.get("limits") or Limits()
    return (
        SqliteBackend(options["data-dir"], limits, maxOpenDatabases=runtimeLimits.maxOpenDatabases),
        SqliteAlarmIndex(os.path.join(options["data-dir"], "alarms.sqlite")),
    )


class ListeningPort(service.Service):
    """Listens on one endpoint while the service runs. A port that cannot be bound right away
    (in use, no permission) fails ``startService``, so ``twistd`` stops with the reason instead
    of running without it."""

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        #: Fires with the ``IListeningPort`` once listening.
        self.listening: Deferred[IListeningPort] = Deferred()
        self._port: Optional[IListeningPort] = None

    def startService(self) -> None:
        service.Service.startService(self)
        starting = True
        failed: list[Failure] = []

        def gotPort(port: IListeningPort) -> None:
            self._port = port
            self.listening.callback(port)

        def noPort(failure: Failure) -> None:
            if starting:
                failed.append(failure)
            else:
                _log.failure("Could not listen on {endpoint}", failure, endpoint=self.endpoint)
                self.listening.errback(failure)

        self.endpoint.listen(self.factory).addCallbacks(gotPort, noPort)
        starting = False
        if failed:
            failed[0].raiseException()

    def stopService(self) -> Deferred[None]:
        service.Service.stopService(self)
        port, self._port = self._port, None
        stopped = port.stopListening() if port is not None else None
        return stopped if isinstance(stopped, Deferred) else succeed(None)


class DotwistService(service.MultiService):
    """One runtime, served on every ``--listen`` endpoint (and the admin and metrics endpoints,
    if asked).

    Starting it applies the process tuning (if asked: see ``dotwist._tuning``) and schedules the
    stored alarms. Stopping it (SIGTERM, through twistd) is graceful:

    1. stop listening; new requests on connections already open get ``503`` and ``Connection:
       close``; alarms stop firing;
    2. let the HTTP requests and object events already running finish, for at most
       ``limits.drainTimeout`` seconds;
    3. commit what objects wrote; in a cluster (``cluster``, a ``dotwist.cluster.nodeservice.
       NodeService``), hand the objects over: mark the node draining, release them, leave;
    4. close every WebSocket with 1001 (Going Away), waiting at most ``limits.shutdownTimeout``
       for the close handshakes;
    5. close the storage, and the admin endpoint last.

    ``handleSigterm`` (``makeService`` sets it): SIGTERM stops the reactor without telling it a
    signal arrived, so ``twistd`` exits with status 0 after a clean stop instead of re-raising the
    signal (see docs/operating.md)."""

    def __init__(
        self,
        runtime: Runtime,
        listen: Sequence[str],
        reactor: Any = None,
        accessLog: bool = False,
        tuning: bool = False,
        *,
        admin: Optional[str] = None,
        adminToken: Optional[str] = None,
        metrics: Optional[str] = None,
        dataDir: Optional[str] = None,
        handleSigterm: bool = False,
        logObserver: Any = None,
        cluster: Any = None,
        reusePort: bool = False,
    ) -> None:
        service.MultiService.__init__(self)
        #: The cluster node (``dotwist.cluster.nodeservice.NodeService``), if this is one.
        self.cluster = cluster
        from .metrics import RuntimeCollector, makeRegistry
        from .server import makeSite

        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.runtime = runtime
        self.tuning = tuning
        self.handleSigterm = handleSigterm
        self.logObserver = logObserver
        self.site, self.factory = makeSite(runtime, reactor=reactor, accessLog=accessLog)
        self.ports: list[ListeningPort] = []
        backlog = effectiveBacklog(runtime.limits.listenBacklog)
        for description in listen:
            description = withBacklog(description, backlog)
            if reusePort:
                from .cluster.workers import reusePortEndpoint

                endpoint = DirectWriteEndpoint(reusePortEndpoint(reactor, description))
            else:
                endpoint = DirectWriteEndpoint(serverFromString(reactor, description))
            port = ListeningPort(endpoint, self.site)
            service.MultiService.addService(self, port)
            self.ports.append(port)
        self.metricsRegistry = makeRegistry(RuntimeCollector(runtime, self.site, self.factory))
        self.dataDir = dataDir
        self.lock: Optional[DataDirLock] = DataDirLock(dataDir) if dataDir is not None else None
        #: The admin and metrics endpoints: started after, and stopped after, everything else.
        self.adminPorts: list[ListeningPort] = []
        if admin is not None:
            if not adminToken:
                raise usage.UsageError("the admin interface needs a token")
            self.adminPorts.append(
                ListeningPort(serverFromString(reactor, admin), Site(self.adminResource(adminToken)))
            )
        if metrics is not None:
            from .metrics import MetricsResource

            self.adminPorts.append(
                ListeningPort(serverFromString(reactor, metrics), Site(MetricsResource(self.metricsRegistry)))
            )
        self._stopping = False

    def adminResource(self, token: str) -> Any:
        """The admin interface's resource (``dotwist.admin.http``), token-guarded."""
        from .admin.http import AdminApp
        from .admin.inspector import Inspector

        backend = self.runtime.registry.storage
        backup = None
        if getattr(backend, "dataDir", None) is not None and hasattr(backend, "pathFor"):
            from .admin.backup import runBackup

            def backup(destination: str) -> Deferred[Any]:
                return runBackup(backend, destination, self.runtime, self.reactor)  # type: ignore[arg-type]

        inspector = Inspector(self.runtime, backup=backup)
        return AdminApp(inspector, self.metricsRegistry).resource(token)

    def setServiceParent(self, parent: Any) -> None:
        # twistd hands a plugin's service the Application itself: a log observer set on it as a
        # component is the one twistd starts logging to (as a .tac file would set it).
        if self.logObserver is not None and hasattr(parent, "setComponent"):
            from twisted.logger import ILogObserver

            if parent.getComponent(ILogObserver, None) is None:
                parent.setComponent(ILogObserver, self.logObserver)
        service.MultiService.setServiceParent(self, parent)

    def startService(self) -> None:
        if self.lock is not None and not self.lock.held:
            self.lock.acquire()
        _log.info("dotwist serving with {reactor}", reactor=describeReactor(self.reactor))
        if self.tuning:
            from ._tuning import tuneProcess

            tuneProcess(self.reactor)
        self.factory.startFactory()  # type: ignore[no-untyped-call]  # Twisted's, unannotated
        if self.cluster is not None:
            # From a timer: startup triggers run before the asyncio loop does, and the node's
            # asyncio code needs the running loop.
            self.reactor.callWhenRunning(self.reactor.callLater, 0, self._startCluster)
        self.runtime.start()
        service.MultiService.startService(self)
        for port in self.adminPorts:
            port.startService()
        if self.handleSigterm:
            self.reactor.callWhenRunning(self._installSigterm)

    def _startCluster(self) -> None:
        def failed(_: object) -> None:
            _log.critical("The cluster node could not start; stopping")
            if self.reactor.running:
                self.reactor.stop()

        self.cluster.start()
        self.cluster.started.addErrback(failed)

    # -- stopping -------------------------------------------------------------------------------

    def _installSigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def onSigterm(signum: int, frame: Any) -> None:
            self.reactor.callFromThread(self._sigterm)

        signal.signal(signal.SIGTERM, onSigterm)

    def _sigterm(self) -> None:
        if self._stopping:
            _log.info("SIGTERM again: already shutting down")
            return
        _log.info("Received SIGTERM, shutting down gracefully")
        if self.reactor.running:
            self.reactor.stop()

    def busy(self) -> tuple[int, int]:
        """(HTTP requests in flight, objects with an event running or waiting, or a commit or
        output pending)."""
        front = self.site.front
        requests = front.inFlight if front is not None else 0
        objects = 0
        for ns in self.runtime.registry.namespaces.values():
            for actor in ns.actors.values():
                if (
                    actor.running
                    or actor.inputGate.waiting
                    or actor.inputGate.locked
                    or actor.outputGate.held
                    or actor.storageBusy
                ):
                    objects += 1
        return requests, objects

    def drain(self, timeout: float) -> Deferred[tuple[int, int]]:
        """Fire when nothing is in flight (``busy()`` is (0, 0)), or after ``timeout`` seconds
        with what was still busy. Checks every 10 ms."""
        done: Deferred[tuple[int, int]] = Deferred()
        deadline = self.reactor.seconds() + timeout

        def check() -> None:
            now = self.busy()
            if now == (0, 0) or self.reactor.seconds() >= deadline:
                done.callback(now)
            else:
                self.reactor.callLater(0.01, check)

        check()
        return done

    def stopService(self) -> Deferred[Any]:
        self._stopping = True
        limits = self.runtime.limits
        started = time.monotonic()
        front = self.site.front
        if front is not None:
            front.draining = True
        self.runtime.registry.alarms.stop()
        requests, objects = self.busy()
        if requests or objects:
            _log.info(
                "Shutting down: waiting for {requests} requests and {objects} busy objects "
                "(at most {timeout:g} s)",
                requests=requests, objects=objects, timeout=limits.drainTimeout,
            )
        # Stop accepting first, then let what runs finish.
        stopped: Deferred[Any] = maybeDeferred(service.MultiService.stopService, self)
        stopped.addCallback(lambda _: self.drain(limits.drainTimeout))

        def drained(left: tuple[int, int]) -> Deferred[Any]:
            if left != (0, 0):
                _log.warn(
                    "Shutting down: {requests} requests and {objects} objects still busy after "
                    "{timeout:g} s; going on",
                    requests=left[0], objects=left[1], timeout=limits.drainTimeout,
                )
            flushed = self.runtime.registry.flush()
            if self.cluster is not None:
                # Committed: hand the objects over (release them, leave) before the sockets close.
                flushed.addCallback(lambda _: self.cluster.handOff())
                flushed.addErrback(lambda f: _log.failure("Handing the objects over failed", f))
            return flushed

        stopped.addCallback(drained)
        sockets = len(self.factory.connections)
        stopped.addCallback(
            lambda _: self.factory.closeAll(1001, "Server shutting down", limits.shutdownTimeout, self.reactor)
        )

        def close(result: object) -> Deferred[Any]:
            self.factory.stopFactory()  # type: ignore[no-untyped-call]  # Twisted's, unannotated
            closed = self.runtime.close().addBoth(closeRest)
            if self.cluster is not None:
                closed.addBoth(lambda _: self.cluster.close())
            return closed.addCallback(lambda _: result)

        def closeRest(result: object) -> Deferred[Any]:
            names = self.runtime.registry.names
            try:
                names.close()
            except Exception:
                _log.failure("Closing the name index failed")
            if self.lock is not None:
                self.lock.release()
            _log.info(
                "Stopped in {seconds:.2f} s; {sockets} WebSockets closed with 1001",
                seconds=time.monotonic() - started, sockets=sockets,
            )
            return DeferredList([maybeDeferred(p.stopService) for p in self.adminPorts])

        return stopped.addBoth(close)


def makeService(options: Options, reactor: Any = None) -> DotwistService:
    """The service the options describe (``reactor``: the global one if not given). For SQLite
    storage the data directory is locked (``dotwist.datadir``) when the service starts."""
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    config = options["wrangler"]
    # Migrations change the data directory, so they run before any storage is opened; a
    # MigrationError (a ConfigError) stops here with nothing started.
    cluster = None
    if options.get("cluster"):
        from .cluster.nodeservice import NodeService

        runtimeLimits = options["limits"]
        cluster = NodeService(
            options["cluster"],
            nodeId=options["node-id"],
            schema=options["cluster-schema"],
            listen=options["node-listen"],
            advertise=options["advertise"],
            leaseSeconds=options["leaseSeconds"],
            secret=options["cluster-secret"],
            dataDir=options["data-dir"],
            storageLimits=options.get("storageLimits"),
            maxOpenDatabases=runtimeLimits.maxOpenDatabases if runtimeLimits is not None else None,
            reactor=reactor,
        )
        # The cluster's data is in PostgreSQL: the migrations are applied there (before the node
        # joins), not to a data directory.
        idKeys = clusterIdKeys(config, options) if config is not None else None
        storage: StorageBackend = cluster.storage
        alarmIndex: AlarmIndex = MemoryAlarmIndex()
    else:
        idKeys = migrateFor(config, options) if config is not None else None
        storage, alarmIndex = makeStorage(options)
    runtime = Runtime(
        options["appObject"],
        reactor,
        limits=options["limits"],
        idSecret=options["idSecret"],
        storage=storage,
        alarmIndex=alarmIndex,
        compatibility=options["compatibility"],
        idKeys=idKeys,
    )
    dataDir = None
    if cluster is not None:
        cluster.attach(runtime.registry)
    if options["storage"] == "sqlite":
        from .names import SqliteNameIndex

        dataDir = options["data-dir"] if cluster is None else cluster.dataDir
        runtime.registry.names = SqliteNameIndex(
            os.path.join(dataDir, NAMES_FILE), schedule=lambda f: reactor.callLater(0, f)
        )
    served = DotwistService(
        runtime,
        options["listen"],
        reactor=reactor,
        accessLog=not options["no-access-log"],
        tuning=not options["no-tuning"],
        admin=options.get("admin"),
        adminToken=options.get("adminToken"),
        metrics=options.get("metrics"),
        dataDir=dataDir,
        handleSigterm=True,
        logObserver=logObserverFor(options),
        cluster=cluster,
        reusePort=bool(options.get("worker")),
    )
    if config is not None and config.crons:
        from .scheduled import CronTriggers

        CronTriggers(runtime, config.crons, reactor).setServiceParent(served)  # type: ignore[no-untyped-call]
    return served


def logObserverFor(options: Options) -> Any:
    """The log observer ``--log-format json`` asks for; for text, when twistd would write it to
    standard output, the same text made for less (``dotwist.logs.ClassicText``). None: twistd's
    own (a log file, which twistd rotates on SIGUSR1, syslog, ``--logger``, or a ``.tac`` file)."""
    from .logs import makeObserver

    if options.get("log-format", "text") == "json":
        return makeObserver("json", options.get("twistdLogfile"), options.get("twistdForeground", True))
    if options.get("twistdStdout"):
        return makeObserver("text", "-")
    return None


def migrateFor(config: Any, options: Options) -> dict[str, str]:
    """Apply the Wrangler file's migrations to the data directory (``--storage sqlite``), or plan
    them against an empty one (``memory``); the ID key of each class, for minting its IDs."""
    from .migrations import StoredState, planMigrations

    if options["storage"] == "sqlite":
        from .storage.migrate import migrateDataDir

        plan = migrateDataDir(options["data-dir"], config.migrations, config.boundClasses)
    else:
        plan = planMigrations(config.migrations, config.boundClasses, StoredState())
    return {name: record.idKey for name, record in plan.classes.items()}


def clusterIdKeys(config: Any, options: Options) -> dict[str, str]:
    """Apply the Wrangler file's migrations to the cluster's data in PostgreSQL
    (``dotwist.cluster.migrate``); return the ID key of each class."""
    from .cluster.migrate import migrateCluster

    plan = migrateCluster(
        options["cluster"], options["cluster-schema"], config.migrations, config.boundClasses
    )
    return {name: record.idKey for name, record in plan.classes.items()}


def makeApplication(
    app: Optional[str] = DEFAULT_APP,
    listen: Optional[list[str]] = None,
    bindings: Optional[dict[str, str]] = None,
    **options: Any,
) -> Componentized:
    """Build a twistd ``Application`` (for ``.tac`` files) from the same options as the command;
    a bad option raises ``usage.UsageError``.

    Option names are the command line's: ``makeApplication("myapp", ["tcp:8080"],
    **{"max-message-size": "1048576"})``; a Python Worker from its Wrangler file is
    ``makeApplication(None, config="wrangler.jsonc")``.
    """
    config = Options()
    argv = ["--app", app] if app is not None else []
    for description in listen or [DEFAULT_LISTEN]:
        argv += ["--listen", description]
    for name, spec in (bindings or {}).items():
        argv += ["--binding", f"{name}={spec}"]
    for name, value in options.items():
        if value is True:
            argv.append(f"--{name}")
        else:
            argv += [f"--{name}", str(value)]
    usage.Options.parseOptions(config, argv)
    application: Componentized = service.Application("dotwist")
    observer = logObserverFor(config)
    if observer is not None:
        from twisted.logger import ILogObserver

        application.setComponent(ILogObserver, observer)
    service.Service.setServiceParent(makeService(config), application)
    return application


__all__ = [
    "DEFAULT_APP",
    "DEFAULT_LISTEN",
    "DotwistService",
    "ListeningPort",
    "Options",
    "buildApp",
    "checkEndpoint",
    "installAsyncioReactor",
    "makeApplication",
    "makeService",
    "makeStorage",
    "migrateFor",
]
