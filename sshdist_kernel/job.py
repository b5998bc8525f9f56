"""Jobs: a piece of distributed work bound to a node (the chapter's ``(ssh dist job)``).

A ``map`` job holds a chunk of data and a procedure (Scheme source); an ``eval`` job
holds expressions (Scheme source), as Guile-SSH keeps them in the job's proc.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, replace
from typing import Any

from . import packing, sexp
from .errors import NodeReplError
from .node import Node
from .rrepl import DEFAULT_EVAL_TIMEOUT, EvalResult

JOB_TYPES = ("map", "eval")


@dataclass(frozen=True, eq=False)
class Job:
    """Work of one ``type`` for one ``node``: ``data`` to map ``proc`` over, or, for an
    ``eval`` job, the expressions in ``proc``.  ``index`` is the job's place in its call."""

    type: str
    node: Node
    data: Any
    proc: Any
    index: int = 0

    def __post_init__(self) -> None:
        if self.type not in JOB_TYPES:
            raise ValueError(f"a job's type is 'map' or 'eval', not {self.type!r}")

    def __repr__(self) -> str:
        return f"#<job {self.type} {self.node!r} {id(self):x}>"

    @property
    def size(self) -> int:
        """How many results the job gives: items mapped or expressions evaluated."""
        return len(self.data) if self.type == "map" else len(self.proc)


def make_job(type: str, node: Node, data: Any, proc: Any) -> Job:  # noqa: A002 - the seed's name
    """``make-job``"""
    return Job(type, node, data, proc)


def is_job(x: object) -> bool:
    """``job?``"""
    return isinstance(x, Job)


def job_type(job: Job) -> str:
    """``job-type``: ``"map"`` or ``"eval"``."""
    return job.type


def job_node(job: Job) -> Node:
    """``job-node``"""
    return job.node


def set_job_node(job: Job, node: Node) -> Job:
    """``set-job-node``: a new job, the same work on ``node``."""
    return replace(job, node=node)


def job_data(job: Job) -> Any:
    """``job-data``"""
    return job.data


def job_proc(job: Job) -> Any:
    """``job-proc``"""
    return job.proc


def split(lst: list[Any], count: int) -> list[list[Any]]:
    """``split``: ``lst`` in at most ``count`` chunks, in order, laid out as Guile-SSH 1.0
    does: chunks of ``round(len(lst) / count)`` items (ties to even, at least one), the
    last one the rest; so 7 items in 3 are ``[[a, b], [c, d], [e, f, g]]`` and 9 in 6 are
    five chunks.  Where Guile-SSH's answer is no partition (6 in 4 repeats ``(5 6)``, 2 in
    4 has empty chunks, 23 in 9 fails) this one stops once the rest fits in one chunk: no
    item repeated or lost, no empty chunk, and ``split([], n)`` is ``[]``."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"split needs a count of at least 1, not {count!r}")
    # A list, an array or a PackedList slices into its own kind; chunks of the last
    # two are sent as they are.
    items = lst if isinstance(lst, (list, array, packing.PackedList)) else list(lst)
    if not items:
        return []
    # Guile's round/: to nearest, ties to even, in exact arithmetic.
    size, rest = divmod(len(items), count)
    if 2 * rest > count or (2 * rest == count and size % 2):
        size += 1
    size = max(size, 1)
    chunks, start = [], 0
    while len(chunks) < count - 1 and len(items) - start > size:
        chunks.append(items[start : start + size])
        start += size
    chunks.append(items[start:])
    return chunks


def assign_eval(nodes: list[Node], expressions: list[str]) -> list[Job]:
    """``assign-eval``: the expressions in nearly equal parts, one ``eval`` job a node."""
    return [Job("eval", node, None, chunk, i) for i, node, chunk in _shares(nodes, expressions)]


def assign_map(nodes: list[Node], lst: list[Any], proc: str) -> list[Job]:
    """``assign-map``: ``lst`` in nearly equal parts, one ``map`` job a node."""
    return [Job("map", node, chunk, proc, i) for i, node, chunk in _shares(nodes, lst)]


def _shares(nodes: list[Node], items: list[Any]) -> list[tuple[int, Node, list[Any]]]:
    if not nodes:
        raise ValueError("no nodes to hand the work to")
    # Fewer items than nodes: the last nodes get no job (strict=False on purpose).
    chunks = split(items, len(nodes))
    return [(i, node, chunk) for i, (node, chunk) in enumerate(zip(nodes, chunks, strict=False))]


def job_to_sexp(job: Job) -> str:
    """``job->sexp``: the Scheme expression that does the job on a node."""
    if job.type == "map":
        return f"(map {job.proc} {sexp.quote(list(job.data))})"  # data may be an array
    return f"(map primitive-eval {_quoted_forms(job)})"


def _quoted_forms(job: Job) -> str:
    """An eval job's expressions, quoted: each in a begin, so one with several forms
    still gives one result; the newline ends a comment the expression may end with."""
    return "(quote (" + " ".join(f"(begin {expr}\n)" for expr in job.proc) + "))"


def packed_numbers(data: Any) -> array | None:
    """Map data as an array of int64 or doubles, when it is all one of those (an array
    already is); Guile unpacks them some 20 times faster than it reads their text."""
    if isinstance(data, array):
        return data if data.typecode in "qd" else None
    kinds = set(map(type, data))
    try:
        if kinds == {int}:
            return array("q", data)
        if kinds == {float}:
            return packing.doubles(data)
    except OverflowError:  # an integer beyond 64 bits: send the text
        pass
    return None


def _attachment(packed: array) -> tuple[str, bytes]:
    if sys.byteorder == "big":
        packed = array(packed.typecode, packed)
        packed.byteswap()
    return ("s64" if packed.typecode == "q" else "f64"), packed.tobytes()


def hand_out_job(
    job: Job, *, timeout: float | None = DEFAULT_EVAL_TIMEOUT, **eval_options: Any
) -> list[Any]:
    """``hand-out-job``: do ``job`` on its node and return its results, one an item
    (or an expression), in order.  ``NodeError`` if the node fails, ``NodeReplError``
    if the code does.  ``eval_options`` go to ``Node.eval`` (``on_output``, ``cancel``).

    The results do not take ``$N`` numbers in the node's value history (which would
    keep every chunk of a long computation alive there)."""
    if job.size == 0:
        return []
    source, attachment = job_request(job)
    result = job.node.eval(
        source,
        timeout=timeout,
        attachment=attachment,
        quiet=True,
        on_start=lambda: check_job_language(job.node),
        **eval_options,
    )
    return job_values(job, result)


def check_job_language(node: Node) -> None:
    """``NodeReplError`` unless ``node``'s REPL reads Scheme, as a job is.

    Switching the REPL back and forth behind its user's back would leave it in Scheme
    whenever a job is interrupted between the two, so a REPL the user set to another
    language (,L ecmascript) is theirs to set back."""
    if node.repl_language != "scheme":
        raise NodeReplError(
            f"the REPL on {node.name} reads {node.repl_language} (set with "
            f",L {node.repl_language}), and a job is Scheme: switch it back with "
            f",L scheme on {node.name}",
            key="repl-language",
            node=node.name,
        )


def job_values(job: Job, result: EvalResult) -> list[Any]:
    """The job's results in the node's answer: a list of one value an item (or an
    expression); ``NodeReplError`` if the answer is anything else."""
    values = result.value
    if not isinstance(values, list) or len(values) != job.size:
        # Guile's own text: str() of the value can fail (huge integers, deep lists).
        printed = " ".join(result.forms[-1].texts) if result.forms else ""
        raise NodeReplError(
            f"the job gave {printed[:200] or 'no value'} instead of a list of {job.size} results",
            key="bad-job-result",
            node=job.node,
        )
    return values


def job_request(job: Job) -> tuple[str, bytes | None]:
    """What ``hand_out_job`` sends: the work of ``job_to_sexp``, with a map job's
    numbers as raw bytes beside the source, or its data packed (see ``packing``), and
    results coming back as bytes when Guile's ``packed-result`` finds them so."""
    if job.type == "eval":
        if job.size > 1:  # what each expression prints ends its line (see eval-forms)
            return f"((@ (sshdist rrepl) eval-forms) {_quoted_forms(job)})", None
        return job_to_sexp(job), None
    kind, attachment = _packed_data(job.data)
    if attachment is None:  # a shape packing does not carry: the text path
        return f"((@ (sshdist rrepl) packed-result) {job_to_sexp(job)})", None
    data = f"((@ (sshdist rrepl) attachment-list) (quote {kind}))"
    return f"((@ (sshdist rrepl) packed-result) (map {job.proc} {data}))", attachment


def _packed_data(data: Any) -> tuple[str, bytes | None]:
    """A map job's data as an attachment: its type for ``attachment-list`` and the bytes."""
    if isinstance(data, packing.PackedList):
        return "pack", data.tobytes()
    numbers = packed_numbers(data)
    if numbers is not None:
        return _attachment(numbers)
    return "pack", packing.pack(data)
