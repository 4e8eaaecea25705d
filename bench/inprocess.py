"""What the in-process benchmarks (``msgpath_bench.py``, ``churn_bench.py``) share: each figure is
the CPU time a child script prints, measured in fresh subprocesses, interleaved across servers."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any


def measure(child: str, kind: str, count: int) -> float:
    """Run ``child`` for one server ``kind``; it prints microseconds of CPU per operation."""
    output = subprocess.run([sys.executable, "-c", child, kind, str(count)], check=True, capture_output=True, text=True)
    return float(output.stdout.strip())


def medians(child: str, kinds: list[str], count: int, repeats: int = 7) -> dict[str, float]:
    """Median per kind, with the runs interleaved (a, b, a, b, ...): the machine's speed drifts
    over minutes, and measuring one server's runs after the other's would put that drift into the
    ratio."""
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(repeats):
        for kind in kinds:
            samples[kind].append(measure(child, kind, count))
    return {kind: statistics.median(values) for kind, values in samples.items()}


def report(rows: dict[str, float], names: dict[str, str], what: str, perCore: str, digits: int,
           jsonName: str, extra: dict[str, Any]) -> None:
    """A markdown table (ratios to the first row) on stdout, and ``results/<jsonName>``."""
    reference = next(iter(rows.values()))
    print(f"| server | CPU per {what} (µs) | {perCore} of one core | vs reference |")
    print("|---|---:|---:|---:|")
    for kind, micros in rows.items():
        print(f"| {names[kind]} | {micros:.{digits}f} | {1e6 / micros:,.0f} | {reference / micros:.2f}× |")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, jsonName), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra, "micros": rows}, f, indent=2)
