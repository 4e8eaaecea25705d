"""What a request line of the access log costs to write as text: twistd's own text observer
(``twisted.logger.textFileLogObserver``) against dotwist's (``dotwist.logs.ClassicText``), which
writes the same bytes.

    .venv/bin/python bench/log_bench.py [--events N] [--rounds N]

In-process, to an in-memory file: the event is the one ``dotwist.logs.logRequest`` emits (its
``{line}`` and fields) with the current time, handed to each observer directly; each round runs
both, one after the other, and the median over rounds of microseconds per event is printed,
with the ratio within each round.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

from twisted.logger import FileLogObserver, LogLevel, textFileLogObserver

from dotwist.logs import ClassicText


def event() -> dict[str, object]:
    return {
        "log_format": "{line}",
        "line": '127.0.0.1 "GET /getCurrentConnections HTTP/1.1" 200 1 0.4ms "wsload"',
        "client": "127.0.0.1",
        "method": "GET",
        "path": "/getCurrentConnections",
        "protocol": "HTTP/1.1",
        "status": 200,
        "bytes": 1,
        "durationMs": 0.4,
        "userAgent": "wsload",
        "referer": "-",
        "log_namespace": "dotwist.access",
        "log_level": LogLevel.info,
        "log_logger": None,
        "log_source": None,
        "log_time": time.time(),
    }


def perEvent(observer: FileLogObserver, out: io.StringIO, n: int) -> float:
    e = event()
    start = time.perf_counter()
    for _ in range(n):
        e["log_time"] = time.time()
        observer(e)
    elapsed = time.perf_counter() - start
    out.seek(0)
    out.truncate()
    return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    out = io.StringIO()
    twisted, dotwist = textFileLogObserver(out), FileLogObserver(out, ClassicText())
    e = event()
    twisted(e)
    dotwist(e)
    lines = out.getvalue().splitlines()
    assert lines[0] == lines[1], lines  # the same bytes
    samples = []
    for r in range(options.rounds):
        pair = [perEvent(twisted, out, options.events), perEvent(dotwist, out, options.events)]
        samples.append(pair)
    print("| observer | µs per request line (median) | ratio to twistd's |")
    print("|---|---:|---:|")
    print(f"| twistd's text observer | {statistics.median(a for a, _ in samples):.2f} | 1 |")
    print(
        f"| dotwist.logs.ClassicText | {statistics.median(b for _, b in samples):.2f} | "
        f"{statistics.median(b / a for a, b in samples):.3f} |"
    )


if __name__ == "__main__":
    main()
