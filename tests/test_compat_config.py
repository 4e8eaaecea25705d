"""`twistd dotwist --config`: every mistake refused at start naming the key and the file, the
options that override the file, the Wrangler file in the working directory, migrations applied to
real data directories before storage opens (a renamed class keeps its objects), legacy
top-level handlers by compatibility date."""

import json
import sys
import textwrap
from pathlib import Path

import pytest
from twisted.python import usage

from dotwist import service
from dotwist.compat import finder
from dotwist.ids import IdMinter
from dotwist.migrations import MigrationError

from compatsupport import CompatApp, copyApp


@pytest.fixture(autouse=True)
def clean():
    yield
    finder.uninstall()


@pytest.fixture
def loaded():
    apps = []
    yield apps
    for app in reversed(apps):
        app.close()


def writeApp(directory: Path, source: str, config: dict, name: str = "wrangler.jsonc") -> Path:
    (directory / "src").mkdir(parents=True, exist_ok=True)
    (directory / "src" / "entry.py").write_text(textwrap.dedent(source))
    base = {"name": "app", "main": "src/entry.py", "compatibility_date": "2026-05-01",
            "compatibility_flags": ["python_workers"]}
    (directory / name).write_text(json.dumps({**base, **config}))
    return directory / name


def parse(*argv: str) -> service.Options:
    options = service.Options()
    options.parseOptions(["--storage", "memory", "--no-tuning", *argv])
    return options


def unloadAfter(options: service.Options) -> None:
    if options["worker"] is not None:
        options["worker"].unload()


COUNTER = """
    from workers import DurableObject, Response, WorkerEntrypoint

    class Counter(DurableObject):
        async def bump(self):
            value = (await self.ctx.storage.get("n") or 0) + 1
            await self.ctx.storage.put("n", value)
            return value

    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            return Response(str(await self.env.COUNTERS.getByName("a").bump()))
"""

COUNTER_CONFIG = {
    "durable_objects": {"bindings": [{"name": "COUNTERS", "class_name": "Counter"}]},
    "migrations": [{"tag": "v1", "new_sqlite_classes": ["Counter"]}],
}


@pytest.mark.parametrize(
    "source,config,message",
    [
        (COUNTER.replace("class Counter(DurableObject)", "class Tally(DurableObject)"), COUNTER_CONFIG,
         "wrangler.jsonc: durable_objects.bindings[0].class_name: src/entry.py defines no class Counter"),
        (COUNTER.replace("class Counter(DurableObject)", "class Counter"), COUNTER_CONFIG,
         "durable_objects.bindings[0].class_name: Counter in src/entry.py is not a DurableObject subclass"),
        ("import nothing_like_this\n", {}, "main: importing src/entry.py failed: ModuleNotFoundError: "
         "No module named 'nothing_like_this' ("),
        ("x = 1\n", {}, "main: src/entry.py defines no Worker: add class Default(WorkerEntrypoint)"),
        (COUNTER, {**COUNTER_CONFIG, "triggers": {"crons": ["* * * * *"]}},
         "wrangler.jsonc: triggers.crons: the Worker Default has no scheduled() handler"),
        (COUNTER, {**COUNTER_CONFIG, "kv_namespaces": [{"binding": "CACHE", "id": "x"}]},
         "wrangler.jsonc: kv_namespaces: dotwist has no Workers KV namespaces (binding CACHE)"),
        (COUNTER, {**COUNTER_CONFIG, "colour": "blue"}, "wrangler.jsonc: colour: unknown key"),
        (COUNTER, {"durable_objects": COUNTER_CONFIG["durable_objects"]},
         "no migration creates Counter"),
    ],
)
def test_mistakes_are_refused_naming_the_key_and_the_file(tmp_path, source, config, message):
    """Each mistake stops the options with a UsageError naming the file and the key."""
    path = writeApp(tmp_path, source, config)
    with pytest.raises(usage.UsageError) as refused:
        parse("--config", str(path))
    assert message in str(refused.value)
    assert str(path) in str(refused.value)


def test_missing_bindings_can_be_allowed(tmp_path):
    """--allow-missing-bindings starts without a KV binding; the Worker's env then has no such
    attribute, and says which it has."""
    path = writeApp(tmp_path, COUNTER, {**COUNTER_CONFIG, "kv_namespaces": [{"binding": "CACHE", "id": "x"}]})
    options = parse("--config", str(path), "--allow-missing-bindings")
    try:
        assert options["wrangler"].skipped[0].names == ("CACHE",)
        assert set(options["appObject"].durableObjects) == {"COUNTERS"}
    finally:
        unloadAfter(options)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--app", "dotwist.examples.greeter"], "--app and --config are alternatives"),
        (["--binding", "COUNTERS=dotwist.examples.echo:Echo"], "--binding cannot be combined with a Wrangler file"),
        (["--env", "nowhere"], "env: no environment named 'nowhere' (the file defines none)"),
        (["--compatibility-date", "2026-13-01"], "Invalid compatibility date"),
        (["--compatibility-flag", "no_such_flag"], "No such compatibility flag: no_such_flag"),
    ],
)
def test_options_that_cannot_go_with_the_file(tmp_path, argv, message):
    """Options that contradict the file, or are wrong themselves, are refused at start."""
    path = writeApp(tmp_path, COUNTER, COUNTER_CONFIG)
    with pytest.raises(usage.UsageError) as refused:
        parse("--config", str(path), *argv)
    assert message in str(refused.value)


def test_env_needs_a_wrangler_file():
    """--env without a Wrangler file is refused rather than ignored."""
    with pytest.raises(usage.UsageError, match="need a Wrangler file"):
        parse("--app", "dotwist.examples.greeter", "--env", "staging")


def test_compatibility_options_override_the_file_and_apply_to_plain_apps(tmp_path):
    """--compatibility-date/--compatibility-flag replace the file's; a plain --app takes them
    too (default: today's behaviour)."""
    path = writeApp(tmp_path, COUNTER, COUNTER_CONFIG)
    options = parse("--config", str(path), "--compatibility-date", "2025-01-01")
    unloadAfter(options)
    assert not options["compatibility"].isEnabled("web_socket_auto_reply_to_close")
    assert "python_workers" in options["compatibility"].flags
    plain = parse("--app", "dotwist.examples.greeter")
    assert plain["compatibility"].isEnabled("web_socket_auto_reply_to_close")
    older = parse("--app", "dotwist.examples.greeter", "--compatibility-flag", "web_socket_manual_reply_to_close")
    assert not older["compatibility"].isEnabled("web_socket_auto_reply_to_close")


def test_the_wrangler_file_in_the_working_directory_is_used(tmp_path, monkeypatch, loaded):
    """With neither --app nor --config, a wrangler file in the working directory is served."""
    directory = copyApp("hello", tmp_path)
    monkeypatch.chdir(directory)
    options = parse()
    try:
        assert options["wrangler"].name == "hello-python"
        assert options["appObject"].worker.__name__ == "Default"
    finally:
        unloadAfter(options)
    monkeypatch.chdir(tmp_path)
    assert parse()["appObject"].durableObjects.keys() == {"WEBSOCKET_SERVER"}  # the seed


def test_main_module_name_taken_by_another_file_is_refused(tmp_path):
    """A main module whose name is already imported from elsewhere is refused, not shadowed."""
    path = writeApp(tmp_path, COUNTER, COUNTER_CONFIG)
    (tmp_path / "src" / "entry.py").rename(tmp_path / "src" / "json.py")
    config = json.loads(path.read_text())
    config["main"] = "src/json.py"
    path.write_text(json.dumps(config))
    with pytest.raises(usage.UsageError, match="would be imported as 'json'"):
        parse("--config", str(path))


LEGACY = """
    from workers import Response, handler

    @handler
    async def on_fetch(request, env):
        return Response("legacy " + request.url)
"""


def test_top_level_on_fetch_runs_with_an_old_compatibility_date(tmp_path, loaded):
    """Before 2025-08-14, a module's top-level on_fetch is its Worker (called relaxed); from
    then on it is refused with a hint."""
    path = writeApp(tmp_path, LEGACY, {"compatibility_date": "2025-06-01"})
    app = CompatApp(tmp_path)
    loaded.append(app)
    assert app.text("/x") == (200, "legacy http://example.com/x")
    app.close()
    loaded.clear()
    finder.uninstall()
    config = json.loads(path.read_text())
    config["compatibility_date"] = "2025-08-14"
    path.write_text(json.dumps(config))
    with pytest.raises(usage.UsageError, match="top-level on_fetch handlers need a compatibility date before 2025-08-14"):
        parse("--config", str(path))


def test_renamed_class_keeps_its_objects_on_disk(tmp_path, loaded):
    """A class renamed by a migration keeps its data directory and its ID key: the same
    idFromName reaches the same stored object; plain apps keep minting IDs under the class name."""
    app = writeApp(tmp_path / "app", COUNTER, COUNTER_CONFIG)
    data = tmp_path / "data"
    first = CompatApp(app.parent, dataDir=data)
    loaded.append(first)
    assert first.text("/") == (200, "1")
    assert first.text("/") == (200, "2")
    idBefore = first.runtime.env.COUNTERS.idFromName("a").toString()
    first.close()
    loaded.clear()
    finder.uninstall()
    writeApp(tmp_path / "app", COUNTER.replace("Counter", "Tally"), {
        "durable_objects": {"bindings": [{"name": "COUNTERS", "class_name": "Tally"}]},
        "migrations": [
            {"tag": "v1", "new_sqlite_classes": ["Counter"]},
            {"tag": "v2", "renamed_classes": [{"from": "Counter", "to": "Tally"}]},
        ],
    })
    second = CompatApp(app.parent, dataDir=data)
    loaded.append(second)
    assert second.text("/") == (200, "3")
    assert second.runtime.env.COUNTERS.idFromName("a").toString() == idBefore
    assert (data / "Tally").is_dir() and not (data / "Counter").exists()
    assert IdMinter("Tally", idKey="Counter").fromName("a").toString() == idBefore
    assert IdMinter("Tally").fromName("a").toString() != idBefore


def test_data_no_migration_accounts_for_stops_startup(tmp_path):
    """Stored data of a class no binding and no migration names stops makeService with a
    MigrationError (one line under twistd), before any storage is opened; nothing is deleted."""
    path = writeApp(tmp_path / "app", COUNTER, COUNTER_CONFIG)
    data = tmp_path / "data"
    (data / "Orphan").mkdir(parents=True)
    (data / "Orphan" / "object.sqlite").write_text("not really")
    options = service.Options()
    options.parseOptions(["--config", str(path), "--data-dir", str(data), "--no-tuning", "--listen", "tcp:0"])
    try:
        with pytest.raises(MigrationError, match="Orphan"):
            service.makeService(options, object())
    finally:
        unloadAfter(options)
    assert (data / "Orphan" / "object.sqlite").exists()
    assert not (data / "Counter").exists()


def test_a_tac_file_can_serve_a_wrangler_file(tmp_path):
    """makeApplication(None, config=...) builds the same service for `twistd -ny x.tac`."""
    from twisted.application.service import IServiceCollection

    directory = copyApp("hello", tmp_path)
    try:
        application = service.makeApplication(
            None, ["tcp:0:interface=127.0.0.1"], config=str(directory / "wrangler.jsonc"),
            storage="memory", **{"no-tuning": True},
        )
        served = list(IServiceCollection(application))[0]
        assert served.runtime.app.vars["GREETING"] == "Hello"
    finally:
        for name in [n for n, m in list(sys.modules.items()) if str(directory) in (getattr(m, "__file__", None) or "")]:
            del sys.modules[name]
        sys.path[:] = [p for p in sys.path if str(directory) not in p]
