"""Rendezvous hashing: every node agrees on the preferred owner, and few objects move."""

from __future__ import annotations

import random
from collections import Counter

from dotwist.cluster.rendezvous import preferredNode, rankNodes

NODES = [f"node-{i}" for i in range(5)]
OBJECTS = [f"{i:064x}" for i in range(2000)]


def test_sameAnswerWhateverTheOrder() -> None:
    """The preferred node depends on the set of nodes, not on the order they are listed in."""
    rng = random.Random(7)
    for oid in OBJECTS[:200]:
        shuffled = NODES[:]
        rng.shuffle(shuffled)
        assert preferredNode(shuffled, "NS", oid) == preferredNode(NODES, "NS", oid)
        assert rankNodes(shuffled, "NS", oid)[0] == preferredNode(NODES, "NS", oid)


def test_noNodes() -> None:
    """With no live node there is no preferred node."""
    assert preferredNode([], "NS", "x") is None
    assert rankNodes([], "NS", "x") == []


def test_spreadIsEven() -> None:
    """2,000 objects over 5 nodes: each node is preferred for 15-25% of them."""
    counts = Counter(preferredNode(NODES, "NS", oid) for oid in OBJECTS)
    assert set(counts) == set(NODES)
    assert all(300 <= c <= 500 for c in counts.values()), counts


def test_onlyTheLeavingNodesObjectsMove() -> None:
    """When a node leaves, exactly the objects it was preferred for move; the rest stay put."""
    before = {oid: preferredNode(NODES, "NS", oid) for oid in OBJECTS}
    rest = [n for n in NODES if n != "node-2"]
    after = {oid: preferredNode(rest, "NS", oid) for oid in OBJECTS}
    moved = {oid for oid in OBJECTS if before[oid] != after[oid]}
    assert moved == {oid for oid in OBJECTS if before[oid] == "node-2"}
    # and they go to their second choice
    for oid in moved:
        assert after[oid] == rankNodes(NODES, "NS", oid)[1]


def test_namespaceMatters() -> None:
    """The same object id in two namespaces is placed independently."""
    differ = sum(preferredNode(NODES, "A", oid) != preferredNode(NODES, "B", oid) for oid in OBJECTS)
    assert differ > len(OBJECTS) // 2
