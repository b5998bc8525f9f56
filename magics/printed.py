"""What a call's jobs printed, as the magics show it: grouped by node after the call
(``[stdout:node1]`` then the text, as ipyparallel's ``--group-outputs=engine``), or
with ``--stream`` a line at a time as it arrives, each labelled ``[node1] text``.
Stdout goes to stdout and stderr to stderr; printed text always ends with a newline, so
nothing that follows (the result, the next line) is glued to it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from sshdist_kernel import NodeOutput
from sshdist_kernel.hostlist import compress_hosts

STREAMS = ("stdout", "stderr")


def _file(stream: str) -> TextIO:
    # Looked up at each write: IPython and test captures swap sys.stdout per cell.
    return sys.stderr if stream == "stderr" else sys.stdout


FOLD_PAST = 8
"""Calls on more nodes than this fold what the nodes printed alike (``clush -b``)."""


def show_by_node(
    outputs: dict[str, list[NodeOutput]], order: list[str], fold: bool | None = None
) -> None:
    """Each node's printed text under a ``[stream:node]`` header, nodes in ``order``
    (then any others), stdout before stderr; what each job printed ends its own line,
    so two jobs' texts never run together.  Folded (``fold``, or by default on more
    than ``FOLD_PAST`` nodes), a text several nodes printed shows once, under the host
    list of those nodes: ``[stdout:node[01-12,15]]``."""
    names = list(dict.fromkeys([*order, *outputs]))
    texts = {
        (name, stream): text
        for name in names
        for stream in STREAMS
        if (text := _printed(outputs.get(name, ()), stream))
    }
    if fold is None:
        fold = len(names) > FOLD_PAST
    shown: set[tuple[str, str]] = set()  # folded: the texts shown already
    for (name, stream), text in texts.items():
        alike = [name]
        if fold:
            if (stream, text) in shown:
                continue
            shown.add((stream, text))
            alike = [n for (n, s), t in texts.items() if (s, t) == (stream, text)]
        sys.stdout.flush()  # a terminal shows both files: keep their order
        _file(stream).write(f"[{stream}:{_host_list(alike)}]\n{text}")
        _file(stream).flush()


def _printed(outputs: Iterable[NodeOutput], stream: str) -> str:
    """What one node printed on ``stream``, each job's text ending its own line."""
    by_job: dict[int, str] = {}
    for o in outputs:
        if o.stream == stream:
            by_job[o.job] = by_job.get(o.job, "") + o.text
    return "".join(t if t.endswith("\n") else t + "\n" for t in by_job.values() if t)


def _host_list(names: list[str]) -> str:
    try:
        return compress_hosts(names)
    except ValueError:  # a name a host list cannot hold
        return ",".join(names)


class LiveLines:
    """``--stream``: each complete line a node prints, as it arrives, labelled with
    the node; ``close()`` prints what is left of unfinished lines."""

    def __init__(self) -> None:
        self._partial: dict[tuple[str, str], str] = {}  # (node, stream) -> unfinished line

    def add(self, node: str, output: NodeOutput) -> None:
        key = (node, output.stream)
        text = self._partial.pop(key, "") + output.text
        *lines, rest = text.split("\n")
        if rest:
            self._partial[key] = rest
        self._write(node, output.stream, lines)

    def close(self) -> None:
        partial, self._partial = self._partial, {}
        for (node, stream), rest in partial.items():
            self._write(node, stream, [rest])

    @staticmethod
    def _write(node: str, stream: str, lines: list[str]) -> None:
        if not lines:
            return
        if stream == "stderr":
            sys.stdout.flush()
        out = _file(stream)
        out.write("".join(f"[{node}] {line}\n" for line in lines))
        out.flush()


class StreamedText:
    """What one node's code prints, streamed to stdout / stderr as it comes (``write``
    is an ``on_output``); ``end_line`` makes sure what follows (a value, an error)
    starts on a line of its own."""

    def __init__(self) -> None:
        self.any = False
        self._open: TextIO | None = None  # the file whose last text had no newline

    def write(self, stream: str, text: str) -> None:
        if not text:
            return
        out = _file(stream)
        if self._open is not None and self._open is not out:
            self.end_line()
        out.write(text)
        out.flush()
        self.any = True
        self._open = None if text.endswith("\n") else out

    @property
    def mid_line(self) -> bool:
        """The last text printed did not end its line (a prompt of the code's own)."""
        return self._open is not None

    def end_line(self) -> None:
        if self._open is not None:
            self._open.write("\n")
            self._open.flush()
            self._open = None
