"""A distributed call's progress as data, kept from its events: what the terminal's line,
the live widget (``progressview``) and the ended call's summary (``finalview``) draw."""

from __future__ import annotations

import time
from collections.abc import Callable

from sshdist_kernel import DistEvent, Node, NodeError

TEXT_ROWS_UP_TO = 8
"""The terminal line names each node's count when there are at most this many nodes."""


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, s = divmod(round(s), 60)
    return f"{minutes} min {s} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


class NodeProgress:
    """One node's row: items done there, what it is doing, and what became of it.

    Since pipelining a node holds several chunks: ``start`` comes when one reaches the
    head of its queue, so a failover's or a copy's job is noted as coming next, never as
    what the node runs while it still runs another."""

    def __init__(self, node: Node, unit: str = "item") -> None:
        self.node = node
        self.unit = unit  # what the call counts: "item" (dist_map) or "expression"
        self.done = 0
        self.chunks = 0  # jobs (chunks) finished here
        self.used = False
        self.failed = False
        self.slow = False  # a copy of its job runs elsewhere
        self.job: int | None = None  # the job it runs now
        self.size = 0  # that job's items
        self.moved_away = 0  # items of jobs it held when it failed, run elsewhere
        self.unfinished = 0  # items of the job it was in when it failed or was stopped
        self.moved_jobs: list[int] = []
        self.moved_to: list[str] = []
        self.status = "waiting"
        self._next: dict[int, str] = {}  # job -> why, for the starts that follow
        self._running = ""  # what it runs, as its status said when it began

    @property
    def label(self) -> str:
        return f"{counted(self.done, self.unit)}, {self.status}"

    @property
    def given(self) -> int:
        """The items its bar is of: those it was given (done, running, left unfinished
        when it failed or the call stopped, given back), not the whole call's, so a node
        that finished its share is full."""
        running = self.size if self.job is not None else 0
        # The job it failed in is among those it gave back (told after the failure).
        return self.done + running + max(self.moved_away, self.unfinished)

    def ends_job(self) -> None:
        """Its job ended unfinished (it failed, or the call was stopped)."""
        if self.job is not None:
            self.unfinished += self.size
            self.job = None

    @property
    def fraction(self) -> float:
        """How full its bar is."""
        return self.done / self.given if self.given else 0.0

    def starts(self, job: int, size: int) -> None:
        self.used, self.job, self.size, self.slow = True, job, size, False
        self.status = f"running job {job} ({counted(size, self.unit)})"
        why = self._next.pop(job, None)
        if why is not None:
            self.status += f", {why}"
        self._running = self.status
        if self._next:
            self.status += f"; {self._then()}"

    def will_run(self, job: int, why: str) -> None:
        """A failover or a straggler copy: ``job`` is among this node's next, for ``why``
        (what it runs now, if anything, goes on first)."""
        self._next[job] = why
        self.status = f"{self._running}; {self._then()}" if self.job is not None else self._then()

    def _then(self) -> str:
        return "next: " + "; ".join(f"job {job}, {why}" for job, why in self._next.items())

    def finishes(self, job: int, size: int) -> None:
        self.done += size
        self.chunks += 1
        self.job, self.slow = None, False
        self.status = f"finished job {job}"

    def gives_up(self, job: int, size: int, to: str) -> None:
        """It failed holding ``job``, which moves to the node ``to``."""
        self.failed = True
        self.moved_away += size
        self.moved_jobs.append(job)
        self.moved_to = list(dict.fromkeys([*self.moved_to, to]))
        jobs = self.moved_jobs
        which = f"job {jobs[0]}" if len(jobs) == 1 else f"jobs {', '.join(map(str, jobs))}"
        self.status = f"FAILED: {which} moved to {', '.join(self.moved_to)}"


class CallProgress:
    """A ``dist_map`` or ``distribute``'s progress as data, from its events: a row per
    node, the counts (items done, failovers, moves, straggler copies) and the call's lines
    in words; ``say`` takes the failover and copy lines as they happen."""

    def __init__(
        self, what: str, nodes: list[Node], total: int, say: Callable[[str], None]
    ) -> None:
        self.what = what
        self.unit = "expression" if what == "distribute" else "item"
        self.total = total
        self.nodes = list(nodes)
        self.rows = {id(n): NodeProgress(n, self.unit) for n in nodes}
        self.done = 0
        self.moved_chunks = 0  # jobs a failed node gave back, each run elsewhere
        self.moved_items = 0
        self.copies = 0
        self.started = time.monotonic()
        self.ended: float | None = None  # when the call ended, once it has
        self.say = say
        self._copied: dict[int, tuple[Node, Node]] = {}  # job -> (slow node, the copy's)

    def _row(self, node: Node) -> NodeProgress:
        row = self.rows.get(id(node))
        if row is None:  # not in the list the magic was given: show it all the same
            row = self.rows[id(node)] = NodeProgress(node)
        return row

    # -- events --------------------------------------------------------------------------

    def hear(self, event: DistEvent) -> None:
        """Take one event into the rows; failovers and copies are said (``say``) now."""
        kind, job, node = event.kind, event.job, event.node
        if kind == "start":
            self._row(node).starts(job.index, job.size)
        elif kind == "done":
            self.done += job.size
            self._row(node).finishes(job.index, job.size)
            self._race_ends(job.index, node)
        elif kind == "failed":
            row = self._row(node)
            row.ends_job()
            if isinstance(event.detail, NodeError):  # the node broke; its job moves on
                row.failed = True
                if not row.moved_jobs:
                    row.status = "FAILED"
                self.say(f"  {node.name} failed: {event.detail}")
            else:  # the code failed: the call's error says the rest
                row.status = f"error in job {job.index}"
        elif kind == "moved":
            to = event.detail
            self.moved_chunks += 1
            self.moved_items += job.size
            self._row(node).gives_up(job.index, job.size, to.name)
            self._row(to).will_run(job.index, f"from {node.name}")
            self.say(f"  job {job.index} moved from {node.name} to {to.name}")
        elif kind == "copied":
            slow = event.detail
            self.copies += 1
            self._copied[job.index] = (slow, node)
            slow_row = self._row(slow)
            slow_row.slow = True
            slow_row.status = f"job {job.index} runs long: a copy runs on {node.name}"
            self._row(node).will_run(job.index, f"a copy: {slow.name} is slow")
            self.say(f"  job {job.index} runs long on {slow.name}: a copy runs on {node.name}")

    @property
    def failovers(self) -> int:
        """Nodes that failed and whose jobs moved on (one node may give back several)."""
        return sum(1 for r in self.rows.values() if r.moved_jobs)

    def _race_ends(self, job: int, winner: Node) -> None:
        """A job that had a straggler copy is done: the other runner stops."""
        if job not in self._copied:
            return
        slow, copier = self._copied.pop(job)
        loser = copier if winner is slow else slow
        row = self._row(loser)
        if row.job == job or row.slow:
            row.job, row.slow = None, False
            row.status = f"stopped job {job}: {winner.name} answered first"
        who = "the copy on " + winner.name if winner is copier else winner.name
        self.say(f"  job {job} done by {who}, before {loser.name}")

    def total_text(self, now: float | None = None, final: str = "") -> str:
        """``24/60 items, 23.5 items/s, ~1.5 s left`` while it runs; once it has ended
        (``final``: ``"done"``, ``"failed"``, ``"stopped"``) ``60/60 items in 2.31 s,
        26.0 items/s``."""
        if final and self.ended is not None:
            now = self.ended
        seconds = (time.monotonic() if now is None else now) - self.started
        text = f"{self.done}/{self.total} {self.unit}s"
        if final == "done":
            text += f" in {seconds:.2f} s"
        elif final:
            text += f", {'FAILED' if final == 'failed' else 'stopped'} after {seconds:.2f} s"
        if self.done and seconds > 0:
            rate = self.done / seconds
            text += f", {rate:.1f} {self.unit}s/s"
            if not final and self.done < self.total:
                text += f", ~{_seconds((self.total - self.done) / rate)} left"
        return text

    def status(self, now: float | None = None) -> str:
        """The terminal's progress line: the total, then each node's items."""
        text = f"  {self.what}: {self.total_text(now)}"
        rows = list(self.rows.values())
        if len(rows) <= TEXT_ROWS_UP_TO:
            text += " | " + ", ".join(
                f"{r.node.name} {r.done}" + (" FAILED" if r.failed else "") for r in rows
            )
        return text

    def summary(self, state: str = "done") -> str:
        """``dist_map: 60 item(s) on 3 node(s), 1 failover(s) (3 jobs, 12 items moved),
        in 2.31 s``: a failover is a node that failed, however many jobs it gave back;
        ``state`` is ``"done"``, ``"failed"`` or ``"stopped"``; the time is the call's,
        however long after its end this is asked (``%dist_result``)."""
        seconds = (time.monotonic() if self.ended is None else self.ended) - self.started
        used = sum(1 for r in self.rows.values() if r.used)
        text = (
            f"{self.what}: {self.total} {self.unit}(s) on {used} node(s), "
            f"{self.failovers} failover(s)"
        )
        if self.moved_chunks:
            moved = counted(self.moved_chunks, "job")
            text += f" ({moved}, {counted(self.moved_items, self.unit)} moved)"
        if self.copies:
            text += f", {self.copies} straggler cop{'y' if self.copies == 1 else 'ies'}"
        if state == "done":
            return f"{text}, in {seconds:.2f} s"
        how = "FAILED after" if state == "failed" else "stopped after"
        return f"{text}, {self.done} done, {how} {seconds:.2f} s"

    def stopped(self, how: str, nodes_state: str) -> str:
        """The one line of a stopped call: ``dist_map interrupted: 20 of 60 items done
        on 3 nodes; nodes ready``."""
        count = len(self.nodes)
        return (
            f"{self.what} {how}: {self.done} of {self.total} {self.unit}s done on {count} "
            f"node{'' if count == 1 else 's'}; {nodes_state}"
        )

    def ends(self, state: str) -> None:
        """The call ended (``state``: done, failed, stopped): its time is kept, and a row
        still running is marked stopped, one never used "not needed"."""
        if self.ended is None:
            self.ended = time.monotonic()
        for row in self.rows.values():
            if row.job is not None and state != "done":  # its evaluation was interrupted
                row.status = f"stopped in job {row.job}"
                row.ends_job()
            elif not row.used and not row.failed:
                row.status = "not needed"


def counted(count: int, unit: str) -> str:
    """``3 items``, ``1 item``."""
    return f"{count} {unit}{'' if count == 1 else 's'}"
