"""What a distributed call tells its caller: events while it runs, and on its result
the failures, moves and printed output of the way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .job import Job
from .node import Node


@dataclass(frozen=True)
class NodeFailure:
    """A node that failed during a call, why, and the job it was running."""

    node: Node
    error: BaseException
    job: Job | None

    def __str__(self) -> str:
        return f"{self.node.name}: {self.error}"


@dataclass(frozen=True)
class JobMove:
    """A job done by another node than the one that had it: ``"failover"`` (that node
    failed) or ``"straggler"`` (it ran much longer than its peers, and a copy on
    ``to_node`` answered first)."""

    job: Job
    from_node: Node
    to_node: Node
    reason: str = "failover"

    def __str__(self) -> str:
        if self.reason == "straggler":
            return (
                f"job {self.job.index} done by {self.to_node.name}: a copy answered before "
                f"{self.from_node.name}, which was much slower than its peers"
            )
        return f"job {self.job.index} moved from {self.from_node.name} to {self.to_node.name}"


@dataclass(frozen=True)
class NodeOutput:
    """Text a job printed on a node: ``stream`` is ``"stdout"`` or ``"stderr"``."""

    job: int
    stream: str
    text: str


@dataclass(frozen=True)
class DistEvent:
    """What a progress display hears, from the call's worker threads:

    - ``start``: ``job`` begins on ``node``; ``done``: it finished (detail: seconds);
    - ``failed``: detail is the error; ``moved``: the job of ``node``, which failed,
      goes to another node (detail: that node);
    - ``copied``: ``node`` runs a copy of a straggling job (detail: the slow node);
    - ``output``: the job printed (detail: a ``NodeOutput``).

    A job's ``size`` is the number of items (or expressions) it carries."""

    kind: str
    job: Job
    node: Node
    detail: Any = None


EventCallback = Callable[[DistEvent], None]


class _Outcome:
    failures: tuple[NodeFailure, ...] = ()
    moves: tuple[JobMove, ...] = ()
    outputs: dict[str, list[NodeOutput]] = {}  # noqa: RUF012 - replaced per result

    def printed(self, stream: str | None = None) -> dict[str, str]:
        """What each node printed, joined, by node name (only ``stream`` if given)."""
        return {
            name: "".join(o.text for o in outs if stream is None or o.stream == stream)
            for name, outs in self.outputs.items()
        }


class DistList(_Outcome, list):
    """``dist_map``'s result: a plain list, plus ``failures``, ``moves`` and ``outputs``
    (what each node printed, by node name, in order)."""


class DistTuple(_Outcome, tuple):
    """``distribute``'s results, in the order of the expressions, plus ``failures``,
    ``moves`` and ``outputs``."""
