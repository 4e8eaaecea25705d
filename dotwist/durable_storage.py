"""``ctx.storage``: Cloudflare's Durable Object storage API, with its input and output gates, on
top of a synchronous ``ObjectStore`` (``dotwist.storage``).

How the guarantees are kept (the core does no I/O; a backend's ``commit`` is the only durable step):

- **Write coalescing.** Every write goes into the store's open batch at once (so later reads see
  it) and schedules one commit for the end of the current reactor turn. Writes with no ``await``
  between them are therefore in one batch and commit atomically (so are writes whose awaits were
  already-completed storage operations: a larger atomic unit, never a smaller one).
- **Output gate.** While a batch holds a write that was not made with ``allowUnconfirmed``, the
  object's outgoing traffic (responses to its callers, WebSocket messages, requests to other
  objects) is held by the actor. When the commit succeeds it is released in order; if it fails,
  none of it is sent, waiting callers get an error, and the object is reset.
- **Input gate.** A read that has not completed closes the object's input gate (unless
  ``allowConcurrency``), so no other event is delivered until it has. With the embedded backends a
  read completes before ``get`` returns, so nothing can interleave anyway; the gate is what keeps
  the guarantee for a backend whose reads complete later (the tests use such a backend).
- ``transaction(closure)`` runs ``closure(txn)`` in a savepoint with the input gate closed, so no
  other event's writes can land inside it and be rolled back with it.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Iterable, Mapping, Optional, TYPE_CHECKING

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .errors import DurableObjectError
from .storage import MISSING
from .storage.interface import ObjectStore

if TYPE_CHECKING:  # pragma: no cover
    from .objects import Actor

_log = Logger(namespace="dotwist.storage")

_LIST_OPTIONS = ("start", "startAfter", "end", "prefix", "reverse", "limit")
_OP_OPTIONS = ("allowConcurrency", "allowUnconfirmed", "noCache")


def _options(options: Optional[Mapping[str, Any]], kwargs: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, Any]:
    merged = dict(options or {})
    merged.update(kwargs)
    unknown = set(merged) - set(allowed)
    if unknown:
        raise TypeError(f"Unknown storage option(s): {', '.join(sorted(unknown))}")
    return merged


def _value(v: Any) -> Any:
    return None if v is MISSING else v


def _alarmMillis(scheduledTime: Any) -> int:
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


class DurableObjectStorage:
    """``ctx.storage`` of one object. Asynchronous methods return Deferreds (await them)."""

    def __init__(self, actor: "Actor", store: ObjectStore) -> None:
        self._actor = actor
        self._store = store
        self._commitCall: Any = None
        self._syncWaiters: list[Deferred[None]] = []
        self._transactions = 0
        #: Tests may set this to a function ``op -> Deferred`` that completes reads later, as a
        #: networked backend would; None means reads complete at once.
        self._readLater: Optional[Callable[[Callable[[], Any]], Deferred[Any]]] = None
        self._kv = SyncKvStorage(self)
        self._sql = SqlStorage(self)

    # -- plumbing ------------------------------------------------------------------------------

    def _read(self, op: Callable[[], Any], options: Mapping[str, Any]) -> Deferred[Any]:
        if self._readLater is None:
            try:
                return succeed(op())
            except Exception:
                return fail()
        actor = self._actor
        gated = not options.get("allowConcurrency", False)
        if gated:
            actor._closeGate()
        answer: Deferred[Any] = Deferred()

        def done(result: Any) -> None:
            # The caller's code continues first (up to its next await), and only then may
            # another event through the gate: as Cloudflare's gate, which opens after the
            # continuation's synchronous part has run.
            answer.callback(result)
            if gated:
                actor._openGate()

        self._readLater(op).addBoth(done)
        return answer

    def _wrote(self, confirm: bool = True) -> None:
        """A write went into the batch: commit it at the end of this turn."""
        if confirm:
            self._actor._outputHeld = True
        if self._commitCall is None and not self._transactions:
            self._commitCall = self._actor.registry.clock.callLater(0, self._commit)

    def _write(self, op: Callable[[], Any], options: Mapping[str, Any]) -> Deferred[Any]:
        try:
            result = op()
        except Exception:
            return fail()
        self._wrote(confirm=not options.get("allowUnconfirmed", False))
        return succeed(result)

    def _commit(self) -> None:
        self._commitCall = None
        if self._transactions or self._store.closed:
            return
        try:
            self._store.commit()
        except Exception as e:
            _log.failure("Durable Object storage commit failed; the object is reset")
            waiters, self._syncWaiters = self._syncWaiters, []
            error = DurableObjectError(
                f"Durable Object storage write failed ({e}); the object was reset.",
                durableObjectReset=True,
            )
            for waiter in waiters:
                waiter.errback(error)
            self._actor._outputFailed(error)
            return
        waiters, self._syncWaiters = self._syncWaiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._actor._releaseOutput()

    def _close(self) -> None:
        """The object is going away (reset or evicted): drop the uncommitted batch."""
        if self._commitCall is not None and self._commitCall.active():
            self._commitCall.cancel()
        self._commitCall = None
        if not self._store.closed:
            try:
                self._store.rollback()
            finally:
                self._store.close()

    # -- the KV API ----------------------------------------------------------------------------

    def get(self, keys: Any, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[Any]:
        """``get(key)`` → the value (None if absent); ``get([keys])`` → dict ordered by key."""
        opts = _options(options, kwargs, _OP_OPTIONS)
        store = self._store
        if isinstance(keys, (list, tuple)):
            return self._read(lambda: store.getMany(keys), opts)
        return self._read(lambda: _value(store.get(keys)), opts)

    def put(self, keyOrEntries: Any, value: Any = MISSING, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[None]:
        """``put(key, value)`` or ``put({key: value, ...})`` (at most 128 entries)."""
        store = self._store
        if isinstance(keyOrEntries, Mapping):
            if value is not MISSING and options is None and isinstance(value, Mapping):
                options, value = value, MISSING
            if value is not MISSING:
                raise TypeError("put({entries}) takes no value argument")
            opts = _options(options, kwargs, _OP_OPTIONS)
            return self._write(lambda: store.putMany(keyOrEntries), opts)
        if value is MISSING:
            raise TypeError("put(key, value) needs a value")
        opts = _options(options, kwargs, _OP_OPTIONS)
        return self._write(lambda: store.put(keyOrEntries, value), opts)

    def delete(self, keys: Any, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[Any]:
        """``delete(key)`` → whether it existed; ``delete([keys])`` → how many existed."""
        opts = _options(options, kwargs, _OP_OPTIONS)
        store = self._store
        if isinstance(keys, (list, tuple)):
            return self._write(lambda: store.deleteMany(keys), opts)
        return self._write(lambda: store.delete(keys), opts)

    def list(self, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[dict[str, Any]]:
        """Entries in key order: ``start``, ``startAfter``, ``end``, ``prefix``, ``reverse``,
        ``limit``, plus the operation options."""
        opts = _options(options, kwargs, _LIST_OPTIONS + _OP_OPTIONS)
        listing = {k: opts[k] for k in _LIST_OPTIONS if k in opts}
        return self._read(lambda: self._store.list(**listing), opts)

    def deleteAll(self, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[None]:
        """Delete every key, every SQL table and the alarm."""
        opts = _options(options, kwargs, _OP_OPTIONS)
        return self._write(self._store.deleteAll, opts)

    # -- alarms (the schedule that fires them is the lifecycle's) -----------------------------

    def getAlarm(self, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[Optional[int]]:
        opts = _options(options, kwargs, _OP_OPTIONS)
        return self._read(self._store.getAlarm, opts)

    def setAlarm(self, scheduledTime: Any, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[None]:
        """Set the object's one alarm (ms since the epoch, or a datetime); ``alarm()`` runs then."""
        opts = _options(options, kwargs, _OP_OPTIONS)
        millis = _alarmMillis(scheduledTime)
        actor = self._actor
        if getattr(actor.instance, "alarm", None) is None and actor.instance is not None:
            raise TypeError(
                "Your Durable Object class must have an alarm() handler in order to call setAlarm()"
            )

        def op() -> None:
            self._store.setAlarm(millis)
            actor.registry.alarms.alarmSet(actor.namespace.name, actor.id.toString(), millis)

        return self._write(op, opts)

    def deleteAlarm(self, options: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[None]:
        opts = _options(options, kwargs, _OP_OPTIONS)
        return self._write(self._store.deleteAlarm, opts)

    # -- transactions --------------------------------------------------------------------------

    def transactionSync(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` atomically: if it raises, its writes are undone and the error re-raised."""
        savepoint = self._store.savepoint()
        try:
            result = fn()
        except BaseException:
            self._store.rollbackTo(savepoint)
            raise
        self._store.release(savepoint)
        if self._store.hasPendingWrites:
            self._wrote()
        return result

    def transaction(self, closure: Callable[["DurableObjectTransaction"], Any]) -> Deferred[Any]:
        """Run ``await closure(txn)`` atomically. ``txn.rollback()`` undoes it; an exception
        undoes it and propagates. No other event reaches the object meanwhile."""
        return Deferred.fromCoroutine(self._transaction(closure))

    async def _transaction(self, closure: Callable[["DurableObjectTransaction"], Any]) -> Any:
        actor = self._actor
        actor._closeGate()
        self._transactions += 1
        savepoint = self._store.savepoint()
        txn = DurableObjectTransaction(self)
        try:
            result = closure(txn)
            while hasattr(result, "__await__"):
                result = await result
        except BaseException:
            if savepoint.active:
                self._store.rollbackTo(savepoint)
            raise
        else:
            if savepoint.active:
                if txn._rolledBack:
                    self._store.rollbackTo(savepoint)
                else:
                    self._store.release(savepoint)
            return result
        finally:
            self._transactions -= 1
            if self._store.hasPendingWrites:
                self._wrote()
            elif actor._outputHeld and self._commitCall is None:
                # Everything the transaction wrote was rolled back, but its writes held the
                # output gate: an empty commit releases it.
                self._wrote(confirm=False)
            actor._openGate()

    def sync(self) -> Deferred[None]:
        """Fires when every write made so far is durable."""
        if self._commitCall is None and not self._store.hasPendingWrites:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._syncWaiters.append(waiter)
        if self._commitCall is None:
            self._wrote(confirm=False)
        return waiter

    # -- the synchronous APIs of SQLite-backed objects ---------------------------------------

    @property
    def kv(self) -> "SyncKvStorage":
        return self._kv

    @property
    def sql(self) -> "SqlStorage":
        return self._sql


class DurableObjectTransaction:
    """The ``txn`` a ``transaction`` closure gets: the KV API, plus ``rollback()``."""

    def __init__(self, storage: DurableObjectStorage) -> None:
        self._storage = storage
        self._rolledBack = False

    def rollback(self) -> None:
        """Undo everything this transaction wrote, when it ends."""
        self._rolledBack = True

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

    def __init__(self, storage: DurableObjectStorage) -> None:
        self._storage = storage

    def get(self, key: str) -> Any:
        return _value(self._storage._store.get(key))

    def put(self, key: str, value: Any) -> None:
        self._storage._store.put(key, value)
        self._storage._wrote()

    def delete(self, key: str) -> bool:
        existed = self._storage._store.delete(key)
        self._storage._wrote()
        return existed

    def list(self, **options: Any) -> dict[str, Any]:
        unknown = set(options) - set(_LIST_OPTIONS)
        if unknown:
            raise TypeError(f"Unknown list option(s): {', '.join(sorted(unknown))}")
        return self._storage._store.list(**options)


class SqlStorage:
    """``ctx.storage.sql``: ``exec(query, *bindings)`` and ``databaseSize``; writes join the
    object's batch and its output gate like any other write."""

    def __init__(self, storage: DurableObjectStorage) -> None:
        self._storage = storage

    def exec(self, query: str, *bindings: Any) -> Any:
        store = self._storage._store
        cursor = store.sql.exec(query, *bindings)
        if store.hasPendingWrites:
            self._storage._wrote()
        return cursor

    @property
    def databaseSize(self) -> int:
        return self._storage._store.sql.databaseSize


__all__ = ["DurableObjectStorage", "DurableObjectTransaction", "SqlStorage", "SyncKvStorage", "Failure"]
