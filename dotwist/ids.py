"""Durable Object IDs: minting, parsing and checking them against their namespace.

An ID is 32 bytes shown as 64 lowercase hex digits: 16 bytes that identify the object, then the
first 16 bytes of an HMAC-SHA256 of those bytes under the namespace's key. The MAC lets
``idFromString`` refuse, with a clear error, an ID that was mistyped or minted by another namespace,
without any lookup (the same layout as workerd's). Named IDs derive their 16 bytes from the name, so
``idFromName`` gives the same ID on every process that shares the namespace key; unique IDs are
random.

The namespace key comes from the namespace's name and a deployment secret. A deployment that keeps
its secret keeps its IDs valid across restarts and machines.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Optional

BASE_LENGTH = 16
MAC_LENGTH = 16
HEX_LENGTH = 2 * (BASE_LENGTH + MAC_LENGTH)

DEFAULT_SECRET = b"dotwist-default-namespace-secret"


class IdMinter:
    """Mints and checks the IDs of one namespace. Pure computation, no I/O.

    ``idKey`` names the key IDs are minted under: by default the namespace's own name. A class
    renamed by a migration keeps the key it was created under (``dotwist.migrations``), so its
    stored objects keep their IDs.
    """

    def __init__(self, namespace: str, secret: bytes = DEFAULT_SECRET, idKey: Optional[str] = None) -> None:
        self.namespace = namespace
        self.idKey = idKey if idKey is not None else namespace
        self._key = hashlib.sha256(
            b"dotwist-namespace-key-v1\x00" + secret + b"\x00" + self.idKey.encode("utf-8")
        ).digest()
        # Apps ask for the same names again and again (the seed: "foo" on every request); two
        # HMACs per call show in profiles. IDs are immutable, so a bounded cache is safe.
        self._named: dict[str, DurableObjectId] = {}

    def _mac(self, base: bytes) -> bytes:
        return hmac.new(self._key, base, hashlib.sha256).digest()[:MAC_LENGTH]

    def _make(self, base: bytes, name: Optional[str]) -> DurableObjectId:
        return DurableObjectId((base + self._mac(base)).hex(), name, self.namespace)

    def fromName(self, name: str) -> DurableObjectId:
        if not isinstance(name, str):
            raise TypeError(f"idFromName() expects a string name, not {type(name).__name__}")
        found = self._named.get(name)
        if found is not None:
            return found
        base = hmac.new(self._key, b"name\x00" + name.encode("utf-8"), hashlib.sha256).digest()
        made = self._make(base[:BASE_LENGTH], name)
        if len(self._named) >= 4096:
            self._named.clear()
        self._named[name] = made
        return made

    def unique(self) -> DurableObjectId:
        return self._make(os.urandom(BASE_LENGTH), None)

    def fromString(self, text: str) -> DurableObjectId:
        if not isinstance(text, str) or len(text) != HEX_LENGTH:
            raise TypeError("Invalid Durable Object ID: must be 64 hex digits")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise TypeError("Invalid Durable Object ID: must be 64 hex digits") from None
        base, mac = raw[:BASE_LENGTH], raw[BASE_LENGTH:]
        if not hmac.compare_digest(mac, self._mac(base)):
            raise TypeError("Durable Object ID is not valid for this namespace.")
        return DurableObjectId(raw.hex(), None, self.namespace)


class DurableObjectId:
    """The identity of one Durable Object: ``toString()``, ``equals()``, and ``name`` if named."""

    __slots__ = ("_hex", "name", "namespace")

    def __init__(self, hexId: str, name: Optional[str], namespace: str) -> None:
        self._hex = hexId
        self.name = name
        #: The namespace (Durable Object class binding) the ID belongs to.
        self.namespace = namespace

    def toString(self) -> str:
        return self._hex

    def equals(self, other: object) -> bool:
        return (
            isinstance(other, DurableObjectId)
            and other._hex == self._hex
            and other.namespace == self.namespace
        )

    def __eq__(self, other: object) -> bool:
        return self.equals(other)

    def __hash__(self) -> int:
        return hash(self._hex)

    def __str__(self) -> str:
        return self._hex

    def __repr__(self) -> str:
        named = f" name={self.name!r}" if self.name is not None else ""
        return f"<DurableObjectId {self._hex}{named}>"
