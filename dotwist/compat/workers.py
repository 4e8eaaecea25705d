"""``workers`` for Python Workers on dotwist: Cloudflare's Python SDK names, on dotwist's objects.

Every name is dotwist's own class or function, or a thin function around one; nothing here is a
second runtime:

=================================  =============================================================
``WorkerEntrypoint``               ``dotwist.WorkerEntrypoint``
``DurableObject``                  ``dotwist.DurableObject`` (``self.ctx`` is its state:
                                   ``abort()`` raises ``DurableObjectAbort``)
``Response``, ``FetchResponse``    ``dotwist.Response``, which also takes the SDK's spellings
                                   (``Response(body, 404)``, ``status_text=``, ``web_socket=``,
                                   ``from_json``)
``Request``, ``Headers``           ``dotwist.Request``, ``dotwist.Headers``
``fetch``                          dotwist's outbound ``fetch``
``env``                            the running Worker's ``env``
``waitUntil``, ``wait_until``      the running request's (or object's) ``ctx.waitUntil``
``handler``                        a decorator for legacy top-level ``on_fetch``: nothing to do
``import_from_javascript``         ``"cloudflare:workers"`` only
``patch_env``                      overrides ``env`` values for a ``with`` block
``python_to_rpc``, ``python_from_rpc``  identities: dotwist's values are Python already
=================================  =============================================================

Names of the SDK dotwist has nothing for (``WorkflowEntrypoint``, ``Blob``, ``File``,
``FormData``, ``workers.asgi``, ...) raise ``ImportError`` naming what is missing.
"""

from __future__ import annotations

import contextlib
import contextvars
import types
from typing import Any, Callable, Iterator, Mapping, Optional, TypedDict, TypeVar, Union

from .. import outbound as _outbound
from ..context import WORKER, currentActor, currentRuntime
from ..errors import DurableObjectAbort
from ..fetch import Headers, Request, Response
from ..objects import DurableObject
from ..worker import ExecutionContext, WorkerEntrypoint

__all__ = [
    "Body",
    "Context",
    "DurableObject",
    "DurableObjectAbort",
    "FetchKwargs",
    "FetchResponse",
    "Headers",
    "JSBody",
    "Request",
    "RequestInitCfProperties",
    "Response",
    "WorkerEntrypoint",
    "env",
    "fetch",
    "handler",
    "import_from_javascript",
    "patch_env",
    "python_from_rpc",
    "python_to_rpc",
    "waitUntil",
    "wait_until",
]

# A package with no directory of its own: submodules (workers.asgi, ...) are resolved by dotwist's
# import finder, which names what is missing.
__path__: list[str] = []

T = TypeVar("T")

#: What ``fetch`` returns: dotwist has one response class.
FetchResponse = Response

#: The ``ctx`` a Worker's handlers get.
Context = ExecutionContext

#: Bodies dotwist takes (the SDK's ``Body``/``JSBody`` type aliases).
Body = Union[str, bytes, None]
JSBody = Body


class RequestInitCfProperties(TypedDict, total=False):
    """Cloudflare's per-request ``cf`` options: accepted, and meaningless without Cloudflare."""

    cacheEverything: bool
    cacheKey: str
    cacheTtl: int


class FetchKwargs(TypedDict, total=False):
    """The keyword arguments of ``fetch`` and ``Request``."""

    headers: Any
    body: Any
    method: str
    redirect: str
    cf: RequestInitCfProperties


def fetch(resource: Any, **kwargs: Any) -> Any:
    """``await fetch(url_or_request, method=..., headers=..., body=...)``: dotwist's outbound
    fetch; fires with a ``Response``."""
    return _outbound.fetch(resource, **kwargs)


def handler(func: Callable[..., T]) -> Callable[..., T]:
    """The SDK's decorator for legacy top-level ``on_fetch(request, env, ctx)``: it converts
    JavaScript values to Python ones, which dotwist's already are. Returns ``func``."""
    return func


def python_to_rpc(value: T) -> T:
    """``value`` itself: dotwist's RPC takes Python values."""
    return value


def python_from_rpc(value: T) -> T:
    """``value`` itself: dotwist's RPC gives Python values."""
    return value


# -- the running Worker's env ---------------------------------------------------------------------

#: The env while ``main`` is imported (set by the compatibility loader): module-level code may
#: read ``env`` before any request, as on Cloudflare.
IMPORT_ENV: contextvars.ContextVar[Optional[Any]] = contextvars.ContextVar("dotwist_import_env", default=None)


def currentEnv() -> Any:
    """The env of the Worker whose code is running now."""
    runtime = currentRuntime()
    if runtime is not None:
        return runtime.env
    env = IMPORT_ENV.get()
    if env is not None:
        return env
    raise RuntimeError(
        "workers.env is only available while a Worker's code runs (a request, an RPC call, an "
        "alarm, a scheduled event, or the import of its main module)"
    )


class _CurrentEnv:
    """``from workers import env``: the running Worker's env, looked up on each use."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(currentEnv(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(currentEnv(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(currentEnv(), name)

    def __dir__(self) -> list[str]:
        return dir(currentEnv())

    def __repr__(self) -> str:
        try:
            return repr(currentEnv())
        except RuntimeError:
            return "<workers.env (no Worker running)>"


env: Any = _CurrentEnv()

_MISSING = object()


@contextlib.contextmanager
def patch_env(values: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Iterator[Any]:
    """Override values of the running Worker's ``env`` for a ``with`` block (for tests)."""
    target = currentEnv()
    changes = dict(values or {}, **kwargs)
    saved = {name: target.__dict__.get(name, _MISSING) for name in changes}
    for name, value in changes.items():
        setattr(target, name, value)
    try:
        yield env
    finally:
        for name, old in saved.items():
            if old is _MISSING:
                target.__dict__.pop(name, None)
            else:
                setattr(target, name, old)


def waitUntil(awaitable: Any) -> None:
    """Keep the running request (or object) alive until ``awaitable`` settles."""
    actor = currentActor()
    if actor is not None:
        actor.ctx.waitUntil(awaitable)
        return
    call = WORKER.get()
    if call is None:
        raise RuntimeError("waitUntil() is only available while a Worker's code runs")
    call.ctx.waitUntil(awaitable)


wait_until = waitUntil


def import_from_javascript(name: str) -> Any:
    """``"cloudflare:workers"`` (``env``, ``waitUntil``, ``DurableObject``,
    ``WorkerEntrypoint``); other JavaScript modules do not exist in dotwist."""
    if name == "cloudflare:workers":
        module = types.SimpleNamespace(
            env=env, waitUntil=waitUntil, DurableObject=DurableObject, WorkerEntrypoint=WorkerEntrypoint
        )
        return module
    if name == "cloudflare:sockets":
        raise ImportError("cloudflare:sockets (connect() for TCP sockets) is not provided by dotwist")
    raise ImportError(
        f"The JavaScript module {name!r} is not provided by dotwist (only \"cloudflare:workers\" is)"
    )


_UNSUPPORTED = {
    "WorkflowEntrypoint": "Workflows",
    "Blob": "Blob",
    "BlobEnding": "Blob",
    "BlobValue": "Blob",
    "File": "File",
    "FormData": "FormData",
    "FormDataValue": "FormData",
}


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    what = _UNSUPPORTED.get(name)
    if what is not None:
        raise ImportError(
            f"workers.{name} is not provided by dotwist: it has no {what}; "
            "see docs/moving-from-cloudflare.md"
        )
    raise ImportError(
        f"workers.{name} is not a name of Cloudflare's Python SDK that dotwist provides "
        f"(it provides: {', '.join(__all__)})"
    )
