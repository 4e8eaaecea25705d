"""Outbound ``fetch``: Workers and objects reach other HTTP services, through treq.

From inside a Durable Object the request passes the object's output gate (it leaves only after
the object's earlier writes are durable) and its response comes back through the input gate.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

from twisted.internet.defer import Deferred

from .fetch import Headers, Request, Response
from .context import currentActor


def fetch(input: Any, init: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[Response]:
    """``await fetch(url_or_request, {"method": ..., "headers": ..., "body": ...})``."""
    request = input if isinstance(input, Request) and not init and not kwargs else Request(input, init, **kwargs)
    caller = currentActor()
    if caller is None:
        return Deferred.fromCoroutine(_send(request))
    return caller.outgoing(lambda: Deferred.fromCoroutine(_send(request)))


async def _send(request: Request) -> Response:
    import treq

    headers: dict[Union[bytes, str], list[Union[bytes, str]]] = {
        name: list(request.headers.getAll(name)) for name in request.headers.keys()
    }
    response = await treq.request(
        request.method,
        request.url,
        headers=headers,
        data=request.body,
        allow_redirects=True,
        persistent=False,
    )
    body = await treq.content(response)
    received = Headers()
    for name, values in response.headers.getAllRawHeaders():
        for value in values:
            received.append(name.decode("latin-1"), value.decode("latin-1"))
    phrase = response.phrase.decode("latin-1") if isinstance(response.phrase, bytes) else str(response.phrase or "")
    return Response.fromWire(response.code, phrase, received, body)
