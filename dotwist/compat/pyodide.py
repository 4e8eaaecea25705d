"""``pyodide`` for Python Workers on dotwist: only ``pyodide.ffi`` (see ``pyodide_ffi``).

Published Python Workers import ``pyodide.ffi.to_js`` and sometimes check ``pyodide.__version__``.
dotwist is not Pyodide: the version says so, and other submodules (``pyodide.code``,
``pyodide.http``, ``pyodide.webloop``) raise ``ImportError`` naming what is missing.
"""

from __future__ import annotations

from typing import Any

from . import pyodide_ffi as ffi

__all__ = ["ffi"]

#: Not a Pyodide version: code that compares it with one finds no match.
__version__ = "dotwist-compat"

# A package with no directory of its own: ``pyodide.ffi`` and any other submodule are resolved by
# dotwist's import finder (dotwist.compat.finder), never looked up on disk.
__path__: list[str] = []


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    raise ImportError(
        f"pyodide.{name} is not provided by dotwist (only pyodide.ffi is); "
        "see docs/moving-from-cloudflare.md"
    )
