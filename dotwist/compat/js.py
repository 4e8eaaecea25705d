"""``js`` for Python Workers on dotwist: the JavaScript globals published Python Workers use.

In Pyodide, ``from js import X`` gives a JavaScript global; its constructors are called with
``X.new(...)``, and Python keyword arguments to a JavaScript call become one options object at the
end. dotwist has no JavaScript, so each name here is a stand-in built on dotwist's own objects:

============================  ===============================================================
``WebSocketPair.new()``       a dotwist ``WebSocketPair``; ``.object_values()`` (and
                              ``Object.values(pair)``) gives ``[client, server]``
``WebSocketRequestResponsePair.new(a, b)``  dotwist's pair
``Response.new(body, init)``  a dotwist ``Response`` (``Response.json``, ``Response.redirect``)
``Request.new(url, init)``    a dotwist ``Request``; ``Headers.new(init)`` dotwist's ``Headers``
``fetch(url, init)``          dotwist's outbound ``fetch``
``Date.now()``                milliseconds, from the runtime's clock; ``Date.new(ms)``
``Object``                    ``values``, ``keys``, ``entries``, ``fromEntries``
``JSON``                      ``stringify`` (compact, as JavaScript's) and ``parse``
``URL.new(url, base)``        a parsed URL (``pathname``, ``searchParams``, ...)
``Array``                     ``Array["from"](iterable)``, ``isArray``, ``of``
``console``                   ``log``, ``info``, ``debug``, ``warn``, ``error``: printed
``crypto``                    ``randomUUID()``, ``getRandomValues(buffer)``
============================  ===============================================================

Any other global raises ``ImportError`` naming it.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import os
import sys
import time
import uuid
from typing import Any, Iterable, Mapping, NoReturn, Optional
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

from ..fetch import Headers as _Headers, Request as _Request, Response as _Response
from .. import hibernation as _hibernation
from .. import outbound as _outbound
from .. import websocket as _websocket
from ..context import currentRuntime
from ..values import iterableBody, stringifiedBody
from .spellings import unsupported

__all__ = [
    "Array",
    "Date",
    "Headers",
    "JSON",
    "Object",
    "Request",
    "Response",
    "URL",
    "URLSearchParams",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "console",
    "crypto",
    "fetch",
]


def _options(init: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A JavaScript options object: a mapping given positionally and Python keywords."""
    options = dict(init or {})
    options.update(kwargs)
    return options


def _noPlainCall(name: str) -> NoReturn:
    raise TypeError(f"Class constructor {name} cannot be invoked without 'new': use {name}.new(...)")


class _Global:
    """A JavaScript class: constructed with ``.new(...)``, as Pyodide spells ``new X(...)``."""

    _name = "?"

    def __init__(self) -> None:
        _noPlainCall(self._name)

    def __class_getitem__(cls, name: str) -> Any:  # Array["from"]
        return getattr(cls, name)


# -- WebSockets -----------------------------------------------------------------------------------


class JsWebSocketPair(_websocket.WebSocketPair):
    """A dotwist ``WebSocketPair`` as Pyodide shows a JavaScript one: ``object_values()`` (the
    JavaScript ``Object.values``) gives ``[client, server]``; it also unpacks and indexes."""

    __slots__ = ()

    def object_values(self) -> list[_websocket.WebSocket]:
        return [self.client, self.server]

    def to_py(self) -> dict[str, _websocket.WebSocket]:
        return {"0": self.client, "1": self.server}


class WebSocketPair(_Global):
    _name = "WebSocketPair"

    @staticmethod
    def new() -> JsWebSocketPair:
        return JsWebSocketPair()


class WebSocketRequestResponsePair(_Global):
    _name = "WebSocketRequestResponsePair"

    @staticmethod
    def new(request: str, response: str) -> _hibernation.WebSocketRequestResponsePair:
        return _hibernation.WebSocketRequestResponsePair(request, response)


# -- fetch ----------------------------------------------------------------------------------------


def _jsBody(body: Any) -> Any:
    """A JavaScript body: a list is an array (iterated, or stringified before 2026-02-19)."""
    if isinstance(body, (list, tuple)):
        runtime = currentRuntime()
        if runtime is None or runtime.compatibility.isEnabled("fetch_iterable_type_support"):
            return iterableBody(body)
        return stringifiedBody(body)
    return body


class Response(_Global):
    _name = "Response"

    @staticmethod
    def new(body: Any = None, init: Any = None, **kwargs: Any) -> _Response:
        return _Response(_jsBody(body), _options(init, kwargs))

    @staticmethod
    def json(data: Any, init: Any = None, **kwargs: Any) -> _Response:
        response: _Response = _Response.json(data, _options(init, kwargs))
        return response

    @staticmethod
    def redirect(url: str, status: int = 302) -> _Response:
        return _Response.redirect(url, status)

    @staticmethod
    def error() -> NoReturn:
        raise unsupported("Response.error()")


class Request(_Global):
    _name = "Request"

    @staticmethod
    def new(input: Any, init: Any = None, **kwargs: Any) -> _Request:
        options = _options(init, kwargs)
        if "body" in options:
            options["body"] = _jsBody(options["body"])
        return _Request(input, options)


class Headers(_Global):
    _name = "Headers"

    @staticmethod
    def new(init: Any = None) -> _Headers:
        return _Headers(init)


def fetch(input: Any, init: Any = None, **kwargs: Any) -> Any:
    """JavaScript's ``fetch(input, init)``: dotwist's outbound fetch (await it)."""
    options = _options(init, kwargs)
    if "body" in options:
        options["body"] = _jsBody(options["body"])
    return _outbound.fetch(input, options or None)


# -- Date -------------------------------------------------------------------------------------


def _nowMillis() -> float:
    runtime = currentRuntime()
    seconds = runtime.registry.clock.seconds() if runtime is not None else time.time()
    return float(int(seconds * 1000))


class JsDate:
    """A JavaScript ``Date``: milliseconds since the epoch, UTC."""

    __slots__ = ("_ms",)

    def __init__(self, ms: float) -> None:
        self._ms = float(ms)

    def getTime(self) -> float:
        return self._ms

    def valueOf(self) -> float:
        return self._ms

    def toISOString(self) -> str:
        when = _dt.datetime.fromtimestamp(self._ms / 1000, _dt.timezone.utc)
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(self._ms) % 1000:03d}Z"

    def toJSON(self) -> str:
        return self.toISOString()

    def __repr__(self) -> str:
        return f"Date({self.toISOString()})"


class Date(_Global):
    _name = "Date"

    @staticmethod
    def now() -> float:
        """Milliseconds since the epoch (from the runtime's clock while a Worker runs)."""
        return _nowMillis()

    @staticmethod
    def new(value: Any = None) -> JsDate:
        if value is None:
            return JsDate(_nowMillis())
        if isinstance(value, JsDate):
            return JsDate(value.getTime())
        if isinstance(value, _dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=_dt.timezone.utc)
            return JsDate(value.timestamp() * 1000)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return JsDate(value)
        raise unsupported(f"Date.new({type(value).__name__})")


# -- Object, JSON, Array ------------------------------------------------------------------------


def _entriesOf(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, JsWebSocketPair):
        return [("0", value.client), ("1", value.server)]
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, (list, tuple, str)):
        return [(str(i), v) for i, v in enumerate(value)]
    return [(k, v) for k, v in vars(value).items() if not k.startswith("_")]


class Object(_Global):
    _name = "Object"

    @staticmethod
    def values(value: Any) -> list[Any]:
        return [v for _, v in _entriesOf(value)]

    @staticmethod
    def keys(value: Any) -> list[str]:
        return [k for k, _ in _entriesOf(value)]

    @staticmethod
    def entries(value: Any) -> list[list[Any]]:
        return [[k, v] for k, v in _entriesOf(value)]

    @staticmethod
    def fromEntries(entries: Any) -> dict[Any, Any]:
        """A plain object (a ``dict``): also the ``dict_converter`` of ``to_js``."""
        if isinstance(entries, Mapping):
            return dict(entries)
        return {k: v for k, v in entries}


class _JsonEncoder(_json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, JsDate):
            return o.toISOString()
        return super().default(o)


class JSON(_Global):
    _name = "JSON"

    @staticmethod
    def stringify(value: Any, replacer: Any = None, space: Any = None) -> str:
        if replacer is not None:
            raise unsupported("JSON.stringify() with a replacer")
        indent = space if isinstance(space, (int, str)) and space else None
        separators = (",", ": ") if indent is not None else (",", ":")
        return _json.dumps(value, cls=_JsonEncoder, ensure_ascii=False, indent=indent, separators=separators)

    @staticmethod
    def parse(text: str) -> Any:
        return _json.loads(text)


class Array(_Global):
    _name = "Array"

    @staticmethod
    def isArray(value: Any) -> bool:
        return isinstance(value, list)

    @staticmethod
    def of(*items: Any) -> list[Any]:
        return list(items)


def _arrayFrom(iterable: Iterable[Any], mapFn: Any = None) -> list[Any]:
    items = list(iterable)
    return [mapFn(item, i) for i, item in enumerate(items)] if mapFn is not None else items


setattr(Array, "from", staticmethod(_arrayFrom))  # `from` is a Python keyword: Array["from"](...)


# -- URL ------------------------------------------------------------------------------------------


class URLSearchParams:
    """The query of a ``URL``: ``get``, ``getAll``, ``has``, ``keys``, ``entries``, ``toString``."""

    def __init__(self, init: Any = "") -> None:
        if isinstance(init, str):
            self._pairs = parse_qsl(init.lstrip("?"), keep_blank_values=True)
        elif isinstance(init, Mapping):
            self._pairs = [(str(k), str(v)) for k, v in init.items()]
        else:
            self._pairs = [(str(k), str(v)) for k, v in init]

    @staticmethod
    def new(init: Any = "") -> "URLSearchParams":
        return URLSearchParams(init)

    def get(self, name: str) -> Optional[str]:
        for k, v in self._pairs:
            if k == name:
                return v
        return None

    def getAll(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k == name]

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self._pairs)

    def keys(self) -> list[str]:
        return [k for k, _ in self._pairs]

    def entries(self) -> list[list[str]]:
        return [[k, v] for k, v in self._pairs]

    def toString(self) -> str:
        return urlencode(self._pairs)

    def __str__(self) -> str:
        return self.toString()


class JsURL:
    """A parsed URL with the WHATWG ``URL``'s property names."""

    def __init__(self, url: str, base: Optional[str] = None) -> None:
        full = urljoin(str(base), str(url)) if base is not None else str(url)
        parts = urlsplit(full)
        if not parts.scheme:
            raise TypeError(f"Invalid URL: {url!r}")
        self.href = full
        self.protocol = parts.scheme + ":"
        self.username = parts.username or ""
        self.password = parts.password or ""
        self.hostname = parts.hostname or ""
        self.port = str(parts.port) if parts.port is not None else ""
        self.host = self.hostname + (":" + self.port if self.port else "")
        self.origin = f"{parts.scheme}://{self.host}"
        self.pathname = parts.path or "/"
        self.search = "?" + parts.query if parts.query else ""
        self.hash = "#" + parts.fragment if parts.fragment else ""
        self.searchParams = URLSearchParams(parts.query)

    def toString(self) -> str:
        return self.href

    def __str__(self) -> str:
        return self.href

    def __repr__(self) -> str:
        return f"URL({self.href!r})"


class URL(_Global):
    _name = "URL"

    @staticmethod
    def new(url: str, base: Optional[str] = None) -> JsURL:
        return JsURL(url, base)


# -- console and crypto -----------------------------------------------------------------------


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


class console:
    """``console.log(...)`` and friends: printed (standard output; ``warn``/``error`` to standard
    error), as a Python Worker's ``print`` is."""

    @staticmethod
    def log(*args: Any) -> None:
        print(*map(_show, args))

    info = log
    debug = log

    @staticmethod
    def warn(*args: Any) -> None:
        print(*map(_show, args), file=sys.stderr)

    error = warn


class crypto:
    @staticmethod
    def randomUUID() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def getRandomValues(buffer: Any) -> Any:
        if isinstance(buffer, bytearray) or (isinstance(buffer, memoryview) and not buffer.readonly):
            buffer[:] = os.urandom(len(buffer))
            return buffer
        raise TypeError("crypto.getRandomValues() fills a bytearray or a writable memoryview")


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    raise ImportError(
        f"The JavaScript global {name!r} is not provided by dotwist's js module (it provides: "
        f"{', '.join(__all__)}); see docs/moving-from-cloudflare.md"
    )
