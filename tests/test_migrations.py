"""Durable Object migrations: the pure planner, and the applier on real data directories
(renames keep data and IDs, deletions happen only when a migration says, orphaned data is refused,
a crash part-way is finished by the next run)."""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Iterable

import pytest

from dotwist.ids import IdMinter
from dotwist.migrations import (
    ClassRecord,
    CreateClass,
    DeleteClass,
    MigrationError,
    RenameClass,
    StoredState,
    idKeyFor,
    planMigrations,
)
from dotwist.storage import SqliteBackend
from dotwist.storage.alarmindex import SqliteAlarmIndex
from dotwist.storage.migrate import JOURNAL_FILE, STATE_FILE, migrateDataDir, readState, scanNamespaces
from dotwist.wrangler import Migration

V1 = Migration("v1", newSqliteClasses=("Counter",))
V2_RENAME = Migration("v2", renamedClasses=(("Counter", "Tally"),))
V3_DELETE = Migration("v3", deletedClasses=("Tally",))


def recorded(applied: Iterable[str], classes: dict[str, ClassRecord], disk: Iterable[str] = ()) -> StoredState:
    return StoredState(tuple(applied), classes, frozenset(), frozenset(disk), recorded=True)


# -- the planner ----------------------------------------------------------------------------------


def test_fresh_directory_applies_every_migration_in_order():
    """On a new directory every tag is pending and the steps follow the file."""
    plan = planMigrations([V1, V2_RENAME], {"Tally"}, StoredState())
    assert plan.pending == ("v1", "v2")
    assert plan.steps == (
        CreateClass("v1", "Counter", ClassRecord("Counter", "sqlite")),
        RenameClass("v2", "Counter", "Tally", hasData=False),
    )
    assert dict(plan.classes) == {"Tally": ClassRecord("Counter", "sqlite")}
    assert idKeyFor(plan, "Tally") == "Counter"


def test_nothing_pending_when_everything_was_applied():
    """A directory that applied every tag gets an empty plan."""
    state = recorded(["v1"], {"Counter": ClassRecord("Counter", "sqlite")}, ["Counter"])
    plan = planMigrations([V1], {"Counter"}, state)
    assert plan.isEmpty and plan.applied == ("v1",)


def test_removed_or_reordered_tags_are_refused():
    """Applied migrations cannot be removed from the file or reordered."""
    state = recorded(["v1", "v2"], {"Tally": ClassRecord("Counter", "sqlite")})
    with pytest.raises(MigrationError, match="'v2' was applied to this data directory but is no longer"):
        planMigrations([V1], {"Counter"}, state)
    swapped = [Migration("v2", newSqliteClasses=("B",)), Migration("v1", newSqliteClasses=("A",))]
    state = recorded(["v1"], {"A": ClassRecord("A", "sqlite")})
    with pytest.raises(MigrationError, match="not in the order they were applied"):
        planMigrations(swapped, {"A", "B"}, state)


def test_record_that_disagrees_with_applied_tags_is_refused():
    """A record whose classes do not follow from its applied tags is not trusted."""
    state = recorded(["v1"], {"Other": ClassRecord("Other", "sqlite")})
    with pytest.raises(MigrationError, match="does not match its applied migrations"):
        planMigrations([V1], {"Counter"}, state)


def test_orphaned_data_is_refused():
    """Data of a class no binding and no migration names stops the start."""
    state = recorded(["v1"], {"Counter": ClassRecord("Counter", "sqlite")}, ["Counter", "Ghost"])
    with pytest.raises(MigrationError, match=r"holds objects of Ghost \(Ghost/\), which no binding and no migration"):
        planMigrations([V1], {"Counter"}, state)


def test_unbound_class_with_data_is_refused():
    """A class that exists and has data but lost its binding is refused, not forgotten."""
    state = recorded(["v1"], {"Counter": ClassRecord("Counter", "sqlite")}, ["Counter"])
    with pytest.raises(MigrationError, match="holds objects of Counter .* which is not bound"):
        planMigrations([V1], set(), state)


def test_rename_onto_existing_data_is_refused():
    """A rename never overwrites another directory's data."""
    state = StoredState(namespacesWithData=frozenset({"Counter", "Tally"}))
    with pytest.raises(MigrationError, match="renames Counter to Tally, but the data directory already holds objects in Tally/"):
        planMigrations([V1, V2_RENAME], {"Tally"}, state)


def test_deleted_class_still_bound_is_refused():
    """A binding to a class a migration deleted is refused."""
    with pytest.raises(MigrationError, match="Tally is bound .* no migration creates it .*deletes or renames"):
        planMigrations([V1, V2_RENAME, V3_DELETE], {"Tally"}, StoredState())


def test_recreated_class_gets_fresh_ids():
    """A class created again after deletion does not get its old ID key back."""
    migrations = [V1, Migration("v2", deletedClasses=("Counter",)), Migration("v3", newClasses=("Counter",))]
    plan = planMigrations(migrations, {"Counter"}, StoredState())
    assert dict(plan.classes) == {"Counter": ClassRecord("Counter@v3", "kv")}
    assert plan.retiredIdKeys == frozenset({"Counter"})


def test_unrecorded_data_is_adopted_by_the_creating_migration():
    """Data written before migrations were recorded belongs to the class a migration creates."""
    plan = planMigrations([V1], {"Counter"}, StoredState(namespacesWithData=frozenset({"Counter"})))
    assert plan.steps == (CreateClass("v1", "Counter", ClassRecord("Counter", "sqlite"), adopted=True),)


# -- the applier, on disk -------------------------------------------------------------------------


def writeObject(dataDir: str, cls: str, name: str, value: str) -> str:
    """Store value under "k" in the object named ``name`` of class ``cls``; return its ID."""
    objectId = IdMinter(cls).fromName(name).toString()
    backend = SqliteBackend(dataDir)
    store = backend.open(cls, objectId)
    store.put("k", value)
    store.commit()
    backend.close()
    return objectId


def readObject(dataDir: str, cls: str, objectId: str) -> object:
    backend = SqliteBackend(dataDir)
    store = backend.open(cls, objectId)
    try:
        value = store.get("k")
        return value
    finally:
        backend.close()


def test_first_start_records_state_and_adopts_existing_data(tmp_path):
    """A directory written by dotwist before migrations keeps its objects and IDs."""
    data = str(tmp_path)
    objectId = writeObject(data, "Counter", "a", "kept")
    plan = migrateDataDir(data, [V1], {"Counter"})
    assert plan.pending == ("v1",)
    state = readState(data)
    assert state.applied == ("v1",) and dict(state.classes) == {"Counter": ClassRecord("Counter", "sqlite")}
    assert readObject(data, "Counter", objectId) == "kept"
    assert migrateDataDir(data, [V1], {"Counter"}).isEmpty


def test_rename_keeps_data_ids_and_alarms(tmp_path):
    """After Counter -> Tally, Tally's objects hold Counter's data under the same IDs."""
    data = str(tmp_path)
    migrateDataDir(data, [V1], {"Counter"})
    objectId = writeObject(data, "Counter", "a", "before rename")
    index = SqliteAlarmIndex(os.path.join(data, "alarms.sqlite"))
    index.add("Counter", objectId, 1234)
    index.close()

    plan = migrateDataDir(data, [V1, V2_RENAME], {"Tally"})
    assert plan.steps == (RenameClass("v2", "Counter", "Tally", hasData=True),)
    assert scanNamespaces(data) == frozenset({"Tally"})
    assert readObject(data, "Tally", objectId) == "before rename"
    # The lineage keeps its ID key, so idFromName("a") still names the stored object.
    key = idKeyFor(readState(data), "Tally")
    assert key == "Counter"
    assert IdMinter(key).fromName("a").toString() == objectId
    index = SqliteAlarmIndex(os.path.join(data, "alarms.sqlite"))
    assert list(index.entries()) == [("Tally", objectId, 1234)]
    index.close()


def test_delete_removes_data_only_when_a_migration_says(tmp_path):
    """Removing a binding alone refuses to start and keeps the data; deleted_classes removes it."""
    data = str(tmp_path)
    migrateDataDir(data, [V1], {"Counter"})
    writeObject(data, "Counter", "a", "x")
    with pytest.raises(MigrationError, match="which is not bound"):
        migrateDataDir(data, [V1], set())
    assert scanNamespaces(data) == frozenset({"Counter"})
    plan = migrateDataDir(data, [V1, Migration("v2", deletedClasses=("Counter",))], set())
    assert plan.steps == (DeleteClass("v2", "Counter", hasData=True),)
    assert scanNamespaces(data) == frozenset()
    assert not any(name.startswith(".deleted") for name in os.listdir(data))


def test_orphaned_data_on_disk_is_refused_and_untouched(tmp_path):
    """A class directory nothing accounts for stops the start; nothing is written or removed."""
    data = str(tmp_path)
    migrateDataDir(data, [V1], {"Counter"})
    writeObject(data, "Stray", "a", "x")
    before = json.loads((tmp_path / STATE_FILE).read_text())
    with pytest.raises(MigrationError, match="Stray"):
        migrateDataDir(data, [V1], {"Counter"})
    assert json.loads((tmp_path / STATE_FILE).read_text()) == before
    assert scanNamespaces(data) == frozenset({"Stray"})


def test_directories_that_are_not_classes_are_left_alone(tmp_path):
    """lost+found and hidden directories are not taken for class data."""
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "lost+found" / "x").write_text("x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x").write_text("x")
    assert scanNamespaces(str(tmp_path)) == frozenset()
    migrateDataDir(str(tmp_path), [V1], {"Counter"})


class Crash(Exception):
    pass


def test_crash_part_way_is_finished_by_the_next_run(tmp_path):
    """A crash between steps leaves a journal; the next start completes the plan."""
    data = str(tmp_path)
    migrateDataDir(data, [V1, Migration("v1b", newSqliteClasses=("Other",))], {"Counter", "Other"})
    counterId = writeObject(data, "Counter", "a", "counter data")
    writeObject(data, "Other", "b", "other data")
    migrations = [
        V1,
        Migration("v1b", newSqliteClasses=("Other",)),
        Migration("v2", renamedClasses=(("Counter", "Tally"),), deletedClasses=("Other",)),
    ]

    def crashBeforeSecondStep(index: int, step: object) -> None:
        if index == 1:
            raise Crash()

    with pytest.raises(Crash):
        migrateDataDir(data, migrations, {"Tally"}, beforeStep=crashBeforeSecondStep)
    # Half done: renamed, not yet deleted, not recorded.
    assert (tmp_path / JOURNAL_FILE).exists()
    assert scanNamespaces(data) == frozenset({"Tally", "Other"})
    assert readState(data).applied == ("v1", "v1b")

    plan = migrateDataDir(data, migrations, {"Tally"})
    assert plan.isEmpty
    assert not (tmp_path / JOURNAL_FILE).exists()
    assert scanNamespaces(data) == frozenset({"Tally"})
    assert readState(data).applied == ("v1", "v1b", "v2")
    assert readObject(data, "Tally", counterId) == "counter data"


def test_crash_inside_a_step_is_redone_safely(tmp_path):
    """A crash after a step's work but before its progress is recorded redoes that step harmlessly,
    even for a swap of two names."""
    data = str(tmp_path)
    base = [Migration("v1", newSqliteClasses=("A", "B"))]
    migrateDataDir(data, base, {"A", "B"})
    aId = writeObject(data, "A", "x", "was A")
    bId = writeObject(data, "B", "y", "was B")
    swap = base + [Migration("v2", renamedClasses=(("A", "T"), ("B", "A"), ("T", "B")))]

    calls = []

    def crashAfterSecondRename(index: int, step: object) -> None:
        calls.append(index)
        if index == 2 and calls.count(2) == 1:
            # Step 1 (B -> A) is done on disk; pretend its progress never reached the journal.
            journal = json.loads((tmp_path / JOURNAL_FILE).read_text())
            journal["done"] = 1
            (tmp_path / JOURNAL_FILE).write_text(json.dumps(journal))
            raise Crash()

    with pytest.raises(Crash):
        migrateDataDir(data, swap, {"A", "B"}, beforeStep=crashAfterSecondRename)
    migrateDataDir(data, swap, {"A", "B"}, beforeStep=crashAfterSecondRename)
    assert readObject(data, "A", bId) == "was B"
    assert readObject(data, "B", aId) == "was A"
    state = readState(data)
    assert dict(state.classes) == {"A": ClassRecord("B", "sqlite"), "B": ClassRecord("A", "sqlite")}


def test_unreadable_record_is_refused(tmp_path):
    """A damaged record stops the start rather than guessing which migrations ran."""
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(MigrationError, match="cannot read the record of applied migrations"):
        migrateDataDir(str(tmp_path), [V1], {"Counter"})


def test_alarm_index_without_rows_or_file_is_fine(tmp_path):
    """Renames and deletions work whether or not the alarm index exists."""
    data = str(tmp_path)
    migrateDataDir(data, [V1], {"Counter"})
    writeObject(data, "Counter", "a", "x")
    migrateDataDir(data, [V1, V2_RENAME], {"Tally"})
    migrateDataDir(data, [V1, V2_RENAME, V3_DELETE], set())
    assert scanNamespaces(data) == frozenset()
    assert not os.path.exists(os.path.join(data, "alarms.sqlite"))


def test_deleting_a_class_removes_its_alarms(tmp_path):
    """A deleted class's alarm index rows go with its data."""
    data = str(tmp_path)
    migrateDataDir(data, [V1], {"Counter"})
    objectId = writeObject(data, "Counter", "a", "x")
    index = SqliteAlarmIndex(os.path.join(data, "alarms.sqlite"))
    index.add("Counter", objectId, 1)
    index.add("Kept", "f" * 64, 2)
    index.close()
    migrateDataDir(data, [V1, Migration("v2", deletedClasses=("Counter",))], set())
    db = sqlite3.connect(os.path.join(data, "alarms.sqlite"))
    assert db.execute("SELECT namespace FROM alarms").fetchall() == [("Kept",)]
    db.close()
