"""Wrangler configuration: what is read, what is refused (with the file and key named), what is
ignored; .dev.vars; environments; compatibility flags; Cloudflare's cron expressions."""

from __future__ import annotations

import datetime
import json
import os
import random
import textwrap

import pytest

from dotwist.compat_flags import Compatibility, CompatibilityError, resolveFlags
from dotwist.cron import CronError, parseCron
from dotwist.wrangler import (
    DurableObjectBinding,
    Migration,
    ServiceBinding,
    WranglerConfigError,
    findConfig,
    loadConfig,
    parseConfig,
)

UTC = datetime.timezone.utc

# A configuration in the style of Cloudflare's published Python examples.
EXAMPLE_JSONC = """\
{
	"$schema": "node_modules/wrangler/config-schema.json",
	"name": "python-durable-object",
	"main": "src/entry.py",
	"compatibility_date": "2025-11-02",
	"compatibility_flags": [
		"python_workers"
	],
	// One binding, one migration
	"durable_objects": {
		"bindings": [
			{
				"name": "LISTS",
				"class_name": "List"
			}
		]
	},
	"migrations": [
    {
      "tag": "v1",
      "new_sqlite_classes": [
        "List",
      ]
    }
  ],
	"observability": {
		"enabled": true
	},
}
"""

EXAMPLE_TOML = """\
"$schema" = "./node_modules/wrangler/config-schema.json"
name = "my-counter"
main = "src/entry.py"
compatibility_date = "2026-05-01"
compatibility_flags = ["python_workers"]

[vars]
GREETING = "hello"
RETRIES = 3
RATIO = 0.5
ENABLED = true
LIMITS = { per_minute = 10, burst = [1, 2] }

[triggers]
crons = ["*/5 * * * *", "0 18 * * friL"]

[[durable_objects.bindings]]
name = "COUNTERS"
class_name = "Counter"

[[migrations]]
tag = "v1"
new_sqlite_classes = [ "Counter" ]
"""


def minimal(**overrides: object) -> str:
    """A valid JSON configuration with some keys replaced (None deletes a key)."""
    config: dict[str, object] = {
        "name": "w",
        "main": "src/entry.py",
        "compatibility_date": "2026-05-01",
        "compatibility_flags": ["python_workers"],
        "durable_objects": {"bindings": [{"name": "ROOMS", "class_name": "Room"}]},
        "migrations": [{"tag": "v1", "new_sqlite_classes": ["Room"]}],
    }
    for key, value in overrides.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return json.dumps(config)


def problems(text: str, path: str = "wrangler.json", **kwargs: object) -> tuple[str, ...]:
    with pytest.raises(WranglerConfigError) as info:
        parseConfig(text, path, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


# -- what is read ---------------------------------------------------------------------------------


def test_published_jsonc_style_loads_with_comments_and_trailing_commas():
    """JSON with comments and trailing commas, as Cloudflare's examples write it, loads whole."""
    config = parseConfig(EXAMPLE_JSONC, "wrangler.jsonc")
    assert config.name == "python-durable-object"
    assert config.main == "src/entry.py"
    assert config.mainModule == "entry"
    assert config.moduleRoot == os.path.join(os.path.abspath("."), "src")
    assert config.compatibilityDate == datetime.date(2025, 11, 2)
    assert config.compatibilityFlags == ("python_workers",)
    assert config.durableObjects == (DurableObjectBinding("LISTS", "List"),)
    assert config.migrations == (Migration("v1", newSqliteClasses=("List",)),)
    assert config.ignored == ("$schema", "observability")
    assert config.skipped == ()


def test_toml_reads_vars_of_every_kind_and_crons():
    """wrangler.toml: strings, numbers, booleans and JSON objects in [vars]; crons parsed."""
    config = parseConfig(EXAMPLE_TOML, "wrangler.toml")
    env = config.envBindings()
    assert env == {
        "GREETING": "hello",
        "RETRIES": 3,
        "RATIO": 0.5,
        "ENABLED": True,
        "LIMITS": {"per_minute": 10, "burst": [1, 2]},
    }
    assert [c.expression for c in config.crons] == ["*/5 * * * *", "0 18 * * friL"]


def test_config_is_immutable_and_env_gets_fresh_copies():
    """The config cannot be changed; envBindings() hands out copies an app may mutate."""
    config = parseConfig(EXAMPLE_TOML, "wrangler.toml")
    with pytest.raises(Exception):
        config.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.vars["GREETING"] = "x"  # type: ignore[index]
    first = config.envBindings()
    first["LIMITS"]["burst"].append(3)
    assert config.envBindings()["LIMITS"]["burst"] == [1, 2]


def test_load_reads_dev_vars_next_to_the_file(tmp_path):
    """.dev.vars (dotenv format, no ${} expansion) beside the file gives secrets over vars."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text("")
    (tmp_path / "wrangler.toml").write_text(EXAMPLE_TOML)
    (tmp_path / ".dev.vars").write_text(
        textwrap.dedent(
            """\
            # a comment
            API_KEY=abc123
            export GREETING="from dev vars"
            QUOTED='a # not a comment'
            RAW=${API_KEY}
            NO_EQUALS_SIGN
            """
        )
    )
    config = loadConfig(str(tmp_path / "wrangler.toml"))
    assert dict(config.secrets) == {
        "API_KEY": "abc123",
        "GREETING": "from dev vars",
        "QUOTED": "a # not a comment",
        "RAW": "${API_KEY}",
    }
    assert config.envBindings()["GREETING"] == "from dev vars"
    assert config.secretsPath == str(tmp_path / ".dev.vars")


def test_dev_vars_of_the_environment_win(tmp_path):
    """With --env staging, .dev.vars.staging is read instead of .dev.vars."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text("")
    text = minimal(env={"staging": {"durable_objects": {"bindings": [{"name": "ROOMS", "class_name": "Room"}]}}})
    (tmp_path / "wrangler.json").write_text(text)
    (tmp_path / ".dev.vars").write_text("TOKEN=top\n")
    (tmp_path / ".dev.vars.staging").write_text("TOKEN=staging\n")
    assert loadConfig(str(tmp_path / "wrangler.json")).secrets["TOKEN"] == "top"
    staged = loadConfig(str(tmp_path / "wrangler.json"), env="staging")
    assert staged.secrets["TOKEN"] == "staging"


def test_required_secrets_limit_what_dev_vars_provides():
    """With secrets.required, only declared names and var overrides are taken from .dev.vars."""
    text = minimal(vars={"MODE": "prod"}, secrets={"required": ["TOKEN"]})
    config = parseConfig(text, "wrangler.json", devVars="TOKEN=t\nMODE=dev\nOTHER=x\n")
    assert dict(config.secrets) == {"TOKEN": "t", "MODE": "dev"}
    missing = problems(text, devVars="MODE=dev\n")
    assert missing == ("wrangler.json: secrets.required: secret TOKEN is not set in .dev.vars",)


def test_find_config_uses_wranglers_order(tmp_path):
    """wrangler.json is preferred to wrangler.jsonc, which is preferred to wrangler.toml."""
    assert findConfig(str(tmp_path)) is None
    (tmp_path / "wrangler.toml").write_text("")
    assert findConfig(str(tmp_path)) == str(tmp_path / "wrangler.toml")
    (tmp_path / "wrangler.jsonc").write_text("")
    assert findConfig(str(tmp_path)) == str(tmp_path / "wrangler.jsonc")
    (tmp_path / "wrangler.json").write_text("")
    assert findConfig(str(tmp_path)) == str(tmp_path / "wrangler.json")


def test_load_refuses_a_missing_main(tmp_path):
    """A main module that does not exist is refused at load, naming the file and the path."""
    (tmp_path / "wrangler.json").write_text(minimal())
    with pytest.raises(WranglerConfigError) as info:
        loadConfig(str(tmp_path / "wrangler.json"))
    (line,) = info.value.problems
    assert line.startswith(f"{tmp_path / 'wrangler.json'}: main: src/entry.py does not exist")


def test_services_to_this_workers_own_entrypoints_are_supported():
    """A service binding to this Worker's own name binds one of its entrypoint classes."""
    text = minimal(services=[{"binding": "AUTH", "service": "w", "entrypoint": "AuthService"},
                             {"binding": "SELF", "service": "w"}])
    config = parseConfig(text, "wrangler.json")
    assert config.services == (ServiceBinding("AUTH", "AuthService"), ServiceBinding("SELF", "Default"))


# -- environments ---------------------------------------------------------------------------------


def test_environment_inherits_some_keys_and_not_bindings():
    """env.<name> inherits main and the date, not vars or bindings (wrangler's rule); its name is
    <name>-<env> unless it sets one."""
    text = minimal(
        vars={"MODE": "top"},
        env={
            "staging": {
                "vars": {"MODE": "staging"},
                "durable_objects": {"bindings": [{"name": "ROOMS", "class_name": "Room"}]},
            },
            "bare": {},
        },
    )
    staging = parseConfig(text, "wrangler.json", env="staging")
    assert staging.name == "w-staging"
    assert staging.environment == "staging"
    assert staging.environments == ("staging", "bare")
    assert staging.envBindings() == {"MODE": "staging"}
    assert staging.main == "src/entry.py"
    # "bare" does not inherit the binding, so the class created by the migration is unbound.
    (line,) = problems(text, env="bare")
    assert line.startswith("wrangler.json: migrations: Room (from migrations[0].new_sqlite_classes) is not bound")


def test_unknown_environment_is_refused():
    """--env with a name the file does not define is refused, listing the defined ones."""
    assert problems(minimal(env={"prod": {}}), env="staging") == (
        "wrangler.json: env: no environment named 'staging' (environments: prod)",
    )
    assert problems(minimal(), env="staging") == (
        "wrangler.json: env: no environment named 'staging' (the file defines none)",
    )


# -- refusals -------------------------------------------------------------------------------------


def test_wrong_type_names_the_file_and_key_path():
    """A wrong type is refused with the file, the key path and the value."""
    text = minimal(durable_objects={"bindings": [{"name": "ROOMS", "class_name": 3}]})
    assert problems(text, path="wrangler.jsonc")[0] == (
        "wrangler.jsonc: durable_objects.bindings[0].class_name: expected a string, got 3"
    )


def test_every_mistake_is_reported_at_once():
    """Several mistakes give one error listing each; nothing is returned half-configured."""
    text = minimal(
        compatibility_date="2026-13-01",
        vars={"OK": "x", "bad-name": "y"},
        colour="blue",
        main=None,
    )
    lines = problems(text)
    assert "wrangler.json: colour: unknown key" in lines
    assert any(l.startswith("wrangler.json: compatibility_date: Invalid compatibility date") for l in lines)
    assert any(l.startswith('wrangler.json: vars.bad-name: "bad-name" is not a valid binding name') for l in lines)
    assert any(l.startswith("wrangler.json: main: missing") for l in lines)


def test_missing_fields_and_unknown_nested_keys_are_refused():
    """A binding without class_name, and a key a binding does not have, are refused."""
    text = minimal(durable_objects={"bindings": [{"name": "ROOMS", "clas_name": "Room"}]})
    lines = problems(text)
    assert "wrangler.json: durable_objects.bindings[0].class_name: missing" in lines
    assert any(l.startswith("wrangler.json: durable_objects.bindings[0].clas_name: unknown key") for l in lines)


def test_duplicate_binding_names_are_refused():
    """One name for a Durable Object binding and a variable is refused."""
    text = minimal(vars={"ROOMS": "x"})
    assert problems(text) == (
        "wrangler.json: vars.ROOMS: binding name ROOMS is already used by durable_objects.bindings[0].name",
    )


def test_script_name_pointing_at_another_worker_is_refused():
    """A Durable Object defined in another Worker is refused with the reason."""
    text = minimal(durable_objects={"bindings": [{"name": "ROOMS", "class_name": "Room", "script_name": "other"}]})
    (line,) = [l for l in problems(text) if "script_name" in l]
    assert line.startswith("wrangler.json: durable_objects.bindings[0].script_name: points at another Worker ('other')")


def test_python_main_needs_the_python_workers_flag():
    """As wrangler does, a .py main without the python_workers flag is refused."""
    (line,) = problems(minimal(compatibility_flags=[]))
    assert "The `python_workers` compatibility flag is required" in line


def test_a_non_python_main_is_refused():
    """dotwist runs Python Workers: main must be a .py module."""
    (line,) = problems(minimal(main="src/index.ts"))
    assert line == 'wrangler.json: main: "src/index.ts" is not a Python module (.py); dotwist runs Python Workers'


def test_parse_errors_name_the_file():
    """Broken syntax, duplicate keys and NaN are refused as parse errors of the file."""
    for text, path in (("{", "wrangler.jsonc"), ('{"a": 1, "a": 2}', "wrangler.json"),
                       ('{"vars": {"X": NaN}}', "wrangler.json"), ("name = ", "wrangler.toml")):
        (line,) = problems(text, path=path)
        assert line.startswith(f"{path}: cannot parse: ")
    (line,) = problems("[]", path="wrangler.json")
    assert line == "wrangler.json: expected an object at the top level, got an array"


def test_vars_refuse_values_that_are_not_json():
    """A TOML date is not a value Cloudflare's vars can hold."""
    text = 'main = "src/entry.py"\ncompatibility_flags = ["python_workers"]\n[vars]\nWHEN = 2026-01-01\n'
    (line,) = problems(text, path="wrangler.toml")
    assert line.startswith("wrangler.toml: vars.WHEN: expected a string, number, boolean or JSON value")


def test_keys_wrangler_refuses_are_refused():
    """legacy_env and node_compat are refused, as wrangler refuses them."""
    lines = problems(minimal(legacy_env=True, node_compat=True))
    assert 'wrangler.json: legacy_env: wrangler no longer supports "legacy_env"; remove it' in lines
    assert any(l.startswith("wrangler.json: node_compat:") for l in lines)


# -- bindings dotwist does not have ---------------------------------------------------------------


def test_unsupported_binding_is_refused_naming_key_kind_and_binding():
    """A KV namespace is refused at load with the key, the kind and the binding name."""
    text = minimal(kv_namespaces=[{"binding": "FOO", "id": "x"}])
    assert problems(text) == (
        "wrangler.json: kv_namespaces: dotwist has no Workers KV namespaces (binding FOO); "
        "remove it, or allow missing bindings to start without it",
    )


def test_unsupported_bindings_can_be_skipped_and_are_reported():
    """With allowMissingBindings, unsupported bindings are left out and listed as skipped."""
    text = minimal(
        kv_namespaces=[{"binding": "FOO", "id": "x"}],
        ai={"binding": "AI"},
        queues={"producers": [{"binding": "Q", "queue": "q"}], "consumers": [{"queue": "q"}]},
        d1_databases=[],
    )
    config = parseConfig(text, "wrangler.json", allowMissingBindings=True)
    assert [(s.key, s.kind, s.names) for s in config.skipped] == [
        ("ai", "Workers AI", ("AI",)),
        ("kv_namespaces", "Workers KV namespaces", ("FOO",)),
        ("queues", "Queues", ("Q", "(queue consumers)")),
    ]
    assert "FOO" not in config.envBindings()


def test_ignored_keys_are_accepted_and_listed():
    """Keys about deployment on Cloudflare are accepted and listed as ignored, top level too."""
    text = minimal(placement={"mode": "smart"}, observability={"enabled": True},
                   limits={"cpu_ms": 50}, routes=["example.com/*"], dev={"port": 8787})
    config = parseConfig(text, "wrangler.json")
    assert config.ignored == ("limits", "observability", "placement", "routes", "dev")


# -- migrations in the file -----------------------------------------------------------------------


def test_migrations_keep_their_order_and_tags_must_be_unique():
    """Migrations are kept in file order; a repeated tag is refused."""
    text = minimal(
        durable_objects={"bindings": [{"name": "ROOMS", "class_name": "Hall"}]},
        migrations=[
            {"tag": "v1", "new_sqlite_classes": ["Room"]},
            {"tag": "v2", "renamed_classes": [{"from": "Room", "to": "Hall"}]},
        ],
    )
    config = parseConfig(text, "wrangler.json")
    assert [m.tag for m in config.migrations] == ["v1", "v2"]
    assert config.migrations[1].renamedClasses == (("Room", "Hall"),)
    again = minimal(migrations=[{"tag": "v1", "new_sqlite_classes": ["Room"]}, {"tag": "v1"}])
    assert 'wrangler.json: migrations[1].tag: "v1" is already the tag of migrations[0]' in problems(again)


def test_bound_class_with_no_migration_and_deleted_but_bound_are_refused():
    """A bound class needs a migration creating it; a deleted class must not stay bound."""
    (line,) = problems(minimal(migrations=None))
    assert line == (
        "wrangler.json: durable_objects.bindings[0].class_name: no migration creates Room; add a "
        'migration such as {"tag": "v1", "new_sqlite_classes": ["Room"]}'
    )
    text = minimal(migrations=[{"tag": "v1", "new_sqlite_classes": ["Room"]}, {"tag": "v2", "deleted_classes": ["Room"]}])
    (line,) = problems(text)
    assert line == (
        "wrangler.json: durable_objects.bindings[0].class_name: Room was removed by "
        "migrations[1].deleted_classes, but is still bound as ROOMS"
    )


def test_impossible_migration_steps_are_refused():
    """Renaming or deleting a class that does not exist, or creating one twice, is refused."""
    text = minimal(
        migrations=[
            {"tag": "v1", "new_sqlite_classes": ["Room"]},
            {"tag": "v2", "new_classes": ["Room"], "renamed_classes": [{"from": "Ghost", "to": "X"}],
             "deleted_classes": ["Nobody"]},
        ]
    )
    lines = problems(text)
    assert "wrangler.json: migrations[1].new_classes: Room already exists (from migrations[0].new_sqlite_classes)" in lines
    assert "wrangler.json: migrations[1].renamed_classes: renames Ghost, which no earlier migration created" in lines
    assert "wrangler.json: migrations[1].deleted_classes: deletes Nobody, which no earlier migration created" in lines


def test_transferred_classes_are_refused():
    """A class transferred from another Worker cannot be served by one dotwist Worker."""
    text = minimal(migrations=[{"tag": "v1", "new_sqlite_classes": ["Room"]},
                               {"tag": "v2", "transferred_classes": [{"from": "A", "from_script": "s", "to": "B"}]}])
    assert any(l.startswith("wrangler.json: migrations[1].transferred_classes: transfers a class from another Worker")
               for l in problems(text))


# -- compatibility dates and flags ----------------------------------------------------------------


def test_close_frame_reply_follows_the_compatibility_date():
    """web_socket_auto_reply_to_close is on from 2026-04-07, by flag, and with no date at all."""
    assert not Compatibility(datetime.date(2026, 4, 6)).isEnabled("web_socket_auto_reply_to_close")
    assert Compatibility(datetime.date(2026, 4, 7)).isEnabled("web_socket_auto_reply_to_close")
    assert Compatibility(None).isEnabled("web_socket_auto_reply_to_close")
    assert Compatibility(datetime.date(2025, 1, 1), ("web_socket_auto_reply_to_close",)).isEnabled(
        "web_socket_auto_reply_to_close"
    )
    assert not Compatibility(datetime.date(2026, 6, 1), ("web_socket_manual_reply_to_close",)).isEnabled(
        "web_socket_auto_reply_to_close"
    )


def test_flags_are_checked_as_workerd_checks_them():
    """Unknown, repeated and contradictory flags, and a future date, are refused."""
    with pytest.raises(CompatibilityError, match="No such compatibility flag: python_worker$"):
        resolveFlags(None, ["python_worker"])
    with pytest.raises(CompatibilityError, match="specified multiple times: python_workers"):
        resolveFlags(None, ["python_workers", "python_workers"])
    with pytest.raises(CompatibilityError, match="mutually contradictory: web_socket_auto_reply_to_close vs web_socket_manual_reply_to_close"):
        resolveFlags(None, ["web_socket_auto_reply_to_close", "web_socket_manual_reply_to_close"])
    with pytest.raises(CompatibilityError, match="in the future"):
        resolveFlags(datetime.date(2030, 1, 1), [], today=datetime.date(2026, 1, 1))
    lines = problems(minimal(compatibility_flags=["python_workers", "no_such_flag"]))
    assert lines == ("wrangler.json: compatibility_flags: No such compatibility flag: no_such_flag",)


# -- cron expressions -----------------------------------------------------------------------------


def _next(expr: str, after: datetime.datetime) -> datetime.datetime:
    found = parseCron(expr).nextAfter(after)
    assert found is not None
    return found


def test_cloudflare_documented_cron_examples():
    """The examples in Cloudflare's Cron Triggers docs mean what the docs say (1 = Sunday)."""
    start = datetime.datetime(2026, 8, 1, 0, 0, tzinfo=UTC)  # a Saturday
    assert _next("0 17 * * sun", start) == _next("0 17 * * 1", start) == datetime.datetime(2026, 8, 2, 17, 0, tzinfo=UTC)
    assert _next("10 7 * * mon-fri", start) == _next("10 7 * * 2-6", start) == datetime.datetime(2026, 8, 3, 7, 10, tzinfo=UTC)
    assert _next("0 18 * * 6L", start) == _next("0 18 * * friL", start) == datetime.datetime(2026, 8, 28, 18, 0, tzinfo=UTC)
    assert _next("59 23 LW * *", start) == datetime.datetime(2026, 8, 31, 23, 59, tzinfo=UTC)  # a Monday
    assert _next("0 15 1 * *", start) == datetime.datetime(2026, 8, 1, 15, 0, tzinfo=UTC)
    assert _next("0 15 1 * *", _next("0 15 1 * *", start)) == datetime.datetime(2026, 9, 1, 15, 0, tzinfo=UTC)
    assert _next("*/30 * * * *", start) == datetime.datetime(2026, 8, 1, 0, 30, tzinfo=UTC)


def test_cron_day_extensions():
    """L-n, nW (not leaving the month), n#k, L alone, wrapping ranges, and either-day matching."""
    start = datetime.datetime(2026, 8, 1, tzinfo=UTC)
    assert _next("0 0 L-2 * *", start).day == 29
    # 2026-08-01 is a Saturday: 1W is Monday the 3rd, not Friday July 31st.
    assert _next("0 0 1W * *", start).date() == datetime.date(2026, 8, 3)
    # 2026-05-31 is a Sunday: 31W is Friday the 29th.
    assert _next("0 0 31W 5 *", start).date() == datetime.date(2027, 5, 31)  # 2027-05-31 is a Monday
    assert _next("0 0 31W 5 *", datetime.datetime(2026, 5, 1, tzinfo=UTC)).date() == datetime.date(2026, 5, 29)
    assert _next("0 10 * * MON#2", start).date() == datetime.date(2026, 8, 10)
    assert _next("0 0 * * L", start).date() == datetime.date(2026, 8, 8)  # L alone: Saturday
    assert {_next("0 0 * * FRI-MON", start + datetime.timedelta(days=d)).strftime("%a") for d in range(7)} == {"Fri", "Sat", "Sun", "Mon"}
    # Both day fields restricted: either matches (the 13th, or any Friday).
    hits = []
    t = datetime.datetime(2026, 11, 1, tzinfo=UTC)
    for _ in range(6):
        t = _next("0 0 13 * FRI", t)
        hits.append(t.day)
    assert hits == [6, 13, 20, 27, 4, 11]


def test_cron_refusals():
    """Cloudflare's parser refuses these; so do we, naming the field."""
    for expr, message in (
        ("* * * *", "expected 5 fields"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("* * * * 0", "day of week: 0 is out of range 1-7"),
        ("*/0 * * * *", "step 0 is out of range"),
        ("*/60 * * * *", "step 60 is out of range 1-59"),
        ("*,5 * * * *", "'*' cannot be part of a list"),
        ("* * * * MON#6", "#k needs k from 1 to 5"),
        ("* * L-31 * *", "L-n needs n from 1 to 30"),
        ("0 0 31 2 *", "never fire"),
        ("* * * * fri-l", "is not a value"),
        (5, "must be a string"),
    ):
        with pytest.raises(CronError, match=message):
            parseCron(expr)  # type: ignore[arg-type]
    (line,) = problems(minimal(triggers={"crons": ["61 * * * *"]}))
    assert line == "wrangler.json: triggers.crons[0]: cron '61 * * * *': minute: 61 is out of range 0-59"


def _randomTerm(rng: random.Random, low: int, high: int) -> str:
    kind = rng.randrange(4)
    a = rng.randint(low, high)
    if kind == 0:
        return str(a)
    b = rng.randint(a, high)
    if kind == 1:
        return f"{a}-{b}"
    step = rng.randint(1, max(1, high - low))
    if kind == 2:
        return f"{a}/{step}"
    return f"{a}-{b}/{step}"


def _randomField(rng: random.Random, low: int, high: int) -> str:
    if rng.random() < 0.25:
        return "*"
    return ",".join(_randomTerm(rng, low, high) for _ in range(rng.randint(1, 3)))


def _toVixieDow(field: str) -> str:
    """Cloudflare's weekday numbers (1 = Sunday) as Vixie cron's (0 = Sunday), for cronsim."""
    if field == "*":
        return field
    out = []
    for term in field.split(","):
        base, slash, step = term.partition("/")
        a, dash, b = base.partition("-")
        base = str(int(a) - 1) + (f"-{int(b) - 1}" if dash else "")
        if slash and not dash:
            base = f"{base}-6"  # Vixie's open-ended step would run to 7 (Sunday again)
        out.append(base + (f"/{step}" if slash else ""))
    return ",".join(out)


def test_cron_agrees_with_cronsim_on_the_common_subset():
    """On expressions both understand, the next 5 firing times match cronsim's (seeded)."""
    cronsim = pytest.importorskip("cronsim")
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(300):
        minute = _randomField(rng, 0, 59)
        hour = _randomField(rng, 0, 23)
        month = _randomField(rng, 1, 12)
        dom, dow = _randomField(rng, 1, 28), _randomField(rng, 1, 7)
        # cronsim ANDs the day fields when either starts with "*": keep those cases unambiguous.
        if dom.startswith("*") != dow.startswith("*") and "*" not in (dom, dow):
            dom = dom.lstrip("*/") or "1"
            dow = dow.lstrip("*/") or "1"
        if (dom.startswith("*") and dom != "*") or (dow.startswith("*") and dow != "*"):
            continue
        ours = f"{minute} {hour} {dom} {month} {dow}"
        theirs = f"{minute} {hour} {dom} {month} {_toVixieDow(dow)}"
        start = datetime.datetime(2026, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                                  rng.randint(0, 59), tzinfo=UTC)
        schedule = parseCron(ours)
        expected = cronsim.CronSim(theirs, start)
        t = start
        for _ in range(5):
            got = schedule.nextAfter(t)
            want = next(expected)
            assert got == want, f"seed {seed}: {ours!r} after {t}: {got} != {want}"
            t = got
