"""Many live objects and the process's file descriptors (issue 19): each live object's SQLite
database held two descriptors, so about a quarter of the open-file limit's worth of objects made
every further request fail with "database is unreadable or corrupt: SQLITE_CANTOPEN". The
backend now keeps a bounded number of databases open, so the number of live objects is limited
by memory and disk."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

from dotwist import DurableObject
from dotwist.storage import SqliteBackend
from dotwist.testing import makeRuntime, result


class Counter(DurableObject):
    async def add(self, n: int) -> int:
        total = (await self.ctx.storage.get("total") or 0) + n
        await self.ctx.storage.put("total", total)
        return total


def openDescriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_more_live_objects_than_descriptors_allow(clock: Any, tmp_path: Path) -> None:
    """Stops descriptor exhaustion by live objects: with room for 200 more descriptors, 600
    objects stay live at once and each reads and durably writes its value twice, where before the
    objects past about 100 failed with SQLITE_CANTOPEN."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = 200
    resource.setrlimit(resource.RLIMIT_NOFILE, (openDescriptors() + room, hard))
    try:
        backend = SqliteBackend(tmp_path)  # the default bound: a quarter of the limit
        runtime = makeRuntime({"NS": Counter}, clock=clock, storage=backend, limits={"evictAfter": 1e6})
        stubs = [runtime.env.NS.getByName(f"n{i}") for i in range(600)]
        # Requests arrive in waves of 25 per reactor turn, each wave committed at its end (a
        # wave larger than the bound would have some requests refused as overloaded: see
        # tests/storage/test_sqlite_backend.py).
        wave = 25
        assert wave < backend.openDatabaseBound < room
        for round in (1, 2):
            for start in range(0, 600, wave):
                calls = [stubs[i].add(i) for i in range(start, start + wave)]
                clock.advance(0)  # the end of the turn: these objects commit
                assert [result(c) for c in calls] == [i * round for i in range(start, start + wave)]
                assert backend.openDatabaseCount <= backend.openDatabaseBound
        assert runtime.registry.liveObjects() == 600
        assert backend.closedIdle > 0 and backend.reopened > 0
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    result(runtime.close())


def test_an_evicted_object_is_freed_by_reference_counting(clock: Any, tmp_path: Path) -> None:
    """Stops evicted objects' memory from waiting for a garbage collection (which the tuned
    collector runs rarely): with the collector off, an evicted object's Actor, instance, ctx,
    storage session and object store are freed as it leaves memory."""
    import gc
    import weakref

    runtime = makeRuntime({"NS": Counter}, clock=clock, storage=SqliteBackend(tmp_path), limits={"evictAfter": 10.0})
    warm = runtime.env.NS.getByName("warm-up").add(1)  # first use: imports, caches
    clock.advance(0)
    result(warm)
    del warm
    clock.advance(11)
    gc.collect()
    gc.disable()
    try:
        calls = [runtime.env.NS.getByName(f"o{i}").add(i) for i in range(20)]
        clock.advance(0)
        assert [result(c) for c in calls] == list(range(20))
        del calls
        refs = []
        for actor in runtime.registry.namespaces["Counter"].actors.values():
            session = actor._session
            assert session is not None
            for obj in (actor, actor.instance, actor.ctx, session, session.store, session.api):
                refs.append(weakref.ref(obj))
        del actor, session, obj
        assert len(refs) == 20 * 6
        clock.advance(11)
        assert runtime.registry.liveObjects() == 0
        alive = [type(ref()).__name__ for ref in refs if ref() is not None]
        assert alive == [], f"kept by reference cycles: {sorted(set(alive))}"
    finally:
        gc.enable()
    result(runtime.close())
