"""The Jupyter kernel's node: connected in the background when the kernel starts, its
login's questions (a one-time code, a password) asked of the front end while a cell
runs, connected again for a cell after a failure; the banner names it.  ``GuileKernel``
(``kernel``) runs the cells on it."""

from __future__ import annotations

import threading
from typing import Any

from IPython.core.error import StdinNotImplementedError

from . import __version__
from .errors import NodeError
from .guile import GuileRepl
from .node import Node, make_node
from .prompts import PromptUnavailable

CONNECT_WAIT = 60.0
"""Seconds the first cell waits for the connection begun when the kernel started."""

_FRONT_END_ADVICE = (
    "run the cell from a front end that takes input (JupyterLab, Notebook, jupyter "
    "console), where the code is asked in a password box; nbconvert and other runs "
    "without input cannot answer it"
)


class KernelNode:
    """The node half of ``GuileKernel``: ``host``, ``node_options`` and ``language_tool``
    say where and how; ``_node`` is the node once connected."""

    host: str
    node_options: dict[str, Any]
    language_tool: GuileRepl
    _node: Node | None
    _connect_error: BaseException | None
    _connected: threading.Event
    _allow_stdin: bool

    def _connect(self) -> None:
        try:
            self._node = make_node(
                self.host, language=self.language_tool, prompt=self._ask, **self.node_options
            )
            self._connect_error = None
        except (NodeError, OSError, ValueError) as exc:
            self._connect_error = exc
        finally:
            self._connected.set()

    def _ask(self, text: str, echo: bool) -> str:
        """A login's question (a one-time code, a password), asked of the front end as
        ``input_request`` (a password field unless ``echo``) while a cell runs; at start
        nobody is there to answer, so a login that asks waits for the first cell."""
        if threading.current_thread() is not threading.main_thread() or not self._allow_stdin:
            raise PromptUnavailable(
                "the kernel asks in a cell, from a front end that takes input", _FRONT_END_ADVICE
            )
        try:
            return self.raw_input(text) if echo else self.getpass(text)
        except StdinNotImplementedError:
            raise PromptUnavailable(
                "this front end does not take input", _FRONT_END_ADVICE
            ) from None

    def _ready_node(self) -> Node:
        """The node, connected; a failed connection is tried again for this cell."""
        self._connected.wait(CONNECT_WAIT)
        if self._node is None:
            if self._connect_error is not None:
                self._connected.clear()
                self._connect()
            if self._node is None:
                raise self._connect_error or NodeError(f"could not reach {self.host}")
        return self._node

    @property
    def banner(self) -> str:  # type: ignore[override]
        version = self._node.version if self._node else None
        guile = f"GNU Guile {version}" if version else "GNU Guile"
        node = self._node
        where = self.host
        if node is not None:
            s = node.session
            where = f"{node.name} ({s.user}@{s.host}:{s.port})"
        return (
            f"{guile} on {where}, over SSH (sshdist-kernel "
            f"{__version__}).\nValues are numbered by Guile ($1, $2 ...): a cell without a "
            "value takes no number, so $N and the cell's count part ways."
        )
