"""The history file: sessions, tail/range/search as IPython answers them, the bound,
and several kernels of one kernelspec writing at once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from sshdist_kernel.history import CellHistory

from .conftest import wait_until


def test_sessions_tail_range_and_search(tmp_path: Path) -> None:
    path = tmp_path / "sshdist" / "history" / "sshdist-node1.sqlite"
    first = CellHistory(path)
    first.store(1, "(define x 1)")
    first.store(2, "(+ x 1)")
    first.store_output(2, "$1 = 2")
    assert first.range(0) == [(1, 1, "(define x 1)"), (1, 2, "(+ x 1)")]
    second = CellHistory(path)
    second.store(1, "(+ x 2)")
    assert second.tail(2) == [(1, 2, "(+ x 1)"), (2, 1, "(+ x 2)")]
    assert second.range(-1, 2, output=True) == [(1, 2, ("(+ x 1)", "$1 = 2"))]
    assert second.range(1, 1, 2) == [(1, 1, "(define x 1)")]
    assert second.search("(+ x *", n=1) == [(2, 1, "(+ x 2)")]
    second.store(2, "(+ x 1)")
    assert second.search("(+*", unique=True) == [(2, 1, "(+ x 2)"), (2, 2, "(+ x 1)")]


def test_only_the_newest_cells_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    old = CellHistory(path, keep=3)
    for line in range(1, 6):
        old.store(line, f"(cell {line})")
    assert old.flush()
    assert [line for _, line, _ in CellHistory(path, keep=3).tail(100)] == [3, 4, 5]


def test_kernels_of_one_kernelspec_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    kernels = [CellHistory(path) for _ in range(4)]

    def work(history: CellHistory) -> None:
        for line in range(1, 101):
            history.store(line, f"(cell {line})")
        assert history.flush(30)

    threads = [threading.Thread(target=work, args=(k,)) for k in kernels]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(k.error is None for k in kernels)
    found = kernels[0].tail(1000)
    assert len(found) == 400
    assert {session for session, _, _ in found} == {k.session for k in kernels}


def test_the_cells_of_a_batch_are_written_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A commit per statement cost 0.6 ms of CPU a cell beside every cell the kernel ran.
    statements: list[str] = []
    connect = CellHistory._connect

    def traced(self: CellHistory) -> sqlite3.Connection:
        db = connect(self)
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr(CellHistory, "_connect", traced)
    history = CellHistory(tmp_path / "h.sqlite")
    for _ in range(5):  # flushes that find nothing to write leave no wake-up behind
        assert history.flush()
    statements.clear()
    for line in range(1, 51):
        history.store(line, f"(cell {line})")
        if line == 1:  # the writer has the first cell: it waits for the rest
            wait_until(history._queue.empty, 10, "the writer to take the first cell")
        history.store_output(line, f"$1 = {line}")
    assert history.flush()
    writes = [s for s in statements if s.startswith(("INSERT", "UPDATE"))]
    assert len(writes) == 100
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ], statements
    assert history.range(0, 50, output=True) == [(history.session, 50, ("(cell 50)", "$1 = 50"))]


@pytest.mark.parametrize("broken", ["not a directory", "not a database"])
def test_a_history_file_that_cannot_be_written_keeps_the_cells_in_memory(
    tmp_path: Path, broken: str, caplog
) -> None:
    if broken == "not a directory":
        (tmp_path / "history").write_text("a file where the directory should be")
        path = tmp_path / "history" / "sshdist-node1.sqlite"
    else:
        path = tmp_path / "sshdist-node1.sqlite"
        path.write_bytes(b"this is no SQLite database, and it is not ours to rewrite " * 40)
    history = CellHistory(path)
    history.store(1, "(define x 1)")
    history.store(2, "(+ x 1)")
    history.store_output(2, "$1 = 2")
    assert [line for _, line, _ in history.tail(10)] == [1, 2]
    assert history.range(0, 2, output=True) == [(history.session, 2, ("(+ x 1)", "$1 = 2"))]
    assert [source for _, _, source in history.search("(+*")] == ["(+ x 1)"]
    assert history.error is not None
    assert "cannot be written" in caplog.text and "kept in memory only" in caplog.text
    if broken == "not a database":  # the file is left as it was
        assert path.read_bytes().startswith(b"this is no SQLite database")
