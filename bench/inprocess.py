"""What the in-process benchmarks (``msgpath_bench.py``, ``churn_bench.py``) share: each figure is
the CPU time a child script prints, measured in fresh subprocesses, interleaved across servers.

``--instructions`` on their command line counts instructions instead, with valgrind's callgrind
(``apt install valgrind``): each kind runs once with ``count`` operations and once with twice as
many, and the figure is the difference divided by ``count``, so start-up and warm-up cancel out.
Instruction counts do not depend on what else the machine runs, which timings on a shared machine
do; they weigh every instruction the same, so compare them between trees, not with timings.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any


def measure(child: str, kind: str, count: int) -> float:
    """Run ``child`` for one server ``kind``; it prints microseconds of CPU per operation.

    ``kind@DIR`` runs ``kind`` with dotwist imported from the checkout ``DIR`` instead (another
    worktree, say the tree before a change), so both can be measured interleaved in one run."""
    return float(_run(child, kind, count, []).stdout.strip())


def _run(child: str, kind: str, count: int, prefix: list[str]) -> subprocess.CompletedProcess[str]:
    env = cwd = None
    if "@" in kind:
        kind, tree = kind.split("@", 1)
        # ``python -c`` puts the working directory first on sys.path, before PYTHONPATH.
        cwd = os.path.abspath(tree)
        env = {**os.environ, "PYTHONPATH": cwd}
    return subprocess.run(
        [*prefix, sys.executable, "-c", child, kind, str(count)], check=True, capture_output=True,
        text=True, env=env, cwd=cwd,
    )


def countInstructions(child: str, kind: str, count: int) -> float:
    """Instructions per operation of ``kind`` (callgrind: the run of ``2 * count`` operations less
    the run of ``count``, divided by ``count``)."""
    totals = []
    for n in (count, 2 * count):
        output = _run(child, kind, n, ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"])
        found = re.search(r"Collected : (\d+)", output.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count from callgrind for {kind}:\n{output.stderr[-2000:]}")
        totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / count


def instructionsWanted() -> bool:
    return "--instructions" in sys.argv[1:]


def against() -> list[str]:
    """``--against DIR`` (repeatable) on the command line: other checkouts to measure too."""
    args = sys.argv[1:]
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--against"]


def withAgainst(kinds: list[str], names: dict[str, str], dotwistKinds: list[str]) -> list[str]:
    """``kinds`` plus each dotwist kind at each ``--against`` checkout (named in ``names``)."""
    extra = []
    for tree in against():
        for kind in dotwistKinds:
            extra.append(f"{kind}@{tree}")
            names[f"{kind}@{tree}"] = f"{names[kind]}, at {tree}"
    return kinds + extra


def medians(child: str, kinds: list[str], count: int, repeats: int = 7) -> dict[str, float]:
    """Median per kind, with the runs interleaved (a, b, a, b, ...): the machine's speed drifts
    over minutes, and measuring one server's runs after the other's would put that drift into the
    ratio.

    With ``--instructions``: instructions per operation instead (one count per kind; ``count`` is
    divided by 20, as callgrind runs the code some 50 times slower)."""
    if instructionsWanted():
        small = max(count // 20, 50)
        return {kind: countInstructions(child, kind, small) for kind in kinds}
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(repeats):
        for kind in kinds:
            samples[kind].append(measure(child, kind, count))
    return {kind: statistics.median(values) for kind, values in samples.items()}


def report(rows: dict[str, float], names: dict[str, str], what: str, perCore: str, digits: int,
           jsonName: str, extra: dict[str, Any]) -> None:
    """A markdown table (ratios to the first row) on stdout, and ``results/<jsonName>``."""
    reference = next(iter(rows.values()))
    if instructionsWanted():
        print(f"| server | instructions per {what} | vs reference |")
        print("|---|---:|---:|")
        for kind, count in rows.items():
            print(f"| {names[kind]} | {count:,.0f} | {reference / count:.2f}× |")
        jsonName = jsonName.replace(".json", "_instructions.json")
    else:
        print(f"| server | CPU per {what} (µs) | {perCore} of one core | vs reference |")
        print("|---|---:|---:|---:|")
        for kind, micros in rows.items():
            print(f"| {names[kind]} | {micros:.{digits}f} | {1e6 / micros:,.0f} | {reference / micros:.2f}× |")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, jsonName), "w") as f:
        unit = "instructions" if instructionsWanted() else "micros"
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra, unit: rows}, f, indent=2)
