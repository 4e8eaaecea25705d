"""Making ``workers``, ``js`` and ``pyodide`` importable, for apps loaded in compatibility mode.

Cloudflare's Python Workers import ``workers`` (Cloudflare's SDK, which on PyPI is
``workers-runtime-sdk``), ``js`` and ``pyodide`` (Pyodide's). Those top-level names belong to
other projects on PyPI (a thread-pool library is called ``workers``; Fanstatic installs a ``js``
namespace; ``pyodide-py`` is Pyodide's own), so dotwist installs none of them. Instead,
:func:`install` appends an import finder to ``sys.meta_path``, after Python's own finders, that
answers for these names only:

- ``workers``, ``js``, ``pyodide`` and ``pyodide.ffi`` import ``dotwist.compat.workers``,
  ``dotwist.compat.js``, ``dotwist.compat.pyodide`` and ``dotwist.compat.pyodide_ffi`` (the same
  module objects: ``sys.modules["workers"] is dotwist.compat.workers``);
- any other submodule (``workers.asgi``, ``pyodide.http``) fails with an ``ImportError`` that says
  dotwist does not provide it.

Being last, the finder never hides a real module of the same name; and since code written for
Cloudflare would then get that module instead of the SDK's names, :func:`install` refuses to
start (``CompatibilityModeError``, naming the distribution or file) when one is installed.
``dotwist.compat.loader`` calls :func:`install` when it loads a Worker from a Wrangler file;
``import dotwist`` never does. :func:`uninstall` takes it all back (for tests).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import os
import sys
import types
from typing import Optional, Sequence

from ..errors import ConfigError

__all__ = ["ALIASES", "CompatibilityModeError", "TOP_LEVEL", "install", "installed", "uninstall"]

#: Importable name -> the dotwist module it is.
ALIASES = {
    "workers": "dotwist.compat.workers",
    "js": "dotwist.compat.js",
    "pyodide": "dotwist.compat.pyodide",
    "pyodide.ffi": "dotwist.compat.pyodide_ffi",
}

#: The top-level names the finder answers for.
TOP_LEVEL = ("workers", "js", "pyodide")


class CompatibilityModeError(ConfigError):
    """The compatibility names cannot be provided in this Python environment."""


class _Alias(importlib.abc.Loader):
    """Loads a name as an existing dotwist module: the module replaces itself in ``sys.modules``
    (which the import system reads back after ``exec_module``), so one module has two names."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        sys.modules[module.__name__] = importlib.import_module(self.target)


class _Missing(importlib.abc.Loader):
    def __init__(self, name: str) -> None:
        self.name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        top = self.name.partition(".")[0]
        provided = ", ".join(n for n in ALIASES if n.partition(".")[0] == top)
        raise ModuleNotFoundError(
            f"{self.name} is not provided by dotwist's compatibility mode (of {top}, it provides: "
            f"{provided}); see docs/moving-from-cloudflare.md",
            name=self.name,
        )


class CompatFinder(importlib.abc.MetaPathFinder):
    """Answers for ``workers``, ``js``, ``pyodide`` and their submodules; nothing else."""

    def find_spec(
        self,
        fullname: str,
        path: Optional[Sequence[str]] = None,
        target: Optional[types.ModuleType] = None,
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname.partition(".")[0] not in TOP_LEVEL:
            return None
        target_ = ALIASES.get(fullname)
        loader: importlib.abc.Loader = _Alias(target_) if target_ is not None else _Missing(fullname)
        return importlib.machinery.ModuleSpec(fullname, loader)

    def __repr__(self) -> str:
        return "<dotwist compatibility finder: workers, js, pyodide>"


_FINDER = CompatFinder()


def installed() -> bool:
    return _FINDER in sys.meta_path


def _ours(module: object) -> bool:
    return getattr(module, "__name__", "").startswith("dotwist.compat.")


def conflicts() -> list[str]:
    """One line per compatibility name that something else in this Python environment provides."""
    found = []
    for name in TOP_LEVEL:
        module = sys.modules.get(name)
        if module is not None and not _ours(module):
            where = getattr(module, "__file__", None) or repr(module)
            found.append(f"the module {name!r} is already imported from {where}")
            continue
        spec = None
        for finder in sys.meta_path:
            if finder is _FINDER or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(name, None)
            except (ImportError, ValueError):
                spec = None
            if spec is not None:
                break
        if spec is None:
            continue
        distributions = importlib.metadata.packages_distributions().get(name, [])
        origin = spec.origin if spec.origin not in (None, "namespace") else (
            os.pathsep.join(spec.submodule_search_locations or []) or "an unknown place"
        )
        owner = (
            "the installed distribution " + " and ".join(repr(d) for d in sorted(set(distributions)))
            if distributions
            else "a module"
        )
        found.append(f"{owner} provides the top-level module {name!r} ({origin})")
    return found


def install() -> None:
    """Make ``workers``, ``js`` and ``pyodide`` importable (idempotent); refuse if another
    module of one of these names is installed or imported."""
    if installed():
        return
    problems = conflicts()
    if problems:
        raise CompatibilityModeError(
            "cannot run Cloudflare Python Workers here: "
            + "; ".join(problems)
            + ". Code written for Cloudflare imports these names from Cloudflare's SDK and "
            "Pyodide, and dotwist provides them only where nothing else does: uninstall it, or "
            "run the Worker in a virtual environment without it"
        )
    sys.meta_path.append(_FINDER)


def uninstall() -> None:
    """Remove the finder and forget the modules imported through it (for tests)."""
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in list(sys.modules):
        if name.partition(".")[0] in TOP_LEVEL and _ours(sys.modules[name]):
            del sys.modules[name]
