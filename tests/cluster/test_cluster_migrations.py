"""Wrangler migrations on a cluster's data in PostgreSQL (``dotwist.cluster.migrate``): a renamed
class takes its rows along, a deleted class's rows go, nothing moves while nodes are alive, and a
node with an older configuration cannot start; then the same through ``twistd dotwist --cluster``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dotwist.cluster.migrate import STATE_TABLE, migrateCluster
from dotwist.cluster.store import CoordinationStore
from dotwist.migrations import MigrationError
from dotwist.wrangler import Migration

from clustersupport import Pg, asyncioTest, opened
from nodes import _freePort, waitFor

V1 = [Migration("v1", newSqliteClasses=("Counter",))]
V2 = [*V1, Migration("v2", renamedClasses=(("Counter", "Tally"),))]
V3 = [*V2, Migration("v3", deletedClasses=("Tally",))]
OBJECT = "ab" * 32


def sql(pg: Pg, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with pg.sync() as conn:
        cur = conn.execute(query.replace("{s}", f'"{pg.schema}"'), params)
        return cur.fetchall() if cur.description is not None else []


async def makeTables(pg: Pg) -> None:
    async with opened(CoordinationStore(pg.conninfo, schema=pg.schema)):
        pass


def storeObject(pg: Pg, namespace: str, objectId: str = OBJECT) -> None:
    """Rows of one object with data: its owner (epoch, log position, alarm), two log entries and a
    snapshot, as a node that wrote and then died would leave them."""
    sql(pg, "INSERT INTO {s}.owner (namespace, object_id, node_id, incarnation, epoch, log_seq, alarm_at) "
            "VALUES (%s, %s, NULL, NULL, 3, 2, 1234)", namespace, objectId)
    for seq in (1, 2):
        sql(pg, "INSERT INTO {s}.log (namespace, object_id, seq, epoch, body) VALUES (%s, %s, %s, 3, %s)",
            namespace, objectId, seq, b"pages %d" % seq)
    sql(pg, "INSERT INTO {s}.snapshot (namespace, object_id, seq, epoch, size, chunks) "
            "VALUES (%s, %s, 1, 3, 5, 1)", namespace, objectId)
    sql(pg, "INSERT INTO {s}.snapshot_chunk (namespace, object_id, idx, body) VALUES (%s, %s, 0, 'image')",
        namespace, objectId)


def rowsOf(pg: Pg, namespace: str) -> dict[str, int]:
    return {
        table: sql(pg, f"SELECT count(*) FROM {{s}}.{table} WHERE namespace = %s", namespace)[0][0]
        for table in ("owner", "log", "snapshot", "snapshot_chunk")
    }


def recorded(pg: Pg) -> Any:
    rows = sql(pg, f"SELECT state FROM {{s}}.{STATE_TABLE}")
    return rows[0][0] if rows else None


def addLiveNode(pg: Pg, nodeId: str) -> None:
    sql(pg, "INSERT INTO {s}.node (node_id, incarnation, address, state, lease_until) "
            "VALUES (%s, 1, 'tcp:127.0.0.1:1', 'alive', now() + interval '1 hour')", nodeId)


ALL = {"owner": 1, "log": 2, "snapshot": 1, "snapshot_chunk": 1}
NONE = {"owner": 0, "log": 0, "snapshot": 0, "snapshot_chunk": 0}


def test_a_new_cluster_records_its_migrations(pg: Pg) -> None:
    """No schema yet: the migrations are planned, the record is made, the ID keys come out."""
    plan = migrateCluster(pg.conninfo, pg.schema, V1, ["Counter"])
    assert plan.classes["Counter"].idKey == "Counter"
    assert recorded(pg)["applied"] == ["v1"]
    again = migrateCluster(pg.conninfo, pg.schema, V1, ["Counter"])
    assert again.isEmpty


@asyncioTest
async def test_a_rename_moves_every_row_and_keeps_the_id_key(pg: Pg) -> None:
    migrateCluster(pg.conninfo, pg.schema, V1, ["Counter"])
    await makeTables(pg)
    storeObject(pg, "Counter")
    plan = migrateCluster(pg.conninfo, pg.schema, V2, ["Tally"])
    assert plan.classes["Tally"].idKey == "Counter"  # idFromName gives the same IDs as before
    assert rowsOf(pg, "Counter") == NONE
    assert rowsOf(pg, "Tally") == ALL
    epoch, seq, alarm = sql(pg, "SELECT epoch, log_seq, alarm_at FROM {s}.owner WHERE object_id = %s", OBJECT)[0]
    assert (epoch, seq, alarm) == (3, 2, 1234)  # the fence and the alarm move with the object
    assert recorded(pg)["applied"] == ["v1", "v2"]


@asyncioTest
async def test_nothing_moves_while_a_node_is_alive(pg: Pg) -> None:
    """A live node may serve the objects under their old name: the rename is refused, naming the
    node, and neither the rows nor the record change."""
    migrateCluster(pg.conninfo, pg.schema, V1, ["Counter"])
    await makeTables(pg)
    storeObject(pg, "Counter")
    addLiveNode(pg, "node-7")
    with pytest.raises(MigrationError, match="node-7"):
        migrateCluster(pg.conninfo, pg.schema, V2, ["Tally"])
    assert rowsOf(pg, "Counter") == ALL
    assert recorded(pg)["applied"] == ["v1"]
    # Its lease lapsed (it died): now the rename goes through.
    sql(pg, "UPDATE {s}.node SET lease_until = now() - interval '1 second'")
    migrateCluster(pg.conninfo, pg.schema, V2, ["Tally"])
    assert rowsOf(pg, "Tally") == ALL


@asyncioTest
async def test_a_rename_of_a_class_without_data_needs_no_stopped_cluster(pg: Pg) -> None:
    migrateCluster(pg.conninfo, pg.schema, V1, ["Counter"])
    await makeTables(pg)
    addLiveNode(pg, "node-1")
    plan = migrateCluster(pg.conninfo, pg.schema, V2, ["Tally"])
    assert "Tally" in plan.classes


@asyncioTest
async def test_a_delete_removes_the_rows_and_retires_the_id_key(pg: Pg) -> None:
    migrateCluster(pg.conninfo, pg.schema, V1, ["Counter"])
    await makeTables(pg)
    storeObject(pg, "Counter")
    migrateCluster(pg.conninfo, pg.schema, [*V1, Migration("v1b", newSqliteClasses=("Other",))], ["Counter", "Other"])
    storeObject(pg, "Other", "cd" * 32)  # another class's object stays
    plan = migrateCluster(pg.conninfo, pg.schema, [*V1, Migration("v1b", newSqliteClasses=("Other",)),
                                                   Migration("v2", deletedClasses=("Counter",))], ["Other"])
    assert rowsOf(pg, "Counter") == NONE
    assert rowsOf(pg, "Other") == ALL
    assert "Counter" in plan.retiredIdKeys
    # Created again, the class gets a fresh ID key: its old IDs do not come back.
    recreated = migrateCluster(pg.conninfo, pg.schema, [*V1, Migration("v1b", newSqliteClasses=("Other",)),
                                                        Migration("v2", deletedClasses=("Counter",)),
                                                        Migration("v3", newSqliteClasses=("Counter",))],
                               ["Other", "Counter"])
    assert recreated.classes["Counter"].idKey != "Counter"


def test_an_older_configuration_is_refused(pg: Pg) -> None:
    """A node started with a configuration that lacks an applied migration would bring the old
    class back: refused."""
    migrateCluster(pg.conninfo, pg.schema, V2, ["Tally"])
    with pytest.raises(MigrationError, match="'v2' was applied"):
        migrateCluster(pg.conninfo, pg.schema, V1, ["Counter"])


@asyncioTest
async def test_data_no_migration_accounts_for_is_refused(pg: Pg) -> None:
    """Rows of a class that no binding and no migration names stop the node; nothing is deleted."""
    await makeTables(pg)
    storeObject(pg, "Orphan")
    with pytest.raises(MigrationError, match="Orphan"):
        migrateCluster(pg.conninfo, pg.schema, V1, ["Counter"])
    assert rowsOf(pg, "Orphan") == ALL


def test_an_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(MigrationError, match="cannot reach PostgreSQL"):
        migrateCluster(f"host=127.0.0.1 port={_freePort()} dbname=test connect_timeout=2", "dotwist", V1, ["Counter"])


# -- through twistd ------------------------------------------------------------------------------

COUNTER = """
    from workers import DurableObject, Response, WorkerEntrypoint

    class {cls}(DurableObject):
        async def bump(self):
            value = (await self.ctx.storage.get("n") or 0) + 1
            await self.ctx.storage.put("n", value)
            return value

    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            return Response(str(await self.env.COUNTERS.getByName("a").bump()))
"""


def writeApp(directory: Path, cls: str, migrations: list[dict[str, Any]]) -> Path:
    (directory / "src").mkdir(parents=True, exist_ok=True)
    (directory / "src" / "entry.py").write_text(textwrap.dedent(COUNTER.format(cls=cls)))
    config = {
        "name": "app", "main": "src/entry.py", "compatibility_date": "2026-05-01",
        "compatibility_flags": ["python_workers"],
        "durable_objects": {"bindings": [{"name": "COUNTERS", "class_name": cls}]},
        "migrations": migrations,
    }
    path = directory / "wrangler.jsonc"
    path.write_text(json.dumps(config))
    return path


class Twistd:
    def __init__(self, pg: Pg, directory: Path, config: Path, name: str) -> None:
        self.port = _freePort()
        self.log = directory / f"{name}.log"
        args = [
            str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "dotwist",
            "--config", str(config), "--listen", f"tcp:{self.port}:interface=127.0.0.1",
            "--cluster", pg.conninfo, "--cluster-schema", pg.schema,
            "--node-listen", f"tcp:{_freePort()}:interface=127.0.0.1", "--cluster-secret", "s3cret",
            "--node-id", name, "--lease", "5", "--data-dir", str(directory / f"data-{name}"),
            "--no-access-log",
        ]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(args, cwd=directory, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONPATH": ""})

    def get(self) -> str:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read().decode()
            assert response.status == 200, (response.status, body)
            return body
        finally:
            conn.close()

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"twistd exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def started() -> Iterator[list[Twistd]]:
    made: list[Twistd] = []
    yield made
    for t in made:
        if t.process.poll() is None:
            t.process.kill()
        t.process.wait(timeout=10)


def test_twistd_cluster_nodes_apply_a_rename_and_keep_the_objects(pg: Pg, tmp_path: Path, started: list[Twistd]) -> None:
    """A node writes under ``Counter`` and stops; a node started with a configuration that
    renames it to ``Tally`` while another node (with the old configuration) is alive is refused
    with one line; once that node stopped, the rename is applied and the object's count goes on."""
    v1 = [{"tag": "v1", "new_sqlite_classes": ["Counter"]}]
    v2 = [*v1, {"tag": "v2", "renamed_classes": [{"from": "Counter", "to": "Tally"}]}]
    first = Twistd(pg, tmp_path, writeApp(tmp_path / "v1", "Counter", v1), "n1")
    started.append(first)
    waitFor(first.ready, "the first node to listen")
    assert [first.get() for _ in range(3)] == ["1", "2", "3"]

    refused = Twistd(pg, tmp_path, writeApp(tmp_path / "v2", "Tally", v2), "n2")
    started.append(refused)
    assert refused.process.wait(timeout=60) != 0
    lines = [line for line in refused.log.read_text().splitlines() if "twistd dotwist:" in line]
    assert lines and "n1" in lines[-1] and "stop every node first" in lines[-1], refused.log.read_text()[-2000:]
    assert first.get() == "4"  # the live node was not disturbed

    first.stop()  # SIGTERM: hands its objects over, leaves the cluster
    second = Twistd(pg, tmp_path, tmp_path / "v2" / "wrangler.jsonc", "n3")
    started.append(second)
    waitFor(second.ready, "the node with the renamed class to listen")
    assert second.get() == "5"
    second.stop()
    # A node with the old configuration cannot bring Counter back.
    old = Twistd(pg, tmp_path, tmp_path / "v1" / "wrangler.jsonc", "n4")
    started.append(old)
    assert old.process.wait(timeout=60) != 0
    assert "applied migrations cannot be removed" in old.log.read_text()
