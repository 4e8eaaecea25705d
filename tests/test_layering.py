"""The layering rule and the no-side-effects rule, checked in fresh interpreters.

The core (Durable Object semantics, storage, the gates, the lifecycle) imports no reactor and no
HTTP or WebSocket machinery: it runs on any injected clock and is driven by thin glue. Importing
any dotwist module changes nothing outside dotwist: Autobahn, the garbage collector, the
open-file limit and the reactor are as they were.
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys
import textwrap

import dotwist

CORE = [
    "dotwist.alarms",
    "dotwist.config",
    "dotwist.context",
    "dotwist.durable_storage",
    "dotwist.errors",
    "dotwist.fetch",
    "dotwist.gates",
    "dotwist.handlers",
    "dotwist.hibernation",
    "dotwist.ids",
    "dotwist.lifecycle",
    "dotwist.objects",
    "dotwist.placement",
    "dotwist.registry",
    "dotwist.rpc",
    "dotwist.storage",
    "dotwist.stubs",
    "dotwist.websocket",
    "dotwist.worker",
]

GLUE = [
    "dotwist", "dotwist.service", "dotwist.tap", "dotwist.testing", "dotwist.testing.pytest_plugin",
    "dotwist.testing.tcp", "dotwist._tuning", "dotwist.wrangler",
]
# Klein imports the global reactor when it is imported (klein/_app.py), so ``dotwist.server``, which
# serves HTTP through Klein, does too: a program chooses its reactor before importing it.
KLEIN = ["dotwist.server"]

FORBIDDEN_IN_CORE = ("twisted.internet.reactor", "twisted.web", "klein", "autobahn", "treq", "werkzeug")


def run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_modules_import_no_reactor_and_no_web_code():
    """Importing every core module loads no reactor, no twisted.web, Klein, Autobahn or treq."""
    loaded = run(
        f"""
        import importlib, json, sys
        for name in {CORE!r}:
            importlib.import_module(name)
        bad = sorted(m for m in sys.modules if m.startswith({FORBIDDEN_IN_CORE!r}))
        print(json.dumps(bad))
        """
    )
    assert loaded == []


def test_importing_dotwist_changes_nothing_outside_it():
    """After importing every dotwist module: Autobahn's module globals are the same objects,
    ``str(Timings())`` works, the GC's thresholds and freeze and the open-file limit are as
    they were, and no reactor was installed (until ``dotwist.server`` imports Klein)."""
    result = run(
        f"""
        import gc, importlib, json, resource, sys
        import autobahn.twisted.websocket as tw
        import autobahn.websocket.protocol as protocol
        def snapshot():
            return {{
                "protocol": {{k: id(v) for k, v in vars(protocol).items()}},
                "tw": {{k: id(v) for k, v in vars(tw).items()}},
                "gc": [list(gc.get_threshold()), gc.get_freeze_count()],
                "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            }}
        before = snapshot()
        for name in {sorted(set(CORE + GLUE))!r}:
            importlib.import_module(name)
        reactor = "twisted.internet.reactor" in sys.modules
        for name in {KLEIN!r}:
            importlib.import_module(name)
        after = snapshot()
        timings = str(protocol.Timings())
        print(json.dumps({{
            "same": before == after,
            "diff": [k for k in before if before[k] != after[k]],
            "timings": isinstance(timings, str),
            "reactor": reactor,
        }}))
        """
    )
    assert result == {"same": True, "diff": [], "timings": True, "reactor": False}


def test_plain_autobahn_server_and_client_work_beside_dotwist():
    """A plain Autobahn server and client in the same process as dotwist (its server, glue and
    service imported) talk as without it: a message echoes and the close is clean."""
    result = run(
        """
        import json
        import dotwist.server, dotwist.service, dotwist.tap  # noqa: F401
        from autobahn.twisted.websocket import (
            WebSocketClientFactory, WebSocketClientProtocol, WebSocketServerFactory,
            WebSocketServerProtocol,
        )
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

        got = {}

        class Echo(WebSocketServerProtocol):
            def onMessage(self, payload, isBinary):
                self.sendMessage(payload, isBinary)

        class Client(WebSocketClientProtocol):
            def onOpen(self):
                self.sendMessage(b"hello autobahn")
            def onMessage(self, payload, isBinary):
                got["echo"] = payload.decode()
                self.sendClose(1000)
            def onClose(self, wasClean, code, reason):
                got["close"] = [wasClean, code]
                reactor.stop()

        server = WebSocketServerFactory()
        server.protocol = Echo
        def listening(port):
            client = WebSocketClientFactory(f"ws://127.0.0.1:{port.getHost().port}")
            client.protocol = Client
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(client)
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server).addCallback(listening)
        reactor.callLater(30, reactor.stop)
        reactor.run()
        print(json.dumps(got))
        """
    )
    assert result == {"echo": "hello autobahn", "close": [True, 1000]}


# Private names of other libraries that dotwist uses on purpose, each for a reason given here and in
# the module that uses it. Anything else private that a module reaches is a test failure.
ALLOWED_FOREIGN_PRIVATES = {
    # asyncio's hooks for event loop and task implementations (asyncio.events lists the first two in
    # its __all__): the eager first step of a handler runs inside its task (dotwist.handlers), and
    # a test clock's loop runs callbacks as the running loop (dotwist.testing.clock).
    "_enter_task", "_leave_task", "_get_running_loop", "_set_running_loop",
    # asyncio's protocol for a future yielded to a task from a generator (dotwist.handlers).
    "_asyncio_future_blocking",
    # Autobahn's own classification of TLS errors, so that dotwist's protocol reports them as
    # Autobahn's does (dotwist._autobahn).
    "_is_tls_error", "_maybe_tls_reason",
    # Reactor internals used by the process tuning that `twistd dotwist` applies at start, behind
    # --no-tuning and logged (dotwist._tuning: event dispatch without a logging context per event).
    "_poller", "_selectables", "_doReadOrWrite", "_asyncioEventloop", "_readOrWrite", "_readers",
    "_writers",
}


def privateNamesReached(root: pathlib.Path) -> list[str]:
    """Every place where a module of ``root`` uses a private name that it does not define itself:
    ``something._name`` (other than on ``self`` or ``cls``) and ``from x import _name``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        own: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Attribute):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    names = [node.attr]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [alias.name for alias in node.names]
            for name in names:
                private = name.startswith("_") and not name.startswith("__")
                if private and name not in own and name not in ALLOWED_FOREIGN_PRIVATES:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {name}")
    return found


def test_no_module_reaches_into_another_modules_private_names():
    root = pathlib.Path(dotwist.__file__).parent
    assert privateNamesReached(root) == []


def test_the_private_names_check_finds_a_reach(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("class A:\n    def __init__(self):\n        self._state = 1\n")
    (package / "b.py").write_text(
        "from asyncio.base_events import _format_handle\n"
        "def peek(a):\n    return a._state\n"
        "def poke(a):\n    a._other = 2\n"
    )
    assert privateNamesReached(package) == [
        "pkg/b.py:1: _format_handle", "pkg/b.py:3: _state", "pkg/b.py:5: _other"
    ]
