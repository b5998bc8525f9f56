"""What a call's jobs printed, as the magics show it: grouped by node after the call
(``[stdout:node1]`` then the text, as ipyparallel's ``--group-outputs=engine``), or
with ``--stream`` a line at a time as it arrives, each labelled ``[node1] text``.
Stdout goes to stdout and stderr to stderr; printed text always ends with a newline, so
nothing that follows (the result, the next line) is glued to it.
"""

from __future__ import annotations

import sys
from typing import TextIO

from sshdist_kernel import NodeOutput

STREAMS = ("stdout", "stderr")


def _file(stream: str) -> TextIO:
    # Looked up at each write: IPython and test captures swap sys.stdout per cell.
    return sys.stderr if stream == "stderr" else sys.stdout


def show_by_node(outputs: dict[str, list[NodeOutput]], order: list[str]) -> None:
    """Each node's printed text under a ``[stream:node]`` header, nodes in ``order``
    (then any others), stdout before stderr; what each job printed ends its own line,
    so two jobs' texts never run together."""
    names = list(dict.fromkeys([*order, *outputs]))
    for name in names:
        for stream in STREAMS:
            by_job: dict[int, str] = {}
            for o in outputs.get(name, ()):
                if o.stream == stream:
                    by_job[o.job] = by_job.get(o.job, "") + o.text
            text = "".join(t if t.endswith("\n") else t + "\n" for t in by_job.values() if t)
            if not text:
                continue
            sys.stdout.flush()  # a terminal shows both files: keep their order
            _file(stream).write(f"[{stream}:{name}]\n{text}")
            _file(stream).flush()


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

    def end_line(self) -> None:
        if self._open is not None:
            self._open.write("\n")
            self._open.flush()
            self._open = None
