"""examples/testing-demo, a user project with its own app and tests that uses only dotwist's
public testing API and its pytest plugin, passes its own pytest run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "testing-demo"


def test_the_testing_demo_project_passes_its_own_tests():
    """`pytest` in examples/testing-demo (its own pytest.ini: the app by the dotwist_app option)
    runs every one of its tests, in-process and over a real port, and they pass."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=DEMO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    summary = out.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None and int(passed.group(1)) >= 16, summary
    assert not re.search(r"failed|error|skipped", summary), summary
