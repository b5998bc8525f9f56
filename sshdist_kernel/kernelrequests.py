"""What a Jupyter front end asks besides running cells: whether a cell is complete,
completions and inspection (quiet evaluations on the node, which leave Guile's ``$N``
history alone, never waiting on a busy or unconnected node), and the history of this
kernelspec's cells."""

from __future__ import annotations

from typing import Any

from . import sexp
from .errors import NodeError, NodeReplError
from .guile import GuileRepl
from .history import CellHistory
from .node import Node


class QuietRequests:
    """The requests half of ``GuileKernel`` that runs no cell."""

    language_tool: GuileRepl
    history: CellHistory | None
    _node: Node | None

    async def do_is_complete(self, code: str) -> dict[str, Any]:  # type: ignore[override]
        status = sexp.input_status(code)
        return {"status": status, "indent": "  "} if status == "incomplete" else {"status": status}

    def _quiet(self, source: str) -> Any:
        if self._node is None or not self._node.ready:
            return None
        try:
            return self._node.eval(source, quiet=True, timeout=5).value
        except (NodeError, NodeReplError):
            return None

    async def do_complete(self, code: str, cursor_pos: int) -> dict[str, Any]:  # type: ignore[override]
        cursor_pos = sexp.clamped_cursor(code, cursor_pos)
        prefix, start = sexp.word_at(code, cursor_pos)
        matches = self._quiet(self.language_tool.completion_source(prefix)) if prefix else None
        return {
            "status": "ok",
            "matches": matches or [],
            "cursor_start": start,
            "cursor_end": cursor_pos,
            "metadata": {},
        }

    async def do_inspect(  # type: ignore[override]
        self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
    ) -> dict[str, Any]:
        name = sexp.name_at(code, sexp.clamped_cursor(code, cursor_pos))
        info = self._quiet(self.language_tool.inspection_source(name)) if name else None
        if not info:
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        return {
            "status": "ok",
            "found": True,
            "data": {"text/plain": self.language_tool.inspection_text(name, info)},
            "metadata": {},
        }

    async def do_history(  # type: ignore[override]
        self,
        hist_access_type: str,
        output: bool,
        raw: bool,
        session: int | None = None,
        start: int | None = None,
        stop: int | None = None,
        n: int | None = None,
        pattern: str | None = None,
        unique: bool = False,
        **_: Any,
    ) -> dict[str, Any]:
        """The cells of this kernelspec's kernels, as IPython answers: ``raw`` makes no
        difference (cells are kept as typed), ``output`` pairs each with its values."""
        request = {"hist_access_type": hist_access_type, "session": session, "start": start}
        request |= {"stop": stop, "n": n, "pattern": pattern, "unique": unique}
        try:
            found = [] if self.history is None else self.history.answer(request, output)
        except (TypeError, ValueError, OverflowError) as exc:  # a request no client sends
            return {
                "status": "error",
                "ename": type(exc).__name__,
                "evalue": f"bad history_request: {exc}",
                "traceback": [],
                "history": [],
            }
        return {"status": "ok", "history": found}
