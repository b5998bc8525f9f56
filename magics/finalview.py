"""An ended call's static summary, HTML with a text/plain twin.

It replaces the call's progress widget in the cell's output, so what a saved notebook
keeps (and nbconvert, GitHub or a reopened notebook with a new kernel show) is the
summary, not a widget whose model died with the kernel ("model not found").
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from .nodegrid import GRID_STATES, ROWS_UP_TO, grid_state, node_grid

if TYPE_CHECKING:
    from .callprogress import CallProgress, NodeProgress

_COLOURS = dict(GRID_STATES)


def _done_text(row: NodeProgress) -> str:
    chunks = f"{row.chunks} job{'' if row.chunks == 1 else 's'}"
    return f"{row.done} {row.unit}{'' if row.done == 1 else 's'} in {chunks}"


def _state_text(row: NodeProgress) -> str:
    """Its state in a word, and the detail when that is more than the word."""
    state = grid_state(row)
    if state in ("failed", "stopped") or row.status.startswith("stopped job"):
        return row.status  # FAILED: job 7 moved to node1; stopped in job 3
    return state


def summary_text(progress: CallProgress, state: str, log: list[str]) -> str:
    """As a terminal shows the call: the summary line, a row per node, the lines the
    call said (a background call's failovers, copies and how it ended)."""
    lines = [progress.summary(state)]
    rows = list(progress.rows.values())
    if len(rows) <= ROWS_UP_TO:
        width = max(len(r.node.name) for r in rows) if rows else 0
        lines += [f"  {r.node.name:{width}}  {_done_text(r)}, {_state_text(r)}" for r in rows]
    else:
        states = [grid_state(r) for r in rows]
        counts = ", ".join(f"{states.count(s)} {s}" for s, _ in GRID_STATES if s in states)
        lines.append(f"  {len(rows)} nodes: {counts}")
    return "\n".join([*lines, *(f"  {line}" for line in log)])


def summary_html(progress: CallProgress, state: str, log: list[str]) -> str:
    """The same as a table: a row per node with a bar of its share (a grid of squares
    past ``ROWS_UP_TO`` nodes), under the summary line."""
    esc = html.escape
    rows = list(progress.rows.values())
    head = f"<div>{esc(progress.summary(state))}</div>"
    if len(rows) <= ROWS_UP_TO:
        body = "".join(_html_row(r) for r in rows)
        table = f'<table style="border-collapse:collapse;font-size:12px">{body}</table>'
    else:
        table = node_grid(rows)
    said = "".join(f"<div>{esc(line)}</div>" for line in log)
    return f'<div class="sshdist-summary">{head}{table}{said}</div>'


def _html_row(row: NodeProgress) -> str:
    colour = _COLOURS[grid_state(row)]
    width = round(100 * row.fraction)
    bar = (
        '<div style="width:120px;height:10px;background:#eeeeee">'
        f'<div style="width:{width}%;height:10px;background:{colour}"></div></div>'
    )
    cells = [html.escape(row.node.name), bar, _done_text(row), html.escape(_state_text(row))]
    td = '<td style="padding:1px 6px;text-align:left">'
    return "<tr>" + "".join(f"{td}{c}</td>" for c in cells) + "</tr>"


def summary_bundle(progress: CallProgress, state: str, log: list[str]) -> dict[str, Any]:
    """The display data: ``text/html`` and its ``text/plain`` twin."""
    return {
        "text/html": summary_html(progress, state, log),
        "text/plain": summary_text(progress, state, log),
    }
