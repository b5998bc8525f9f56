"""A node's recent 1-minute load drawn against time: an SVG line for the dashboard's
chart column (its core count a dashed line), block characters for the terminal's table."""

from __future__ import annotations

import math
from html import escape

HISTORY = 61
"""1-minute samples kept per node: a minute of them at one a second."""

SPARKS = "▁▂▃▄▅▆▇█"
STOPPED, LINE, CORES = "#c62828", "#1565c0", "#ef6c00"
FONT = 11  # px: the chart's labels, legible at JupyterLab's default zoom
PLOT = (26, 218, 7, 50)  # the chart's plot box: x0, x1, y0, y1; labels around it
CHART_COLUMN = 248  # px: the chart's column in the dashboard's rows
CHART_W, CHART_H = CHART_COLUMN - 4, 66


def span_words(seconds: float) -> str:
    """A time span as a person says it: 12 s, 2 min, 1.5 h, 60 days."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def chart_title(every: float) -> str:
    """The chart's column head: what it draws and the span it covers."""
    return f"1 min load, last {span_words((HISTORY - 1) * every)}"


def sparkline(values: list[float | None], cores: int) -> str:
    """The values as block characters, the full block at the core count; gaps blank."""
    top = len(SPARKS) - 1
    return "".join(" " if v is None else SPARKS[min(round(v / cores * top), top)] for v in values)


def chart(
    history: list[float | None],
    cores: int,
    every: float,
    stopped: str = "",
    ages: list[float] | None = None,
    gap_after: float | None = None,
) -> str:
    """The recent 1-minute load as an SVG line against time, now at the right, and a
    dashed line at the core count, labelled at its right end, clear of the axis' 0
    (the scale grows past it only when the load does).
    ``ages`` are the samples' seconds before now (one ``every`` apart when not given):
    a time with no readings shows as a gap as long as it lasted, and samples older
    than the chart's ``(HISTORY - 1) * every`` seconds leave it.  Samples further apart
    than ``gap_after`` seconds (default ``2.5 * every``) are not joined."""
    w, h, (x0, x1, y0, y1) = CHART_W, CHART_H, PLOT
    window = (HISTORY - 1) * every
    if ages is None:
        ages = [(len(history) - 1 - i) * every for i in range(len(history))]
    shown = [(v, age) for v, age in zip(history, ages, strict=True) if age <= window]
    scale = max(cores, math.ceil(max((v for v, _ in shown if v is not None), default=0.0)))

    def y(v: float) -> float:
        return y1 - v / scale * (y1 - y0)

    def text(x: float, at: float, s: object, fill: str = "#555", end: str = "end") -> str:
        halo = 'stroke="#fafafa" stroke-width="3" paint-order="stroke"'  # legible over a line
        return f'<text x="{x}" y="{at:.1f}" fill="{fill}" text-anchor="{end}" {halo}>{s}</text>'

    middle = FONT * 0.36  # from a label's middle to its baseline
    segments: list[list[str]] = [[]]
    previous = None
    for v, age in shown:
        if v is None or (previous is not None and previous - age > (gap_after or 2.5 * every)):
            segments.append([])  # the node was away, or not read for a while: a gap
        if v is not None:
            segments[-1].append(f"{x1 - age / window * (x1 - x0):.1f},{y(v):.1f}")
        previous = age
    line = "#9e9e9e" if stopped else LINE  # a stopped node's line is history
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'style="display:block;font:{FONT}px sans-serif">',
        f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" '
        'fill="#fafafa" stroke="#ccc"/>',
        f'<line x1="{x0}" x2="{x1}" y1="{y(cores):.1f}" y2="{y(cores):.1f}" '
        f'stroke="{CORES}" stroke-dasharray="3,2"/>',
        text(x1 + 3, y(cores) + middle, cores, CORES, "start"),  # right of the plot
        text(x0 - 3, y1 + middle, 0),
        text(x0 - 3, y0 + middle, scale) if scale > cores else "",
        text(x0, h - 3, f"−{span_words(window)}", end="start"),
        text(x1, h - 3, "now"),
    ]
    out += [
        f'<polyline points="{" ".join(s)}" fill="none" stroke="{line}" stroke-width="1.5"/>'
        for s in segments
        if s
    ]
    if segments[-1]:  # the latest reading, red once the node has stopped since
        cx, cy = segments[-1][-1].split(",")
        out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{STOPPED if stopped else LINE}"/>')
    if stopped:
        out.append(text(x0 + 4, y0 + FONT + 1, escape(stopped), STOPPED, "start"))
    return "".join(out) + "</svg>"
