"""A dotwist core behaviour found while building the chat example (issue 16), kept as a test.

A call from one object to another waits at the caller's output gate while the caller has an
uncommitted write. The stub resolves its target actor before that wait, so if the target's idle
timer evicts it during the wait, the call is delivered to the evicted incarnation and fails with
``DurableObjectError('This Durable Object left memory; a new call constructs it again.',
retryable=True)`` instead of constructing the target again, as a call that had not waited would.
Under load (bench/chat_bench.py, evictAfter = 1 s) this lost chat messages whose rate limiter had
just been evicted (before the core was reshaped the error did not even say retryable); with the
default 70 s it needs a target idle for exactly that long and a commit in flight, so it is rare
but real. The chat example retries the call with a new stub.

Fixed: the stub finds its target when the call leaves the caller's output gate.
"""


from dotwist import App, DurableObject, Request, Response, WorkerEntrypoint
from dotwist.testing import makeRuntime, result


class Caller(DurableObject):
    async def fetch(self, request):
        await self.ctx.storage.put("seen", True)  # uncommitted: what this object sends next waits
        return Response(await self.env.TARGET.getByName("t").ping())


class Target(DurableObject):
    def ping(self):
        return "pong"


class Front(WorkerEntrypoint):
    async def fetch(self, request):
        if request.url.endswith("/target"):
            return Response(await self.env.TARGET.getByName("t").ping())
        return await self.env.CALLER.getByName("c").fetch(request)


def test_call_held_at_the_output_gate_reaches_a_target_evicted_meanwhile(clock):
    """A call that waited at the caller's output gate while its target left memory constructs the
    target again, instead of failing as if the target had been reset."""
    runtime = makeRuntime(App(Front, durableObjects={"CALLER": Caller, "TARGET": Target}), clock=clock)
    evictAfter = runtime.limits.evictAfter
    replies = []
    # Scheduled before the target exists, so at t = evictAfter it runs just before the target's
    # idle check: the call is made while the target is live and delivered after the commit, by
    # which time the idle check has evicted the target.
    clock.callLater(evictAfter, lambda: replies.append(runtime.fetch(Request("http://h/caller"))))
    assert result(runtime.fetch(Request("http://h/target"))).body == b"pong"
    clock.advance(evictAfter)
    clock.advance(0)
    assert result(replies[0]).body == b"pong"
