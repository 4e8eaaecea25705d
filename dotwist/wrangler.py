"""Cloudflare's Wrangler configuration (``wrangler.jsonc``, ``wrangler.json``, ``wrangler.toml``).

:func:`loadConfig` reads one configuration file (and the ``.dev.vars`` secrets beside it) into a
:class:`WranglerConfig`: immutable, typed, and checked as a whole. Every mistake is refused with the
file and the key path named (``wrangler.jsonc: durable_objects.bindings[0].class_name: expected a
string, got 3``); all mistakes are reported together, and nothing is returned half-configured.

What dotwist does with each key is decided per key, from what wrangler itself accepts (the key
table is ``docs/wrangler.md``):

- supported: ``name``, ``main``, ``compatibility_date``, ``compatibility_flags``,
  ``durable_objects.bindings``, ``migrations``, ``vars``, ``secrets.required``, ``triggers.crons``,
  ``services`` that bind this Worker's own entrypoints, ``env.<name>`` environments;
- ignored (accepted, listed in :attr:`WranglerConfig.ignored`): keys about deploying, bundling,
  routing and observing on Cloudflare that change nothing in how dotwist runs the Worker;
- a binding kind dotwist does not have (KV, R2, D1, Queues, AI, ...): refused, naming the key and
  the kind, unless the caller passes ``allowMissingBindings=True``; then it is listed in
  :attr:`WranglerConfig.skipped` and the binding is absent from ``env``;
- refused: keys wrangler itself refuses (``legacy_env``, ``node_compat``), keys that need another
  Worker (``script_name``, ``transferred_classes``), and ``exports`` (use ``migrations``);
- anything else is an unknown key, refused.

Only :func:`loadConfig` touches the file system (it reads the files it is given and checks that
``main`` exists); :func:`parseConfig` is pure and takes the texts.
"""

from __future__ import annotations

import datetime
import io
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Optional, Sequence

import json5
from dotenv import dotenv_values

from .compat_flags import Compatibility, CompatibilityError, parseDate, resolveFlags
from .cron import CronError, CronSchedule, parseCron
from .errors import ConfigError

__all__ = [
    "CONFIG_NAMES",
    "DurableObjectBinding",
    "Migration",
    "ServiceBinding",
    "SkippedBinding",
    "WranglerConfig",
    "WranglerConfigError",
    "findConfig",
    "loadConfig",
    "parseConfig",
]

#: The file names wrangler looks for, in its order of preference.
CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")

# -- the key table --------------------------------------------------------------------------------

#: Keys of an environment (top level or ``env.<name>``) that dotwist reads.
SUPPORTED_KEYS = frozenset(
    {
        "name",
        "main",
        "compatibility_date",
        "compatibility_flags",
        "durable_objects",
        "migrations",
        "vars",
        "secrets",
        "triggers",
        "services",
    }
)

#: Keys wrangler accepts that change nothing in how dotwist runs the Worker, with the reason.
IGNORED_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "$schema": "editor schema hint",
        "account_id": "Cloudflare account",
        "workers_dev": "workers.dev deployment",
        "preview_urls": "preview deployments",
        "routes": "Cloudflare routing; dotwist serves what --listen says",
        "route": "Cloudflare routing; dotwist serves what --listen says",
        "tsconfig": "JavaScript bundling",
        "jsx_factory": "JavaScript bundling",
        "jsx_fragment": "JavaScript bundling",
        "rules": "module rules for wrangler's bundler; dotwist imports Python modules normally",
        "build": "wrangler's custom build step; run it yourself before starting dotwist",
        "no_bundle": "JavaScript bundling",
        "minify": "JavaScript bundling",
        "keep_names": "JavaScript bundling",
        "find_additional_modules": "wrangler's module upload",
        "preserve_file_names": "wrangler's module upload",
        "base_dir": "wrangler's module upload",
        "alias": "JavaScript bundling",
        "define": "JavaScript build-time substitution",
        "first_party_worker": "Cloudflare-internal",
        "logpush": "Cloudflare log delivery",
        "upload_source_maps": "JavaScript source maps",
        "observability": "Cloudflare's logs and traces; dotwist logs through twistd",
        "placement": "Cloudflare's Smart Placement",
        "limits": "Cloudflare's CPU and subrequest limits; dotwist's limits are twistd options",
        "compliance_region": "Cloudflare's compliance regions",
        "python_modules": "wrangler's packaging of vendored Python modules",
        "previews": "preview deployments",
        "access": "Cloudflare Access in front of the Worker",
        "cache": "Cloudflare's cache in front of the Worker",
        "tail_consumers": "other Workers that receive this one's traces",
        "streaming_tail_consumers": "other Workers that receive this one's traces",
        "send_metrics": "wrangler's telemetry",
        "keep_vars": "deploy-time handling of dashboard variables",
        "dependencies_instrumentation": "wrangler's telemetry",
        "addresses": "wrangler's deploy settings",
        "dev": "wrangler dev's own server settings; dotwist's are twistd options",
        "wasm_modules": "service-worker-format JavaScript modules",
        "text_blobs": "service-worker-format JavaScript modules",
        "data_blobs": "service-worker-format JavaScript modules",
    }
)

#: Keys that are only valid at the top level of the file.
TOP_LEVEL_ONLY = frozenset(
    {
        "send_metrics",
        "keep_vars",
        "dependencies_instrumentation",
        "addresses",
        "dev",
        "alias",
        "wasm_modules",
        "text_blobs",
        "data_blobs",
        "site",
        "pages_build_output_dir",
        "legacy_env",
        "env",
        "$schema",
    }
)

#: Binding kinds dotwist does not have: key -> what it is.
UNSUPPORTED_BINDINGS: Mapping[str, str] = MappingProxyType(
    {
        "kv_namespaces": "Workers KV namespaces",
        "r2_buckets": "R2 buckets",
        "d1_databases": "D1 databases",
        "queues": "Queues",
        "ai": "Workers AI",
        "vectorize": "Vectorize indexes",
        "hyperdrive": "Hyperdrive configurations",
        "workflows": "Workflows",
        "analytics_engine_datasets": "Analytics Engine datasets",
        "browser": "Browser Rendering",
        "images": "Images",
        "media": "Media Transformations",
        "stream": "Stream",
        "version_metadata": "version metadata",
        "dispatch_namespaces": "Workers for Platforms dispatch namespaces",
        "mtls_certificates": "mTLS certificates",
        "pipelines": "Pipelines",
        "secrets_store_secrets": "Secrets Store secrets",
        "artifacts": "Artifacts",
        "unsafe_hello_world": "the hello-world test binding",
        "flagship": "Flagship feature flags",
        "worker_loaders": "Worker Loaders",
        "ratelimits": "Rate Limiting",
        "vpc_services": "VPC services",
        "vpc_networks": "VPC networks",
        "send_email": "Email sending",
        "connect": "outbound connect bindings",
        "ai_search_namespaces": "AI Search namespaces",
        "ai_search": "AI Search",
        "websearch": "web search",
        "agent_memory": "Agent Memory",
        "cloudchamber": "Cloudchamber",
        "containers": "Containers",
        "assets": "static assets",
        "unsafe": "unsafe bindings",
        "logfwdr": "logfwdr bindings",
        "site": "Workers Sites",
    }
)

#: Keys refused whatever the caller opts into, with the reason.
REFUSED_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "legacy_env": 'wrangler no longer supports "legacy_env"; remove it',
        "node_compat": 'wrangler no longer supports "node_compat"; use the nodejs_compat flag',
        "exports": "declarative Durable Object exports are not supported yet; use migrations",
        "pages_build_output_dir": "this is a Pages project, not a Worker",
    }
)

#: Keys an environment does not inherit from the top level (wrangler's "non-inheritable" keys):
#: bindings and variables must be repeated in each ``env.<name>``.
NOT_INHERITED = frozenset(
    """vars secrets define durable_objects workflows kv_namespaces cloudchamber containers
    send_email queues connect r2_buckets d1_databases vectorize ai_search_namespaces ai_search
    websearch agent_memory hyperdrive services analytics_engine_datasets dispatch_namespaces
    mtls_certificates tail_consumers streaming_tail_consumers unsafe browser ai images stream media
    pipelines secrets_store_secrets artifacts unsafe_hello_world flagship worker_loaders ratelimits
    vpc_services vpc_networks version_metadata""".split()
)

_KNOWN_ENV_KEYS = (
    SUPPORTED_KEYS | frozenset(IGNORED_KEYS) | frozenset(UNSUPPORTED_BINDINGS) | frozenset(REFUSED_KEYS)
)


# -- the result -----------------------------------------------------------------------------------


class WranglerConfigError(ConfigError):
    """The configuration is not usable. ``problems`` has one line per mistake."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class DurableObjectBinding:
    """``env.<name>`` is the namespace of the Durable Object class ``className``."""

    name: str
    className: str


@dataclass(frozen=True)
class ServiceBinding:
    """``env.<name>`` calls this Worker's own entrypoint class ``entrypoint``."""

    name: str
    entrypoint: str


@dataclass(frozen=True)
class Migration:
    """One ``[[migrations]]`` entry, in the order the file lists them."""

    tag: str
    newClasses: tuple[str, ...] = ()
    newSqliteClasses: tuple[str, ...] = ()
    #: (from, to) pairs
    renamedClasses: tuple[tuple[str, str], ...] = ()
    deletedClasses: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkippedBinding:
    """A binding of a kind dotwist does not have, left out because the caller allowed it."""

    key: str
    kind: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class WranglerConfig:
    """One Worker's configuration, for one environment, checked as a whole."""

    #: The file, as the caller named it.
    path: str
    #: The directory the file is in; ``main`` and ``.dev.vars`` are relative to it.
    directory: str
    #: The selected ``env.<name>``, or None for the top level.
    environment: Optional[str]
    #: Every environment the file defines.
    environments: tuple[str, ...]
    #: The Worker's name (``<name>-<env>`` for an environment that names none, as wrangler does).
    name: Optional[str]
    #: ``main`` as written (``src/entry.py``) and resolved against ``directory``.
    main: str
    mainPath: str
    compatibilityDate: Optional[datetime.date]
    compatibilityFlags: tuple[str, ...]
    compatibility: Compatibility
    durableObjects: tuple[DurableObjectBinding, ...]
    services: tuple[ServiceBinding, ...]
    migrations: tuple[Migration, ...]
    #: ``[vars]``: strings, numbers, booleans and JSON values, read-only (see :meth:`envBindings`).
    vars: Mapping[str, Any]
    #: From ``.dev.vars`` (or ``.dev.vars.<env>``): strings, overriding ``vars`` of the same name.
    secrets: Mapping[str, str]
    secretsPath: Optional[str]
    crons: tuple[CronSchedule, ...]
    #: Key paths present in the file that dotwist accepts and ignores.
    ignored: tuple[str, ...] = ()
    #: Bindings left out because the caller allowed missing bindings.
    skipped: tuple[SkippedBinding, ...] = field(default=())

    @property
    def mainModule(self) -> str:
        """The module name of ``main`` (``entry`` for ``src/entry.py``)."""
        return os.path.splitext(os.path.basename(self.mainPath))[0]

    @property
    def moduleRoot(self) -> str:
        """The directory ``main`` is imported from (Cloudflare puts ``main``'s directory first)."""
        return os.path.dirname(self.mainPath)

    @property
    def boundClasses(self) -> frozenset[str]:
        return frozenset(b.className for b in self.durableObjects)

    def envBindings(self) -> dict[str, Any]:
        """Plain values for ``env``: ``vars`` (fresh mutable copies of JSON values) and secrets."""
        values: dict[str, Any] = {name: _thaw(value) for name, value in self.vars.items()}
        values.update(self.secrets)
        return values


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


# -- checking -------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, (dict, list, str, bool, int, float)) or value is None:
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            pass
    return repr(value)


def _typeName(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _Problems:
    def __init__(self, label: str) -> None:
        self.label = label
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{self.label}: {path}: {message}" if path else f"{self.label}: {message}")

    def expect(self, path: str, value: Any, kind: type, noun: str) -> bool:
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if not ok:
            self.add(path, f"expected {noun}, got {_show(value)}")
        return ok

    def string(self, path: str, value: Any) -> bool:
        return self.expect(path, value, str, "a string")

    def identifier(self, path: str, value: Any, what: str) -> bool:
        if not self.string(path, value):
            return False
        if not value.isidentifier():
            self.add(path, f"{_show(value)} is not a valid {what} (letters, digits and _ only)")
            return False
        return True

    def stringList(self, path: str, value: Any) -> Optional[tuple[str, ...]]:
        if not self.expect(path, value, list, "an array of strings"):
            return None
        good = True
        for i, item in enumerate(value):
            good = self.string(f"{path}[{i}]", item) and good
        return tuple(value) if good else None

    def keys(self, path: str, value: dict[str, Any], allowed: Iterable[str]) -> None:
        allowedSet = set(allowed)
        for key in value:
            if key not in allowedSet:
                where = f"{path}.{key}" if path else key
                self.add(where, f"unknown key (allowed: {', '.join(sorted(allowedSet))})")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _bindingNames(key: str, value: Any) -> tuple[str, ...]:
    """The binding names an unsupported binding key declares, for messages."""
    names: list[str] = []

    def take(entry: Any) -> None:
        if isinstance(entry, dict):
            for field_ in ("binding", "name"):
                if isinstance(entry.get(field_), str):
                    names.append(entry[field_])
                    return

    if isinstance(value, list):
        for entry in value:
            take(entry)
    elif isinstance(value, dict):
        if key == "queues":
            for entry in value.get("producers") or []:
                take(entry)
            if value.get("consumers"):
                names.append("(queue consumers)")
        elif key in ("unsafe", "logfwdr"):
            for entry in value.get("bindings") or []:
                take(entry)
        else:
            take(value)
    return tuple(names)


def _isEmpty(value: Any) -> bool:
    if value in (None, [], {}):
        return True
    if isinstance(value, dict):
        return all(_isEmpty(v) for v in value.values())
    return False


@dataclass
class _Env:
    """One environment's raw table after inheritance, with where each key came from."""

    values: dict[str, Any]
    origin: dict[str, str]  # key -> key path prefix ("" or "env.staging")


def _resolveEnvironment(
    raw: dict[str, Any], envName: Optional[str], problems: _Problems
) -> Optional[_Env]:
    top = {k: v for k, v in raw.items() if k not in TOP_LEVEL_ONLY or k == "$schema"}
    if envName is None:
        return _Env(dict(top), {k: "" for k in top})
    envs = raw.get("env")
    if not isinstance(envs, dict) or envName not in envs:
        defined = sorted(envs) if isinstance(envs, dict) else []
        problems.add(
            "env",
            f"no environment named {envName!r}"
            + (f" (environments: {', '.join(defined)})" if defined else " (the file defines none)"),
        )
        return None
    section = envs[envName]
    if not isinstance(section, dict):
        return None  # reported by _checkEnvironments
    prefix = f"env.{envName}"
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in top.items():
        if key not in NOT_INHERITED:
            values[key] = value
            origin[key] = ""
    for key, value in section.items():
        values[key] = value
        origin[key] = prefix
    if "name" not in section and isinstance(top.get("name"), str):
        values["name"] = f"{top['name']}-{envName}"
    return _Env(values, origin)


def _checkEnvironments(raw: dict[str, Any], problems: _Problems) -> tuple[str, ...]:
    envs = raw.get("env")
    if envs is None:
        return ()
    if not problems.expect("env", envs, dict, "an object of environments"):
        return ()
    for name, section in envs.items():
        path = f"env.{name}"
        if not problems.expect(path, section, dict, "an object"):
            continue
        for key in section:
            if key in TOP_LEVEL_ONLY and key != "$schema":
                problems.add(_join(path, key), "only allowed at the top level of the file")
            elif key not in _KNOWN_ENV_KEYS:
                problems.add(_join(path, key), "unknown key")
    return tuple(envs)


def parseConfig(
    text: str,
    path: str,
    *,
    env: Optional[str] = None,
    devVars: Optional[str] = None,
    devVarsPath: Optional[str] = None,
    allowMissingBindings: bool = False,
    today: Optional[datetime.date] = None,
) -> WranglerConfig:
    """Check the text of a configuration file; pure (no file system).

    ``path`` names the file in messages and decides the format (``.toml``: TOML; ``.json`` and
    ``.jsonc``: JSON with comments and trailing commas). ``devVars`` is the text of the
    ``.dev.vars`` file, if there is one. Raises :class:`WranglerConfigError` listing every mistake.
    """
    label = path
    problems = _Problems(label)
    raw = _parseText(text, path, problems)
    if raw is None:
        raise WranglerConfigError(problems.lines)

    for key in raw:
        if key in REFUSED_KEYS:
            problems.add(key, REFUSED_KEYS[key])
        elif key not in _KNOWN_ENV_KEYS and key not in TOP_LEVEL_ONLY:
            problems.add(key, "unknown key")
    environments = _checkEnvironments(raw, problems)
    if isinstance(raw.get("env"), dict):
        for name, section in raw["env"].items():
            if isinstance(section, dict):
                for key in section:
                    if key in REFUSED_KEYS:
                        problems.add(f"env.{name}.{key}", REFUSED_KEYS[key])

    resolved = _resolveEnvironment(raw, env, problems)
    if resolved is None:
        raise WranglerConfigError(problems.lines)
    values, origin = resolved.values, resolved.origin

    def where(key: str) -> str:
        return _join(origin.get(key, ""), key)

    ignored = sorted(where(k) for k in values if k in IGNORED_KEYS)
    ignored += sorted(k for k in raw if k in TOP_LEVEL_ONLY and k in IGNORED_KEYS and k != "$schema")

    # name
    name = values.get("name")
    if name is not None and not problems.string(where("name"), name):
        name = None

    # main
    main = values.get("main")
    mainPath = ""
    if main is None:
        problems.add("main", "missing: dotwist needs the Worker's Python module, e.g. \"src/entry.py\"")
        main = ""
    elif problems.string(where("main"), main):
        if not main.endswith(".py"):
            problems.add(where("main"), f"{_show(main)} is not a Python module (.py); dotwist runs Python Workers")
        mainPath = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), main))
    else:
        main = ""

    # compatibility date and flags
    compatDate: Optional[datetime.date] = None
    if values.get("compatibility_date") is not None:
        try:
            compatDate = parseDate(values["compatibility_date"])
        except CompatibilityError as e:
            problems.add(where("compatibility_date"), str(e))
    flags: tuple[str, ...] = ()
    if "compatibility_flags" in values:
        flags = problems.stringList(where("compatibility_flags"), values["compatibility_flags"]) or ()
    compatibility = Compatibility(compatDate, flags)
    try:
        compatibility = resolveFlags(compatDate, flags, today)
    except CompatibilityError as e:
        problems.add(where("compatibility_flags"), str(e))
    if isinstance(main, str) and main.endswith(".py") and "python_workers" not in flags:
        problems.add(
            where("compatibility_flags"),
            "The `python_workers` compatibility flag is required to use Python (wrangler refuses "
            "this file without it)",
        )

    # durable objects
    bindings: list[DurableObjectBinding] = []
    bindingPaths: dict[str, str] = {}  # class name -> path of its first binding
    if "durable_objects" in values:
        bindings = _durableObjects(values["durable_objects"], where("durable_objects"), name, problems)
        for i, b in enumerate(bindings):
            bindingPaths.setdefault(b.className, f"{where('durable_objects')}.bindings[{i}]")

    # services
    services: list[ServiceBinding] = []
    skipped: list[SkippedBinding] = []
    if "services" in values:
        services, foreign = _services(values["services"], where("services"), name, problems)
        if foreign:
            _unsupported(where("services"), "service bindings to other Workers", foreign,
                         allowMissingBindings, problems, skipped)

    # migrations
    migrations: list[Migration] = []
    if "migrations" in values:
        migrations = _migrations(values["migrations"], where("migrations"), problems)
    _checkLineage(migrations, bindings, bindingPaths, where("migrations"), problems)

    # vars and secrets
    varValues: dict[str, Any] = {}
    if "vars" in values:
        varValues = _vars(values["vars"], where("vars"), problems)
    required: Optional[tuple[str, ...]] = None
    if "secrets" in values:
        required = _secretsRequired(values["secrets"], where("secrets"), problems)
    secrets: dict[str, str] = {}
    if devVars is not None:
        secrets = _devVars(devVars, devVarsPath or ".dev.vars", varValues, required, problems)
    if required:
        for key in required:
            if key not in secrets:
                problems.add(
                    where("secrets") + ".required",
                    f"secret {key} is not set in {devVarsPath or '.dev.vars'}",
                )

    # triggers
    crons: list[CronSchedule] = []
    if "triggers" in values:
        crons = _triggers(values["triggers"], where("triggers"), allowMissingBindings, problems, skipped)

    # binding kinds dotwist does not have
    for key in sorted(values):
        if key in UNSUPPORTED_BINDINGS and not _isEmpty(values[key]):
            names = _bindingNames(key, values[key])
            _unsupported(where(key), UNSUPPORTED_BINDINGS[key], names, allowMissingBindings,
                         problems, skipped)
    if "site" in raw and not _isEmpty(raw["site"]) and "site" not in values:
        _unsupported("site", UNSUPPORTED_BINDINGS["site"], ("__STATIC_CONTENT",),
                     allowMissingBindings, problems, skipped)

    # one name per binding
    seen: dict[str, str] = {}
    named = [(b.name, f"{where('durable_objects')}.bindings[{i}].name") for i, b in enumerate(bindings)]
    named += [(s.name, where("services")) for s in services]
    named += [(n, f"{where('vars')}.{n}") for n in varValues]
    named += [(n, s.key) for s in skipped for n in s.names if not n.startswith("(")]
    for bindingName, at in named:
        if bindingName in seen:
            problems.add(at, f"binding name {bindingName} is already used by {seen[bindingName]}")
        else:
            seen[bindingName] = at

    if problems.lines:
        raise WranglerConfigError(problems.lines)
    return WranglerConfig(
        path=path,
        directory=os.path.dirname(os.path.abspath(path)),
        environment=env,
        environments=environments,
        name=name,
        main=main,
        mainPath=mainPath,
        compatibilityDate=compatDate,
        compatibilityFlags=flags,
        compatibility=compatibility,
        durableObjects=tuple(bindings),
        services=tuple(services),
        migrations=tuple(migrations),
        vars=MappingProxyType({k: _freeze(v) for k, v in varValues.items()}),
        secrets=MappingProxyType(dict(secrets)),
        secretsPath=devVarsPath if devVars is not None else None,
        crons=tuple(crons),
        ignored=tuple(ignored),
        skipped=tuple(skipped),
    )


def _unsupported(
    path: str,
    kind: str,
    names: tuple[str, ...],
    allow: bool,
    problems: _Problems,
    skipped: list[SkippedBinding],
) -> None:
    if allow:
        skipped.append(SkippedBinding(path, kind, names))
        return
    which = f" (binding {', '.join(names)})" if names else ""
    problems.add(
        path,
        f"dotwist has no {kind}{which}; remove it, or allow missing bindings to start without it",
    )


def _parseText(text: str, path: str, problems: _Problems) -> Optional[dict[str, Any]]:
    lower = path.lower()
    try:
        if lower.endswith(".toml"):
            raw: Any = tomllib.loads(text)
        elif lower.endswith((".json", ".jsonc")):
            raw = json5.loads(text, allow_duplicate_keys=False, parse_constant=_noConstant)
        else:
            problems.add("", "not a wrangler configuration file (expected .jsonc, .json or .toml)")
            return None
    except (ValueError, tomllib.TOMLDecodeError) as e:
        problems.add("", f"cannot parse: {e}")
        return None
    if not isinstance(raw, dict):
        problems.add("", f"expected an object at the top level, got {_typeName(raw)}")
        return None
    return raw


def _noConstant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a configuration file")


def _durableObjects(
    value: Any, path: str, workerName: Optional[str], problems: _Problems
) -> list[DurableObjectBinding]:
    if not problems.expect(path, value, dict, "an object with \"bindings\""):
        return []
    problems.keys(path, value, ["bindings"])
    entries = value.get("bindings", [])
    bpath = f"{path}.bindings"
    if not problems.expect(bpath, entries, list, "an array"):
        return []
    result = []
    for i, entry in enumerate(entries):
        at = f"{bpath}[{i}]"
        if not problems.expect(at, entry, dict, "an object"):
            continue
        problems.keys(at, entry, ["name", "class_name", "script_name", "environment"])
        ok = True
        for key in ("name", "class_name"):
            if key not in entry:
                problems.add(f"{at}.{key}", "missing")
                ok = False
        if not ok:
            continue
        ok = problems.identifier(f"{at}.name", entry["name"], "binding name")
        ok = problems.identifier(f"{at}.class_name", entry["class_name"], "class name") and ok
        script = entry.get("script_name")
        if script is not None and problems.string(f"{at}.script_name", script):
            if script != workerName:
                problems.add(
                    f"{at}.script_name",
                    f"points at another Worker ({script!r}); dotwist runs one Worker, so its "
                    "Durable Object classes must be defined in this Worker's main module",
                )
                ok = False
        environment = entry.get("environment")
        if environment is not None and problems.string(f"{at}.environment", environment):
            problems.add(f"{at}.environment", "names another Worker's environment; dotwist runs one Worker")
            ok = False
        if ok:
            result.append(DurableObjectBinding(entry["name"], entry["class_name"]))
    return result


def _services(
    value: Any, path: str, workerName: Optional[str], problems: _Problems
) -> tuple[list[ServiceBinding], tuple[str, ...]]:
    if not problems.expect(path, value, list, "an array"):
        return [], ()
    own: list[ServiceBinding] = []
    foreign: list[str] = []
    for i, entry in enumerate(value):
        at = f"{path}[{i}]"
        if not problems.expect(at, entry, dict, "an object"):
            continue
        problems.keys(at, entry, ["binding", "service", "entrypoint", "environment", "props", "remote"])
        if not problems.identifier(f"{at}.binding", entry.get("binding"), "binding name"):
            continue
        if not problems.string(f"{at}.service", entry.get("service")):
            continue
        entrypoint = entry.get("entrypoint", "Default")
        if not problems.identifier(f"{at}.entrypoint", entrypoint, "class name"):
            continue
        if entry["service"] == workerName and "environment" not in entry and "props" not in entry:
            own.append(ServiceBinding(entry["binding"], entrypoint))
        else:
            foreign.append(entry["binding"])
    return own, tuple(foreign)


def _migrations(value: Any, path: str, problems: _Problems) -> list[Migration]:
    if not problems.expect(path, value, list, "an array"):
        return []
    result = []
    tags: dict[str, int] = {}
    for i, entry in enumerate(value):
        at = f"{path}[{i}]"
        if not problems.expect(at, entry, dict, "an object"):
            continue
        problems.keys(
            at,
            entry,
            ["tag", "new_classes", "new_sqlite_classes", "renamed_classes", "deleted_classes",
             "transferred_classes"],
        )
        ok = True
        if "tag" not in entry:
            problems.add(f"{at}.tag", "missing")
            ok = False
        elif problems.string(f"{at}.tag", entry["tag"]):
            if entry["tag"] in tags:
                problems.add(f"{at}.tag", f"{_show(entry['tag'])} is already the tag of {path}[{tags[entry['tag']]}]")
                ok = False
            else:
                tags[entry["tag"]] = i
        else:
            ok = False
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("new_classes", "new_sqlite_classes", "deleted_classes"):
            if key in entry:
                got = problems.stringList(f"{at}.{key}", entry[key])
                if got is None:
                    ok = False
                else:
                    for j, cls in enumerate(got):
                        ok = problems.identifier(f"{at}.{key}[{j}]", cls, "class name") and ok
                    lists[key] = got
        renames: list[tuple[str, str]] = []
        if "renamed_classes" in entry:
            rpath = f"{at}.renamed_classes"
            if problems.expect(rpath, entry["renamed_classes"], list, "an array of {from, to}"):
                for j, pair in enumerate(entry["renamed_classes"]):
                    pat = f"{rpath}[{j}]"
                    if not problems.expect(pat, pair, dict, "an object {from, to}"):
                        ok = False
                        continue
                    problems.keys(pat, pair, ["from", "to"])
                    good = True
                    for key in ("from", "to"):
                        if key not in pair:
                            problems.add(f"{pat}.{key}", "missing")
                            good = False
                        else:
                            good = problems.identifier(f"{pat}.{key}", pair[key], "class name") and good
                    if good:
                        renames.append((pair["from"], pair["to"]))
                    ok = ok and good
            else:
                ok = False
        if "transferred_classes" in entry:
            problems.add(
                f"{at}.transferred_classes",
                "transfers a class from another Worker; dotwist runs one Worker (rename the class "
                "with renamed_classes, and move its data directory)",
            )
            ok = False
        if ok:
            result.append(
                Migration(
                    entry["tag"],
                    lists.get("new_classes", ()),
                    lists.get("new_sqlite_classes", ()),
                    tuple(renames),
                    lists.get("deleted_classes", ()),
                )
            )
    return result


def _checkLineage(
    migrations: Sequence[Migration],
    bindings: Sequence[DurableObjectBinding],
    bindingPaths: Mapping[str, str],
    path: str,
    problems: _Problems,
) -> None:
    """Replay the migrations in order: each step must make sense, and the end must match the
    bindings (every bound class exists; every existing class is bound; no deleted class is bound)."""
    live: dict[str, str] = {}  # class -> where it got its current name
    gone: dict[str, str] = {}  # class -> where it was deleted or renamed away
    for i, m in enumerate(migrations):
        at = f"{path}[{i}]"
        for key, classes in (("new_classes", m.newClasses), ("new_sqlite_classes", m.newSqliteClasses)):
            for cls in classes:
                if cls in live:
                    problems.add(f"{at}.{key}", f"{cls} already exists (from {live[cls]})")
                else:
                    live[cls] = f"{at}.{key}"
                    gone.pop(cls, None)
        for src, dst in m.renamedClasses:
            if src not in live:
                problems.add(f"{at}.renamed_classes", f"renames {src}, which no earlier migration created"
                             + (f" (it was removed by {gone[src]})" if src in gone else ""))
                continue
            if dst in live:
                problems.add(f"{at}.renamed_classes", f"renames {src} to {dst}, which already exists (from {live[dst]})")
                continue
            del live[src]
            gone[src] = f"{at}.renamed_classes"
            live[dst] = f"{at}.renamed_classes"
            gone.pop(dst, None)
        for cls in m.deletedClasses:
            if cls not in live:
                problems.add(f"{at}.deleted_classes", f"deletes {cls}, which no earlier migration created")
                continue
            del live[cls]
            gone[cls] = f"{at}.deleted_classes"
    for i, b in enumerate(bindings):
        if b.className in live:
            continue
        bpath = f"{bindingPaths.get(b.className, 'durable_objects.bindings')}"
        if b.className in gone:
            problems.add(
                f"{bpath}.class_name",
                f"{b.className} was removed by {gone[b.className]}, but is still bound as {b.name}",
            )
        else:
            problems.add(
                f"{bpath}.class_name",
                f"no migration creates {b.className}; add a migration such as "
                f'{{"tag": "v{len(migrations) + 1}", "new_sqlite_classes": ["{b.className}"]}}',
            )
    bound = {b.className for b in bindings}
    for cls, origin in live.items():
        if cls not in bound:
            problems.add(
                path,
                f"{cls} (from {origin}) is not bound in durable_objects.bindings; bind it, or "
                "delete it with a migration (deleted_classes) to remove its data",
            )


def _vars(value: Any, path: str, problems: _Problems) -> dict[str, Any]:
    if not problems.expect(path, value, dict, "an object"):
        return {}
    result = {}
    for key, item in value.items():
        at = f"{path}.{key}"
        if not key.isidentifier():
            problems.add(at, f"{_show(key)} is not a valid binding name (letters, digits and _ only)")
            continue
        bad = _notJson(item)
        if bad is not None:
            problems.add(at, f"expected a string, number, boolean or JSON value, got {bad}")
            continue
        result[key] = item
    return result


def _notJson(value: Any) -> Optional[str]:
    """None if ``value`` is a JSON value Cloudflare accepts in ``vars``; otherwise what it is."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else _show(value)
    if isinstance(value, list):
        for item in value:
            bad = _notJson(item)
            if bad is not None:
                return bad
        return None
    if isinstance(value, dict):
        for item in value.values():
            bad = _notJson(item)
            if bad is not None:
                return bad
        return None
    return f"{type(value).__name__} {value!r}"


def _secretsRequired(value: Any, path: str, problems: _Problems) -> Optional[tuple[str, ...]]:
    if not problems.expect(path, value, dict, "an object"):
        return None
    problems.keys(path, value, ["required"])
    if "required" not in value:
        return ()
    return problems.stringList(f"{path}.required", value["required"])


def _devVars(
    text: str,
    label: str,
    varValues: Mapping[str, Any],
    required: Optional[tuple[str, ...]],
    problems: _Problems,
) -> dict[str, str]:
    """Secrets from a ``.dev.vars`` file, read as wrangler reads it (dotenv, no ``${}``
    expansion). With ``secrets.required`` declared, only those names and names of ``vars`` are
    taken, as wrangler does."""
    parsed = dotenv_values(stream=io.StringIO(text), interpolate=False)
    result: dict[str, str] = {}
    for key, value in parsed.items():
        if value is None:  # a line with no "=": dotenv (npm) ignores it
            continue
        if not key.isidentifier():
            problems.lines.append(f"{label}: {key}: not a valid binding name (letters, digits and _ only)")
            continue
        if required is not None and key not in required and key not in varValues:
            continue
        result[key] = value
    return result


def _triggers(
    value: Any,
    path: str,
    allow: bool,
    problems: _Problems,
    skipped: list[SkippedBinding],
) -> list[CronSchedule]:
    if not problems.expect(path, value, dict, "an object"):
        return []
    problems.keys(path, value, ["crons", "events"])
    result = []
    if "crons" in value:
        crons = problems.stringList(f"{path}.crons", value["crons"]) or ()
        for i, text in enumerate(crons):
            try:
                result.append(parseCron(text))
            except CronError as e:
                problems.add(f"{path}.crons[{i}]", str(e))
    if value.get("events"):
        _unsupported(f"{path}.events", "Artifacts event triggers", (), allow, problems, skipped)
    return result


# -- the file system ------------------------------------------------------------------------------


def findConfig(directory: str = ".") -> Optional[str]:
    """The configuration file wrangler would use in ``directory``, or None."""
    for name in CONFIG_NAMES:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def loadConfig(
    path: str,
    env: Optional[str] = None,
    *,
    allowMissingBindings: bool = False,
    today: Optional[datetime.date] = None,
) -> WranglerConfig:
    """Read and check ``path``, and ``.dev.vars`` (``.dev.vars.<env>`` first) beside it.

    Raises :class:`WranglerConfigError` with every mistake, each naming the file and the key.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise WranglerConfigError([f"{path}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise WranglerConfigError([f"{path}: not UTF-8 text: {e}"]) from None
    directory = os.path.dirname(path)
    devVars = devVarsPath = None
    candidates = [f".dev.vars.{env}"] if env is not None else []
    for name in candidates + [".dev.vars"]:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            try:
                with open(candidate, encoding="utf-8-sig") as f:
                    devVars = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise WranglerConfigError([f"{candidate}: cannot read: {e}"]) from None
            devVarsPath = candidate
            break
    config = parseConfig(
        text,
        path,
        env=env,
        devVars=devVars,
        devVarsPath=devVarsPath,
        allowMissingBindings=allowMissingBindings,
        today=today,
    )
    if not os.path.isfile(config.mainPath):
        raise WranglerConfigError([f"{path}: main: {config.main} does not exist ({config.mainPath})"])
    return config
