"""``%%with_ssh``'s evaluation: a cell run on one node as if typed into its REPL,
shown as the REPL shows it (``$N = value``, printed text, rich output, prompts)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable

from IPython.core.error import StdinNotImplementedError
from IPython.display import display, update_display

from sshdist_kernel import Node, NodeError, NodeReplError
from sshdist_kernel.displaydata import DisplayData
from sshdist_kernel.rrepl import EvalResult, FormResult

from .errors import CallStopped, explain
from .follow import settle
from .printed import StreamedText


def run_on_node(
    node: Node,
    cell: str,
    on_start: Callable[[], None],
    still_busy: Callable[[], str | None],
) -> EvalResult:
    """Evaluate ``cell`` on ``node``, showing what it prints and shows as it comes;
    ``on_start`` runs once the REPL is ready.  Ctrl-C stops the node's work and is
    ``CallStopped`` saying what became of the node (``still_busy`` names a background
    call that holds it too); the cell's errors are ``SshdistError``."""
    printed = StreamedText()

    def show(form: FormResult) -> None:
        if form.texts:  # a form without values leaves the line open: a prompt
            printed.end_line()
        for num, text in zip(form.eval_nums, form.texts, strict=True):
            print(f"${num} = {text}")

    def show_display(shown: DisplayData) -> None:
        printed.end_line()
        if shown.update:
            update_display(shown.bundle(), display_id=shown.display_id, raw=True)
        else:
            display(shown.bundle(), display_id=shown.display_id, raw=True)

    def ask(prompt: str) -> str | None:
        if not prompt and not printed.mid_line:  # the code asked nothing on this line
            prompt = f"{node.name}> "
        try:
            return builtins.input(prompt)  # ipykernel's, in a notebook
        except (EOFError, StdinNotImplementedError):
            return None

    started = time.monotonic()
    try:
        result = node.eval(
            cell,
            timeout=None,
            on_output=printed.write,
            on_form=show,
            on_display=show_display,
            on_input=ask,
            on_start=on_start,
        )
    except KeyboardInterrupt:
        printed.end_line()
        seconds = time.monotonic() - started
        state = settle([node])
        busy = still_busy()  # it may have waited for a background call
        if busy is not None:
            state = busy if state == "node ready" else f"{state}; {busy}"
        raise CallStopped(
            f"with_ssh interrupted after {seconds:.1f} s on {node.name}; {state}"
        ) from None
    except (NodeError, NodeReplError) as exc:
        printed.end_line()
        raise explain(exc, shown=printed.any) from None
    printed.end_line()
    return result
