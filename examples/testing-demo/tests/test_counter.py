"""The counter: through the Worker and by RPC, its storage, eviction, and the listing of objects."""

import pytest

from dotwist.testing import evictDurableObject, listDurableObjectIds, runInDurableObject


async def test_counts_by_rpc(dotwist):
    """Each increment adds to the stored count."""
    counter = dotwist.env.COUNTER.getByName("a")
    assert await counter.increment() == 1
    assert await counter.increment(2) == 3


@pytest.mark.parametrize("dotwist_transport", ["memory", "tcp"])
async def test_counts_through_the_worker(dotwist):
    """The Worker routes /counter/<name> to that counter, in-process and over a real port."""
    assert await (await dotwist.fetch("/counter/a")).text() == "1"
    assert await (await dotwist.fetch("/counter/a")).text() == "2"
    assert await (await dotwist.fetch("/counter/b")).text() == "1"
    assert (await dotwist.fetch("/nowhere")).status == 404


def test_counts_in_a_plain_test(dotwist):
    """A synchronous test gets results with dotwist.run()."""
    assert dotwist.run(dotwist.fetch("/counter/a")).body == b"1"
    assert dotwist.run(dotwist.env.COUNTER.getByName("a").increment()) == 2


async def test_storage_seen_and_seeded_from_inside(dotwist):
    """runInDurableObject reads and writes the object's storage directly."""
    counter = dotwist.env.COUNTER.getByName("a")
    await counter.increment()
    assert await runInDurableObject(counter, lambda instance, ctx: ctx.storage.get("count")) == 1
    await runInDurableObject(counter, lambda instance, ctx: ctx.storage.put("count", 41))
    assert await counter.increment() == 42


async def test_count_survives_eviction(dotwist):
    """An evicted counter is constructed again and finds its count."""
    counter = dotwist.env.COUNTER.getByName("a")
    await counter.increment()
    await evictDurableObject(counter)
    assert await counter.increment() == 2


@pytest.mark.dotwist(storage="sqlite")
async def test_count_survives_a_restart(dotwist):
    """With SQLite storage (a data directory of the test's own), the count outlives the server."""
    await dotwist.env.COUNTER.getByName("a").increment()
    await dotwist.restart()
    assert await dotwist.env.COUNTER.getByName("a").increment() == 2


async def test_lists_the_counters_that_exist(dotwist):
    """listDurableObjectIds gives the counters created in this test, and only those."""
    assert await listDurableObjectIds(dotwist.env.COUNTER) == []
    await dotwist.env.COUNTER.getByName("a").increment()
    ids = await listDurableObjectIds(dotwist.env.COUNTER)
    assert [i.name for i in ids] == ["a"]
