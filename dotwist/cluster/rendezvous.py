"""Rendezvous (highest random weight) hashing: which live node should own an object.

Every node computes the same answer from the same list of live nodes, so for a cold object they
agree on one preferred owner and do not all race to claim it (the claim in PostgreSQL still decides;
this only makes contention rare). When a node joins or leaves, only the objects it wins or held
move: about 1/N of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["preferredNode", "rankNodes"]


def _weight(nodeId: str, namespace: str, objectId: str) -> int:
    # Lengths are part of the hashed text, so ("a", "bc") and ("ab", "c") differ.
    key = f"{len(nodeId)}:{nodeId}|{len(namespace)}:{namespace}|{objectId}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def rankNodes(nodeIds: Iterable[str], namespace: str, objectId: str) -> list[str]:
    """The node ids, most preferred first, for this object (ties broken by node id)."""
    unique = set(nodeIds)
    return sorted(unique, key=lambda n: (-_weight(n, namespace, objectId), n))


def preferredNode(nodeIds: Iterable[str], namespace: str, objectId: str) -> str | None:
    """The node that should own the object, or None if there is no node."""
    best: tuple[int, str] | None = None
    for node in set(nodeIds):
        w = _weight(node, namespace, objectId)
        if best is None or w > best[0] or (w == best[0] and node < best[1]):
            best = (w, node)
    return None if best is None else best[1]
