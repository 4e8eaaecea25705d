"""Durable Object migrations as a pure state machine: what the configuration asks of the data.

Cloudflare changes Durable Object classes only through ``migrations`` in the Wrangler file: a
class is created (``new_classes``, ``new_sqlite_classes``), renamed (``renamed_classes``: its
objects and their data now belong to the new name) or deleted (``deleted_classes``: its data is
removed). Each migration has a tag; a deployment records which tags it applied, and a later
deployment may only append migrations.

:func:`planMigrations` takes the configured migrations, the bound classes and what the data
directory records (:class:`StoredState`: tags applied, the classes that exist with their stable ID
key, the class directories that hold data) and returns a :class:`MigrationPlan`: the tags to apply,
the steps in order, and the classes after them. It refuses, with a :class:`MigrationError` that
says what to do:

- a migration history that conflicts with the applied one (a tag removed or reordered);
- stored data of a class that no binding and no migration accounts for (data is never silently
  orphaned, and never deleted unless a migration says so);
- a rename to a class that already has data; a deleted class that is still bound.

A class keeps one **ID key** for its whole lineage: the name it was created under. Durable Object
IDs are derived from it, so ``idFromName("a")`` gives the same ID after ``Counter`` is renamed to
``Tally``, and the stored objects stay reachable. A class created again after a deletion gets a
fresh key (its old IDs must not come back). Data written before dotwist recorded migrations (the
directory named after the class, IDs keyed by the class name) is adopted by the migration that
creates that class.

No I/O here: :mod:`dotwist.storage.migrate` reads the state, applies a plan, and records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping, Optional, Sequence, Union

from .errors import ConfigError
from .wrangler import Migration

__all__ = [
    "ClassRecord",
    "CreateClass",
    "DeleteClass",
    "MigrationError",
    "MigrationPlan",
    "RenameClass",
    "StoredState",
    "idKeyFor",
    "planMigrations",
]


class MigrationError(ConfigError):
    """The migrations cannot be applied to this data directory; nothing was changed."""


@dataclass(frozen=True)
class ClassRecord:
    """A Durable Object class that exists: its stable ID key and its storage backend.

    ``storage`` is ``"sqlite"`` (``new_sqlite_classes``) or ``"kv"`` (``new_classes``, Cloudflare's
    key-value-only backend, where the SQL API is not available).
    """

    idKey: str
    storage: str


@dataclass(frozen=True)
class StoredState:
    """What a data directory records, and which class directories hold data.

    ``recorded`` is False for a data directory that has never recorded migrations (new, or written
    by a dotwist without migrations); its class directories are then adopted by the migrations
    that create those classes.
    """

    applied: tuple[str, ...] = ()
    classes: Mapping[str, ClassRecord] = field(default_factory=lambda: MappingProxyType({}))
    retiredIdKeys: frozenset[str] = frozenset()
    namespacesWithData: frozenset[str] = frozenset()
    recorded: bool = False


@dataclass(frozen=True)
class CreateClass:
    tag: str
    className: str
    record: ClassRecord
    #: The class directory already holds data (written before migrations were recorded): it is
    #: kept and belongs to the new class.
    adopted: bool = False


@dataclass(frozen=True)
class RenameClass:
    tag: str
    fromClass: str
    toClass: str
    #: Whether ``fromClass`` has a directory whose data moves to ``toClass``.
    hasData: bool


@dataclass(frozen=True)
class DeleteClass:
    tag: str
    className: str
    #: Whether the class has a directory whose data is removed.
    hasData: bool


Step = Union[CreateClass, RenameClass, DeleteClass]


@dataclass(frozen=True)
class MigrationPlan:
    """The tags to apply, the steps in order, and the state afterwards."""

    pending: tuple[str, ...]
    steps: tuple[Step, ...]
    applied: tuple[str, ...]
    classes: Mapping[str, ClassRecord]
    retiredIdKeys: frozenset[str]

    @property
    def isEmpty(self) -> bool:
        return not self.steps and not self.pending


def _replay(
    migrations: Sequence[Migration], namespaces: Iterable[str], adopt: bool
) -> tuple[list[Step], dict[str, ClassRecord], set[str], set[str]]:
    """Apply ``migrations`` to an empty history; ``namespaces`` are class directories with data."""
    return _run(migrations, {}, set(), set(namespaces), adopt)


def _run(
    migrations: Sequence[Migration],
    classes: dict[str, ClassRecord],
    retired: set[str],
    disk: set[str],
    adopt: bool,
) -> tuple[list[Step], dict[str, ClassRecord], set[str], set[str]]:
    steps: list[Step] = []
    usedKeys = {r.idKey for r in classes.values()} | retired
    for m in migrations:
        for storage, names in (("kv", m.newClasses), ("sqlite", m.newSqliteClasses)):
            for cls in names:
                if cls in classes:
                    raise MigrationError(
                        f"migration {m.tag!r} creates {cls}, which already exists"
                    )
                adopted = cls in disk
                if adopted and not adopt:
                    raise MigrationError(
                        f"migration {m.tag!r} creates {cls}, but the data directory already holds "
                        f"objects in {cls}/ that no recorded migration accounts for; move them "
                        "away or delete them before starting"
                    )
                key = cls
                if key in usedKeys:
                    key = f"{cls}@{m.tag}"
                    n = 2
                    while key in usedKeys:
                        key = f"{cls}@{m.tag}#{n}"
                        n += 1
                usedKeys.add(key)
                record = ClassRecord(key, storage)
                classes[cls] = record
                steps.append(CreateClass(m.tag, cls, record, adopted))
        for src, dst in m.renamedClasses:
            if src not in classes:
                raise MigrationError(
                    f"migration {m.tag!r} renames {src}, which does not exist"
                )
            if dst in classes:
                raise MigrationError(
                    f"migration {m.tag!r} renames {src} to {dst}, which already exists"
                )
            if dst in disk:
                raise MigrationError(
                    f"migration {m.tag!r} renames {src} to {dst}, but the data directory already "
                    f"holds objects in {dst}/; a rename never overwrites data: move {dst}/ away first"
                )
            hasData = src in disk
            classes[dst] = classes.pop(src)
            if hasData:
                disk.discard(src)
                disk.add(dst)
            steps.append(RenameClass(m.tag, src, dst, hasData))
        for cls in m.deletedClasses:
            if cls not in classes:
                raise MigrationError(
                    f"migration {m.tag!r} deletes {cls}, which does not exist"
                )
            retired.add(classes.pop(cls).idKey)
            hasData = cls in disk
            disk.discard(cls)
            steps.append(DeleteClass(m.tag, cls, hasData))
    return steps, classes, retired, disk


def planMigrations(
    migrations: Sequence[Migration],
    boundClasses: Iterable[str],
    state: StoredState,
) -> MigrationPlan:
    """Decide what to do to the data directory; raise :class:`MigrationError` if it must not start."""
    tags = [m.tag for m in migrations]
    if len(set(tags)) != len(tags):
        raise MigrationError("migration tags must be unique: " + ", ".join(tags))
    applied = list(state.applied)
    for i, tag in enumerate(applied):
        if i >= len(tags) or tags[i] != tag:
            if tag not in tags:
                raise MigrationError(
                    f"migration {tag!r} was applied to this data directory but is no longer in the "
                    f"configuration (applied: {', '.join(applied)}; configured: "
                    f"{', '.join(tags) or 'none'}); applied migrations cannot be removed"
                )
            raise MigrationError(
                f"the configured migrations are not in the order they were applied (applied: "
                f"{', '.join(applied)}; configured: {', '.join(tags)}); append new migrations "
                "after the applied ones"
            )
    done, pending = migrations[: len(applied)], migrations[len(applied) :]

    # What the applied migrations say must exist now, checked against the record.
    _, expected, _, _ = _replay(done, (), adopt=True)
    if state.recorded and set(expected) != set(state.classes):
        raise MigrationError(
            "the data directory's record of Durable Object classes ("
            + (", ".join(sorted(state.classes)) or "none")
            + ") does not match its applied migrations ("
            + (", ".join(sorted(expected)) or "none")
            + "); the record was changed by hand or belongs to another configuration"
        )

    classes = dict(state.classes)
    retired = set(state.retiredIdKeys)
    disk = set(state.namespacesWithData)
    steps, classes, retired, disk = _run(pending, classes, retired, disk, adopt=not state.recorded)

    bound = set(boundClasses)
    for cls in sorted(bound):
        if cls not in classes:
            raise MigrationError(
                f"{cls} is bound in durable_objects.bindings but no migration creates it"
                + (" (a migration deletes or renames it)" if _removed(cls, migrations) else "")
            )
    for cls in sorted(disk):
        if cls in classes and cls in bound:
            continue
        if cls in classes:
            raise MigrationError(
                f"the data directory holds objects of {cls} ({cls}/), which is not bound; bind "
                f"it, or add a migration that deletes it (deleted_classes) to remove its data"
            )
        raise MigrationError(
            f"the data directory holds objects of {cls} ({cls}/), which no binding and no "
            f"migration names; bind {cls} and create it with a migration, rename it "
            "(renamed_classes), or delete it (deleted_classes): dotwist never orphans stored data"
        )
    return MigrationPlan(
        pending=tuple(m.tag for m in pending),
        steps=tuple(steps),
        applied=tuple(tags),
        classes=MappingProxyType(dict(classes)),
        retiredIdKeys=frozenset(retired),
    )


def _removed(cls: str, migrations: Sequence[Migration]) -> bool:
    return any(cls in m.deletedClasses or any(s == cls for s, _ in m.renamedClasses) for m in migrations)


def idKeyFor(state: Union[StoredState, MigrationPlan], className: str) -> Optional[str]:
    """The ID key of ``className`` after the migrations (None if the class does not exist)."""
    record = state.classes.get(className)
    return record.idKey if record is not None else None
