"""Applying Durable Object migrations to a data directory: the only part of migrations with I/O.

:func:`migrateDataDir` reads what the data directory records, asks :func:`dotwist.migrations.
planMigrations` what to do, does it, and records it. Files it keeps in the data directory:

``dotwist-migrations.json``
    The applied tags, each existing class with its ID key and storage kind, and the ID keys of
    deleted classes (never reused). Written atomically (a temporary file, fsync, rename).
``dotwist-migrations.journal.json``
    Present only while a plan is being applied: the whole plan and how many steps are done. A
    crash part-way leaves it behind, and the next :func:`migrateDataDir` finishes that plan before
    anything else. Every step can be redone: a rename that already happened (source gone,
    destination present) is skipped; a deletion first renames the class directory to a hidden
    ``.deleted-<tag>-<class>`` name (atomic), then removes that.
``dotwist-migrations.lock``
    Held (``flock``) while migrating, so two processes never migrate one directory at once.

A class's objects live in ``<dataDir>/<class>/`` (see :mod:`dotwist.storage.sqlite`); the alarm
index (``alarms.sqlite``) names them by class too, so renames and deletions update it as well.
Only directories named like a class (a Python identifier, not starting with ``.``) that hold at
least one file count as a class's data; anything else in the directory (``lost+found``) is left
alone.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from ..datadir import fsyncDirectory
from ..migrations import (
    ClassRecord,
    CreateClass,
    DeleteClass,
    MigrationError,
    MigrationPlan,
    RenameClass,
    Step,
    StoredState,
    planMigrations,
)
from ..wrangler import Migration

__all__ = [
    "JOURNAL_FILE",
    "LOCK_FILE",
    "STATE_FILE",
    "applyPlan",
    "migrateDataDir",
    "readState",
    "scanNamespaces",
]

STATE_FILE = "dotwist-migrations.json"
JOURNAL_FILE = "dotwist-migrations.journal.json"
LOCK_FILE = "dotwist-migrations.lock"
ALARM_INDEX = "alarms.sqlite"
_VERSION = 1

#: Called before each step is carried out, with its index and the step (tests raise from it to
#: simulate a crash part-way).
StepHook = Callable[[int, Step], None]


def scanNamespaces(dataDir: str) -> frozenset[str]:
    """The class directories in ``dataDir`` that hold at least one file."""
    found = set()
    try:
        entries = list(os.scandir(dataDir))
    except FileNotFoundError:
        return frozenset()
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.isidentifier() or not entry.is_dir():
            continue
        if any(files for _, _, files in os.walk(entry.path)):
            found.add(entry.name)
    return frozenset(found)


def readState(dataDir: str) -> StoredState:
    """What ``dataDir`` records (an unrecorded state if it has never recorded migrations)."""
    path = os.path.join(dataDir, STATE_FILE)
    namespaces = scanNamespaces(dataDir)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return StoredState(namespacesWithData=namespaces)
    try:
        data = json.loads(text)
        if data.get("version") != _VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        applied = tuple(_strings(data["applied"]))
        classes = {
            str(name): ClassRecord(str(rec["idKey"]), str(rec["storage"]))
            for name, rec in dict(data["classes"]).items()
        }
        retired = frozenset(_strings(data.get("retiredIdKeys", [])))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MigrationError(
            f"{path}: cannot read the record of applied migrations ({e}); restore it from a "
            "backup: without it dotwist cannot tell which migrations this data has seen"
        ) from None
    return StoredState(
        applied=applied,
        classes=MappingProxyType(classes),
        retiredIdKeys=retired,
        namespacesWithData=namespaces,
        recorded=True,
    )


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return value


def migrateDataDir(
    dataDir: str,
    migrations: Sequence[Migration],
    boundClasses: Iterable[str],
    beforeStep: Optional[StepHook] = None,
) -> MigrationPlan:
    """Bring ``dataDir`` up to ``migrations``; return the plan that was applied (maybe empty).

    Finishes a plan a crash interrupted first. Raises :class:`MigrationError` (changing nothing)
    if the configuration and the data disagree.
    """
    os.makedirs(dataDir, exist_ok=True)
    with _locked(dataDir):
        journal = _readJournal(dataDir)
        if journal is not None:
            plan, done = journal
            _carryOut(dataDir, plan, done, beforeStep)
        state = readState(dataDir)
        plan = planMigrations(migrations, boundClasses, state)
        if plan.steps or plan.pending or not state.recorded:
            _writeJournal(dataDir, plan, 0)
            _carryOut(dataDir, plan, 0, beforeStep)
        return plan


def applyPlan(dataDir: str, plan: MigrationPlan, beforeStep: Optional[StepHook] = None) -> None:
    """Carry out ``plan`` (from :func:`planMigrations` on this directory's state) and record it."""
    os.makedirs(dataDir, exist_ok=True)
    with _locked(dataDir):
        _writeJournal(dataDir, plan, 0)
        _carryOut(dataDir, plan, 0, beforeStep)


def _carryOut(dataDir: str, plan: MigrationPlan, done: int, beforeStep: Optional[StepHook]) -> None:
    for index in range(done, len(plan.steps)):
        step = plan.steps[index]
        if beforeStep is not None:
            beforeStep(index, step)
        if isinstance(step, RenameClass):
            _rename(dataDir, step)
        elif isinstance(step, DeleteClass):
            _delete(dataDir, step)
        # CreateClass: nothing on disk; the class directory is made on first use.
        _writeJournal(dataDir, plan, index + 1)
    _writeState(dataDir, plan)
    os.unlink(os.path.join(dataDir, JOURNAL_FILE))
    fsyncDirectory(dataDir)


def _rename(dataDir: str, step: RenameClass) -> None:
    src = os.path.join(dataDir, step.fromClass)
    dst = os.path.join(dataDir, step.toClass)
    if os.path.lexists(src):
        if os.path.lexists(dst):
            if os.path.isdir(dst) and not os.listdir(dst):
                os.rmdir(dst)
            else:
                raise MigrationError(
                    f"migration {step.tag!r}: cannot rename {src} to {dst}: both exist"
                )
        os.rename(src, dst)
        fsyncDirectory(dataDir)
    _alarms(dataDir, "UPDATE OR REPLACE alarms SET namespace = ? WHERE namespace = ?",
            (step.toClass, step.fromClass))


def _delete(dataDir: str, step: DeleteClass) -> None:
    src = os.path.join(dataDir, step.className)
    trash = os.path.join(dataDir, f".deleted-{_safe(step.tag)}-{step.className}")
    if os.path.lexists(src):
        if os.path.lexists(trash):
            shutil.rmtree(trash)
        os.rename(src, trash)
        fsyncDirectory(dataDir)
    if os.path.lexists(trash):
        shutil.rmtree(trash)
        fsyncDirectory(dataDir)
    _alarms(dataDir, "DELETE FROM alarms WHERE namespace = ?", (step.className,))


def _safe(tag: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)


def _alarms(dataDir: str, sql: str, params: tuple[str, ...]) -> None:
    path = os.path.join(dataDir, ALARM_INDEX)
    if not os.path.exists(path):
        return
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=FULL")
        has = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alarms'"
        ).fetchone()[0]
        if has:
            db.execute(sql, params)
    finally:
        db.close()


def _planToJson(plan: MigrationPlan) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for step in plan.steps:
        if isinstance(step, CreateClass):
            steps.append({"op": "create", "tag": step.tag, "class": step.className,
                          "idKey": step.record.idKey, "storage": step.record.storage,
                          "adopted": step.adopted})
        elif isinstance(step, RenameClass):
            steps.append({"op": "rename", "tag": step.tag, "from": step.fromClass,
                          "to": step.toClass, "hasData": step.hasData})
        else:
            steps.append({"op": "delete", "tag": step.tag, "class": step.className,
                          "hasData": step.hasData})
    return {
        "pending": list(plan.pending),
        "applied": list(plan.applied),
        "steps": steps,
        "classes": {k: {"idKey": r.idKey, "storage": r.storage} for k, r in plan.classes.items()},
        "retiredIdKeys": sorted(plan.retiredIdKeys),
    }


def _planFromJson(data: dict[str, Any]) -> MigrationPlan:
    steps: list[Step] = []
    for s in data["steps"]:
        if s["op"] == "create":
            steps.append(CreateClass(s["tag"], s["class"], ClassRecord(s["idKey"], s["storage"]),
                                     bool(s["adopted"])))
        elif s["op"] == "rename":
            steps.append(RenameClass(s["tag"], s["from"], s["to"], bool(s["hasData"])))
        elif s["op"] == "delete":
            steps.append(DeleteClass(s["tag"], s["class"], bool(s["hasData"])))
        else:
            raise ValueError(f"unknown step {s['op']!r}")
    return MigrationPlan(
        pending=tuple(data["pending"]),
        steps=tuple(steps),
        applied=tuple(data["applied"]),
        classes=MappingProxyType(
            {k: ClassRecord(v["idKey"], v["storage"]) for k, v in data["classes"].items()}
        ),
        retiredIdKeys=frozenset(data["retiredIdKeys"]),
    )


def _writeJournal(dataDir: str, plan: MigrationPlan, done: int) -> None:
    _atomicWrite(os.path.join(dataDir, JOURNAL_FILE),
                 {"version": _VERSION, "done": done, "plan": _planToJson(plan)})


def _readJournal(dataDir: str) -> Optional[tuple[MigrationPlan, int]]:
    path = os.path.join(dataDir, JOURNAL_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise MigrationError(f"{path}: an interrupted migration's journal is unreadable ({e})") from None
    try:
        return _planFromJson(data["plan"]), int(data["done"])
    except (KeyError, TypeError, ValueError) as e:
        raise MigrationError(f"{path}: an interrupted migration's journal is unreadable ({e})") from None


def _writeState(dataDir: str, plan: MigrationPlan) -> None:
    _atomicWrite(
        os.path.join(dataDir, STATE_FILE),
        {
            "version": _VERSION,
            "applied": list(plan.applied),
            "classes": {k: {"idKey": r.idKey, "storage": r.storage} for k, r in sorted(plan.classes.items())},
            "retiredIdKeys": sorted(plan.retiredIdKeys),
        },
    )


def _atomicWrite(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsyncDirectory(os.path.dirname(path) or ".")




@contextmanager
def _locked(dataDir: str) -> Iterator[None]:
    import fcntl

    fd = os.open(os.path.join(dataDir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise MigrationError(
                f"{dataDir}: another process is migrating this data directory"
            ) from None
        yield
    finally:
        os.close(fd)
