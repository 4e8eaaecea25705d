"""dotwist's pytest plugin: a ``dotwist`` fixture that runs your app for one test.

Installed with dotwist (the ``pytest11`` entry point ``dotwist``), so a test file needs no import
to use it::

    async def test_counts(dotwist):
        counter = dotwist.env.COUNTER.getByName("a")
        assert await counter.increment() == 1

The app comes from, in this order: the ``dotwist_app`` fixture if you override it (return an
``App``); else ``@pytest.mark.dotwist(app="module:attribute")`` on the test, its class or its
module (``pytestmark``); else the ``dotwist_app`` ini option (``dotwist_app = myapp`` in
``pytest.ini``, ``[tool.pytest.ini_options]`` or ``[tool:pytest]``).

How it runs comes from the same marker (``transport``, ``storage``, ``limits``, ``start``,
``realTime``, ``seed``, ``compatibility``), the ``dotwist_transport`` and ``dotwist_storage`` ini options, or the
``dotwist_transport`` and ``dotwist_storage`` fixtures, which a test can parametrize to run both
ways: ``@pytest.mark.parametrize("dotwist_transport", ["memory", "tcp"])``.

``async def`` tests that use the ``dotwist`` fixture are run by this plugin: in-process, on the
test's clock, with nothing waited for in real time (a test that waits for what only time would
bring fails with ``NotReady``); over a real port (``transport="tcp"``), on the reactor of
pytest-twisted, which must be installed. Plain ``def`` tests work in-process, with
``dotwist.run(...)``.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterator, Optional

import pytest

from ..errors import ConfigError
from ..worker import App, loadApp
from .harness import Harness

_MARKER = "dotwist"
_OPTIONS = {"app", "transport", "storage", "limits", "start", "realTime", "seed", "compatibility"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("dotwist_app", "the app the dotwist fixture runs: module (its app) or module:attribute")
    parser.addini("dotwist_transport", 'how tests reach the app: "memory" (in-process, the default) or "tcp"')
    parser.addini("dotwist_storage", 'where the app\'s objects store: "memory" (the default) or "sqlite"')


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dotwist(app=None, transport=None, storage=None, limits=None, start=None, realTime=False, "
        "seed=0, compatibility=None): how the dotwist fixture runs the app for these tests (docs/testing.md)",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``dotwist`` markers' options, the closest marker winning."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(_MARKER))):
        if marker.args:
            raise pytest.UsageError("@pytest.mark.dotwist takes keyword arguments only")
        unknown = set(marker.kwargs) - _OPTIONS
        if unknown:
            raise pytest.UsageError(
                f"@pytest.mark.dotwist: unknown option(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(_OPTIONS))})"
            )
        options.update(marker.kwargs)
    return options


def _chosen(request: pytest.FixtureRequest, name: str, ini: str, default: str) -> str:
    value = _options(request).get(name) or request.config.getini(ini) or default
    return str(value)


@pytest.fixture
def dotwist_app(request: pytest.FixtureRequest) -> App:
    """The app under test: from ``@pytest.mark.dotwist(app=...)`` or the ``dotwist_app`` ini
    option. Override this fixture to build it yourself."""
    spec = _options(request).get("app") or request.config.getini("dotwist_app")
    if isinstance(spec, App):
        return spec
    if not spec:
        raise pytest.UsageError(
            "The dotwist fixture has no app to run: set `dotwist_app = yourmodule` in your pytest "
            "configuration, mark the test with @pytest.mark.dotwist(app=\"yourmodule:app\"), or "
            "override the dotwist_app fixture."
        )
    try:
        return loadApp(str(spec))
    except ConfigError as e:
        raise pytest.UsageError(
            f"The dotwist fixture could not load its app: {e} (is the app's directory on "
            "sys.path? `pythonpath = .` in the pytest configuration puts the rootdir there)"
        ) from None


@pytest.fixture
def dotwist_transport(request: pytest.FixtureRequest) -> str:
    """``"memory"`` (in-process) or ``"tcp"`` (a real port); parametrize it to run both."""
    return _chosen(request, "transport", "dotwist_transport", "memory")


@pytest.fixture
def dotwist_storage(request: pytest.FixtureRequest) -> str:
    """``"memory"`` or ``"sqlite"`` (a data directory under the test's ``tmp_path``)."""
    return _chosen(request, "storage", "dotwist_storage", "memory")


@pytest.fixture
def dotwist(
    request: pytest.FixtureRequest, dotwist_app: App, dotwist_transport: str, dotwist_storage: str
) -> Iterator[Harness]:
    """Your app, running for this test alone: a ``dotwist.testing.Harness`` (``env``,
    ``clock``, ``SELF``, ``fetch``, ``webSocket``, ``run``, ``restart``), closed afterwards."""
    options = _options(request)
    dataDir = None
    if dotwist_storage == "sqlite":
        dataDir = request.getfixturevalue("tmp_path") / "dotwist-data"
    if dotwist_transport == "tcp":
        _needReactor(request)
    harness = Harness(
        dotwist_app,
        transport=dotwist_transport,  # type: ignore[arg-type]  # checked by Harness
        storage=dotwist_storage,  # type: ignore[arg-type]
        dataDir=dataDir,
        limits=options.get("limits"),
        start=options.get("start"),
        realTime=bool(options.get("realTime", False)),
        seed=int(options.get("seed", 0)),
        compatibility=options.get("compatibility"),
    )
    yield harness
    closed = harness.close()
    if dotwist_transport == "tcp":
        _blockOn(closed)
    else:
        closed.addErrback(lambda _: None)  # in-process, closing waits for nothing


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Optional[bool]:
    """Run ``async def`` tests that use the ``dotwist`` fixture."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    harness = pyfuncitem.funcargs.get("dotwist")
    if not isinstance(harness, Harness):
        return None
    names = inspect.signature(function).parameters
    coroutine = function(**{name: pyfuncitem.funcargs[name] for name in names if name in pyfuncitem.funcargs})
    if harness.transport == "memory":
        harness.runTest(coroutine)
    else:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred

        done: Deferred[Any] = Deferred()
        # Started from the reactor, so that the test runs on its loop.
        reactor.callLater(0, lambda: harness.start(coroutine).chainDeferred(done))
        _blockOn(done)
    return True


def _needReactor(request: pytest.FixtureRequest) -> None:
    if not request.config.pluginmanager.hasplugin("twisted"):
        raise pytest.UsageError(
            'transport="tcp" serves the app on a real port, which needs a running reactor: '
            "install pytest-twisted (its plugin runs the reactor), or test in-process"
        )


def _blockOn(d: Any) -> Any:
    import pytest_twisted  # type: ignore[import-untyped]  # no type information

    return pytest_twisted.blockon(d)
