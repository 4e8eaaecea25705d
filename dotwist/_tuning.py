"""Process-wide tuning that the ``twistd dotwist`` service applies when it starts (and ``run.tac``
too, through the same service); ``--no-tuning`` turns all of it off, and embedding code that builds
a ``DotwistService`` itself opts in with ``tuning=True``. Nothing here runs on import.
``tuneProcess`` applies the three and logs each.

The first two are measured by the benchmarks in ``bench/`` (see ``docs/operating.md``).

**The open-file limit.** Every socket and every live object's SQLite database holds file
descriptors; the soft limit (often 1024) is raised to the hard one.

**The reactor's per-event wrapper.** Twisted's epoll reactor runs every ready socket's
``doRead``/``doWrite`` inside ``log.callWithLogger``, which asks the connection for its log prefix
and pushes a logging context (three nested calls and a dictionary) so that legacy
``twisted.python.log`` calls made during the event carry that prefix as ``system``. On a busy
WebSocket server that is about a tenth of the CPU. ``withoutEventContext`` gives one reactor
instance a ``doIteration`` that dispatches events the same way without the context; errors that
escape an event are still caught and logged with the connection's prefix, exactly as before. What
changes: a legacy ``log.msg`` inside an event handler is logged with ``system`` "-" instead of the
connection's prefix (``twisted.logger`` events, which dotwist uses, never took it from there).

**The garbage collector.** Every connection leaves reference cycles behind (protocol and transport,
Deferreds and their callbacks), so the cyclic collector runs often, and each full collection walks
every object the server has, including the thousands that live as long as the process (modules,
classes, the app). ``tuneGarbageCollector`` moves everything that exists once the app is loaded
into the permanent generation (``gc.freeze``) and raises the first generation's threshold from 700
to 10,000 allocations, so that short-lived objects die by reference counting before a collection
looks at them. Cycles are still collected.
"""

from __future__ import annotations

import contextvars
import errno
import gc
from typing import Any, Callable, Optional

from twisted.logger import Logger
from twisted.python import log

GC_THRESHOLD = 10_000

_log = Logger(namespace="dotwist.tuning")


def tuneProcess(reactor: Any) -> None:
    """Apply every tuning to this process and ``reactor``, logging what changed."""
    if withoutEventContext(reactor):
        _log.info("tuning: the epoll reactor dispatches socket events without a log context")
    if asyncioWithoutEventContext(reactor):
        _log.info("tuning: the asyncio reactor dispatches socket events without a log context")
    before = gc.get_threshold()[0]
    tuneGarbageCollector()
    _log.info(
        "tuning: garbage collector frozen after load; first-generation threshold {before} -> {after}",
        before=before, after=gc.get_threshold()[0],
    )
    raised = raiseFileLimit()
    if raised is not None:
        _log.info("tuning: open-file limit {before} -> {after}", before=raised[0], after=raised[1])


def raiseFileLimit() -> Optional[tuple[int, int]]:
    """Raise the soft open-file limit to the hard one; (before, after), or None if unchanged."""
    try:
        import resource
    except ImportError:  # pragma: no cover (not POSIX)
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if wanted <= soft:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        return None
    return soft, wanted


def tuneGarbageCollector(threshold: int = GC_THRESHOLD) -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(threshold, 700), gen1, gen2)


def withoutEventContext(reactor: Any) -> bool:
    """Give an epoll ``reactor`` the context-free event dispatch; False if it is another kind."""
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # pragma: no cover (not Linux)
        return False
    if type(reactor) is not EPollReactor or "doIteration" in vars(reactor):
        return False

    poll = reactor._poller.poll
    selectables = reactor._selectables
    dispatch: Callable[[Any, int, int], None] = reactor._doReadOrWrite

    def doPoll(timeout: Any) -> None:
        # EPollReactor.doPoll, with the event dispatched directly instead of via callWithLogger.
        if timeout is None:
            timeout = -1
        try:
            events = poll(timeout, len(selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        for fd, event in events:
            try:
                selectable = selectables[fd]
            except KeyError:
                continue
            try:
                dispatch(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                _logEscaped(selectable)

    setattr(reactor, "doIteration", doPoll)
    return True


def asyncioWithoutEventContext(reactor: Any) -> bool:
    """The same for Twisted's asyncio reactor: sockets it registers from now on are dispatched by
    the asyncio loop straight to the reactor's read/write handling, instead of through
    ``callWithLogger``. False if ``reactor`` is another kind, or already tuned."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor) or getattr(reactor, "_dotwistTuned", False):
        return False
    loop = reactor._asyncioEventloop
    readOrWrite: Callable[[Any, bool], None] = reactor._readOrWrite
    readers: dict[Any, int] = reactor._readers
    writers: dict[Any, int] = reactor._writers
    addReader: Callable[[Any], None] = reactor.addReader
    addWriter: Callable[[Any], None] = reactor.addWriter

    def dispatch(selectable: Any, read: bool) -> None:
        # What callWithLogger(selectable, readOrWrite, ...) does, without the log context;
        # readOrWrite itself catches and logs what doRead/doWrite raise.
        try:
            readOrWrite(selectable, read)
        except KeyboardInterrupt:
            raise
        except BaseException:
            _logEscaped(selectable)

    def tunedAddReader(reader: Any) -> None:
        known = reader in readers
        addReader(reader)
        if not known and reader in readers:  # the loop watches it: replace the callback
            # (from an empty context, as dotwist._reactors has the reactor do)
            contextvars.Context().run(loop.add_reader, readers[reader], dispatch, reader, True)

    def tunedAddWriter(writer: Any) -> None:
        known = writer in writers
        addWriter(writer)
        if not known and writer in writers:
            contextvars.Context().run(loop.add_writer, writers[writer], dispatch, writer, False)

    setattr(reactor, "addReader", tunedAddReader)
    setattr(reactor, "addWriter", tunedAddWriter)
    setattr(reactor, "_dotwistTuned", True)
    return True


def _logEscaped(selectable: Any) -> None:
    """What ``callWithLogger`` does with an exception that escaped an event."""
    try:
        prefix = selectable.logPrefix()
    except KeyboardInterrupt:
        raise
    except BaseException:
        prefix = "(buggy logPrefix method)"
    log.err(system=prefix)
