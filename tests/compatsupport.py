"""Running the Python Workers in tests/compat_apps in-process, as `twistd dotwist --config`
builds them (service.Options and service.makeService), on a memory reactor whose clock the test
drives."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

from twisted.internet.testing import MemoryReactorClock

from dotwist import service
from dotwist.compat import finder
from dotwist.fetch import Headers, Request, Response
from dotwist.testing import FakeConnection, connectWebSocket, result

APPS = Path(__file__).resolve().parent / "compat_apps"


def configOf(directory: Path) -> Path:
    for name in ("wrangler.jsonc", "wrangler.json", "wrangler.toml"):
        if (directory / name).exists():
            return directory / name
    raise AssertionError(f"no wrangler file in {directory}")


def copyApp(name: str, destination: Path) -> Path:
    """A copy of an app (to edit, or to run from its own directory)."""
    target = destination / name
    shutil.copytree(APPS / name, target)
    return target


class CompatApp:
    """One app loaded from its wrangler file, with its runtime on a memory reactor."""

    def __init__(self, directory: Path, *args: str, dataDir: Optional[Path] = None, start: float = 0.0) -> None:
        self.reactor = MemoryReactorClock()
        if start:
            self.reactor.advance(start)
        argv = ["--config", str(configOf(directory)), "--listen", "tcp:0", "--no-tuning"]
        argv += ["--storage", "sqlite", "--data-dir", str(dataDir)] if dataDir else ["--storage", "memory"]
        self.options = service.Options()
        self.options.parseOptions(argv + list(args))
        self.service = service.makeService(self.options, self.reactor)
        self.runtime = self.service.runtime
        self.service.startService()

    def settle(self) -> None:
        for _ in range(10):
            self.reactor.advance(0)

    def advance(self, seconds: float) -> None:
        self.reactor.advance(seconds)
        self.settle()

    def request(self, path: str, method: str = "GET", body: Any = None, headers: Any = None) -> Response:
        pending = self.runtime.fetch(
            Request(f"http://example.com{path}", method=method, body=body, headers=headers)
        )
        self.settle()
        response: Response = result(pending)
        return response

    def text(self, path: str, **kwargs: Any) -> tuple[int, str]:
        response = self.request(path, **kwargs)
        return response.status, (response.body or b"").decode("utf-8")

    def websocket(self, path: str) -> FakeConnection:
        response = self.request(path, headers=Headers({"Upgrade": "websocket"}))
        return connectWebSocket(response)

    def close(self) -> None:
        stopped = self.service.stopService()
        self.settle()
        result(stopped)
        if self.options["worker"] is not None:
            self.options["worker"].unload()


__all__ = ["APPS", "CompatApp", "copyApp", "configOf", "finder"]
