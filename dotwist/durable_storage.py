"""``ctx.storage``: Cloudflare's Durable Object storage API, with its gates, over a synchronous
``ObjectStore`` (``dotwist.storage``).

Two layers. ``StorageSession`` is the runtime's side of one object's storage: the open write
batch, when it commits, and what it does to the object's gates. ``DurableObjectStorage`` (and the
``kv``, ``sql`` and transaction objects beside it) is the API user code sees, and holds nothing
but a session.

How the guarantees are kept:

- **Write coalescing.** A write goes into the store's open batch at once (later reads see it)
  and schedules one commit at the end of the current reactor turn. Writes with no ``await``
  between them are in one batch and commit atomically (so are writes whose awaits were other
  storage operations: those complete at once, so the unit is larger, never smaller).
- **Output gate.** A write not made with ``allowUnconfirmed`` makes the object's output from then
  on (responses, WebSocket messages, calls to other objects and services) wait until its batch
  is durable. A batch is durable when the store's ``commit()`` returns, or, for a store whose
  commits complete later (a replicated one), when the result it returned fires. One commit is in
  flight at a time; writes made meanwhile go into the next batch. If a commit fails, nothing that
  waited for it is sent, waiting callers get an error, and the object is reset.
- **Input gate.** Reads complete before ``get`` returns (the embedded database, or the owner's
  local copy in a cluster), so an ``await`` on a storage operation never lets another event in;
  ``allowConcurrency`` is accepted and has nothing to relax. ``transaction(closure)`` locks the
  input gate for as long as the closure runs, awaits included, so no other event's writes land
  inside it and are rolled back with it.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Mapping, Optional, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .errors import DurableObjectError
from .gates import InputGate, OutputGate
from .handlers import asDeferred
from .stats import NamespaceStats
from .storage import MISSING, TransactionAbortedError
from .storage.interface import ObjectStore, Savepoint, SqlCursor
from .values import storageKey

_log = Logger(namespace="dotwist.storage")

T = TypeVar("T")

_LIST_OPTIONS = ("start", "startAfter", "end", "prefix", "reverse", "limit")
_OP_OPTIONS = frozenset(("allowConcurrency", "allowUnconfirmed", "noCache"))
_LIST_AND_OP_OPTIONS = _OP_OPTIONS | frozenset(_LIST_OPTIONS)
_NONE: Mapping[str, Any] = {}


def _options(
    options: Optional[Mapping[str, Any]], kwargs: Mapping[str, Any], allowed: frozenset[str]
) -> Mapping[str, Any]:
    if not options and not kwargs:
        return _NONE
    merged = dict(options or {})
    merged.update(kwargs)
    unknown = merged.keys() - allowed
    if unknown:
        raise TypeError(f"Unknown storage option(s): {', '.join(sorted(unknown))}")
    return merged


def _keys(keys: Any) -> list[str]:
    return [storageKey(k) for k in keys]


def _entries(entries: Mapping[Any, Any]) -> Mapping[str, Any]:
    if all(type(k) is str for k in entries):
        return entries
    return {storageKey(k): v for k, v in entries.items()}


def _value(v: Any) -> Any:
    return None if v is MISSING else v


def alarmMillis(scheduledTime: object) -> int:
    """Milliseconds since the epoch from what ``setAlarm`` was given."""
    if isinstance(scheduledTime, _dt.datetime):
        if scheduledTime.tzinfo is None:
            scheduledTime = scheduledTime.replace(tzinfo=_dt.timezone.utc)
        return int(scheduledTime.timestamp() * 1000)
    if isinstance(scheduledTime, (int, float)) and not isinstance(scheduledTime, bool):
        return int(scheduledTime)
    raise TypeError(
        "setAlarm() takes milliseconds since the epoch or a datetime, "
        f"not {type(scheduledTime).__name__}"
    )


class StorageSession:
    """The runtime's side of one object's open storage.

    ``onFailure(error)`` is called when a commit fails (the owner resets the object);
    ``onAlarmSet(millis)`` when the object sets its alarm (before that write commits);
    ``hasAlarmHandler()`` says whether ``setAlarm`` is allowed. Operations, bytes and commit
    latency count into ``stats``. ``name`` (from ``idFromName``) is recorded with the object's
    data in the first commit that writes something, if it is not there yet; ``onNamed()`` is
    called when it was.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        clock: IReactorTime,
        inputGate: InputGate,
        outputGate: OutputGate,
        onFailure: Callable[[DurableObjectError], None],
        onAlarmSet: Callable[[int], None],
        hasAlarmHandler: Callable[[], bool],
        stats: Optional[NamespaceStats] = None,
        name: Optional[str] = None,
        onNamed: Optional[Callable[[], None]] = None,
    ) -> None:
        self.store = store
        self.stats = stats if stats is not None else NamespaceStats()
        self._ops = self.stats.storageOps
        self._name = name
        self._onNamed = onNamed
        self._clock = clock
        self._inputGate = inputGate
        self._outputGate = outputGate
        self._onFailure = onFailure
        self._onAlarmSet = onAlarmSet
        self._hasAlarmHandler = hasAlarmHandler
        self._batch = 1  # the number of the open batch
        self._durable = 0  # the last batch known durable
        self._commitCall: Optional[IDelayedCall] = None
        self._inFlight = False
        self._syncWaiters: list[tuple[int, Deferred[None]]] = []
        self._transactions = 0
        #: While the alarm handler runs, ``getAlarm()`` answers None until the object sets or
        #: deletes its alarm (Cloudflare: the running alarm no longer counts as set).
        self.alarmRunning = False
        self.api = DurableObjectStorage(self)

    # -- state the runtime asks about ----------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A commit is scheduled or in flight, or a transaction is open."""
        return self._commitCall is not None or self._inFlight or self._transactions > 0

    @property
    def closed(self) -> bool:
        return self.store.closed

    # -- reads and writes ----------------------------------------------------------------------

    def read(self, op: Callable[[], T]) -> Deferred[T]:
        self._ops["read"] += 1
        try:
            return succeed(op())
        except Exception:
            return fail()

    def write(self, op: Callable[[], T], confirm: bool = True) -> Deferred[T]:
        self._ops["write"] += 1
        try:
            result = op()
        except Exception:
            return fail()
        self.wrote(confirm)
        return succeed(result)

    def wrote(self, confirm: bool = True) -> None:
        """A write went into the open batch: commit it at the end of this turn. ``confirm``:
        output from now on waits until the batch is durable."""
        if confirm:
            self._outputGate.waitFor(self._batch)
        self._scheduleCommit()

    def _scheduleCommit(self) -> None:
        if self._commitCall is None and not self._transactions and not self._inFlight:
            self._commitCall = self._clock.callLater(0, self._commit)

    def _commit(self) -> None:
        self._commitCall = None
        if self._transactions or self._inFlight or self.store.closed:
            return
        batch = self._batch
        self._batch += 1
        if self._name is not None and self.store.hasPendingWrites:
            self._recordName()
        timer = self.stats.timer
        started = timer()
        try:
            pending = self.store.commit()
        except Exception as e:
            self._failed(e)
            return
        if pending is None:
            self.stats.commitSeconds.observe(timer() - started)
            self._committed(batch)
            return
        self._inFlight = True

        def done(_: object) -> None:
            self._inFlight = False
            self.stats.commitSeconds.observe(timer() - started)
            if not self.store.closed:
                self._committed(batch)

        def failed(f: Failure) -> None:
            self._inFlight = False
            if not self.store.closed:
                self._failed(f.value if f.value is not None else RuntimeError(str(f)))

        asDeferred(pending).addCallbacks(done, failed)

    def _committed(self, batch: int) -> None:
        self._durable = batch
        if self._syncWaiters:
            ready = [w for b, w in self._syncWaiters if b <= batch]
            self._syncWaiters = [(b, w) for b, w in self._syncWaiters if b > batch]
            for waiter in ready:
                waiter.callback(None)
        self._outputGate.durableThrough(batch)
        if self.store.hasPendingWrites or self._syncWaiters:
            self._scheduleCommit()

    def _recordName(self) -> None:
        name, self._name = self._name, None
        assert name is not None
        store = self.store
        recordName = getattr(store, "recordName", None)
        if recordName is None or store.storedName() == name:
            return
        recordName(name)
        if self._onNamed is not None:
            self._onNamed()

    def _failed(self, cause: BaseException) -> None:
        self.stats.commitFailures += 1
        _log.failure(
            "Durable Object storage commit failed; the object is reset", Failure(cause)
        )
        error = DurableObjectError(
            f"Durable Object storage write failed ({cause}); the object was reset.",
            durableObjectReset=True,
        )
        waiters, self._syncWaiters = self._syncWaiters, []
        for _, waiter in waiters:
            waiter.errback(error)
        self._outputGate.fail(error)
        self._onFailure(error)

    def sync(self) -> Deferred[None]:
        """Fires when every write made so far is durable."""
        target = self._batch if (self.store.hasPendingWrites or self._commitCall) else self._batch - 1
        if target <= self._durable:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._syncWaiters.append((target, waiter))
        self._scheduleCommit()
        return waiter

    def batchLost(self, cause: BaseException) -> None:
        """The store discarded the open batch itself (SQLite rolled it back): fail what waited
        for it and reset the object, as for a failed commit."""
        if self._commitCall is not None and self._commitCall.active():
            self._commitCall.cancel()
        self._commitCall = None
        self._failed(cause)

    def flush(self) -> Deferred[None]:
        """Commit what is pending now (at shutdown); fires when it is durable."""
        if self._commitCall is not None and self._commitCall.active():
            self._commitCall.cancel()
            self._commitCall = None
            self._commit()
        if self.store.closed:
            return succeed(None)
        return self.sync()

    def close(self) -> None:
        """The object is going away (evicted or reset): drop the uncommitted batch."""
        if self._commitCall is not None and self._commitCall.active():
            self._commitCall.cancel()
        self._commitCall = None
        if not self.store.closed:
            store = self.store
            self.stats.storageBytesRead += getattr(store, "bytesRead", 0)
            self.stats.storageBytesWritten += getattr(store, "bytesWritten", 0)
            try:
                store.rollback()
            finally:
                store.close()
        # ``api`` refers back to this session: a reference cycle that would keep the session, its
        # store and its object until a garbage collection. (Code that kept ``ctx.storage`` still
        # has it, and is told the storage is closed.)
        self.__dict__.pop("api", None)

    # -- the alarm, as the runtime sees it --------------------------------------------------

    def storedAlarm(self) -> Optional[int]:
        """The alarm time stored now (None if the store is closed or has none)."""
        return None if self.store.closed else self.store.getAlarm()

    def clearAlarm(self, expected: Optional[int]) -> None:
        """Delete the alarm if it is still ``expected`` (the handler did not set a new one)."""
        if not self.store.closed and self.store.getAlarm() == expected and expected is not None:
            self.store.deleteAlarm()
            self.wrote(confirm=False)

    def setAlarm(self, millis: int, confirm: bool) -> Deferred[None]:
        if not self._hasAlarmHandler():
            raise TypeError(
                "Your Durable Object class must have an alarm() handler in order to call setAlarm()"
            )

        def op() -> None:
            self.store.setAlarm(millis)
            self._onAlarmSet(millis)

        return self.write(op, confirm)

    # -- transactions ----------------------------------------------------------------------

    def transactionSync(self, fn: Callable[[], T]) -> T:
        self._ops["transaction"] += 1
        store = self.store
        savepoint = store.savepoint()
        try:
            result = fn()
        except BaseException:
            store.rollbackTo(savepoint)
            raise
        store.release(savepoint)
        if store.hasPendingWrites:
            self.wrote()
        return result

    def transaction(self, closure: Callable[["DurableObjectTransaction"], Any]) -> Deferred[Any]:
        """Run ``closure(txn)`` in a savepoint. The input gate is locked now, before this returns,
        and stays locked until the closure has finished, awaits included."""
        self._ops["transaction"] += 1
        store = self.store
        savepoint = store.savepoint()
        self._inputGate.lock()
        self._transactions += 1
        return asDeferred(self._transaction(closure, savepoint, DurableObjectTransaction(self.api)))

    async def _transaction(
        self, closure: Callable[["DurableObjectTransaction"], Any], savepoint: Savepoint,
        txn: "DurableObjectTransaction",
    ) -> Any:
        store = self.store
        try:
            result = closure(txn)
            while hasattr(result, "__await__"):
                result = await result
        except BaseException:
            if savepoint.active:
                store.rollbackTo(savepoint)
            raise
        else:
            if savepoint.active:
                if txn.rolledBack:
                    store.rollbackTo(savepoint)
                else:
                    store.release(savepoint)
            return result
        finally:
            self._transactions -= 1
            if store.hasPendingWrites:
                self.wrote()
            elif self._outputGate.held and self._commitCall is None and not self._inFlight:
                # Everything the transaction wrote was rolled back, but its writes made output
                # wait: an empty commit releases it.
                self._scheduleCommit()
            self._inputGate.unlock()


class DurableObjectStorage:
    """``ctx.storage`` of one object. Asynchronous methods return Deferreds (await them)."""

    def __init__(self, session: StorageSession) -> None:
        self._session = session
        self._ops = session._ops
        self._kv = SyncKvStorage(session)
        self._sql = SqlStorage(session)

    # -- the KV API ----------------------------------------------------------------------------

    def get(self, keys: Any, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[Any]:
        """``get(key)`` → the value (None if absent); ``get([keys])`` → dict ordered by key.
        Keys that are numbers or booleans are converted as Cloudflare converts them
        (``dotwist.values.storageKey``: ``3`` is ``"3"``)."""
        if type(keys) is str and options is None and not kwargs:
            # The common case, one str key and no options, without the option parsing.
            self._ops["read"] += 1
            try:
                value = self._session.store.get(keys)
            except Exception:
                return fail()
            return succeed(None if value is MISSING else value)
        noCache = bool(_options(options, kwargs, _OP_OPTIONS).get("noCache"))
        store = self._session.store
        self._ops["read"] += 1
        try:
            if isinstance(keys, (list, tuple)):
                return succeed(store.getMany(_keys(keys), noCache=noCache))
            key = keys if type(keys) is str else storageKey(keys)
            return succeed(_value(store.get(key, noCache=noCache)))
        except Exception:
            return fail()

    def put(
        self,
        keyOrEntries: Any,
        value: Any = MISSING,
        options: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> Deferred[None]:
        """``put(key, value)`` or ``put({key: value, ...})`` (at most 128 entries)."""
        if type(keyOrEntries) is str and options is None and not kwargs and value is not MISSING:
            # The common case, one str key and no options, without the option parsing and the
            # ``Mapping`` check (an ABC's ``isinstance``, which is slow).
            session = self._session
            self._ops["write"] += 1
            try:
                session.store.put(keyOrEntries, value)
            except Exception:
                return fail()
            session.wrote()
            return succeed(None)
        store = self._session.store
        if isinstance(keyOrEntries, Mapping):
            if value is not MISSING and options is None and isinstance(value, Mapping):
                options, value = value, MISSING
            if value is not MISSING:
                raise TypeError("put({entries}) takes no value argument")
            opts = _options(options, kwargs, _OP_OPTIONS)
            entries = keyOrEntries
            noCache = bool(opts.get("noCache"))
            return self._session.write(lambda: store.putMany(_entries(entries), noCache=noCache), _confirm(opts))
        if value is MISSING:
            raise TypeError("put(key, value) needs a value")
        opts = _options(options, kwargs, _OP_OPTIONS)
        self._ops["write"] += 1
        try:
            key = keyOrEntries if type(keyOrEntries) is str else storageKey(keyOrEntries)
            store.put(key, value, noCache=bool(opts.get("noCache")))
        except Exception:
            return fail()
        self._session.wrote(_confirm(opts))
        return succeed(None)

    def delete(self, keys: Any, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[Any]:
        """``delete(key)`` → whether it existed; ``delete([keys])`` → how many existed."""
        opts = _options(options, kwargs, _OP_OPTIONS)
        store = self._session.store
        noCache = bool(opts.get("noCache"))
        if isinstance(keys, (list, tuple)):
            return self._session.write(lambda: store.deleteMany(_keys(keys), noCache=noCache), _confirm(opts))
        return self._session.write(lambda: store.delete(storageKey(keys), noCache=noCache), _confirm(opts))

    def list(self, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[dict[str, Any]]:
        """Entries in key order: ``start``, ``startAfter``, ``end``, ``prefix``, ``reverse``,
        ``limit``, plus the operation options."""
        opts = _options(options, kwargs, _LIST_AND_OP_OPTIONS)
        listing = _listing(opts)
        store = self._session.store
        return self._session.read(lambda: store.list(**listing))

    def deleteAll(self, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[None]:
        """Delete every key, every SQL table and the alarm."""
        opts = _options(options, kwargs, _OP_OPTIONS)
        return self._session.write(self._session.store.deleteAll, _confirm(opts))

    # -- alarms (the schedule that fires them is dotwist.alarms') ----------------------------

    def getAlarm(self, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[Optional[int]]:
        """The alarm's time in ms, or None. While ``alarm()`` runs: None, unless the object set
        a new alarm since the handler started."""
        _options(options, kwargs, _OP_OPTIONS)
        if self._session.alarmRunning:
            return succeed(None)
        return self._session.read(self._session.store.getAlarm)

    def setAlarm(self, scheduledTime: Any, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[None]:
        """Set the object's one alarm (ms since the epoch, or a datetime); ``alarm()`` runs then."""
        opts = _options(options, kwargs, _OP_OPTIONS)
        millis = alarmMillis(scheduledTime)
        self._session.alarmRunning = False
        return self._session.setAlarm(millis, _confirm(opts))

    def deleteAlarm(self, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[None]:
        opts = _options(options, kwargs, _OP_OPTIONS)
        self._session.alarmRunning = False
        return self._session.write(self._session.store.deleteAlarm, _confirm(opts))

    # -- transactions --------------------------------------------------------------------------

    def transactionSync(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` atomically: if it raises, its writes are undone and the error re-raised."""
        return self._session.transactionSync(fn)

    def transaction(self, closure: Callable[["DurableObjectTransaction"], Any]) -> Deferred[Any]:
        """Run ``await closure(txn)`` atomically. ``txn.rollback()`` undoes it; an exception
        undoes it and propagates. No other event reaches the object meanwhile."""
        return self._session.transaction(closure)

    def sync(self) -> Deferred[None]:
        """Fires when every write made so far is durable."""
        return self._session.sync()

    # -- the synchronous APIs of SQLite-backed objects ---------------------------------------

    @property
    def kv(self) -> "SyncKvStorage":
        return self._kv

    @property
    def sql(self) -> "SqlStorage":
        return self._sql


def _listing(options: Mapping[str, Any]) -> dict[str, Any]:
    listing = {k: options[k] for k in _LIST_OPTIONS if k in options}
    for bound in ("start", "startAfter", "end", "prefix"):
        if bound in listing and listing[bound] is not None:
            listing[bound] = storageKey(listing[bound])
    return listing


def _confirm(options: Mapping[str, Any]) -> bool:
    return not options.get("allowUnconfirmed", False)


class DurableObjectTransaction:
    """The ``txn`` a ``transaction`` closure gets: the KV API, plus ``rollback()``."""

    def __init__(self, storage: DurableObjectStorage) -> None:
        self._storage = storage
        self.rolledBack = False

    def rollback(self) -> None:
        """Undo everything this transaction wrote, when it ends."""
        self.rolledBack = True

    def get(self, keys: Any, options: Any = None, **kwargs: Any) -> Deferred[Any]:
        return self._storage.get(keys, options, **kwargs)

    def put(self, keyOrEntries: Any, value: Any = MISSING, options: Any = None, **kwargs: Any) -> Deferred[None]:
        return self._storage.put(keyOrEntries, value, options, **kwargs)

    def delete(self, keys: Any, options: Any = None, **kwargs: Any) -> Deferred[Any]:
        return self._storage.delete(keys, options, **kwargs)

    def list(self, options: Any = None, **kwargs: Any) -> Deferred[dict[str, Any]]:
        return self._storage.list(options, **kwargs)

    def getAlarm(self, options: Any = None, **kwargs: Any) -> Deferred[Optional[int]]:
        return self._storage.getAlarm(options, **kwargs)

    def setAlarm(self, scheduledTime: Any, options: Any = None, **kwargs: Any) -> Deferred[None]:
        return self._storage.setAlarm(scheduledTime, options, **kwargs)

    def deleteAlarm(self, options: Any = None, **kwargs: Any) -> Deferred[None]:
        return self._storage.deleteAlarm(options, **kwargs)


class SyncKvStorage:
    """``ctx.storage.kv``: synchronous get/put/delete/list, as on SQLite-backed classes."""

    def __init__(self, session: StorageSession) -> None:
        self._session = session

    def get(self, key: str) -> Any:
        self._session._ops["read"] += 1
        return _value(self._session.store.get(storageKey(key)))

    def put(self, key: str, value: Any) -> None:
        self._session._ops["write"] += 1
        self._session.store.put(storageKey(key), value)
        self._session.wrote()

    def delete(self, key: str) -> bool:
        self._session._ops["write"] += 1
        existed = self._session.store.delete(storageKey(key))
        self._session.wrote()
        return existed

    def list(self, **options: Any) -> dict[str, Any]:
        unknown = set(options) - set(_LIST_OPTIONS)
        if unknown:
            raise TypeError(f"Unknown list option(s): {', '.join(sorted(unknown))}")
        self._session._ops["read"] += 1
        return self._session.store.list(**_listing(options))


class SqlStorage:
    """``ctx.storage.sql``: ``exec(query, *bindings)`` and ``databaseSize``; writes join the
    object's batch and its output gate like any other write."""

    def __init__(self, session: StorageSession) -> None:
        self._session = session

    def exec(self, query: str, *bindings: Any) -> SqlCursor:
        session = self._session
        session._ops["sql"] += 1
        store = session.store
        try:
            cursor = store.sql.exec(query, *bindings)
        except TransactionAbortedError as e:
            # SQLite discarded the whole uncommitted batch: writes that output already waits
            # for are gone, so the object is reset as after a failed commit.
            session.batchLost(e)
            raise
        stats = session.stats
        stats.sqlRowsRead += cursor.rowsRead
        stats.sqlRowsWritten += cursor.rowsWritten
        if store.hasPendingWrites:
            session.wrote()
        return cursor

    @property
    def databaseSize(self) -> int:
        return self._session.store.sql.databaseSize


__all__ = [
    "DurableObjectStorage",
    "DurableObjectTransaction",
    "SqlStorage",
    "StorageSession",
    "SyncKvStorage",
    "alarmMillis",
]
