"""``distribute`` and ``dist_map``: work cut into chunks and run on nodes in parallel,
balanced, streaming what the jobs print, with failover; the live call is a
``DistCall`` (``distcall``), which the ``*_async`` forms return.

The blocking forms wait for the call; Ctrl-C while they wait stops the nodes' work
(they keep their definitions) before the ``KeyboardInterrupt`` reaches the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from . import packing, sexp
from .chunks import ChunkSizer, check_chunksize
from .distcall import DistCall
from .distresult import (
    DistEvent,
    DistList,
    DistTuple,
    EventCallback,
    JobMove,
    NodeFailure,
    NodeOutput,
)
from .job import packed_numbers, split
from .node import Node
from .nodeworkers import current_node
from .records import checked_timeout

__all__ = [
    "DistCall",
    "DistEvent",
    "DistList",
    "DistTuple",
    "EventCallback",
    "JobMove",
    "NodeFailure",
    "NodeOutput",
    "dist_map",
    "dist_map_async",
    "distribute",
    "distribute_async",
]

STOP_WAIT = 1.0
"""Seconds an interrupted call waits for its nodes to let go before it raises."""


def _as_node_list(nodes: Node | Iterable[Node]) -> list[Node]:
    found = [nodes] if isinstance(nodes, Node) else list(nodes)
    if not found:
        raise ValueError("no nodes to hand the work to")
    for n in found:
        if not isinstance(n, Node):
            raise TypeError(f"{n!r} is not a node: make one with make_node")
    return found


def _check_source(what: str, source: object, one_datum: bool = False) -> str:
    if not isinstance(source, str):
        raise TypeError(f"{what} must be Scheme source text, not {type(source).__name__}")
    if not one_datum and source.lstrip()[:1] not in ("", ";", "#"):
        if sexp.input_status(source) == "complete":  # one scan, not one split
            return source
        forms = []
    else:
        try:
            forms = sexp.split_forms(source)
        except ValueError:
            forms = []
    if not forms or (one_datum and len(forms) > 1):
        kind = "one Scheme expression" if one_datum else "complete Scheme expressions"
        raise ValueError(f"{what} is not {kind}: {source!r}")
    return source


def dist_map_async(
    nodes: Node | Iterable[Node],
    proc: str,
    lst: Iterable[Any],
    *,
    timeout: float | None = None,
    job_timeout: float | None = None,
    chunksize: int | str | None = None,
    on_event: EventCallback | None = None,
) -> DistCall:
    """``dist_map`` started: the ``DistCall`` to wait on, watch or cancel."""
    options = _Options(timeout, job_timeout, chunksize, on_event)
    return _map_call(nodes, proc, lst, options).start()


def distribute_async(
    nodes: Node | Iterable[Node],
    *exprs: str,
    timeout: float | None = None,
    job_timeout: float | None = None,
    chunksize: int | str | None = None,
    on_event: EventCallback | None = None,
) -> DistCall:
    """``distribute`` started: the ``DistCall`` to wait on, watch or cancel."""
    options = _Options(timeout, job_timeout, chunksize, on_event)
    return _eval_call(nodes, exprs, options).start()


def _map_call(
    nodes: Node | Iterable[Node], proc: str, lst: Iterable[Any], options: _Options
) -> DistCall:
    node_list = _as_node_list(nodes)
    _check_source("proc", proc, one_datum=True)
    items: Any = list(lst)
    packed = packed_numbers(items) if items else None
    lot = packing.PackedList.of(items) if items and packed is None else None
    if packed is not None:  # packed once; chunks are slices of it, sent as they are
        items, bytes_per_item = packed, 8.0
    elif lot is not None:  # packed once too; chunks cut its columns where they can
        items, bytes_per_item = lot, lot.nbytes / len(items)
    else:  # a value with no Scheme datum fails here, before any node is busy
        bytes_per_item = len(sexp.write(items)) / max(len(items), 1)
    return _new_call("map", node_list, items, proc, bytes_per_item, DistList, options)


def _eval_call(nodes: Node | Iterable[Node], exprs: Any, options: _Options) -> DistCall:
    node_list = _as_node_list(nodes)
    for i, expr in enumerate(exprs):
        _check_source(f"expression {i + 1}", expr)
    return _new_call("eval", node_list, list(exprs), None, None, DistTuple, options)


class _Options(NamedTuple):
    timeout: float | None
    job_timeout: float | None
    chunksize: int | str | None
    on_event: EventCallback | None


def _new_call(
    kind: str,
    nodes: list[Node],
    items: Any,
    proc: str | None,
    bytes_per_item: float | None,
    make_result: type,
    options: _Options,
) -> DistCall:
    """The call, checked, not started yet."""
    timeout = checked_timeout(options.timeout)
    job_timeout = checked_timeout(options.job_timeout)
    chunksize = check_chunksize(options.chunksize)
    fixed = chunksize if isinstance(chunksize, int) else None
    return DistCall(
        kind,
        nodes,
        items,
        proc,
        timeout=timeout,
        job_timeout=job_timeout,
        on_event=options.on_event,
        sizer=ChunkSizer(len(items), fixed, bytes_per_item, job_timeout),
        reserved=_per_node(nodes, items) if chunksize == "per-node" else None,
        make_result=make_result,
    )


def dist_map(
    nodes: Node | Iterable[Node],
    proc: str,
    lst: Iterable[Any],
    *,
    timeout: float | None = None,
    job_timeout: float | None = None,
    chunksize: int | str | None = None,
    on_event: EventCallback | None = None,
) -> DistList:
    """``dist-map``: map ``proc`` (Scheme source: ``"(lambda (x) (* x x))"`` or a
    procedure's name) over ``lst`` (Python values, sent as Scheme data) on ``nodes``.

    The list is handed out in chunks sized to the nodes' speed (``chunksize`` items
    each if given; ``"per-node"``: the chapter's one job per node).  ``timeout`` bounds
    the whole call; ``job_timeout`` (default ``timeout``) one chunk on one node, after
    which that node counts as failed and the chunk moves on."""
    return _wait(_map_call(nodes, proc, lst, _Options(timeout, job_timeout, chunksize, on_event)))


def distribute(
    nodes: Node | Iterable[Node],
    *exprs: str,
    timeout: float | None = None,
    job_timeout: float | None = None,
    chunksize: int | str | None = None,
    on_event: EventCallback | None = None,
) -> DistTuple:
    """``distribute``: evaluate the expressions in parallel on ``nodes``; their
    results, in the order given."""
    return _wait(_eval_call(nodes, exprs, _Options(timeout, job_timeout, chunksize, on_event)))


def _wait(call: DistCall) -> Any:
    here = current_node()
    if here is not None and any(n is here for n in call.nodes):
        raise RuntimeError(
            f"a distributed call on {here.name} was made from that node's own worker "
            "(an on_event callback?): it would wait for itself; use dist_map_async there"
        )
    try:
        return call.start().result()
    except KeyboardInterrupt as interrupt:
        call.stop(KeyboardInterrupt(), wait=STOP_WAIT)
        interrupt.partial = call.partial()  # type: ignore[attr-defined]
        raise
    except BaseException:
        call.wait_stopped(STOP_WAIT)  # the nodes have been told to stop: give them a moment
        raise


def _per_node(nodes: list[Node], items: list[Any]) -> list[tuple[Node, list[Any]]]:
    """The chapter's ``assign-map`` / ``assign-eval`` layout: one part a node."""
    return list(zip(nodes, split(items, len(nodes)), strict=False))
