"""The examples the docs show are real files, and they do what the docs say."""

from pathlib import Path

from twisted.internet.defer import Deferred

from dotwist import Request
from dotwist.examples import greeter
from dotwist.testing import makeRuntime, result

ROOT = Path(__file__).resolve().parent.parent


def test_readme_shows_the_greeter_example_verbatim():
    """The README's example is the tested file, character for character."""
    source = (ROOT / "dotwist" / "examples" / "greeter.py").read_text()
    body = source.split('"""', 2)[2].strip()
    assert body in (ROOT / "README.md").read_text()


def test_greeter_counts_visits_per_name(clock):
    """Each name has its own object and count."""
    runtime = makeRuntime(greeter.app, clock=clock)

    def visit(path):
        response = result(runtime.fetch(Request(f"http://h{path}")))
        return result(Deferred.fromCoroutine(response.json()))

    assert visit("/alice") == {"hello": "alice", "visits": 1}
    assert visit("/alice") == {"hello": "alice", "visits": 2}
    assert visit("/bob") == {"hello": "bob", "visits": 1}
    assert visit("/") == {"hello": "world", "visits": 1}
