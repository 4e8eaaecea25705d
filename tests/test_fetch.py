"""Fetch types: Headers, Request and Response as Workers use them."""

import pytest
import pytest_twisted

from dotwist import Headers, RangeError, Request, Response, WebSocketPair


def test_headers_are_case_insensitive_and_join_repeats():
    """get() ignores case and joins repeated headers with ', '."""
    headers = Headers({"Upgrade": "websocket"})
    headers.append("x-a", "1")
    headers.append("X-A", "2")
    assert headers.get("upgrade") == "websocket" and headers.get("UPGRADE") == "websocket"
    assert headers.get("x-a") == "1, 2" and headers.get("missing") is None
    assert headers.has("X-a") and "x-a" in headers
    headers.delete("x-A")
    assert not headers.has("x-a")


def test_headers_refuse_injection():
    """Header values with CR/LF are refused, so no response splitting."""
    with pytest.raises(TypeError):
        Headers({"x": "a\r\nSet-Cookie: evil"})


@pytest_twisted.ensureDeferred
async def test_request_url_method_and_body_readers():
    """A Request keeps its full URL with query; body readers decode once."""
    request = Request("http://example.com/a?b=1", method="post", body='{"k": [1, 2]}')
    assert request.url == "http://example.com/a?b=1" and request.method == "POST"
    assert await request.json() == {"k": [1, 2]}
    with pytest.raises(TypeError, match="already been used"):
        await request.text()
    copy = Request(Request("http://e.com/", {"method": "PUT", "body": b"\x00\xff"}))
    assert copy.method == "PUT" and await copy.arrayBuffer() == b"\x00\xff"


def test_request_refuses_relative_url_and_get_body():
    """A relative URL or a GET with a body is a clear TypeError."""
    with pytest.raises(TypeError, match="absolute"):
        Request("/relative")
    with pytest.raises(TypeError, match="GET or HEAD"):
        Request("http://e.com/", body="x")


@pytest_twisted.ensureDeferred
async def test_response_bodies_and_json():
    """Response takes str/bytes/None; Response.json sets the content type; .json() reads."""
    assert (await Response("héllo").text()) == "héllo"
    assert Response("x").headers.get("content-type") == "text/plain;charset=UTF-8"
    assert Response(b"\x01").body == b"\x01" and Response(None).body is None
    made = Response.json({"a": 1}, status=201)
    assert made.status == 201 and made.headers.get("content-type") == "application/json"
    assert await made.json() == {"a": 1}


def test_response_status_rules():
    """Status must be 200-599, except 101 which needs a client WebSocket end."""
    with pytest.raises(RangeError):
        Response("x", status=99)
    with pytest.raises(RangeError):
        Response(None, status=101)
    client, server = WebSocketPair()
    with pytest.raises(TypeError, match="client end"):
        Response(None, status=101, webSocket=server)
    assert Response(None, status=101, webSocket=client).webSocket is client
    with pytest.raises(TypeError):
        Response(object())
