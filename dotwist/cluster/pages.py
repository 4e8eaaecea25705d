"""Capturing an object's SQLite commits exactly, as pages, and rebuilding its database from them.

In a cluster, an object's owner keeps a local SQLite copy, and every local commit is shipped to the
fenced log before its output is released. What is shipped is not SQL but the pages the commit
wrote, read from the frames the commit appended to the database's write-ahead log: so SQL, DDL,
key-value writes, ``VACUUM`` and everything else SQLite does are captured exactly, with no
statement run twice.

The WAL format (https://www.sqlite.org/fileformat2.html#walformat): a 32-byte header (magic,
version, page size, checkpoint sequence, two salts, a checksum), then frames of a 24-byte header
(page number; database size in pages after the commit, nonzero only in a transaction's last frame,
its commit frame; the salts; a cumulative checksum) and one page. The salts identify the WAL's
current generation: when SQLite restarts the WAL after a checkpoint it writes new salts and
overwrites the frames from the start, so frames with other salts are leftovers.

:class:`WalCapture` remembers how far it has read in which generation; :meth:`WalCapture.collect`,
called after a commit, reads the frames since then up to the last commit frame and returns the
pages they hold (the last version of each) and the database size. Frames past the last commit frame
are not taken (they belong to a transaction that is not committed, or was rolled back). It is
exact on two conditions, which the owner keeps: ``collect`` runs after every commit, before the
next transaction writes; and the WAL is checkpointed only by :meth:`WalCapture.checkpoint` (so
automatic checkpoints are off: ``PRAGMA wal_autocheckpoint = 0``), which collects first. A
checkpoint does not change the database's content, only where it is kept; after one, the next
transaction restarts the WAL with new salts, and the capture follows.

Rebuilding (:func:`buildDatabase`): start from a snapshot (a whole database image, from
``sqlite3.Connection.serialize()``), write each batch's pages at their offsets and truncate the file
to the batch's database size, as SQLite's own checkpoint does. Pages past the database size are
zeros to SQLite, so truncating after every batch gives the same content. The result is the
database, byte for byte, as the owner's copy would be after a full checkpoint.

A new object has no snapshot and no log; :func:`buildDatabase` then writes an empty database made
by SQLite in WAL mode and returns its pages as a batch that must be shipped with the object's first
commit (pass it to :class:`WalCapture` as ``base``): opening a database that is not yet in WAL mode
would write its header outside the WAL, where no capture sees it.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import struct
import sys
import tempfile
import zlib
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from .errors import ClusterError, LogCorrupt

__all__ = [
    "PageBatch",
    "WalCapture",
    "WalError",
    "buildDatabase",
    "emptyDatabaseImage",
    "imagePageSize",
]

_WAL_HEADER: Final = 32
_FRAME_HEADER: Final = 24
_WAL_MAGIC_LE: Final = 0x377F0682
_WAL_MAGIC_BE: Final = 0x377F0683
_WAL_VERSION: Final = 3007000

_BATCH_MAGIC: Final = b"DWPB"
_BATCH_VERSION: Final = 1
_FLAG_ZLIB: Final = 1
_BATCH_HEADER = struct.Struct(">4sBBHIII")  # magic, version, flags, reserved, pageSize, dbPages, count


class WalError(ClusterError):
    """The WAL cannot be captured (not a WAL file, or the capture's conditions were broken)."""


def _checkPageSize(pageSize: int) -> None:
    if not (512 <= pageSize <= 65536 and pageSize & (pageSize - 1) == 0):
        raise LogCorrupt(f"{pageSize} is not a SQLite page size")


@dataclass(frozen=True)
class PageBatch:
    """What one or more commits changed: pages by number (1-based), and the database size after.

    ``dbPages`` is the database size in pages; pages past it are gone (a shrink: ``DELETE``,
    ``VACUUM``). ``pages`` never holds a page number above ``dbPages``.
    """

    pageSize: int
    dbPages: int
    pages: Mapping[int, bytes]

    @classmethod
    def fromImage(cls, image: bytes) -> PageBatch:
        """Every page of a whole database image (from a file or ``serialize()``)."""
        pageSize = imagePageSize(image)
        if len(image) % pageSize:
            raise LogCorrupt(f"a database image of {len(image)} bytes is not whole pages of {pageSize}")
        pages = {
            i // pageSize + 1: bytes(image[i : i + pageSize]) for i in range(0, len(image), pageSize)
        }
        return cls(pageSize, len(image) // pageSize, pages)

    def then(self, later: PageBatch) -> PageBatch:
        """This batch followed by ``later``, as one batch."""
        if later.pageSize != self.pageSize:
            raise LogCorrupt(f"page size changed from {self.pageSize} to {later.pageSize}")
        pages = {n: p for n, p in self.pages.items() if n <= later.dbPages}
        pages.update(later.pages)
        return PageBatch(self.pageSize, later.dbPages, pages)

    @property
    def size(self) -> int:
        """Bytes of page data held."""
        return len(self.pages) * self.pageSize

    def encode(self, *, compress: bool = False) -> bytes:
        """The batch as bytes (a header, the page numbers, the pages; optionally zlib'd)."""
        numbers = sorted(self.pages)
        body = b"".join(
            [struct.pack(f">{len(numbers)}I", *numbers), *(self.pages[n] for n in numbers)]
        )
        flags = 0
        if compress:
            body = zlib.compress(body, 1)
            flags |= _FLAG_ZLIB
        header = _BATCH_HEADER.pack(
            _BATCH_MAGIC, _BATCH_VERSION, flags, 0, self.pageSize, self.dbPages, len(numbers)
        )
        return header + body

    @classmethod
    def decode(cls, data: bytes) -> PageBatch:
        """Parse :meth:`encode`'s bytes; :class:`~dotwist.cluster.errors.LogCorrupt` if they are
        not a valid batch."""
        data = bytes(data)
        if len(data) < _BATCH_HEADER.size:
            raise LogCorrupt(f"a page batch of {len(data)} bytes is shorter than its header")
        magic, version, flags, _, pageSize, dbPages, count = _BATCH_HEADER.unpack_from(data)
        if magic != _BATCH_MAGIC or version != _BATCH_VERSION or flags & ~_FLAG_ZLIB:
            raise LogCorrupt(
                f"not a page batch this dotwist reads (magic {magic!r}, version {version}, "
                f"flags {flags})"
            )
        _checkPageSize(pageSize)
        body = data[_BATCH_HEADER.size :]
        if flags & _FLAG_ZLIB:
            try:
                body = zlib.decompress(body)
            except zlib.error as e:
                raise LogCorrupt(f"a compressed page batch does not decompress: {e}") from None
        if len(body) != count * (4 + pageSize):
            raise LogCorrupt(
                f"a page batch of {count} pages of {pageSize} bytes holds {len(body)} bytes"
            )
        numbers = struct.unpack_from(f">{count}I", body)
        start = 4 * count
        pages = {}
        for i, n in enumerate(numbers):
            if not 1 <= n <= dbPages or n in pages:
                raise LogCorrupt(
                    f"a page batch holds page {n}, outside 1..{dbPages} or more than once"
                )
            pages[n] = body[start + i * pageSize : start + (i + 1) * pageSize]
        return cls(pageSize, dbPages, pages)

    def __repr__(self) -> str:
        return f"<PageBatch {len(self.pages)} pages of {self.pageSize}, db {self.dbPages} pages>"


def imagePageSize(image: bytes) -> int:
    """The page size recorded in a database image's header."""
    if len(image) < 100 or image[:16] != b"SQLite format 3\x00":
        raise LogCorrupt("not a SQLite database image (bad header)")
    (size,) = struct.unpack_from(">H", image, 16)
    pageSize = 65536 if size == 1 else size
    _checkPageSize(pageSize)
    return pageSize


@functools.lru_cache(maxsize=8)
def emptyDatabaseImage(pageSize: int = 4096) -> bytes:
    """An empty database in WAL mode, as this process's SQLite writes it (one page)."""
    _checkPageSize(pageSize)
    with tempfile.TemporaryDirectory(prefix="dotwist-empty-") as d:
        path = os.path.join(d, "empty.sqlite")
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA page_size = {pageSize}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":  # pragma: no cover - WAL is always available for files
                raise WalError(f"SQLite refused WAL mode ({mode})")
        finally:
            conn.close()
        with open(path, "rb") as f:
            return f.read()


def buildDatabase(
    path: str | os.PathLike[str],
    snapshot: bytes | None,
    batches: Iterable[bytes | PageBatch],
    *,
    pageSize: int = 4096,
    sync: bool = True,
) -> PageBatch | None:
    """Write the database file at ``path`` from a snapshot image and the batches after it.

    Any file at ``path`` and its ``-wal``, ``-shm`` and ``-journal`` are replaced (a leftover WAL
    would be replayed by SQLite over the rebuilt file). The file is written under a temporary name,
    fsynced (unless ``sync`` is false), and renamed into place.

    An empty ``bytes`` batch (a commit that only changed the object's alarm row) changes nothing.

    Returns None, or, if there was nothing to build from (no snapshot, no batch: a new object),
    the empty database it wrote (see :func:`emptyDatabaseImage`, of ``pageSize``) as a batch to
    ship with the object's first commit.
    """
    path = os.fspath(path)
    tmp = path + ".building"
    base: PageBatch | None = None
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = None
        if snapshot is not None:
            size = imagePageSize(snapshot)
            _writeAll(fd, snapshot)
        empty = snapshot is None
        for item in batches:
            if not isinstance(item, PageBatch) and len(item) == 0:
                continue  # a commit that changed only the alarm
            empty = False
            batch = item if isinstance(item, PageBatch) else PageBatch.decode(item)
            if size is None:
                size = batch.pageSize
            elif batch.pageSize != size:
                raise LogCorrupt(f"page size changed from {size} to {batch.pageSize}")
            for number, page in batch.pages.items():
                os.pwrite(fd, page, (number - 1) * size)
            os.ftruncate(fd, batch.dbPages * size)
        if empty:
            image = emptyDatabaseImage(pageSize)
            _writeAll(fd, image)
            base = PageBatch.fromImage(image)
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    os.replace(tmp, path)
    if sync:
        _fsyncDir(os.path.dirname(path) or ".")
    return base


def _writeAll(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[: 1 << 30])
        view = view[n:]


def _fsyncDir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _checksum(data: bytes, s1: int, s2: int, bigEndian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes), continuing from (s1, s2)."""
    words = array("I")
    words.frombytes(data)
    if bigEndian != (sys.byteorder == "big"):
        words.byteswap()
    mask = 0xFFFFFFFF
    it = iter(words)
    for x0, x1 in zip(it, it):
        s1 = (s1 + x0 + s2) & mask
        s2 = (s2 + x1 + s1) & mask
    return s1, s2


class WalCapture:
    """Reads what each commit of one database wrote, from its WAL (see the module docstring).

    ``databasePath`` is the database file (the WAL is ``databasePath + "-wal"``). ``base`` is a
    batch to put in front of the first one collected (the empty database of a new object, from
    :func:`buildDatabase`). ``verifyChecksums`` also checks each frame's cumulative checksum
    (costly in Python; the tests use it to check the capture's reasoning, which does not need it).

    The connection must have ``PRAGMA wal_autocheckpoint = 0``, and checkpoints go through
    :meth:`checkpoint`. The WAL file is opened for each ``collect`` and closed again: SQLite holds
    no POSIX lock on it, so that is safe (never open the *database* file itself while SQLite has it
    open: closing any descriptor of a file drops the process's locks on it).
    """

    def __init__(
        self,
        databasePath: str | os.PathLike[str],
        *,
        base: PageBatch | None = None,
        verifyChecksums: bool = False,
    ) -> None:
        self.walPath = os.fspath(databasePath) + "-wal"
        self.verifyChecksums = verifyChecksums
        self._pending = base
        self._salts: tuple[int, int] | None = None
        self._offset = _WAL_HEADER
        self._sums = (0, 0)
        self._bigEndian = True
        #: Frames read since the last checkpoint (how large the WAL has grown).
        self.framesSinceCheckpoint = 0

    def collect(self) -> PageBatch | None:
        """The pages committed since the last call (and the base, the first time); None if none."""
        found = self._read()
        pending, self._pending = self._pending, None
        if pending is None:
            return found
        return pending if found is None else pending.then(found)

    def checkpoint(self, execute: Callable[[str], Any]) -> None:
        """Collect what is left, then checkpoint the WAL into the database and truncate it.

        ``execute(sql)`` runs a statement on the database's connection and returns its cursor.
        What was collected is kept and returned by the next :meth:`collect`.
        """
        found = self._read()
        if found is not None:
            self._pending = found if self._pending is None else self._pending.then(found)
        busy, logFrames, done = execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy or (logFrames != done and logFrames != -1):
            raise WalError(
                f"the checkpoint of {self.walPath} did not complete ({done} of {logFrames} frames)"
            )
        self.framesSinceCheckpoint = 0

    def _read(self) -> PageBatch | None:
        try:
            with open(self.walPath, "rb", buffering=0) as f:
                return self._readFrom(f)
        except FileNotFoundError:
            return None

    def _readFrom(self, f: BinaryIO) -> PageBatch | None:
        header = f.read(_WAL_HEADER)
        if len(header) < _WAL_HEADER:
            return None
        magic, version, pageSize, _, salt1, salt2, c1, c2 = struct.unpack(">8I", header)
        if magic not in (_WAL_MAGIC_LE, _WAL_MAGIC_BE) or version != _WAL_VERSION:
            raise WalError(f"{self.walPath} is not a SQLite WAL (magic {magic:#x})")
        _checkPageSize(pageSize)
        bigEndian = magic == _WAL_MAGIC_BE
        if (salt1, salt2) != self._salts:
            # A new generation: SQLite restarted the WAL after a checkpoint.
            if self.verifyChecksums and _checksum(header[:24], 0, 0, bigEndian) != (c1, c2):
                raise WalError(f"the header of {self.walPath} has a bad checksum")
            self._salts = (salt1, salt2)
            self._offset = _WAL_HEADER
            self._sums = (c1, c2)
            self._bigEndian = bigEndian
        frameSize = _FRAME_HEADER + pageSize
        f.seek(self._offset)
        committed: dict[int, bytes] = {}
        open_: dict[int, bytes] = {}
        dbPages = 0
        offset = self._offset
        sums = self._sums
        commitSums = sums  # the running checksum at the last commit frame read
        frames = 0
        verify = self.verifyChecksums
        while True:
            chunk = f.read(frameSize * 64)
            if not chunk:
                break
            stop = False
            for start in range(0, len(chunk) - frameSize + 1, frameSize):
                number, size, s1, s2, k1, k2 = struct.unpack_from(">6I", chunk, start)
                if (s1, s2) != self._salts or number == 0:
                    stop = True
                    break
                page = chunk[start + _FRAME_HEADER : start + frameSize]
                if verify:
                    sums = _checksum(chunk[start : start + 8], *sums, bigEndian)
                    sums = _checksum(page, *sums, bigEndian)
                    if sums != (k1, k2):
                        stop = True
                        break
                open_[number] = page
                frames += 1
                if size:  # a commit frame: the transaction is whole
                    committed.update(open_)
                    for n in [n for n in committed if n > size]:
                        del committed[n]
                    open_.clear()
                    dbPages = size
                    offset = self._offset + (frames * frameSize)
                    commitSums = (k1, k2)
            if stop or len(chunk) < frameSize * 64:
                break
        if not dbPages:
            return None
        self.framesSinceCheckpoint += (offset - self._offset) // frameSize
        self._offset = offset
        if verify:
            self._sums = commitSums
        return PageBatch(pageSize, dbPages, committed)
