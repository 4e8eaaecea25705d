"""Calls to objects as data (dotwist.cluster.calls): what crosses between nodes rebuilds the same
call, the same Response, the same result and the same error as the local path gives."""

from __future__ import annotations

import pytest

from dotwist import rpc
from dotwist.cluster.calls import (
    Moved,
    decodeCall,
    decodeReply,
    encodeCall,
    encodeError,
    encodeMoved,
    encodeReply,
)
from dotwist.errors import DurableObjectError
from dotwist.fetch import Request, Response
from dotwist.stubs import callFetch

OID = "ab" * 32


def test_a_fetch_call_and_its_response_cross_whole() -> None:
    """Method, URL, repeated headers and a binary body; the Response's status, text, headers and
    body."""
    request = Request(
        "http://example.com/x?y=1", method="POST",
        headers=[("X-A", "1"), ("X-A", "2"), ("Content-Type", "application/octet-stream")],
        body=bytes(range(256)),
    )
    call = decodeCall(encodeCall("Log", OID, "name", callFetch, (request,)))
    assert (call.namespace, call.objectId, call.name, call.method) == ("Log", OID, "name", callFetch)
    (copy,) = call.args
    assert (copy.method, copy.url, copy.body) == ("POST", request.url, bytes(range(256)))
    assert copy.headers.getAll("x-a") == ["1", "2"]
    response = Response(b"\x00body", status=418, statusText="Teapot", headers={"X-B": "3"})
    result, reply = decodeReply(encodeReply(call, response, {"node": "n1", "epoch": 7}), callFetch)
    assert (result.status, result.statusText, result.body) == (418, "Teapot", b"\x00body")
    assert result.headers.get("x-b") == "3" and reply["epoch"] == 7


@pytest.mark.parametrize("args", [(1, "two", b"3"), ([1, {"a": [2]}],)])
def test_an_rpc_call_and_its_result_cross_by_value(args: tuple[object, ...]) -> None:
    """Shared (immutable) and encoded arguments both arrive as the payload rpc.invoke decodes;
    the result comes back as what rpc.decodeResult turns into the value."""
    payload = rpc.encodeCall(args, {"k": 5})
    call = decodeCall(encodeCall("Log", OID, None, rpc.invoke, ("method", payload)))
    assert call.method is rpc.invoke and call.args[0] == "method"

    class Target:
        def method(self, *a: object, **kw: object) -> object:
            return {"args": list(a), "kw": kw}

    outcome = rpc.invoke(Target(), *call.args)
    result, _ = decodeReply(encodeReply(call, outcome), rpc.invoke)
    assert rpc.decodeResult(result) == {"args": list(args), "kw": {"k": 5}}


def test_errors_come_back_as_the_same_types_with_their_flags() -> None:
    """A ValueError is a ValueError; a DurableObjectError keeps its flags; a type the caller
    does not know is an rpc.RemoteError naming it; Moved says where."""
    with pytest.raises(ValueError, match="^bad$"):
        decodeReply(encodeError(ValueError("bad")), rpc.invoke)
    with pytest.raises(DurableObjectError) as info:
        decodeReply(encodeError(DurableObjectError("reset", durableObjectReset=True, retryable=True)), rpc.invoke)
    assert info.value.durableObjectReset and info.value.retryable and not info.value.overloaded

    class Unknown(Exception):
        pass

    data = encodeError(Unknown("who"))
    data = data.replace(b"test_calls", b"zzzz_calls")
    with pytest.raises(rpc.RemoteError) as remote:
        decodeReply(data, rpc.invoke)
    assert str(remote.value) == "who"
    with pytest.raises(Moved) as moved:
        decodeReply(encodeMoved("10.0.0.1:9000"), rpc.invoke)
    assert moved.value.address == "10.0.0.1:9000"


def test_only_fetch_and_rpc_calls_can_be_sent() -> None:
    with pytest.raises(TypeError):
        encodeCall("Log", OID, None, lambda instance: None, ())
