"""Cloudflare's value conventions where Python values meet APIs that are JavaScript's on
Cloudflare: storage keys, and arrays given as fetch bodies.

On Cloudflare, a Python Worker's values cross into JavaScript: a storage key that is not a string
is converted with JavaScript's ``String()`` (``put(3, v)`` stores the key ``"3"``, ``True`` the key
``"true"``), and a list given as a request body becomes a JavaScript array, which the runtime
either iterates (compatibility dates from 2026-02-19, ``fetch_iterable_type_support``: every
element must be bytes) or, before that, turns into text with ``String()`` (``["a", "b"]`` gives
``"a,b"``). dotwist applies the same rules to every app, since they lose nothing that dotwist kept
before (it refused these values), with one exception: a key of ``None`` is refused rather than
stored as ``"null"``.

Pure functions, no I/O.
"""

from __future__ import annotations

import math
from typing import Any

from .storage.errors import InvalidKeyError

__all__ = ["jsNumberString", "jsString", "iterableBody", "storageKey", "stringifiedBody"]


def jsNumberString(number: float) -> str:
    """``String(number)`` in JavaScript (Number::toString): ``1.0`` is ``"1"``, ``1e21`` is
    ``"1e+21"``, ``1e-7`` is ``"1e-7"``, ``0.1`` is ``"0.1"``."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    if number.is_integer() and abs(number) < 1e21:
        return str(int(number))
    # Python's repr is the shortest round-tripping form, as JavaScript's is; only the layout of
    # the exponent differs (JavaScript uses one from 1e21 up and below 1e-6).
    text = repr(number)
    sign = "-" if text.startswith("-") else ""
    text = text.lstrip("-")
    mantissa, _, exp = text.partition("e")
    digits = mantissa.replace(".", "")
    point = mantissa.index(".") if "." in mantissa else len(mantissa)
    exponent = point + (int(exp) if exp else 0)  # value = 0.digits * 10**exponent
    stripped = digits.lstrip("0")
    exponent -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    n = exponent
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{'+' if e >= 0 else '-'}{abs(e)}"


def jsString(value: Any) -> str:
    """``String(value)`` for the Python values that become JavaScript primitives or arrays:
    ``str``, ``bool``, ``int``, ``float``, ``None``, and lists and tuples of them (an array's
    ``String()`` joins its elements with ``","``, ``None`` as empty). Anything else is refused."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)  # a number, or a BigInt past 2**53: the same digits either way
    if isinstance(value, float):
        return jsNumberString(value)
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return ",".join("" if item is None else jsString(item) for item in value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ",".join(str(b) for b in bytes(value))  # a Uint8Array's String()
    raise TypeError(f"{type(value).__name__} has no JavaScript string form here")


def storageKey(key: Any) -> str:
    """A storage key as Cloudflare stores it: a string as is; a number or boolean converted with
    JavaScript's ``String()``. ``None`` and other types are refused (``InvalidKeyError``, a
    ``TypeError``)."""
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str(key)
    if key is None:
        raise InvalidKeyError(
            "storage keys are strings; None is refused (Cloudflare would store it as the key "
            '"null", which is almost never what was meant)'
        )
    if isinstance(key, (bool, int, float)):
        return jsString(key)
    raise InvalidKeyError(
        "storage keys are strings (numbers and booleans are converted as JavaScript's String() "
        f"converts them), not {type(key).__name__}"
    )


def iterableBody(body: Any) -> bytes:
    """A list or tuple body as the runtime reads it from 2026-02-19: its elements, which must be
    bytes, concatenated."""
    parts = []
    for item in body:
        if not isinstance(item, (bytes, bytearray, memoryview)):
            # Cloudflare fails the same way, when the body is read.
            raise TypeError(
                "This ReadableStream did not return bytes. (A list body is iterated: every "
                f"element must be bytes, not {type(item).__name__}; before compatibility date "
                "2026-02-19 it was joined with commas instead.)"
            )
        parts.append(bytes(item))
    return b"".join(parts)


def stringifiedBody(body: Any) -> bytes:
    """A list or tuple body as the runtime read it before 2026-02-19: ``String(array)``."""
    return jsString(list(body)).encode("utf-8")
