"""The Jupyter kernel: every cell runs in the Guile REPL of one node, over SSH.

Thin on purpose (as bash_kernel is): the node, the REPL protocol and the Scheme
reader do the work; this class turns their results into Jupyter messages.  How it
reaches its node is ``kernelnode``'s; the requests that run no cell (completion,
inspection, history) are ``kernelrequests``'.
``python -m sshdist_kernel.kernel --host HOST [session options] -f CONNECTION_FILE``.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel
from jupyter_core.paths import jupyter_data_dir
from traitlets import Float

from . import __version__
from .abortorder import AbortBeforeReply
from .displaydata import DisplayData
from .errors import EvalCancelled, NodeError, NodeReplError
from .guile import GuileRepl
from .history import CellHistory
from .interruptwindow import InterruptOnlyWhileRunning
from .kernelnode import KernelNode
from .kernelrequests import QuietRequests
from .kernelspec import default_name
from .node import Node
from .outputbarrier import OutputBeforeReply
from .rrepl import EvalResult, FormResult

INTERRUPT_SETTLE = 1.0
"""Seconds an interrupted cell waits for the node to stop before it says how it went."""

_EXIT_CELLS = ("exit", "quit")
"""Cells that ask the front end to leave, as they do in IPython."""

_ASK_EXIT = {"source": "ask_exit", "keepkernel": False}
"""IPython's payload for ``exit``: a console leaves (and shuts the kernel down)."""


OUTSTREAM = "sshdist_kernel.outputbarrier.QuietOutStream"
"""The kernel's sys.stdout and sys.stderr: flushed only when written to."""


def repl_lines(form: FormResult) -> str:
    """A form's values as the Guile REPL prints them: ``$N = value``, one a line; a value
    left out of the history (number 0) is printed alone, as with the history off."""
    return "\n".join(
        f"${n} = {text}" if n else text for n, text in zip(form.eval_nums, form.texts, strict=True)
    )


class GuileKernel(
    KernelNode,
    QuietRequests,
    InterruptOnlyWhileRunning,
    OutputBeforeReply,
    AbortBeforeReply,
    Kernel,
):
    """A wrapper kernel whose cells are evaluated by ``rrepl_eval`` on one node."""

    implementation = "sshdist_kernel"
    implementation_version = __version__
    language = "scheme"
    language_info = {
        "name": "scheme",
        "mimetype": "text/x-scheme",
        "file_extension": ".scm",
        "codemirror_mode": "scheme",
        "pygments_lexer": "scheme",
    }

    # ipykernel sleeps 0.5 ms before each reply to let late output out; every output of
    # this kernel is queued from this thread, and OutputBeforeReply waits until it is
    # sent, so it need not.
    _execute_sleep = Float(0.0)

    host: str = ""
    """The node, as ``make_node`` takes it; set by ``main`` from the kernelspec's argv."""
    node_options: dict[str, Any] = {}
    guile = "guile"
    """The Guile to run on the node: a path or a command (the kernelspec's ``--guile``)."""
    history_path: Path | None = None
    """Where this kernelspec's cells are kept (``main`` sets it); None keeps none."""

    _count = 0
    _storing = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.language_tool = GuileRepl(self.guile)
        self._node: Node | None = None
        self._connect_error: BaseException | None = None
        self._connected = threading.Event()
        self.history = CellHistory(self.history_path) if self.history_path else None
        # Connect at start, in the background: the first cell reports any failure.
        threading.Thread(target=self._connect, daemon=True, name="sshdist connect").start()

    # -- messages ----------------------------------------------------------------------

    @property
    def execution_count(self) -> int:  # type: ignore[override]
        return self._count

    @execution_count.setter
    def execution_count(self, value: int) -> None:
        # ipykernel counts every cell that is not silent; like IPython, a cell run
        # with store_history=False (or a blank one) keeps the count where it was.
        if self._storing:
            self._count = value

    async def execute_request(self, stream: Any, ident: Any, parent: dict) -> None:
        content = parent.get("content", {})
        silent = content.get("silent", False)
        self._storing = bool(content.get("store_history", not silent)) and bool(
            str(content.get("code", "")).strip()
        )
        await super().execute_request(stream, ident, parent)

    @property
    def kernel_info(self) -> dict[str, Any]:  # type: ignore[override]
        # ipykernel offers its debugger when debugpy is importable, and subshells when
        # it runs a shell thread; this kernel answers no debug_request, and its one
        # REPL runs one cell at a time, so a subshell would only queue behind it.
        info = super().kernel_info
        info["supported_features"] = [
            f for f in info["supported_features"] if f not in ("debugger", "kernel subshells")
        ]
        return info

    def _stream(self, name: str, text: str) -> None:
        self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})

    def _error(self, ename: str, evalue: str, traceback: list[str]) -> dict[str, Any]:
        content = {"ename": ename, "evalue": evalue, "traceback": traceback}
        self.send_response(self.iopub_socket, "error", content)
        return {"status": "error", "execution_count": self.execution_count, **content}

    async def do_execute(  # type: ignore[override]
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
        allow_stdin: bool = False,
        *,
        cell_id: str | None = None,
    ) -> dict[str, Any]:
        if not code.strip():
            return self._ok()
        storing = store_history and not silent
        if storing and self.history is not None:
            self.history.store(self.execution_count, code)
        if code.strip() in _EXIT_CELLS:
            return self._ok(payload=[_ASK_EXIT])
        self._allow_stdin = allow_stdin  # what raw_input checks, as IPython's kernel sets it
        try:
            if self._connected.is_set() and self._node is not None:
                node = self._node
            else:
                with self.interruptible():
                    node = self._ready_node()
        except KeyboardInterrupt:
            return self._error("signal", "User interrupt", ["signal: interrupted while connecting"])
        except (NodeError, OSError, ValueError) as exc:
            return self._error(type(exc).__name__, str(exc), [f"{type(exc).__name__}: {exc}"])

        shown: list[str] = []

        def on_form(form: FormResult) -> None:
            if form.values and not silent:
                shown.append(repl_lines(form))
                last = node.rrepl
                self.send_response(
                    self.iopub_socket,
                    "execute_result",
                    {
                        "execution_count": self.execution_count,
                        "data": {"text/plain": shown[-1]},
                        "metadata": {
                            "sshdist": {
                                "eval_num": list(form.eval_nums),
                                "module": last.module,
                                "language": last.repl_language,
                            }
                        },
                    },
                )

        def on_display(shown_data: DisplayData) -> None:
            if silent:
                return
            transient = {"display_id": shown_data.display_id} if shown_data.display_id else {}
            self.send_response(
                self.iopub_socket,
                "update_display_data" if shown_data.update else "display_data",
                {"data": shown_data.bundle(), "metadata": {}, "transient": transient},
            )

        def on_input(prompt: str) -> str | None:
            # ipykernel asks the front end (input_request) and waits, Ctrl-C included;
            # Guile's read-line asks nothing, so the box says which node reads.
            try:
                return self.raw_input(prompt or f"{node.name}> ")
            except EOFError:
                return None

        # The evaluation runs here, blocking, as IPython's own cells do: Jupyter's
        # interrupt is a SIGINT to this process, which sets the evaluation's cancel
        # (only here: see interruptwindow; and ctrlc); the REPL's reader sees it and the
        # protocol interrupts the remote evaluation too.
        known_restarts = [node.restarts]

        def say_if_replaced() -> None:
            # A cell that runs on a fresh REPL, after the old one broke, says so first.
            if node.restarts != known_restarts[0]:
                known_restarts[0] = node.restarts
                self._stream(
                    "stderr",
                    f"[the REPL on {node.name} was replaced by a fresh one ({node.last_loss}): "
                    f"{node.restart_consequence}]\n",
                )

        try:
            with self.interruptible():
                result: EvalResult = node.eval(
                    code,
                    timeout=None,
                    on_output=None if silent else self._stream,
                    on_form=on_form,
                    on_start=say_if_replaced,
                    on_display=on_display,
                    on_input=on_input if allow_stdin else None,
                    # Silent cells and those kept out of the history take no $N.
                    quiet=not storing,
                )
        except (KeyboardInterrupt, EvalCancelled):
            node.settle(INTERRUPT_SETTLE)  # as a KeyboardInterrupt inside the REPL waited
            return self._error(
                "signal", "User interrupt", [f"signal: User interrupt: {node.stop_outcome()}"]
            )
        except NodeReplError as exc:
            if exc.key == "quit":  # (exit), ,q: the REPL stays; the front end may leave
                return self._ok(payload=[_ASK_EXIT])
            lines = [
                f"{exc.key}: {line}" if i == 0 else line
                for i, line in enumerate(exc.message.splitlines() or [""])
            ]
            return self._error(exc.key, exc.message, lines)
        except NodeError as exc:
            return self._error(
                type(exc).__name__,
                str(exc),
                [
                    f"{type(exc).__name__}: {exc}",
                    "The next cell reconnects and starts a fresh REPL on the node.",
                ],
            )
        finally:
            if shown and storing and self.history is not None:
                self.history.store_output(self.execution_count, "\n".join(shown))
        return self._ok(
            sshdist={
                "eval_num": result.eval_num,
                "module": result.module,
                "language": result.language,
            }
        )

    def _ok(self, payload: list | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "status": "ok",
            "execution_count": self.execution_count,
            "payload": payload or [],
            "user_expressions": {},
            **extra,
        }

    def finish_metadata(self, parent: Any, metadata: dict, reply_content: dict) -> dict:
        """The reply's metadata carries the eval number, module and language too."""
        metadata = super().finish_metadata(parent, metadata, reply_content)
        info = reply_content.pop("sshdist", None)
        if info is not None:
            metadata["sshdist"] = info
        return metadata

    async def do_shutdown(self, restart: bool) -> dict[str, Any]:  # type: ignore[override]
        if self._node is not None:
            self._node.close()
        if self.history is not None:
            self.history.flush()
        return {"status": "ok", "restart": restart}


def main(argv: list[str] | None = None) -> None:
    """Start the kernel for the node named on the command line (see kernelspec.py)."""
    parser = argparse.ArgumentParser(prog="sshdist_kernel.kernel", add_help=False)
    parser.add_argument("--host", required=True)
    parser.add_argument("--ssh-config")
    parser.add_argument("--user")
    parser.add_argument("--port", type=int)
    parser.add_argument("--identity")
    parser.add_argument("--repl-port")
    parser.add_argument("--guile")
    parser.add_argument("--transport", choices=("paramiko", "openssh"))
    # Older kernelspecs do not name themselves: the name install gives the host.
    parser.add_argument("--kernel-name")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    options: dict[str, Any] = {
        k: v
        for k, v in (
            ("ssh_config", args.ssh_config),
            ("user", args.user),
            ("port", args.port),
            ("identity", args.identity),
            ("transport", args.transport),
        )
        if v
    }
    if args.repl_port:
        options["repl_port"] = int(args.repl_port) if args.repl_port.isdigit() else args.repl_port
    if args.guile:
        GuileKernel.guile = args.guile
    GuileKernel.host = args.host
    GuileKernel.node_options = options
    name = args.kernel_name or default_name(args.host)
    GuileKernel.history_path = Path(jupyter_data_dir()) / "sshdist" / "history" / f"{name}.sqlite"
    IPKernelApp.launch_instance(argv=rest, kernel_class=GuileKernel, outstream_class=OUTSTREAM)


if __name__ == "__main__":
    main()
