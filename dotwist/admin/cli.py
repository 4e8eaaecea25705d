"""``dotwist-admin`` (``python -m dotwist.admin``): the admin interface for scripts.

Against a running server, over its admin endpoint::

    dotwist-admin --url http://127.0.0.1:9090 --token-file admin.token list ROOMS

(``$DOTWIST_ADMIN_URL``, ``$DOTWIST_ADMIN_TOKEN`` and ``$DOTWIST_ADMIN_TOKEN_FILE`` work too).
Against a stopped server's data directory, which it locks while it works (a running server holds
the lock, and the command then says so)::

    dotwist-admin --data-dir dotwist-data list ROOMS

Every command prints JSON. An object is named by its ID, or by its name (anything that is not 64
hex digits) when the name is known. Exit status: 0, or 1 with a one-line message on stderr.
Twisted's reactor is not involved: the command runs anywhere Python does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Optional

__all__ = ["main"]

_ID = re.compile(r"^[0-9a-f]{64}$")


class CommandError(Exception):
    pass


class RemoteTarget:
    """A running server, over its admin endpoint."""

    def __init__(self, url: str, token: str, timeout: float = 3600.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, query: Optional[dict[str, Any]] = None, body: Any = None) -> Any:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
                if response.headers.get_content_type() == "application/json":
                    return json.loads(payload)
                return payload.decode("utf-8")
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", e.reason)
            except ValueError:
                message = e.reason
            raise CommandError(f"{e.code}: {message}") from None
        except urllib.error.URLError as e:
            raise CommandError(f"cannot reach {self.url}: {e.reason}") from None

    def namespaces(self) -> Any:
        return self.call("GET", "/namespaces")["namespaces"]

    def objects(self, ns: str, limit: Any, after: Any) -> Any:
        return self.call("GET", f"/namespaces/{_q(ns)}/objects", {"limit": limit, "after": after})

    def findByName(self, ns: str, name: str) -> list[str]:
        ids: list[str] = self.call("GET", f"/namespaces/{_q(ns)}/names", {"name": name})["ids"]
        return ids

    def object(self, ns: str, oid: str) -> Any:
        return self.call("GET", f"/namespaces/{_q(ns)}/objects/{oid}")

    def kv(self, ns: str, oid: str, limit: Any, after: Any, prefix: Any) -> Any:
        return self.call("GET", f"/namespaces/{_q(ns)}/objects/{oid}/kv", {"limit": limit, "after": after, "prefix": prefix})

    def tables(self, ns: str, oid: str) -> Any:
        return self.call("GET", f"/namespaces/{_q(ns)}/objects/{oid}/sql")

    def rows(self, ns: str, oid: str, table: str, limit: Any, after: Any) -> Any:
        return self.call("GET", f"/namespaces/{_q(ns)}/objects/{oid}/sql/{_q(table)}", {"limit": limit, "after": after})

    def delete(self, ns: str, oid: str) -> Any:
        return self.call("DELETE", f"/namespaces/{_q(ns)}/objects/{oid}")

    def fireAlarm(self, ns: str, oid: str) -> Any:
        return self.call("POST", f"/namespaces/{_q(ns)}/objects/{oid}/alarm")

    def metrics(self) -> Any:
        return self.call("GET", "/metrics")

    def backup(self, destination: str) -> Any:
        return self.call("POST", "/backup", body={"destination": destination})

    def close(self) -> None:
        pass


class LocalTarget:
    """A stopped server's data directory, locked while the command runs."""

    def __init__(self, dataDir: str) -> None:
        from ..datadir import ALARMS_FILE, NAMES_FILE, DataDirLock, DataDirLocked
        from ..names import SqliteNameIndex
        from ..storage import SqliteBackend
        from ..storage.alarmindex import SqliteAlarmIndex
        from .inspector import Inspector

        if not os.path.isdir(dataDir):
            raise CommandError(f"{dataDir} is not a directory")
        self.dataDir = dataDir
        self.lock = DataDirLock(dataDir)
        try:
            self.lock.acquire()
        except DataDirLocked as e:
            raise CommandError(f"{e}: a server is running on it; use --url with its admin endpoint") from None
        self.backend = SqliteBackend(dataDir)
        self.alarms = SqliteAlarmIndex(os.path.join(dataDir, ALARMS_FILE))
        self.names = SqliteNameIndex(os.path.join(dataDir, NAMES_FILE))
        self.inspector = Inspector(backend=self.backend, alarmIndex=self.alarms, names=self.names)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inspector, name)

    def fireAlarm(self, ns: str, oid: str) -> Any:
        raise CommandError("fire-alarm runs the object's code: it needs a running server (use --url)")

    def metrics(self) -> Any:
        raise CommandError("metrics come from a running server (use --url)")

    def backup(self, destination: str) -> Any:
        from .backup import backupOffline

        return backupOffline(self.backend, destination)

    def reindex(self) -> Any:
        from .backup import reindex

        self.alarms.close()
        self.names.close()
        try:
            return reindex(self.backend)
        finally:
            from ..datadir import ALARMS_FILE, NAMES_FILE
            from ..names import SqliteNameIndex
            from ..storage.alarmindex import SqliteAlarmIndex

            self.alarms = SqliteAlarmIndex(os.path.join(self.dataDir, ALARMS_FILE))
            self.names = SqliteNameIndex(os.path.join(self.dataDir, NAMES_FILE))

    def close(self) -> None:
        try:
            self.backend.close()
            self.alarms.close()
            self.names.close()
        finally:
            self.lock.release()


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _resolve(target: Any, ns: str, ref: str) -> str:
    if _ID.match(ref):
        return ref
    ids = target.findByName(ns, ref)
    if not ids:
        raise CommandError(f"no object named {ref!r} in {ns} (the name index knows names of objects that wrote data)")
    if len(ids) > 1:
        raise CommandError(f"{len(ids)} objects are named {ref!r} in {ns}: {', '.join(ids)}")
    return str(ids[0])


def _pages(fetch: Callable[[Any], Any], key: str, everything: bool, after: Any) -> Any:
    page = fetch(after)
    if not everything:
        return page
    items = list(page[key])
    while page.get("next"):
        page = fetch(page["next"])
        items.extend(page[key])
    return {**page, key: items, "next": None}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dotwist-admin",
        description="Inspect and change a dotwist server's Durable Objects, back it up, restore it.",
    )
    where = parser.add_argument_group("where (one of)")
    where.add_argument("--url", default=os.environ.get("DOTWIST_ADMIN_URL"),
                       help="a running server's admin endpoint, e.g. http://127.0.0.1:9090 ($DOTWIST_ADMIN_URL)")
    where.add_argument("--data-dir", help="a stopped server's data directory")
    parser.add_argument("--token", default=os.environ.get("DOTWIST_ADMIN_TOKEN"),
                        help="the admin token ($DOTWIST_ADMIN_TOKEN; prefer --token-file)")
    parser.add_argument("--token-file", default=os.environ.get("DOTWIST_ADMIN_TOKEN_FILE"),
                        help="read the admin token from this file ($DOTWIST_ADMIN_TOKEN_FILE)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("namespaces", help="namespaces, with live, hibernated and stored counts")
    p = commands.add_parser("list", help="a namespace's objects (ID, name, state, sockets, size)")
    p.add_argument("namespace")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--after", help="list objects after this ID")
    p.add_argument("--all", action="store_true", help="every page")
    p = commands.add_parser("find", help="the ID of a named object")
    p.add_argument("namespace")
    p.add_argument("name")
    for name, text in (("show", "one object: state, name, sockets and tags, alarm, storage"),
                       ("tables", "an object's SQL tables"),
                       ("delete", "delete an object's storage and alarm (a live instance is reset)"),
                       ("fire-alarm", "run an object's alarm now (running server only)")):
        p = commands.add_parser(name, help=text)
        p.add_argument("namespace")
        p.add_argument("object", help="ID, or name")
    p = commands.add_parser("kv", help="an object's key-value entries")
    p.add_argument("namespace")
    p.add_argument("object", help="ID, or name")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--after", help="entries after this key")
    p.add_argument("--prefix")
    p.add_argument("--all", action="store_true", help="every page")
    p = commands.add_parser("rows", help="rows of one of an object's SQL tables")
    p.add_argument("namespace")
    p.add_argument("object", help="ID, or name")
    p.add_argument("table")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--after")
    p.add_argument("--all", action="store_true", help="every page")
    commands.add_parser("metrics", help="the server's Prometheus metrics (text)")
    p = commands.add_parser("backup", help="back up every object and the alarms (while the server runs)")
    p.add_argument("destination", help="a new directory (on the server's machine, with --url)")
    p = commands.add_parser("restore", help="restore a backup into a new data directory (no server needed)")
    p.add_argument("backup")
    p.add_argument("target", help="the new data directory")
    commands.add_parser("reindex", help="rebuild the alarm and name indexes from the objects (stopped server)")
    return parser


def _target(args: argparse.Namespace) -> Any:
    if args.data_dir:
        return LocalTarget(args.data_dir)
    if not args.url:
        raise CommandError("say where: --url URL (a running server) or --data-dir DIR (a stopped one)")
    token = args.token
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            token = f.readline().strip()
    if not token:
        raise CommandError("--url needs the admin token: --token-file FILE or $DOTWIST_ADMIN_TOKEN")
    return RemoteTarget(args.url, token)


def run(args: argparse.Namespace) -> Any:
    if args.command == "restore":
        from .backup import BackupError, restore

        try:
            return restore(args.backup, args.target)
        except BackupError as e:
            raise CommandError(str(e)) from None
    target = _target(args)
    try:
        c = args.command
        if c == "namespaces":
            return {"namespaces": target.namespaces()}
        if c == "list":
            return _pages(lambda after: target.objects(args.namespace, args.limit, after), "objects", args.all, args.after)
        if c == "find":
            return {"namespace": args.namespace, "name": args.name, "ids": target.findByName(args.namespace, args.name)}
        if c == "metrics":
            return target.metrics()
        if c == "backup":
            return target.backup(args.destination if args.data_dir is None else os.path.abspath(args.destination))
        if c == "reindex":
            if not args.data_dir:
                raise CommandError("reindex works on a stopped server's --data-dir")
            return target.reindex()
        oid = _resolve(target, args.namespace, args.object)
        if c == "show":
            return target.object(args.namespace, oid)
        if c == "tables":
            return target.tables(args.namespace, oid)
        if c == "delete":
            return target.delete(args.namespace, oid)
        if c == "fire-alarm":
            return target.fireAlarm(args.namespace, oid)
        if c == "kv":
            return _pages(lambda after: target.kv(args.namespace, oid, args.limit, after, args.prefix), "entries", args.all, args.after)
        if c == "rows":
            return _pages(lambda after: target.rows(args.namespace, oid, args.table, args.limit, after), "rows", args.all, args.after)
        raise CommandError(f"unknown command {c}")  # pragma: no cover - argparse refuses it first
    finally:
        target.close()


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from .inspector import AdminError

    try:
        result = run(args)
    except (CommandError, AdminError, OSError) as e:
        print(f"dotwist-admin: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(result if isinstance(result, str) else render(result))
    return 0


def render(value: Any) -> str:
    """JSON for people and scripts: indented, except that long lists (100,000 objects) get one
    compact item per line, which is ten times faster to write than indenting every field."""
    if isinstance(value, dict) and any(isinstance(v, list) and len(v) > 50 for v in value.values()):
        parts = []
        for key, item in value.items():
            if isinstance(item, list) and len(item) > 50:
                inner = ",\n    ".join(json.dumps(i) for i in item)
                parts.append(f"  {json.dumps(key)}: [\n    {inner}\n  ]")
            else:
                parts.append(f"  {json.dumps(key)}: {json.dumps(item)}")
        return "{\n" + ",\n".join(parts) + "\n}\n"
    return json.dumps(value, indent=2) + "\n"
