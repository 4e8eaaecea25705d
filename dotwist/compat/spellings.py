"""The Python Workers SDK's spellings on dotwist's own ``Headers``, ``Request`` and ``Response``.

Cloudflare's Python SDK (``workers``) names some things the Python way (``status_text``,
``body_used``, ``from_json``, ``raise_for_status``) where dotwist, like the JavaScript API, uses
camelCase. So that published Python Workers run unmodified, dotwist's classes also answer to the
SDK's names: each is the same thing under a second name, defined here in one place. dotwist's own
documentation and examples use the camelCase names.

What the SDK has and dotwist does not (form data, blobs, JavaScript streams) raises
``NotImplementedError`` naming what is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ..fetch import Headers, Request, Response

__all__ = ["HeadersSpellings", "RequestSpellings", "ResponseSpellings", "unsupported"]


def unsupported(what: str) -> NotImplementedError:
    return NotImplementedError(
        f"{what} is not supported by dotwist (see docs/moving-from-cloudflare.md)"
    )


class HeadersSpellings:
    """``http.client.HTTPMessage``'s names, which the SDK's ``request.headers`` has."""

    __slots__ = ()

    def __getitem__(self, name: str) -> Optional[str]:
        """``headers["Content-Type"]``: the value, or None if absent (as ``HTTPMessage``)."""
        value: Optional[str] = self.get(name)  # type: ignore[attr-defined]
        return value

    def get_all(self, name: str, failobj: Any = None) -> Any:
        """Every value of a repeated header (``getAll``), or ``failobj`` if there is none."""
        values = self.getAll(name)  # type: ignore[attr-defined]
        return values if values else failobj

    def values(self) -> list[str]:
        return [value for _, value in self.items()]  # type: ignore[attr-defined]


class RequestSpellings:
    """The SDK's ``workers.Request`` names."""

    bodyUsed: bool
    #: Cloudflare's request properties (``request.cf``): dotwist has none to give.
    cf: Any = None

    @property
    def body_used(self) -> bool:
        return self.bodyUsed

    @property
    def js_object(self) -> Any:
        """The SDK's underlying JavaScript request: in dotwist, the request itself."""
        return self

    async def buffer(self) -> bytes:
        """The body (the SDK gives a JavaScript ArrayBuffer; dotwist gives ``bytes``)."""
        return await self.bytes()  # type: ignore[attr-defined,no-any-return]

    async def form_data(self) -> Any:
        raise unsupported("Request.form_data() (FormData)")

    async def formData(self) -> Any:
        raise unsupported("Request.formData() (FormData)")

    async def blob(self) -> Any:
        raise unsupported("Request.blob() (Blob)")

    def clone(self) -> "Request":
        if self.bodyUsed:
            raise TypeError("Body has already been used. It can only be used once.")
        return type(self)(self)  # type: ignore[call-arg,return-value]


class ResponseSpellings:
    """The SDK's ``workers.Response`` / ``FetchResponse`` names (Pyodide's ``FetchResponse``)."""

    status: int
    statusText: str
    bodyUsed: bool
    headers: "Headers"

    #: Whether the response came through a redirect (dotwist's fetch follows them: False).
    redirected = False
    #: The response's URL ("" for one built in code).
    url = ""
    #: The response type, as fetch's ("default").
    type = "default"

    @property
    def status_text(self) -> str:
        return self.statusText

    @property
    def body_used(self) -> bool:
        return self.bodyUsed

    @property
    def js_object(self) -> Any:
        """The SDK's underlying JavaScript response: in dotwist, the response itself."""
        return self

    async def buffer(self) -> bytes:
        """The body (the SDK gives a JavaScript ArrayBuffer; dotwist gives ``bytes``)."""
        return await self.bytes()  # type: ignore[attr-defined,no-any-return]

    async def memoryview(self) -> memoryview:
        return memoryview(await self.bytes())  # type: ignore[attr-defined]

    async def string(self) -> str:
        return await self.text()  # type: ignore[attr-defined,no-any-return]

    async def form_data(self) -> Any:
        raise unsupported("Response.form_data() (FormData)")

    async def formData(self) -> Any:
        raise unsupported("Response.formData() (FormData)")

    async def blob(self) -> Any:
        raise unsupported("Response.blob() (Blob)")

    def raise_for_status(self) -> None:
        """Raise ``OSError`` for a 4xx or 5xx status (Pyodide's ``HttpStatusError`` is one)."""
        if 400 <= self.status < 600:
            kind = "Client" if self.status < 500 else "Server"
            raise OSError(f"{self.status} {kind} Error: {self.statusText} for url: {self.url}")

    def clone(self) -> "Response":
        if self.bodyUsed:
            raise TypeError("Body has already been used. It can only be used once.")
        from ..fetch import Headers, Response

        body: Optional[bytes] = getattr(self, "body")
        return Response.fromWire(self.status, self.statusText, Headers(self.headers), body)

    def replace_body(self, body: Any) -> "Response":
        """A new response with this one's status and headers and another body."""
        from ..fetch import Headers, Response

        return Response(body, status=self.status, statusText=self.statusText, headers=Headers(self.headers))
