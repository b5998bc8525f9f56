"""``rrepl``: an interactive remote REPL in the terminal, as Guile-SSH's ``rrepl`` gives."""

from __future__ import annotations

import sys
from typing import TextIO

from . import sexp
from .errors import IncompleteInputError, NodeError, NodeReplError
from .node import Node


def _show(stream: str, text: str) -> None:
    (sys.stdout if stream == "stdout" else sys.stderr).write(text)
    (sys.stdout if stream == "stdout" else sys.stderr).flush()


def rrepl(node: Node, *, stdin: TextIO | None = None) -> None:
    """Read forms from the terminal, evaluate them on ``node``, print ``$N = value``.

    Ctrl-C interrupts a running evaluation; Ctrl-D (end of input) or ``,q`` leaves."""
    stdin = stdin or sys.stdin
    interactive = stdin.isatty()
    pending = ""
    while True:
        r = node.rrepl
        prompt = f"{r.repl_language}@{r.module}> " if not pending else "... "
        if interactive:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        line = stdin.readline()
        if not line:
            if interactive:
                print()
            return
        pending += line
        if pending.strip() in (",q", ",quit"):
            return
        if not pending.strip():
            pending = ""
            continue
        if r.repl_language == "scheme" and sexp.input_status(pending) == "incomplete":
            continue
        source, pending = pending, ""
        try:
            result = node.eval(source, timeout=None, on_output=_show)
        except KeyboardInterrupt:
            print(";;; interrupted", file=sys.stderr)
            continue
        except IncompleteInputError:
            continue
        except NodeReplError as exc:
            print(f";;; {exc.key}: {exc.message}", file=sys.stderr)
            continue
        except NodeError as exc:
            print(f";;; {exc}\n;;; the next input starts a fresh REPL", file=sys.stderr)
            continue
        for form in result.forms:
            for num, text in zip(form.eval_nums, form.texts, strict=True):
                print(f"${num} = {text}")
