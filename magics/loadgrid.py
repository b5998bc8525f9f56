"""The load dashboard for many nodes: a square per node coloured by its 1-minute load
against its cores (with two colours past them, so a node at twice its cores stands out
from one just over), under a line that counts the nodes and names the busiest.
Hundreds of rows of bars and charts would neither draw quickly nor read."""

from __future__ import annotations

from html import escape
from typing import Any

LOAD_COLOURS = (  # (load per core up to which, colour, words for the legend)
    (0.25, "#c8e6c9", "≤25%"),
    (0.5, "#81c784", "≤50%"),
    (0.75, "#fdd835", "≤75%"),
    (1.0, "#fb8c00", "≤100%"),
    (2.0, "#c62828", ">100%: overloaded"),
    (float("inf"), "#4a148c", ">200%"),
)
STOPPED_COLOUR, UNREAD_COLOUR = "#616161", "#eeeeee"


def _colour(row: Any) -> str:
    if not row.running:
        return STOPPED_COLOUR if row.read_at or row.problem != "not read yet" else UNREAD_COLOUR
    if not row.load or not row.cores:
        return UNREAD_COLOUR
    per_core = row.load[0] / row.cores
    return next(colour for upto, colour, _ in LOAD_COLOURS if per_core <= upto)


def _hover(row: Any) -> str:
    name = row.node.name
    if not row.running:
        return f"{name}: stopped ({row.problem}), Guile {row.version}"
    if not row.load or not row.cores:
        return f"{name}: not read yet"
    one, five, fifteen = row.load
    return (
        f"{name}: {one:.2f} {five:.2f} {fifteen:.2f} on {row.cores} cores "
        f"({one / row.cores:.0%}{', overloaded' if one > row.cores else ''}), "
        f"Guile {row.version}, read at {row.seen()}"
    )


def load_grid(rows: list[Any]) -> str:
    """The nodes' squares (each names its node, load, cores and Guile on hover), the
    legend, and a line: how many run and are stopped, and the busiest nodes."""
    running = [r for r in rows if r.running and r.load and r.cores]
    stopped = sum(1 for r in rows if not r.running and r.problem != "not read yet")
    busiest = sorted(running, key=lambda r: r.load[0] / r.cores, reverse=True)[:3]
    line = f"{len(rows)} nodes: {len(running)} running, {stopped} stopped"
    if running:
        mean = sum(r.load[0] / r.cores for r in running) / len(running)
        line += f"; 1 min load per core {mean:.0%} on average; busiest " + ", ".join(
            f"{escape(r.node.name)} {r.load[0] / r.cores:.0%}" for r in busiest
        )
    legend = " ".join(
        f'<span style="color:{colour}">&#9632;</span> {escape(words)}'
        for _, colour, words in LOAD_COLOURS
    )
    legend += f' <span style="color:{STOPPED_COLOUR}">&#9632;</span> stopped'
    squares = "".join(
        f'<span title="{escape(_hover(r), quote=True)}" style="display:inline-block;'
        f'width:11px;height:11px;margin:1px;background:{_colour(r)}"></span>'
        for r in rows
    )
    return (
        f'<div style="font-size:12px">{line}</div>'
        f'<div style="font-size:11px;color:#666">{legend}</div>'
        f'<div style="max-width:650px;line-height:0;margin-top:3px">{squares}</div>'
    )
