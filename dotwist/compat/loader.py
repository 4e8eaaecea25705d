"""Loading a Python Worker the way Cloudflare does, from its Wrangler configuration.

:func:`loadWorker` takes a checked :class:`dotwist.wrangler.WranglerConfig` and gives a
:class:`LoadedWorker`: the ``dotwist.App`` it describes. It installs the compatibility names
(``dotwist.compat.finder``), imports ``main`` as Cloudflare does (its directory first on the module
path, so ``src/entry.py`` imports its neighbours as top-level modules), and finds:

- the Worker: the class named ``Default`` (a ``WorkerEntrypoint`` subclass), or else the one
  ``WorkerEntrypoint`` subclass ``main`` defines; with compatibility dates before 2025-08-14 (or
  ``disable_python_no_global_handlers``), top-level ``on_fetch``/``on_scheduled`` functions also
  make a Worker, as they did on Cloudflare;
- each ``durable_objects.bindings[].class_name``: a ``DurableObject`` subclass in ``main``;
- each ``services[].entrypoint`` of this Worker: a ``WorkerEntrypoint`` subclass in ``main``;
- a ``scheduled`` handler when ``triggers.crons`` is set.

Every mistake is refused with the file and the key named, all in one
:class:`dotwist.wrangler.WranglerConfigError`, and nothing is half loaded.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ..objects import DurableObject
from ..relaxed import callRelaxed
from ..worker import App, Env, WorkerEntrypoint
from ..wrangler import WranglerConfig, WranglerConfigError
from . import finder
from .workers import IMPORT_ENV

__all__ = ["LoadedWorker", "loadWorker"]


@dataclass
class LoadedWorker:
    """A Worker loaded from its configuration: ``app`` to serve, and what loading it changed in
    this process (``unload()`` takes it back, for tests that load several)."""

    app: App
    module: types.ModuleType
    config: WranglerConfig
    addedPath: Optional[str] = None
    addedModules: list[str] = field(default_factory=list)

    def unload(self) -> None:
        """Forget the modules imported from the Worker's directory and its path entry. The
        compatibility names stay installed (``dotwist.compat.finder.uninstall`` removes them)."""
        for name in self.addedModules:
            sys.modules.pop(name, None)
        if self.addedPath is not None:
            try:
                sys.path.remove(self.addedPath)
            except ValueError:
                pass


def _prefix(config: WranglerConfig) -> str:
    # Bindings are not inherited by environments: with one selected, they are its own keys.
    return f"env.{config.environment}." if config.environment else ""


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" ({last.filename}:{last.lineno})"


def _underRoot(module: types.ModuleType, root: str) -> bool:
    path = getattr(module, "__file__", None)
    if not path:
        return False
    try:
        return os.path.commonpath([os.path.abspath(path), root]) == root
    except ValueError:
        return False


class _GlobalHandlers(WorkerEntrypoint):
    """A Worker made of a module's top-level ``on_fetch``/``on_scheduled`` (Cloudflare's Python
    Workers before ``python_no_global_handlers``): each called relaxed with
    ``(request_or_controller, env, ctx)``."""

    module: types.ModuleType

    async def fetch(self, request: Any) -> Any:
        result = callRelaxed(getattr(self.module, "on_fetch"), request, self.env, self.ctx)
        while hasattr(result, "__await__"):
            result = await result
        return result

    async def scheduled(self, controller: Any, env: Any, ctx: Any) -> Any:
        result = callRelaxed(getattr(self.module, "on_scheduled"), controller, env, ctx)
        while hasattr(result, "__await__"):
            result = await result
        return result


def loadWorker(config: WranglerConfig, vars: Optional[Mapping[str, Any]] = None) -> LoadedWorker:
    """Import the Worker ``config`` describes and bind its classes; ``vars`` override or add
    plain values (the command line's ``--var``). Raises ``WranglerConfigError`` (every problem,
    each naming the file and the key) or ``dotwist.compat.finder.CompatibilityModeError``."""
    finder.install()
    label = config.path
    problems: list[str] = []
    name = config.mainModule
    root = os.path.abspath(config.moduleRoot)
    existing = sys.modules.get(name)
    if existing is not None and not (
        getattr(existing, "__file__", None)
        and os.path.abspath(existing.__file__ or "") == os.path.abspath(config.mainPath)
    ):
        where = getattr(existing, "__file__", None) or "a built-in module"
        raise WranglerConfigError(
            [f"{label}: main: {config.main} would be imported as {name!r}, but a module of that "
             f"name is already imported from {where}; rename {config.main}"]
        )
    before = set(sys.modules)
    addedPath = None
    if root not in sys.path:
        sys.path.insert(0, root)
        addedPath = root
    values: dict[str, Any] = config.envBindings()
    values.update(vars or {})
    token = IMPORT_ENV.set(Env(values))
    try:
        module = importlib.import_module(name)
    except BaseException as e:
        for added in set(sys.modules) - before:
            if _underRoot(sys.modules[added], root):
                del sys.modules[added]
        if addedPath is not None:
            sys.path.remove(addedPath)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise WranglerConfigError(
            [f"{label}: main: importing {config.main} failed: {type(e).__name__}: {e}{_where(e)}"]
        ) from e
    finally:
        IMPORT_ENV.reset(token)
    loaded = LoadedWorker(
        app=None,  # type: ignore[arg-type]  # set below, once everything is checked
        module=module,
        config=config,
        addedPath=addedPath,
        addedModules=[n for n in set(sys.modules) - before if _underRoot(sys.modules[n], root)],
    )
    try:
        loaded.app = _bind(config, module, values, problems)
    except WranglerConfigError:
        loaded.unload()
        raise
    return loaded


def _classIn(module: types.ModuleType, name: str) -> Any:
    return getattr(module, name, None)


def _findWorker(config: WranglerConfig, module: types.ModuleType, problems: list[str]) -> Optional[type]:
    label = config.path
    default = _classIn(module, "Default")
    if default is not None:
        if isinstance(default, type) and issubclass(default, WorkerEntrypoint):
            return default
        problems.append(
            f"{label}: main: Default in {config.main} is {type(default).__name__}, not a "
            "WorkerEntrypoint subclass (class Default(WorkerEntrypoint): ...)"
        )
        return None
    mine = [
        value for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, WorkerEntrypoint)
        and value is not WorkerEntrypoint and value.__module__ == module.__name__
        and not value.__name__.startswith("_")
    ]
    if len(mine) == 1:
        return mine[0]
    if not mine and not config.compatibility.isEnabled("python_no_global_handlers") and (
        callable(getattr(module, "on_fetch", None)) or callable(getattr(module, "on_scheduled", None))
    ):
        return type("Default", (_GlobalHandlers,), {"module": module, "__module__": module.__name__})
    if len(mine) > 1:
        problems.append(
            f"{label}: main: {config.main} defines several WorkerEntrypoint classes "
            f"({', '.join(sorted(c.__name__ for c in mine))}) and none is named Default, the Worker"
        )
    else:
        problems.append(
            f"{label}: main: {config.main} defines no Worker: add class Default(WorkerEntrypoint) "
            "with an async def fetch(self, request)"
            + (
                " (top-level on_fetch handlers need a compatibility date before 2025-08-14 or the "
                "disable_python_no_global_handlers flag)"
                if callable(getattr(module, "on_fetch", None)) else ""
            )
        )
    return None


def _bind(
    config: WranglerConfig, module: types.ModuleType, values: Mapping[str, Any], problems: list[str]
) -> App:
    label = config.path
    prefix = _prefix(config)
    worker = _findWorker(config, module, problems)
    durableObjects: dict[str, type] = {}
    for i, binding in enumerate(config.durableObjects):
        at = f"{label}: {prefix}durable_objects.bindings[{i}].class_name"
        cls = _classIn(module, binding.className)
        if cls is None:
            problems.append(f"{at}: {config.main} defines no class {binding.className}")
        elif not (isinstance(cls, type) and issubclass(cls, DurableObject)):
            problems.append(
                f"{at}: {binding.className} in {config.main} is not a DurableObject subclass "
                "(class " + binding.className + "(DurableObject): ...)"
            )
        else:
            durableObjects[binding.name] = cls
    services: dict[str, type] = {}
    for service in config.services:
        cls = _classIn(module, service.entrypoint)
        if isinstance(cls, type) and issubclass(cls, WorkerEntrypoint):
            services[service.name] = cls
        elif service.entrypoint == "Default" and worker is not None:
            services[service.name] = worker
        else:
            problems.append(
                f"{label}: {prefix}services: binding {service.name}: {config.main} has no "
                f"WorkerEntrypoint class {service.entrypoint}"
            )
    if config.crons and worker is not None and not callable(getattr(worker, "scheduled", None)):
        problems.append(
            f"{label}: triggers.crons: the Worker {worker.__name__} has no scheduled() handler "
            "(async def scheduled(self, controller, env, ctx))"
        )
    if problems or worker is None:
        raise WranglerConfigError(problems)
    return App(worker, durableObjects=durableObjects, vars=values, services=services)
