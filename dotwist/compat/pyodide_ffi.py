"""``pyodide.ffi`` for Python Workers on dotwist: the conversions are identities.

On Cloudflare a Python Worker runs in Pyodide, and values that cross into JavaScript are converted
with ``to_js`` (a ``dict`` becomes a ``Map``, or an object with ``dict_converter=
Object.fromEntries``; a list an ``Array``), and JavaScript values come back as ``JsProxy``
objects. In dotwist every value is a Python value already and dotwist's APIs take them as they
are, so ``to_js``, ``to_py``, ``create_proxy`` and ``create_once_callable`` give back what they
were given. Nothing is ever a ``JsProxy``. What needs a JavaScript engine (``run_sync``, JSPI)
raises ``NotImplementedError`` naming it.
"""

from __future__ import annotations

from typing import Any, Callable, NoReturn, TypeVar

from .spellings import unsupported

__all__ = [
    "IN_BROWSER",
    "JsException",
    "JsProxy",
    "create_once_callable",
    "create_proxy",
    "destroy_proxies",
    "jsnull",
    "run_sync",
    "to_js",
    "to_py",
]

T = TypeVar("T")

IN_BROWSER = False

#: JavaScript's ``null``. dotwist has no separate null: it is ``None``.
jsnull = None


class JsProxy:
    """Pyodide's proxy of a JavaScript object. dotwist has no JavaScript objects, so no value is
    ever one; the class exists for ``isinstance`` checks."""

    def __init__(self) -> None:
        raise TypeError("dotwist has no JavaScript objects to proxy")


class JsException(Exception):
    """An error thrown by JavaScript code (dotwist raises Python exceptions instead)."""


def to_js(
    obj: T,
    *,
    depth: int = -1,
    pyproxies: Any = None,
    create_pyproxies: bool = True,
    dict_converter: Any = None,
    default_converter: Any = None,
    eager_converter: Any = None,
) -> T:
    """``obj`` itself: dotwist's storage, RPC and responses take Python values as they are."""
    return obj


def to_py(obj: T, *, depth: int = -1, default_converter: Any = None) -> T:
    """``obj`` itself (``JsProxy.to_py()`` on Cloudflare): dotwist's values are Python already."""
    return obj


def create_proxy(obj: T, *, capture_this: bool = False, roundtrip: bool = True) -> T:
    """``obj`` itself: dotwist calls Python callbacks directly, nothing needs to keep them alive."""
    return obj


def create_once_callable(obj: Callable[..., Any], *, _may_syncify: bool = False) -> Callable[..., Any]:
    return obj


def destroy_proxies(pyproxies: Any) -> None:
    """Nothing to destroy."""


def run_sync(x: Any) -> NoReturn:
    raise unsupported("pyodide.ffi.run_sync() (JavaScript Promise Integration); await the value instead")


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    raise ImportError(
        f"pyodide.ffi.{name} is not provided by dotwist (it provides: {', '.join(__all__)}); "
        "see docs/moving-from-cloudflare.md"
    )
