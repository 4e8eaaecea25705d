"""The compatibility names: `workers`, `js` and `pyodide` are dotwist's own objects under
Cloudflare's and Pyodide's names, importable only once installed, never hiding a real module."""

import json
import re
import sys
import uuid

import pytest
from twisted.internet.defer import Deferred

import dotwist
from dotwist.compat import finder
from dotwist.testing import makeRuntime, result


@pytest.fixture
def names():
    """The compatibility names installed for one test, and removed after it."""
    finder.install()
    yield
    finder.uninstall()


def test_names_are_not_importable_until_installed():
    """`import dotwist` installs nothing: `workers` is not importable until compatibility mode
    is on, and uninstall() takes it away again."""
    finder.uninstall()
    with pytest.raises(ImportError):
        import workers  # noqa: F401
    finder.install()
    import workers

    assert workers is sys.modules["dotwist.compat.workers"]
    finder.uninstall()
    assert "workers" not in sys.modules and not finder.installed()


def test_workers_names_are_dotwists_own(names):
    """The SDK's classes are dotwist's classes: one implementation."""
    import workers

    assert workers.WorkerEntrypoint is dotwist.WorkerEntrypoint
    assert workers.DurableObject is dotwist.DurableObject
    assert workers.Response is workers.FetchResponse is dotwist.Response
    assert workers.Request is dotwist.Request and workers.Headers is dotwist.Headers
    assert workers.handler(len) is len
    assert workers.python_to_rpc({"a": (1,)}) == {"a": (1,)}


@pytest.mark.parametrize(
    "statement,message",
    [
        ("from workers import WorkflowEntrypoint", "has no Workflows"),
        ("from workers import FormData", "has no FormData"),
        ("from workers import Nonsense", "not a name of Cloudflare's Python SDK"),
        ("import workers.asgi", "workers.asgi is not provided"),
        ("from js import setTimeout", "'setTimeout' is not provided"),
        ("from pyodide.ffi import JsArray", "pyodide.ffi.JsArray is not provided"),
        ("from pyodide.http import pyfetch", "pyodide.http is not provided"),
    ],
)
def test_missing_names_say_what_is_missing(names, statement, message):
    """Anything unsupported fails at import with an ImportError naming it."""
    with pytest.raises(ImportError, match=re.escape(message)):
        exec(statement, {})


def test_module_env_and_wait_until_follow_the_running_worker(names, clock):
    """workers.env is the running Worker's env; waitUntil extends the running request;
    patch_env overrides values for a block; outside a Worker both say where they work."""
    import workers

    seen = []

    class Worker(dotwist.WorkerEntrypoint):
        async def fetch(self, request):
            done = Deferred()
            workers.waitUntil(done)
            seen.append(workers.env.NAME)
            with workers.patch_env(NAME="patched"):
                seen.append(workers.env.NAME)
            seen.append(workers.import_from_javascript("cloudflare:workers").env.NAME)
            done.callback(None)
            return dotwist.Response("ok")

    runtime = makeRuntime(dotwist.App(Worker, vars={"NAME": "real"}), clock=clock)
    result(runtime.fetch(dotwist.Request("http://h/")))
    assert seen == ["real", "patched", "real"]
    with pytest.raises(RuntimeError, match="only available while a Worker"):
        workers.env.NAME
    with pytest.raises(RuntimeError, match="only available while a Worker"):
        workers.waitUntil(Deferred())
    with pytest.raises(ImportError, match="cloudflare:sockets"):
        workers.import_from_javascript("cloudflare:sockets")


def test_pyodide_ffi_is_identity_like(names):
    """to_js, to_py, create_proxy give back what they get; run_sync is refused by name."""
    import pyodide
    from pyodide.ffi import create_proxy, to_js, to_py, run_sync

    value = {"a": [1, 2]}
    assert to_js(value, dict_converter=dict) is value and to_py(value) is value
    assert create_proxy(len) is len
    assert pyodide.__version__ == "dotwist-compat"
    with pytest.raises(NotImplementedError, match="run_sync"):
        run_sync(None)


def test_js_globals(names, capsys):
    """The js stand-ins behave as the JavaScript globals published Python Workers use."""
    from js import JSON, URL, Array, Date, Object, Response, WebSocketPair, console, crypto

    pair = WebSocketPair.new()
    client, server = pair.object_values()
    assert (client, server) == (pair.client, pair.server) == tuple(Object.values(pair))
    first, second = WebSocketPair.new()
    assert first is not second
    with pytest.raises(TypeError, match="without 'new'"):
        WebSocketPair()
    assert JSON.stringify({"a": [1, "é"]}) == '{"a":[1,"é"]}' and JSON.parse("[1]") == [1]
    url = URL.new("https://user@example.com:8443/a/b?x=1&x=2#top")
    assert (url.pathname, url.host, url.origin, url.hash) == ("/a/b", "example.com:8443",
                                                               "https://example.com:8443", "#top")
    assert url.searchParams.getAll("x") == ["1", "2"] and url.searchParams.get("y") is None
    assert Date.new(0).toISOString() == "1970-01-01T00:00:00.000Z"
    assert isinstance(Date.now(), float)
    assert Array["from"]((1, 2)) == [1, 2] and getattr(Array, "from")("ab") == ["a", "b"]
    assert Object.fromEntries([["a", 1]]) == {"a": 1} and Object.keys({"k": 0}) == ["k"]
    uuid.UUID(crypto.randomUUID())
    console.log("hello", 1)
    assert capsys.readouterr().out == "hello 1\n"
    response = Response.new("body", status=201, headers={"x": "y"})
    assert (response.status, response.headers.get("x")) == (201, "y")
    assert Response.new("b", {"statusText": "Fine"}).statusText == "Fine"
    assert json.loads(Response.json({"n": 1}).body) == {"n": 1}


def test_js_date_now_uses_the_runtimes_clock(names, clock):
    """Inside a Worker, Date.now() is the runtime's clock (deterministic under a test clock)."""
    from js import Date

    class Worker(dotwist.WorkerEntrypoint):
        async def fetch(self, request):
            return dotwist.Response(str(Date.now()))

    clock.advance(12.3456)
    runtime = makeRuntime(dotwist.App(Worker), clock=clock)
    assert result(runtime.fetch(dotwist.Request("http://h/"))).body == b"12345.0"


def test_a_real_module_of_the_same_name_wins_and_is_refused(tmp_path, monkeypatch):
    """The finder comes after Python's own, so a real `js` module on the path is what `import
    js` finds; and install() refuses to start while one exists, naming it, and naming its
    distribution when one provides it."""
    finder.uninstall()
    (tmp_path / "js.py").write_text("REAL = True\n")
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "__init__.py").write_text("")
    info = tmp_path / "workers-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: workers\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("workers\n")
    (info / "RECORD").write_text("workers/__init__.py,,\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(finder.CompatibilityModeError) as refused:
        finder.install()
    message = str(refused.value)
    assert "the installed distribution 'workers' provides the top-level module 'workers'" in message
    assert f"a module provides the top-level module 'js' ({tmp_path / 'js.py'})" in message
    assert not finder.installed()
    monkeypatch.setattr(finder, "conflicts", lambda: [])
    finder.install()
    try:
        import js

        assert js.REAL is True
    finally:
        sys.modules.pop("js", None)
        sys.modules.pop("workers", None)
        finder.uninstall()
