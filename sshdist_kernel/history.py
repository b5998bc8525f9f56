"""The cells a kernel ran, kept per kernelspec in SQLite, for Jupyter's history requests.

IPython's history is the model: one session per kernel start, cells numbered by their
execution count, ``tail``/``range``/``search`` answering ``(session, line, input)`` or
``(session, line, (input, output))``.  Writes go through one thread, as IPython's do, so
a cell never waits for the disk; several kernels of one kernelspec share the file, and
SQLite's locking (with a timeout) keeps it whole.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("sshdist_kernel.history")

KEEP = 10_000
"""Cells kept per kernelspec: older ones are dropped when a session starts."""

BATCH_WAIT = 0.5
"""Seconds the writer gathers cells before it writes them, in one transaction."""

FLUSH_WAIT = 5.0
"""Seconds a history query waits for the cells queued before it to be written."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session INTEGER PRIMARY KEY AUTOINCREMENT, start TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS history (
    session INTEGER, line INTEGER, source TEXT, output TEXT, PRIMARY KEY (session, line));
"""

Entry = tuple[int, int, Any]


class CellHistory:
    """The history file of one kernelspec, with this kernel's session in it."""

    def __init__(self, path: Path, *, keep: int = KEEP, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.keep = keep
        self.timeout = timeout
        self.session = 0
        """This kernel's session number, once the writer has started it (0 before)."""
        self.error: BaseException | None = None
        """Why the history file could not be written, if it could not: this kernel's
        cells are then kept in memory (as IPython does), and cells run on regardless."""
        self._memory: sqlite3.Connection | None = None  # that memory, shared by threads
        self._memory_lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._flushes = threading.Semaphore(0)  # released once per flush asked for
        threading.Thread(target=self._write_all, daemon=True, name="sshdist history").start()

    # -- writing, on the writer thread ---------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)

    @staticmethod
    @contextmanager
    def _transaction(db: sqlite3.Connection) -> Iterator[None]:
        """One transaction, committed or rolled back: with ``isolation_level=None`` the
        connection's own ``with`` opens none, and each statement would be a commit of
        its own (0.6 ms of CPU a cell, beside every cell the kernel runs)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _write_all(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            db.executescript(_SCHEMA)
            with self._transaction(db):
                self.session = db.execute("INSERT INTO sessions DEFAULT VALUES").lastrowid or 0
                # The newest cells stay; a session that starts does the tidying.
                db.execute(
                    "DELETE FROM history WHERE rowid <= "
                    "(SELECT rowid FROM history ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                    (self.keep,),
                )
        except (sqlite3.Error, OSError) as exc:  # read-only, a directory, disk full
            self.error = exc
            db = self._in_memory()
            log.warning(
                "the history file %s cannot be written (%s): this kernel's cells are kept "
                "in memory only",
                self.path,
                exc,
            )
        while True:
            batch, waiting = self._next_batch()
            if batch:
                try:
                    with self._memory_lock, self._transaction(db):  # one write for the batch
                        for sql, args in batch:
                            db.execute(sql, (self.session, *args))
                except sqlite3.Error as exc:  # locked past the timeout, disk full: lose them
                    self.error = exc
            for event in waiting:
                event.set()

    def _in_memory(self) -> sqlite3.Connection:
        """A history in memory for this session, when the file cannot be written."""
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.executescript(_SCHEMA)
        self.session = db.execute("INSERT INTO sessions DEFAULT VALUES").lastrowid or 0
        self._memory = db
        return db

    def _next_batch(self) -> tuple[list[tuple[str, tuple]], list[threading.Event]]:
        """The writes queued within ``BATCH_WAIT`` of the first, or up to a flush: a
        commit per cell would cost more CPU than the cell (about 0.6 ms here).  Only a
        flush wakes the writer early; a cell's writes do not (a wake-up per write, each
        taking the interpreter from the cell's thread, cost 0.05 ms a cell)."""
        batch: list[tuple[str, tuple]] = []
        waiting: list[threading.Event] = []
        item = self._queue.get()
        if isinstance(item, threading.Event):
            # This flush's own release: left, it would end a later batch early.
            self._flushes.acquire(blocking=False)
        else:
            # A release left by a flush served in an earlier batch only writes this
            # one early; each flush's own release comes after its marker is queued.
            self._flushes.acquire(timeout=BATCH_WAIT)
        while True:
            if isinstance(item, threading.Event):
                waiting.append(item)
                return batch, waiting
            batch.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, waiting

    def store(self, line: int, source: str) -> None:
        """Keep cell number ``line`` of this session (written in the background)."""
        self._queue.put(
            (
                "INSERT OR REPLACE INTO history (session, line, source) VALUES (?, ?, ?)",
                (line, source),
            )
        )

    def store_output(self, line: int, output: str) -> None:
        """Keep the text of the values cell ``line`` gave."""
        self._queue.put(
            ("UPDATE history SET output = ?3 WHERE session = ?1 AND line = ?2", (line, output))
        )

    def flush(self, timeout: float = FLUSH_WAIT) -> bool:
        """Wait until every cell stored so far is written; False past ``timeout``."""
        done = threading.Event()
        self._queue.put(done)
        self._flushes.release()
        return done.wait(timeout)

    # -- reading -------------------------------------------------------------------------

    def _query(self, where: str, args: tuple, output: bool, newest: int | None) -> list[Entry]:
        self.flush()
        columns = "session, line, source, output" if output else "session, line, source"
        sql = f"SELECT {columns} FROM history {where}"
        if newest is not None:
            sql += " ORDER BY session DESC, line DESC LIMIT ?"
            args = (*args, max(int(newest), 0))
        else:
            sql += " ORDER BY session, line"
        try:
            if self._memory is not None:
                with self._memory_lock:
                    rows = self._memory.execute(sql, args).fetchall()
            else:
                with closing(self._connect()) as db:
                    rows = db.execute(sql, args).fetchall()
        except (sqlite3.Error, OSError):
            return []
        if newest is not None:
            rows.reverse()
        if output:
            return [(s, n, (source, out)) for s, n, source, out in rows]
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def tail(self, n: int | None = 10, output: bool = False) -> list[Entry]:
        """The last ``n`` cells of every session, oldest first."""
        return self._query("", (), output, 10 if n is None else n)

    def range(
        self, session: int = 0, start: int = 1, stop: int | None = None, output: bool = False
    ) -> list[Entry]:
        """Cells ``start`` to ``stop - 1`` (to the end without ``stop``) of ``session``;
        0 is this kernel's session, -1 the one before, as in IPython."""
        session = session or 0
        if session <= 0:
            self.flush()
            session += self.session
        where = "WHERE session = ? AND line >= ?"
        args: tuple = (session, start or 0)
        if stop:
            where += " AND line < ?"
            args += (stop,)
        return self._query(where, args, output, None)

    def search(
        self,
        pattern: str = "*",
        n: int | None = None,
        unique: bool = False,
        output: bool = False,
    ) -> list[Entry]:
        """Cells whose source matches the glob ``pattern`` (the newest ``n`` if given);
        ``unique`` keeps the newest of equal sources."""
        where = "WHERE source GLOB ?"
        if unique:
            where = (
                "WHERE rowid IN (SELECT MAX(rowid) FROM history WHERE source GLOB ? "
                "GROUP BY source)"
            )
        return self._query(where, (pattern or "*",), output, n)

    def answer(self, request: dict[str, Any], output: bool = False) -> list[Entry]:
        """A ``history_request``'s cells, by its ``hist_access_type`` (``tail``,
        ``range``, ``search``; anything else finds none).  ``TypeError``,
        ``ValueError`` or ``OverflowError`` for numbers no client sends."""
        kind = request.get("hist_access_type")
        n = checked_number(request.get("n"))
        if kind == "tail":
            return self.tail(n, output=output)
        if kind == "range":
            session, start = (checked_number(request.get(k)) or 0 for k in ("session", "start"))
            return self.range(session, start, checked_number(request.get("stop")), output)
        if kind == "search":
            pattern, unique = str(request.get("pattern") or "*"), bool(request.get("unique"))
            return self.search(pattern, n, unique, output=output)
        return []


def checked_number(value: Any) -> int | None:
    """A history request's number, checked: SQLite's integers are 64-bit."""
    if value is None:
        return None
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise OverflowError(f"{value} is out of range")
    return number
