"""Cloudflare's value conventions for Python values, for every app: storage keys converted with
JavaScript's String(), list bodies read as the compatibility date says, and the Python SDK's
spellings of Request, Response and Headers."""

import datetime
from http import HTTPMethod, HTTPStatus

import pytest
from twisted.internet.defer import Deferred

from dotwist import App, DurableObject, Headers, Request, Response, WebSocketPair, WorkerEntrypoint
from dotwist.compat_flags import Compatibility
from dotwist.errors import RangeError
from dotwist.storage.errors import InvalidKeyError
from dotwist.testing import makeRuntime, result
from dotwist.values import jsNumberString, jsString, storageKey


def text(response):
    return result(Deferred.fromCoroutine(response.text()))


@pytest.mark.parametrize(
    "number,expected",
    [(1.0, "1"), (1.5, "1.5"), (0.1, "0.1"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
     (1e-7, "1e-7"), (1e-6, "0.000001"), (-2.5, "-2.5"), (float("nan"), "NaN"),
     (float("-inf"), "-Infinity"), (5e-324, "5e-324"), (123e25, "1.23e+27"), (-0.0, "0")],
)
def test_numbers_convert_as_javascript_string_does(number, expected):
    """jsNumberString follows JavaScript's Number::toString, exponent layout included."""
    assert jsNumberString(number) == expected


def test_javascript_string_of_python_values():
    """String() of primitives and arrays: booleans lower case, None in an array empty."""
    assert [jsString(v) for v in (True, False, 3, 10**30, None, "s")] == [
        "true", "false", "3", "1" + "0" * 30, "null", "s"]
    assert jsString(["a", 1, None, [2, 3.5], True]) == "a,1,,2,3.5,true"
    assert jsString(b"hi") == "104,105"
    with pytest.raises(TypeError):
        jsString({"a": 1})


class Keys(DurableObject):
    async def run(self):
        storage = self.ctx.storage
        for count in range(1, 12):
            await storage.put(count, f"request {count}")  # the Alarms API docs' Batcher
        newest = await storage.list(reverse=True, limit=1)
        await storage.put({True: "yes", 2.5: "half"})
        return {
            "newest": newest,
            "three": await storage.get(3),
            "many": await storage.get([1, "2", 99]),
            "deleted": await storage.delete([1, 2]),
            "bool": await storage.get("true"),
            "float": await storage.get("2.5"),
            "from10": list(await storage.list(start=10, end=2)),
            "sync": storage.kv.get(11),
        }


def test_storage_keys_are_converted_with_javascript_string(clock):
    """put(3, v) stores the key "3"; keys sort as strings ("9" after "11"), as on Cloudflare
    (the published Batcher relies on this and misbehaves past 9 entries there too); numbers,
    booleans and floats are converted in every call, key lists and entries included."""
    runtime = makeRuntime({"NS": Keys}, clock=clock)
    outcome = runtime.env.NS.getByName("k").run()
    clock.advance(0)
    got = result(outcome)
    assert got["newest"] == {"9": "request 9"}
    assert got["three"] == "request 3"
    assert got["many"] == {"1": "request 1", "2": "request 2"}
    assert got["deleted"] == 2
    assert (got["bool"], got["float"]) == ("yes", "half")
    assert got["from10"] == ["10", "11"]
    assert got["sync"] == "request 11"


def test_none_and_other_keys_are_refused():
    """None (Cloudflare's "null") and non-primitive keys are refused with a TypeError."""
    with pytest.raises(InvalidKeyError, match="None is refused"):
        storageKey(None)
    with pytest.raises(InvalidKeyError, match="not tuple"):
        storageKey((1, 2))
    assert isinstance(InvalidKeyError("x"), TypeError)


def test_list_bodies_are_iterated_by_default():
    """Today's behaviour (no runtime, or no compatibility date): a list body's bytes elements
    are concatenated; a str element fails as Cloudflare's stream does."""
    assert Request("http://h/", method="POST", body=[b"ab", bytearray(b"c")]).body == b"abc"
    with pytest.raises(TypeError, match="did not return bytes"):
        Request("http://h/", method="POST", body=["a", "b"])
    for value in ([b"a"], ("x",), {"a": 1}):
        with pytest.raises(TypeError, match=f"Unsupported type in Response: {type(value).__name__}"):
            Response(value)


class Poster(WorkerEntrypoint):
    async def fetch(self, request):
        outgoing = Request("http://upstream/", method="POST", body=["queued 1", "queued 2", 3])
        return Response(outgoing.body)


@pytest.mark.parametrize(
    "date,expected",
    [(datetime.date(2026, 2, 18), b"queued 1,queued 2,3"), (datetime.date(2026, 2, 19), None)],
)
def test_list_bodies_follow_the_compatibility_date(clock, date, expected):
    """Before 2026-02-19 a list body is String(array) (comma-joined); from then on it is
    iterated, so the same strings are refused."""
    runtime = makeRuntime(App(Poster), clock=clock, compatibility=Compatibility(date))
    outcome = runtime.fetch(Request("http://h/"))
    if expected is None:
        with pytest.raises(TypeError, match="did not return bytes"):
            result(outcome)
    else:
        assert result(outcome).body == expected


def test_response_takes_the_sdk_spellings():
    """Response(body, status) positionally, status_text=, web_socket=, HTTPStatus; the SDK's
    names on the instance."""
    response = Response("gone", 404)
    assert (response.status, response.status_text, response.body_used) == (404, "Not Found", False)
    assert Response("x", HTTPStatus.CREATED, "Made", {"x-a": "1"}).headers.get("x-a") == "1"
    response = Response(None, status=426, status_text="Expected Upgrade", headers={"Content-Type": "text/plain"})
    assert (response.statusText, response.headers["content-type"]) == ("Expected Upgrade", "text/plain")
    client, _server = WebSocketPair()
    assert Response(None, status=101, web_socket=client).webSocket is client
    assert Response(status=101, web_socket=WebSocketPair().client).status == 101
    with pytest.raises(TypeError, match="not both"):
        Response(None, statusText="a", status_text="b")
    assert repr(response.js_object) == repr(response)


def test_json_from_json_and_redirect():
    """Response.json/from_json take the SDK's positional status; redirect sets Location."""
    made = Response.json({"queued": 1})
    assert made.headers.get("content-type") == "application/json" and text(made) == '{"queued": 1}'
    assert Response.from_json([1], 201, "Created").status_text == "Created"
    assert Response.json({}, status=202, headers={"content-type": "application/x"}).headers.get(
        "content-type") == "application/x"
    moved = Response.redirect("https://example.com/", 301)
    assert (moved.status, moved.headers.get("location")) == (301, "https://example.com/")
    with pytest.raises(RangeError):
        Response.redirect("/", 200)


def test_fetch_response_names():
    """raise_for_status, clone, buffer and replace_body behave as Pyodide's FetchResponse."""
    Response("fine").raise_for_status()
    with pytest.raises(OSError, match="503 Server Error"):
        Response("busy", 503).raise_for_status()
    original = Response("body", headers={"x": "1"})
    copy = original.clone()
    assert text(copy) == "body" and text(original) == "body"
    assert result(Deferred.fromCoroutine(Response(b"\x00").buffer())) == b"\x00"
    assert text(Response("a", 201).replace_body("b")) == "b"
    with pytest.raises(NotImplementedError, match="FormData"):
        result(Deferred.fromCoroutine(Response("x").form_data()))


def test_request_and_headers_sdk_names():
    """Request takes redirect="follow" and cf; headers answer HTTPMessage's names."""
    request = Request("http://h/", method=HTTPMethod.POST, body="x", redirect="follow", cf={"colo": "X"})
    assert request.method == "POST"
    assert request.cf == {"colo": "X"} and request.body_used is False and request.js_object is request
    assert Request("http://h/").cf is None
    with pytest.raises(TypeError, match="manual"):
        Request("http://h/", redirect="manual")
    headers = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X", "y")])
    assert headers["x"] == "y" and headers["missing"] is None
    assert headers.get("missing", "default") == "default"
    assert headers.get_all("set-cookie") == ["a=1", "b=2"] and headers.get_all("none") is None
    assert headers.values() == ["a=1, b=2", "y"]
    assert result(Deferred.fromCoroutine(request.clone().text())) == "x"
