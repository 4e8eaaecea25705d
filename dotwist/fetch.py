"""Fetch-style ``Headers``, ``Request`` and ``Response``, as Workers and Durable Objects see them.

Bodies are held in memory as bytes (the HTTP glue reads the whole request body, within a limit,
before the Worker runs). The body readers are coroutines, as in Cloudflare's Python Workers, and a
body can be read once.
"""

from __future__ import annotations

import builtins
import json as _json
import re
from typing import Any, Iterable, Iterator, Mapping, Optional, Union, TYPE_CHECKING
from urllib.parse import urlsplit

from . import websocket
from .compat.spellings import HeadersSpellings, RequestSpellings, ResponseSpellings
from .context import currentRuntime
from .errors import RangeError
from .values import iterableBody, stringifiedBody

if TYPE_CHECKING:  # pragma: no cover
    from .websocket import WebSocket

HeadersInit = Union["Headers", Mapping[str, str], Iterable[tuple[str, str]], None]
BodyInit = Union[str, bytes, bytearray, memoryview, None]


_BAD_NAME = re.compile("[ \t\r\n:]")

#: An absolute http(s) URL that ``urlsplit`` takes as it is, with a host part: printable ASCII
#: without spaces (nothing for it to strip or remove), and a host part without brackets (no IPv6
#: literal for it to check). ``Request`` accepts such a URL without parsing it; any other string
#: takes the general path, which parses it.
_PLAIN_URL = re.compile(r"[hH][tT][tT][pP][sS]?://[A-Za-z0-9\-._~%!$&'()*+,;=:@]+(?:[/?#][!-~]*)?\Z")


class Headers(HeadersSpellings):
    """Case-insensitive HTTP headers; ``get`` joins repeated values with ``", "`` as fetch does.

    Also answers to ``http.client.HTTPMessage``'s names, as the Python Workers SDK's headers do
    (``headers["x"]``, ``get(name, default)``, ``get_all``, ``values``)."""

    __slots__ = ("_items",)

    def __init__(self, init: HeadersInit = None) -> None:
        self._items: list[tuple[str, str]] = []
        if init is None:
            return
        if isinstance(init, Headers):
            self._items = list(init._items)
            return
        pairs = init.items() if isinstance(init, Mapping) else init
        for name, value in pairs:
            self.append(name, value)

    @classmethod
    def fromWire(cls, items: list[tuple[str, str]]) -> "Headers":
        """Headers from pairs an HTTP parser already checked and lower-cased (not re-checked)."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    @staticmethod
    def _name(name: Union[str, bytes]) -> str:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if not name or _BAD_NAME.search(name):
            raise TypeError(f"Invalid header name: {name!r}")
        return name.lower()

    @staticmethod
    def _value(value: Union[str, bytes, int]) -> str:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        value = str(value).strip(" \t")
        if "\r" in value or "\n" in value or "\x00" in value:
            raise TypeError(f"Invalid header value: {value!r}")
        return value

    def append(self, name: str, value: str) -> None:
        self._items.append((self._name(name), self._value(value)))

    def set(self, name: str, value: str) -> None:
        key = self._name(name)
        self._items = [item for item in self._items if item[0] != key]
        self._items.append((key, self._value(value)))

    def get(self, name: str, default: Any = None) -> Any:
        """The header's values joined with ``", "``; ``default`` (None) if it is absent."""
        key = name.lower()
        values = [v for k, v in self._items if k == key]
        if not values:
            return default
        return ", ".join(values)

    def getAll(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self._items if k == key]

    def has(self, name: str) -> bool:
        key = name.lower()
        return any(k == key for k, _ in self._items)

    def delete(self, name: str) -> None:
        key = name.lower()
        self._items = [item for item in self._items if item[0] != key]

    def keys(self) -> list[str]:
        return sorted({k for k, _ in self._items})

    def items(self) -> list[tuple[str, str]]:
        """Each header once, values joined, in sorted order (as fetch's iteration)."""
        return [(k, self.get(k) or "") for k in self.keys()]

    def rawItems(self) -> list[tuple[str, str]]:
        """Every header line as given, in order (``Set-Cookie`` needs this)."""
        return list(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has(name)

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


def _toBytes(body: BodyInit) -> Optional[bytes]:
    if body is None:
        return None
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(
        f"A body must be str, bytes or None, not {type(body).__name__}"
        " (use Response.json() for JSON)"
    )


def _requestBody(body: Any) -> Optional[bytes]:
    """A request body: also a list or tuple, as Cloudflare reads a JavaScript array (its bytes
    elements concatenated; joined with commas before compatibility date 2026-02-19)."""
    if isinstance(body, (list, tuple)):
        runtime = currentRuntime()
        if runtime is None or runtime.compatibility.isEnabled("fetch_iterable_type_support"):
            return iterableBody(body)
        return stringifiedBody(body)
    return _toBytes(body)


class _Body:
    """The body readers that ``Request`` and ``Response`` share."""

    _body: Optional[builtins.bytes]
    bodyUsed: bool

    def _take(self) -> builtins.bytes:
        if self.bodyUsed:
            raise TypeError("Body has already been used. It can only be used once.")
        self.bodyUsed = True
        return self._body or b""

    async def arrayBuffer(self) -> builtins.bytes:
        return self._take()

    async def bytes(self) -> builtins.bytes:
        return self._take()

    async def text(self) -> str:
        return self._take().decode("utf-8", errors="replace")

    async def json(self) -> Any:
        return _json.loads(self._take().decode("utf-8"))

    @property
    def body(self) -> Optional[builtins.bytes]:
        return self._body


class Request(_Body, RequestSpellings):
    """An HTTP request: ``url`` (full, with query), ``method``, ``headers``, and the body readers.

    The Python Workers SDK's keywords ``redirect`` (only ``"follow"``: dotwist's fetch follows
    redirects) and ``cf`` are accepted, and its names too (``body_used``, ``buffer()``; see
    ``dotwist.compat.spellings``)."""

    url: str
    method: str
    headers: Headers

    def __init__(
        self,
        input: Union[str, "Request"],
        init: Optional[Mapping[str, Any]] = None,
        *,
        method: Optional[str] = None,
        headers: HeadersInit = None,
        body: Any = None,
        redirect: Optional[str] = None,
        cf: Any = None,
    ) -> None:
        if (
            type(input) is str and init is None and method is None and headers is None
            and body is None and redirect is None and cf is None and _PLAIN_URL.match(input)
        ):
            # ``Request(url)`` with a plain absolute http(s) URL, the common case: what the
            # general path below gives for it, without parsing the URL.
            self.url = input
            self.method = "GET"
            self.headers = Headers()
            self._body = None
            self.bodyUsed = False
            return
        options = dict(init or {})
        redirect = options.pop("redirect", None) if redirect is None else redirect
        if redirect not in (None, "follow"):
            raise TypeError(f"Request redirect mode {redirect!r} is not supported by dotwist (only \"follow\")")
        cf = options.pop("cf", None) if cf is None else cf
        if cf is not None:
            self.cf = cf
        if method is not None:
            options["method"] = method
        if headers is not None:
            options["headers"] = headers
        if body is not None:
            options["body"] = body
        if isinstance(input, Request):
            self.url = input.url
            self.method = input.method
            self.headers = Headers(input.headers)
            self._body = input._body
            self.bodyUsed = False
        elif isinstance(input, str):
            parts = urlsplit(input)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise TypeError(f"Invalid URL: {input!r} (a Request needs an absolute http(s) URL)")
            self.url = input
            self.method = "GET"
            self.headers = Headers()
            self._body = None
            self.bodyUsed = False
        else:
            raise TypeError(f"Request() expects a URL string or a Request, not {type(input).__name__}")
        if "method" in options:
            self.method = str(options["method"]).upper()
        if "headers" in options:
            self.headers = Headers(options["headers"])
        if "body" in options:
            self._body = _requestBody(options["body"])
        if self._body is not None and self.method in ("GET", "HEAD"):
            raise TypeError("Request with a GET or HEAD method cannot have a body.")

    @classmethod
    def fromWire(cls, url: str, method: str, headers: Headers, body: Optional[bytes]) -> "Request":
        """A request as an HTTP parser read it (not re-checked)."""
        request = cls.__new__(cls)
        request.url = url
        request.method = method
        request.headers = headers
        request._body = body
        request.bodyUsed = False
        return request

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


_REASONS = {
    101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Payload Too Large", 426: "Upgrade Required",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


class _ClassOrInstance:
    """``Response.json(data)`` builds a response; ``response.json()`` reads one (as in fetch)."""

    def __init__(self, onClass: Any, onInstance: Any) -> None:
        self._onClass = onClass
        self._onInstance = onInstance

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self._onClass.__get__(objtype, type(objtype))
        return self._onInstance.__get__(obj, objtype)


def _jsonResponse(cls: Any, data: Any, *args: Any, **kwargs: Any) -> "Response":
    """A response whose body is ``data`` as JSON, with ``Content-Type: application/json`` unless
    the headers given set one. Takes what ``Response()`` takes after the body (so also the SDK's
    ``Response.json(data, status, status_text, headers)``)."""
    response: Response = cls(_json.dumps(data).encode("utf-8"), *args, **kwargs)
    if not response.headers.has("content-type"):
        response.headers.set("content-type", "application/json")
    return response


class Response(_Body, ResponseSpellings):
    """An HTTP response. ``Response(None, status=101, webSocket=client)`` hands a socket over.

    Also accepts the Python Workers SDK's spellings: ``Response(body, 404)`` (status second),
    ``status_text=``, ``web_socket=``, and answers to its names (``status_text``,
    ``Response.from_json``, ``raise_for_status()``; see ``dotwist.compat.spellings``)."""

    status: int
    statusText: str
    headers: Headers
    webSocket: Optional["WebSocket"]

    def __init__(
        self,
        body: BodyInit = None,
        init: Any = None,
        *sdkArgs: Any,
        status: Optional[int] = None,
        statusText: Optional[str] = None,
        headers: HeadersInit = None,
        webSocket: Optional["WebSocket"] = None,
        status_text: Optional[str] = None,
        web_socket: Optional["WebSocket"] = None,
    ) -> None:
        if (
            init is None and status is None and statusText is None and headers is None
            and webSocket is None and status_text is None and web_socket is None and not sdkArgs
        ):
            # ``Response(body)`` with a str or bytes body (or none), the common case: what the
            # general path below gives for it.
            plain = True
            if type(body) is str:
                self._body = body.encode("utf-8")
                self.headers = Headers.fromWire([("content-type", "text/plain;charset=UTF-8")])
            elif body is None or type(body) is bytes:
                self._body = body
                self.headers = Headers()
            else:
                plain = False
            if plain:
                self.status = 200
                self.statusText = "OK"
                self.webSocket = None
                self.bodyUsed = False
                return
        if isinstance(init, int) or sdkArgs:
            # The SDK's positional spelling: Response(body, status, status_text, headers, web_socket).
            if status is not None or len(sdkArgs) > 3:
                raise TypeError("Response() takes body, status, status_text, headers, web_socket")
            status, *rest = (init, *sdkArgs)
            for name, value in zip(("status_text", "headers", "web_socket"), rest):
                if name == "status_text":
                    status_text = value
                elif name == "headers":
                    headers = value
                else:
                    web_socket = value
            init = None
        if status_text is not None:
            if statusText is not None:
                raise TypeError("Give statusText or status_text, not both")
            statusText = status_text or None  # the SDK's default is ""
        if web_socket is not None:
            if webSocket is not None:
                raise TypeError("Give webSocket or web_socket, not both")
            webSocket = web_socket
        if isinstance(body, (list, tuple, dict)):
            raise TypeError(f"Unsupported type in Response: {type(body).__name__}")
        options = dict(init or {})
        status = options.get("status", 200) if status is None else status
        statusText = options.get("statusText") if statusText is None else statusText
        headers = options.get("headers") if headers is None else headers
        webSocket = options.get("webSocket") if webSocket is None else webSocket
        if not isinstance(status, int) or isinstance(status, bool):
            raise TypeError(f"Response status must be an integer, not {status!r}")
        if webSocket is not None:
            if status != 101:
                raise RangeError("A Response with a webSocket must have status 101.")
            if not websocket.isClientEnd(webSocket):
                raise TypeError(
                    "Response webSocket must be the client end of a WebSocketPair "
                    "(the first of the two); keep the server end and accept() it."
                )
        elif not 200 <= status <= 599:
            raise RangeError(
                "Responses may only be constructed with status codes in the range 200 to 599, "
                f"inclusive (got {status}); status 101 needs a webSocket."
            )
        self.status = status
        self.statusText = statusText if statusText is not None else _REASONS.get(status, "")
        self.headers = Headers(headers)
        self.webSocket = webSocket
        self._body = _toBytes(body)
        self.bodyUsed = False
        if isinstance(body, str) and not self.headers.has("content-type"):
            self.headers.set("content-type", "text/plain;charset=UTF-8")

    @classmethod
    def fromWire(cls, status: int, statusText: str, headers: Headers, body: Optional[bytes]) -> "Response":
        """A response received from elsewhere (any status the peer sent)."""
        response = cls.__new__(cls)
        response.status = status
        response.statusText = statusText
        response.headers = headers
        response.webSocket = None
        response._body = body
        response.bodyUsed = False
        return response

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    json = _ClassOrInstance(_jsonResponse, _Body.json)

    @classmethod
    def from_json(cls, data: Any, *args: Any, **kwargs: Any) -> "Response":
        """The Python Workers SDK's name for ``Response.json(data, ...)``."""
        return _jsonResponse(cls, data, *args, **kwargs)

    @classmethod
    def redirect(cls, url: str, status: int = 302) -> "Response":
        """A redirect to ``url`` (status 301, 302, 303, 307 or 308), as fetch's
        ``Response.redirect``."""
        if status not in (301, 302, 303, 307, 308):
            raise RangeError(f"Invalid redirect status code: {status} (use 301, 302, 303, 307 or 308)")
        return cls(None, status=int(status), headers={"location": str(url)})

    def __repr__(self) -> str:
        return f"<Response {self.status}>"
