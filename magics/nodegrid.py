"""The nodes as small squares coloured by their state, and how often they are redrawn:
what a call's live progress widget, its static summary and the load monitor show past
``ROWS_UP_TO`` nodes."""

from __future__ import annotations

import html
from typing import Any

ROWS_UP_TO = 16
"""Nodes shown a row each; more are squares in a grid (hundreds of rows would not read)."""

GRID_EVERY = 1.0
"""Seconds between redraws of the grid, whose HTML grows with the node count."""

GRID_STATES = (  # (state, colour), in the legend's order
    ("running", "#1565c0"),
    ("done", "#2e7d32"),
    ("slow", "#ef6c00"),
    ("failed", "#c62828"),
    ("stopped", "#616161"),
    ("waiting", "#bdbdbd"),
    ("not needed", "#eeeeee"),
)


def grid_state(row: Any) -> str:
    """A node's state as its square shows it."""
    if row.failed or row.status.startswith("error in"):
        return "failed"
    if row.slow:
        return "slow"
    if row.job is not None:
        return "running"
    if row.status.startswith("stopped in"):
        return "stopped"
    if row.status == "not needed":
        return "not needed"
    return "done" if row.used else "waiting"


def node_grid(rows: list[Any]) -> str:
    """The nodes as small squares coloured by state (each names its node and status on
    hover), after a line counting them by state."""
    colours = dict(GRID_STATES)
    states = [grid_state(r) for r in rows]
    counts = ", ".join(
        f'<span style="color:{colour}">&#9632;</span> {states.count(state)} {state}'
        for state, colour in GRID_STATES
        if state in states
    )
    squares = "".join(
        f'<span title="{html.escape(f"{r.node.name}: {r.label}", quote=True)}" '
        f'style="display:inline-block;width:9px;height:9px;margin:1px;'
        f'background:{colours[state]}"></span>'
        for r, state in zip(rows, states, strict=True)
    )
    return (
        f'<div style="font-size:12px">{len(rows)} nodes: {counts}</div>'
        f'<div style="max-width:600px;line-height:0">{squares}</div>'
    )
