"""The SQL engine shared by the backends: one ``sqlite3`` connection with Cloudflare's rules.

The connection runs with ``isolation_level=None``; this module issues every ``BEGIN``, ``COMMIT``,
``SAVEPOINT`` itself. User SQL is checked by SQLite's authorizer (``set_authorizer``), modelled on
workerd's ``SqliteDatabase::isAuthorized``: transactions, ``ATTACH``, temporary objects and names
starting with ``_cf_`` are refused, PRAGMAs and functions are allowlisted. Internal ("trusted")
statements bypass the authorizer; each carries a per-process random comment so that no user
statement can share a prepared statement with it in ``sqlite3``'s statement cache (which would skip
the authorizer).
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from .errors import (
    CommitError,
    InvalidValueError,
    SqlError,
    SqlTimeLimitAbortedError,
    SqlTimeLimitError,
    StorageError,
    TransactionAbortedError,
)
from .interface import SqlCursor, SqlRawIterator, SqlDatabase, SqlValue
from .limits import StorageLimits, limitError

__all__ = ["Cursor", "Row", "SqlEngine", "SqlDatabaseImpl", "splitStatements", "trustedSql"]

#: Prefix of every internal statement (see the module docstring).
_TRUSTED_PREFIX = f"/*dotwist:{secrets.token_hex(12)}*/ "


def trustedSql(sql: str) -> str:
    """Mark ``sql`` as an internal statement."""
    return _TRUSTED_PREFIX + sql


TRANSACTION_MESSAGE = (
    "To execute a transaction, please use the state.storage.transaction() or "
    "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements. The JavaScript API is safer because it will automatically roll back on "
    "exceptions, and because it interacts correctly with Durable Objects' automatic atomic "
    "write coalescing."
)
ONE_NO_RESULTS = "Expected exactly one result from SQL query, but got no results."
ONE_MULTIPLE_RESULTS = "Expected exactly one result from SQL query, but got multiple results."
NO_STATEMENT = "SQL code did not contain a statement."
MULTI_PARAMETERS = (
    "When executing multiple SQL statements in a single call, only the last statement can have "
    "parameters."
)
WRONG_BINDINGS = "Wrong number of parameter bindings for SQL query."

# -- statement splitting ------------------------------------------------------------------------

# Tokens that can contain a ';' that does not end a statement, and the ';' itself. Unterminated
# quotes and comments run to the end of the text (SQLite then reports the syntax error).
_TOKENS = re.compile(
    r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?|--[^\n]*"""
    r"""|/\*(?:(?!\*/).)*(?:\*/|\Z)|;""",
    re.S,
)
_BLANK = re.compile(r"(?:\s+|--[^\n]*|/\*(?:(?!\*/).)*(?:\*/|\Z))*\Z", re.S)


def splitStatements(query: str) -> list[str]:
    """Split ``query`` into statements, as SQLite would run them one after the other.

    A ';' ends a statement when it is outside quotes and comments and ``sqlite3.complete_statement``
    agrees (so the ';'s inside ``CREATE TRIGGER ... BEGIN ...; END`` do not). Empty statements are
    dropped.
    """
    if ";" not in query:
        return [] if _BLANK.match(query) else [query]
    statements = []
    start = 0
    for m in _TOKENS.finditer(query):
        if m.group() != ";":
            continue
        end = m.end()
        candidate = query[start:end]
        if sqlite3.complete_statement(candidate):
            if not _BLANK.match(candidate, 0, len(candidate) - 1):
                statements.append(candidate)
            start = end
    rest = query[start:]
    if rest and not _BLANK.match(rest):
        statements.append(rest)
    return statements


# -- the authorizer -----------------------------------------------------------------------------

_OK = sqlite3.SQLITE_OK
_DENY = sqlite3.SQLITE_DENY

# https://www.sqlite.org/lang_corefunc.html, lang_datefunc, lang_aggfunc, windowfunctions,
# lang_mathfunc, json1, fts5, and what ALTER TABLE runs internally (workerd's list, plus the
# newer harmless core functions). Not: load_extension, fts3_tokenizer (code execution), and the
# sqlite_* introspection functions.
ALLOWED_FUNCTIONS = frozenset(
    """
    abs changes char coalesce concat concat_ws format glob hex ifnull iif instr last_insert_rowid
    length like likelihood likely lower ltrim max min nullif octet_length printf quote random
    randomblob replace round rtrim sign soundex substr substring total_changes trim typeof unhex
    unicode unistr unlikely upper zeroblob
    date time datetime julianday unixepoch strftime timediff current_date current_time
    current_timestamp
    avg count group_concat string_agg sum total median percentile percentile_cont percentile_disc
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    nth_value
    acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10
    log2 mod pi pow power radians sin sinh sqrt tan tanh trunc
    json json_array json_array_length json_error_position json_extract -> ->> json_insert
    json_object json_patch json_pretty json_remove json_replace json_set json_type json_valid
    json_quote json_group_array json_group_object json_each json_tree
    jsonb jsonb_array jsonb_extract jsonb_insert jsonb_object jsonb_patch jsonb_remove
    jsonb_replace jsonb_set jsonb_group_array jsonb_group_object
    match highlight bm25 snippet fts5 fts5_source_id
    sqlite_rename_column sqlite_rename_table sqlite_rename_test sqlite_drop_column
    sqlite_rename_quotefix
    """.split()
)

_NO_ARG, _BOOLEAN, _OBJECT_NAME = range(3)
ALLOWED_PRAGMAS = {
    "data_version": _NO_ARG,
    "case_sensitive_like": _BOOLEAN,
    "foreign_keys": _BOOLEAN,
    "defer_foreign_keys": _BOOLEAN,
    "ignore_check_constraints": _BOOLEAN,
    "recursive_triggers": _BOOLEAN,
    "reverse_unordered_selects": _BOOLEAN,
    "foreign_key_check": _OBJECT_NAME,
    "foreign_key_list": _OBJECT_NAME,
    "index_info": _OBJECT_NAME,
    "index_list": _OBJECT_NAME,
    "index_xinfo": _OBJECT_NAME,
    "table_info": _OBJECT_NAME,
    "table_xinfo": _OBJECT_NAME,
}
_BOOLEANS = frozenset("true false yes no on off 1 0".split())

# Virtual tables that expose the database's internals (pages, prepared statements).
_HIDDEN_TABLES = frozenset(("sqlite_dbpage", "sqlite_stmt", "dbstat"))

_WRITE_ACTIONS = frozenset(
    getattr(sqlite3, name)
    for name in (
        "SQLITE_INSERT SQLITE_UPDATE SQLITE_DELETE SQLITE_CREATE_TABLE SQLITE_DROP_TABLE "
        "SQLITE_CREATE_INDEX SQLITE_DROP_INDEX SQLITE_CREATE_TRIGGER SQLITE_DROP_TRIGGER "
        "SQLITE_CREATE_VIEW SQLITE_DROP_VIEW SQLITE_ALTER_TABLE SQLITE_REINDEX SQLITE_ANALYZE "
        "SQLITE_CREATE_VTABLE SQLITE_DROP_VTABLE"
    ).split()
)


def isReservedName(name: str | None) -> bool:
    return name is not None and name[:4].lower() == "_cf_"


def _reservedReason(name: str) -> str:
    return f'access to {name} is prohibited: names starting with "_cf_" are reserved for internal use'


#: SQLite virtual machine instructions between two looks at the clock during user SQL: about a
#: millisecond of work or less, at a cost under 1% of a long query's time.
_PROGRESS_STEPS = 10_000


class _Deadline:
    """SQLite's progress handler for one connection: interrupts the user statement running past
    ``at`` (on ``clock``). A separate object, not an engine method, so that the connection holding
    it does not make a reference cycle with the engine."""

    __slots__ = ("at", "clock", "expired")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.at: float | None = None
        self.clock = clock
        self.expired = False

    def __call__(self) -> int:
        at = self.at
        if at is not None and self.clock() > at:
            self.expired = True
            return 1
        return 0


class _Authorizer:
    """State of the authorizer callback; one per connection."""

    __slots__ = ("trusted", "called", "wrote", "altered", "reason")

    def __init__(self) -> None:
        self.trusted = False
        self.reset()

    def reset(self) -> None:
        self.called = False
        self.wrote = False
        self.altered = False
        self.reason: str | None = None

    def deny(self, reason: str) -> int:
        if self.reason is None:
            self.reason = reason
        return _DENY

    def __call__(
        self, action: int, a1: str | None, a2: str | None, dbName: str | None, trigger: str | None
    ) -> int:
        if self.trusted:
            return _OK
        self.called = True
        if action in _WRITE_ACTIONS:
            self.wrote = True
        if dbName is not None and dbName != "main":
            if dbName == "temp" and action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE):
                return _OK if not isReservedName(a1) else self.deny(_reservedReason(a1 or ""))
            return self.deny("temporary tables and attached databases are not supported")
        if action == sqlite3.SQLITE_SELECT or action == sqlite3.SQLITE_RECURSIVE:
            return _OK
        if action == sqlite3.SQLITE_READ or action == sqlite3.SQLITE_UPDATE:
            if isReservedName(a1):
                return self.deny(_reservedReason(f"{a1}.{a2}" if a2 else a1 or ""))
            if a1 in _HIDDEN_TABLES:
                return self.deny(f"the {a1} virtual table is not supported")
            return _OK
        if action in (
            sqlite3.SQLITE_INSERT,
            sqlite3.SQLITE_DELETE,
            sqlite3.SQLITE_CREATE_TABLE,
            sqlite3.SQLITE_DROP_TABLE,
            sqlite3.SQLITE_ANALYZE,
            sqlite3.SQLITE_CREATE_VIEW,
            sqlite3.SQLITE_DROP_VIEW,
            sqlite3.SQLITE_REINDEX,
        ):
            return _OK if not isReservedName(a1) else self.deny(_reservedReason(a1 or ""))
        if action == sqlite3.SQLITE_ALTER_TABLE:
            self.altered = True
            return _OK if not isReservedName(a2) else self.deny(_reservedReason(a2 or ""))
        if action in (
            sqlite3.SQLITE_CREATE_INDEX,
            sqlite3.SQLITE_DROP_INDEX,
            sqlite3.SQLITE_CREATE_TRIGGER,
            sqlite3.SQLITE_DROP_TRIGGER,
        ):
            for name in (a1, a2):
                if isReservedName(name):
                    return self.deny(_reservedReason(name or ""))
            return _OK
        if action == sqlite3.SQLITE_TRANSACTION or action == sqlite3.SQLITE_SAVEPOINT:
            return self.deny(TRANSACTION_MESSAGE)
        if action == sqlite3.SQLITE_PRAGMA:
            return self._pragma((a1 or "").lower(), a2)
        if action == sqlite3.SQLITE_FUNCTION:
            if a2 is not None and a2.lower() in ALLOWED_FUNCTIONS:
                return _OK
            return self.deny(f"the SQL function {a2}() is not allowed")
        if action == sqlite3.SQLITE_CREATE_VTABLE or action == sqlite3.SQLITE_DROP_VTABLE:
            if isReservedName(a1):
                return self.deny(_reservedReason(a1 or ""))
            if a2 in ("fts5", "fts5vocab"):
                return _OK
            return self.deny(f"virtual tables using {a2} are not supported (only fts5)")
        if action == sqlite3.SQLITE_ATTACH:
            if a1 == "":
                return self.deny("VACUUM is not supported")
            return self.deny("ATTACH is not supported")
        if action == sqlite3.SQLITE_DETACH:
            return self.deny("DETACH is not supported")
        if action in (
            sqlite3.SQLITE_CREATE_TEMP_TABLE,
            sqlite3.SQLITE_CREATE_TEMP_INDEX,
            sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
            sqlite3.SQLITE_CREATE_TEMP_VIEW,
            sqlite3.SQLITE_DROP_TEMP_TABLE,
            sqlite3.SQLITE_DROP_TEMP_INDEX,
            sqlite3.SQLITE_DROP_TEMP_TRIGGER,
            sqlite3.SQLITE_DROP_TEMP_VIEW,
        ):
            return self.deny("temporary tables, indexes, triggers and views are not supported")
        return self.deny("this kind of SQL statement is not supported")

    def _pragma(self, name: str, arg: str | None) -> int:
        if name == "table_list":
            return _OK
        sig = ALLOWED_PRAGMAS.get(name)
        if sig is None:
            return self.deny(f"PRAGMA {name} is not allowed")
        if sig == _NO_ARG:
            return _OK if arg is None else self.deny(f"PRAGMA {name} takes no argument")
        if sig == _BOOLEAN:
            if arg is None:
                return _OK
            value = arg
            if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
                value = value[1:-1]
            if value.lower() in _BOOLEANS:
                return _OK
            return self.deny(f"PRAGMA {name} takes a boolean")
        if arg is None:
            return self.deny(f"PRAGMA {name} needs an argument")
        if isReservedName(arg.strip("'\"[]`")):
            return self.deny(_reservedReason(arg))
        return _OK


# -- cursors ------------------------------------------------------------------------------------


class _RawIterator(SqlRawIterator):
    __slots__ = ("_cursor",)

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    def __iter__(self) -> _RawIterator:
        return self

    def __next__(self) -> list[SqlValue]:
        return list(self._cursor._take())

    def toArray(self) -> list[list[SqlValue]]:
        return [list(row) for row in self._cursor._takeAll()]


class Row(dict):  # type: ignore[type-arg]
    """One SQL row: a ``dict`` of column name to value that also allows ``row.column``.

    Cloudflare's Python Workers give rows as JavaScript objects (``row.greeting``); dotwist gives
    a dict, so both spellings work and a row still equals the plain dict of its columns. A column
    named like a dict method (``keys``, ``items``) is reached with ``row["keys"]`` only.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the row has no column {name!r} (columns: {', '.join(map(str, self))})") from None


class Cursor(SqlCursor):
    """Rows of the last statement of an ``exec``, buffered when ``exec`` ran.

    ``rowsRead`` is the number of rows the statements of the ``exec`` returned (all of them,
    including rows of earlier statements that were discarded), known as soon as ``exec`` returns.
    SQLite's Python binding does not expose the scan counters Cloudflare bills (a full table scan
    returning one row counts 1 here, the table's size there). ``rowsWritten`` is the number of rows
    inserted, updated or deleted by the statements, including by triggers and foreign key actions
    (``sqlite3_total_changes``), but not index entries (which Cloudflare counts) nor DDL.
    """

    __slots__ = ("columnNames", "_rows", "_pos", "_rowsRead", "_rowsWritten")

    def __init__(
        self, columnNames: list[str], rows: list[tuple[Any, ...]], rowsRead: int, rowsWritten: int
    ) -> None:
        self.columnNames = columnNames
        self._rows = rows
        self._pos = 0
        self._rowsRead = rowsRead
        self._rowsWritten = rowsWritten

    def _take(self) -> tuple[Any, ...]:
        pos = self._pos
        if pos >= len(self._rows):
            raise StopIteration
        self._pos = pos + 1
        return self._rows[pos]

    def _takeAll(self) -> list[tuple[Any, ...]]:
        rows = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rows

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> dict[str, SqlValue]:
        return Row(zip(self.columnNames, self._take()))

    def toArray(self) -> list[dict[str, SqlValue]]:
        names = self.columnNames
        return [Row(zip(names, row)) for row in self._takeAll()]

    def one(self) -> dict[str, SqlValue]:
        rows = self._takeAll()
        if not rows:
            raise SqlError(ONE_NO_RESULTS)
        if len(rows) > 1:
            raise SqlError(ONE_MULTIPLE_RESULTS)
        return Row(zip(self.columnNames, rows[0]))

    def raw(self) -> _RawIterator:
        return _RawIterator(self)

    @property
    def rowsRead(self) -> int:
        return self._rowsRead

    @property
    def rowsWritten(self) -> int:
        return self._rowsWritten

    def __repr__(self) -> str:
        return (
            f"<Cursor columns={self.columnNames!r} remaining={len(self._rows) - self._pos} "
            f"rowsRead={self._rowsRead} rowsWritten={self._rowsWritten}>"
        )


# -- the engine ---------------------------------------------------------------------------------

_Q_EXEC_SAVEPOINT = trustedSql("SAVEPOINT _cf_exec")
_Q_EXEC_RELEASE = trustedSql("RELEASE _cf_exec")
_Q_EXEC_ROLLBACK = trustedSql("ROLLBACK TO _cf_exec")
_Q_OP_SAVEPOINT = trustedSql("SAVEPOINT _cf_op")
_Q_OP_RELEASE = trustedSql("RELEASE _cf_op")
_Q_OP_ROLLBACK = trustedSql("ROLLBACK TO _cf_op")
_Q_BEGIN = trustedSql("BEGIN")
_Q_COMMIT = trustedSql("COMMIT")
_Q_ROLLBACK = trustedSql("ROLLBACK")
_Q_PAGE_COUNT = trustedSql("PRAGMA page_count")
_Q_RESERVED_OBJECTS = trustedSql(
    "SELECT name FROM sqlite_master WHERE name LIKE '\\_cf\\_%' ESCAPE '\\'"
)
_Q_USER_OBJECTS = trustedSql(
    "SELECT type, name, sql FROM sqlite_master "
    "WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)
_Q_HAS_USER_OBJECTS = trustedSql(
    "SELECT EXISTS(SELECT 1 FROM sqlite_master "
    "WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\')"
)
_Q_STAT_TABLES = trustedSql(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'sqlite\\_stat%' ESCAPE '\\'"
)
_Q_DEFER_FK = trustedSql("PRAGMA defer_foreign_keys = ON")

_BINDABLE = (type(None), int, float, str, bytes, bytearray, memoryview, bool)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqliteMessage(e: sqlite3.Error) -> str:
    name = getattr(e, "sqlite_errorname", None)
    return f"{e}: {name}" if name else str(e)


class SqlEngine:
    """A connection, its transaction state, and Cloudflare's rules for user SQL.

    ``internalNames`` are the ``_cf_`` objects the backend creates (user SQL may not create more).
    ``onTransactionLost`` is called when SQLite rolled the whole transaction back by itself.
    ``clock`` (seconds) times user SQL against ``limits.maxSqlQueryDurationMs``.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        limits: StorageLimits,
        *,
        internalNames: frozenset[str] = frozenset(),
        onTransactionLost: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.limits = limits
        self.internalNames = internalNames
        self.onTransactionLost = onTransactionLost
        self.inTransaction = False
        self._auth = _Authorizer()
        # user statement -> (can it write, is it an ALTER TABLE), from the authorizer
        self._seen: dict[str, tuple[bool, bool]] = {}
        self._cursor = conn.cursor()
        conn.set_authorizer(self._auth)
        self._deadline = _Deadline(clock)
        conn.set_progress_handler(self._deadline, _PROGRESS_STEPS)
        self.pageSize: int = self.trusted(trustedSql("PRAGMA page_size")).fetchone()[0]
        conn.setlimit(
            sqlite3.SQLITE_LIMIT_LENGTH, max(limits.maxSqlRowSize, limits.maxKeyValueSize + 4096)
        )
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, max(limits.maxSqlStatementLength, 10_000))
        conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, limits.maxSqlColumns)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, max(limits.maxSqlBindings, 8))
        conn.setlimit(sqlite3.SQLITE_LIMIT_FUNCTION_ARG, limits.maxSqlFunctionArgs)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, limits.maxSqlLikePatternLength)
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)

    # -- internal statements --------------------------------------------------------------

    def trusted(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """Run an internal statement (``sql`` made with :func:`trustedSql`)."""
        auth = self._auth
        auth.trusted = True
        try:
            return self._cursor.execute(sql, params)
        except sqlite3.Error as e:
            raise self._failure(e) from None
        finally:
            auth.trusted = False

    def serialize(self) -> bytes:
        """The database as one image (``sqlite3.Connection.serialize``, which reads the pages
        through a statement of its own: the authorizer lets it through)."""
        auth = self._auth
        auth.trusted = True
        try:
            return self.conn.serialize()
        except sqlite3.Error as e:
            raise self._failure(e) from None
        finally:
            auth.trusted = False

    def trustedMany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        auth = self._auth
        auth.trusted = True
        try:
            return self._cursor.executemany(sql, rows)
        except sqlite3.Error as e:
            raise self._failure(e) from None
        finally:
            auth.trusted = False

    def _lostTransaction(self) -> bool:
        """Whether SQLite just rolled back our transaction by itself; resets the state if so."""
        if self.inTransaction and not self.conn.in_transaction:
            self.inTransaction = False
            if self.onTransactionLost is not None:
                self.onTransactionLost()
            return True
        return False

    def _failure(self, e: sqlite3.Error) -> StorageError:
        message = sqliteMessage(e)
        if self._lostTransaction():
            return TransactionAbortedError(
                f"{message}; SQLite rolled back the whole uncommitted batch: every write since the "
                "last commit was discarded",
                code=getattr(e, "sqlite_errorname", None),
            )
        if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return limitError(
                f"the database is full: {message}",
                "maxDatabaseSize",
                self.limits.maxDatabaseSize,
            )
        return StorageError(f"storage operation failed: {message}")

    # -- transactions ---------------------------------------------------------------------

    def begin(self) -> None:
        if not self.inTransaction:
            self.trusted(_Q_BEGIN)
            self.inTransaction = True

    def commit(self) -> None:
        if not self.inTransaction:
            return
        try:
            self.trusted(_Q_COMMIT)
        except StorageError as e:
            if self.conn.in_transaction:
                try:
                    self.trusted(_Q_ROLLBACK)
                except StorageError:  # pragma: no cover - nothing more to do
                    pass
            self.inTransaction = False
            raise CommitError(f"commit failed, the uncommitted batch was discarded: {e}") from None
        self.inTransaction = False

    def rollback(self) -> None:
        if not self.inTransaction:
            return
        self.inTransaction = False
        if self.conn.in_transaction:
            self.trusted(_Q_ROLLBACK)

    def savepoint(self, name: str) -> None:
        self.begin()
        self.trusted(trustedSql(f"SAVEPOINT {name}"))

    def release(self, name: str) -> None:
        self.trusted(trustedSql(f"RELEASE {name}"))

    def rollbackTo(self, name: str) -> None:
        self.trusted(trustedSql(f"ROLLBACK TO {name}"))
        self.trusted(trustedSql(f"RELEASE {name}"))

    def atomically(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (internal statements) so that it applies entirely or not at all."""
        self.begin()
        self.trusted(_Q_OP_SAVEPOINT)
        try:
            result = fn()
        except BaseException:
            if self.conn.in_transaction and self.inTransaction:
                self.trusted(_Q_OP_ROLLBACK)
                self.trusted(_Q_OP_RELEASE)
            raise
        self.trusted(_Q_OP_RELEASE)
        return result

    # -- user SQL -------------------------------------------------------------------------

    def _checkQuery(self, query: object, bindings: tuple[Any, ...]) -> str:
        limits = self.limits
        if not isinstance(query, str):
            raise InvalidValueError(f"a SQL query is a str, not {type(query).__qualname__}")
        size = len(query)
        if not query.isascii():
            try:
                size = len(query.encode("utf-8"))
            except UnicodeEncodeError:
                raise InvalidValueError(
                    "the SQL query is not valid Unicode: it contains a lone surrogate"
                ) from None
        if size > limits.maxSqlStatementLength:
            raise limitError(
                f"SQL statement too long: {size} bytes",
                "maxSqlStatementLength",
                limits.maxSqlStatementLength,
            )
        if len(bindings) > limits.maxSqlBindings:
            raise limitError(
                f"too many SQL parameter bindings: {len(bindings)} were provided",
                "maxSqlBindings",
                limits.maxSqlBindings,
            )
        for i, value in enumerate(bindings):
            if type(value) not in _BINDABLE and not isinstance(value, _BINDABLE):
                raise InvalidValueError(
                    f"SQL binding {i + 1} is a {type(value).__qualname__}: SQL bindings must be "
                    "None, int, float, str or bytes"
                )
            if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
                raise InvalidValueError(
                    f"SQL binding {i + 1} ({value}) does not fit SQLite's 64-bit INTEGER"
                )
            if isinstance(value, str) and not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidValueError(
                        f"SQL binding {i + 1} is not valid Unicode: it contains a lone surrogate"
                    ) from None
        return str(query)

    def exec(self, query: str, bindings: tuple[Any, ...]) -> tuple[Cursor, bool]:
        """Run user SQL; return the cursor and whether it may have written anything."""
        query = self._checkQuery(query, bindings)
        statements = splitStatements(query)
        if not statements:
            raise SqlError(NO_STATEMENT)
        conn = self.conn
        auth = self._auth
        self.begin()
        changes = conn.total_changes
        self.trusted(_Q_EXEC_SAVEPOINT)
        wrote = False
        rowsRead = 0
        columnNames: list[str] = []
        rows: list[tuple[Any, ...]] = []
        last = len(statements) - 1
        watch = self._deadline
        deadline = watch.clock() + self.limits.maxSqlQueryDurationMs / 1000
        try:
            for i, statement in enumerate(statements):
                cursor = conn.cursor()
                auth.reset()
                watch.at = deadline
                try:
                    cursor.execute(statement, bindings if i == last else ())
                    rows = cursor.fetchall()
                except sqlite3.ProgrammingError as e:
                    if "bindings" not in str(e):
                        raise
                    raise SqlError(
                        f"{MULTI_PARAMETERS if i < last else WRONG_BINDINGS} ({e})"
                    ) from None
                finally:
                    watch.at = None
                # The authorizer runs when a statement is prepared, not when sqlite3 reuses it
                # from its cache: remember what it saw, per statement text.
                if auth.called:
                    if len(self._seen) > 1000:
                        self._seen.clear()
                    seen = self._seen[statement] = (auth.wrote or auth.altered, auth.altered)
                else:
                    seen = self._seen.get(statement, (True, True))
                if seen[1]:
                    self._checkReservedNames()
                wrote = wrote or seen[0]
                rowsRead += len(rows)
                if i == last:
                    columnNames = [d[0] for d in cursor.description or ()]
                cursor.close()
        except sqlite3.Error as e:
            reason = auth.reason
            auth.reset()
            if watch.expired:
                watch.expired = False
                self._timeLimitExceeded()
            if self._lostTransaction():
                raise TransactionAbortedError(
                    f"{sqliteMessage(e)}; SQLite rolled back the whole uncommitted batch: every "
                    "write since the last commit was discarded",
                    code=getattr(e, "sqlite_errorname", None),
                ) from None
            self._undoExec()
            code = getattr(e, "sqlite_errorname", None)
            if reason == TRANSACTION_MESSAGE:
                raise SqlError(TRANSACTION_MESSAGE, code=code) from None
            if reason is not None:
                raise SqlError(f"{reason}: {code or 'SQLITE_AUTH'}", code=code) from None
            if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise limitError(
                    f"the database is full: {sqliteMessage(e)}",
                    "maxDatabaseSize",
                    self.limits.maxDatabaseSize,
                ) from None
            raise SqlError(sqliteMessage(e), code=code) from None
        except BaseException:
            auth.reset()
            if not self._lostTransaction():
                self._undoExec()
            raise
        self.trusted(_Q_EXEC_RELEASE)
        written = conn.total_changes - changes
        return Cursor(columnNames, rows, rowsRead, written), wrote or written > 0

    def _timeLimitExceeded(self) -> None:
        """Undo an ``exec`` that the progress handler interrupted, and raise."""
        limit = self.limits.maxSqlQueryDurationMs
        message = (
            f"SQL query exceeded its time limit and was interrupted: SQLITE_INTERRUPT "
            f"(limit StorageLimits.maxSqlQueryDurationMs = {limit})"
        )
        if self._lostTransaction():
            raise SqlTimeLimitAbortedError(
                f"{message}; SQLite rolled back the whole uncommitted batch: every write since "
                "the last commit was discarded",
                limit="maxSqlQueryDurationMs",
                value=limit,
            ) from None
        self._undoExec()
        raise SqlTimeLimitError(message, limit="maxSqlQueryDurationMs", value=limit) from None

    def _undoExec(self) -> None:
        self.trusted(_Q_EXEC_ROLLBACK)
        self.trusted(_Q_EXEC_RELEASE)

    def _checkReservedNames(self) -> None:
        for (name,) in self.trusted(_Q_RESERVED_OBJECTS).fetchall():
            if name not in self.internalNames:
                raise SqlError(
                    f"{_reservedReason(name)}: SQLITE_AUTH", code="SQLITE_AUTH"
                )

    # -- whole-database operations --------------------------------------------------------

    def databaseSize(self) -> int:
        return int(self.trusted(_Q_PAGE_COUNT).fetchone()[0]) * self.pageSize

    def hasUserObjects(self) -> bool:
        return bool(self.trusted(_Q_HAS_USER_OBJECTS).fetchone()[0])

    def dropUserObjects(self) -> None:
        """Drop every user table, view, trigger and index (call inside :meth:`atomically`)."""
        objects = self.trusted(_Q_USER_OBJECTS).fetchall()
        if objects:
            self.trusted(_Q_DEFER_FK)
        order = {"trigger": 0, "view": 1, "vtable": 2, "table": 3}
        drops = []
        for kind, name, sql in objects:
            if kind == "index":
                continue  # dropped with its table
            if kind == "table" and (sql or "").lstrip()[:14].upper() == "CREATE VIRTUAL":
                kind = "vtable"
            drops.append((order[kind], kind, name))
        for _, kind, name in sorted(drops):
            keyword = "TABLE" if kind == "vtable" else kind.upper()
            self.trusted(trustedSql(f"DROP {keyword} IF EXISTS {_quote(name)}"))
        for (name,) in self.trusted(_Q_STAT_TABLES).fetchall():
            self.trusted(trustedSql(f"DROP TABLE IF EXISTS {_quote(name)}"))


class SqlDatabaseImpl(SqlDatabase):
    """``ctx.storage.sql`` of one object store."""

    __slots__ = ("_exec", "_size")

    def __init__(self, exec: Callable[..., Cursor], size: Callable[[], int]) -> None:
        self._exec = exec
        self._size = size

    def exec(self, query: str, *bindings: Any) -> Cursor:
        return self._exec(query, bindings)

    @property
    def databaseSize(self) -> int:
        return self._size()

