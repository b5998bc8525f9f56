"""A load average as a bar that goes past the node's cores: a bar full at the core count
drew 3.3 and 12.7 on 2 cores alike.  The bar runs to twice the cores, doubling (4x, 8x,
...) while a load is past its end; a mark stands at the cores, and the part past them
is orange, as is the number."""

from __future__ import annotations

from html import escape

BAR, OVER, MARK, GREY, OVER_TEXT = "#1976d2", "#ef6c00", "#212121", "#bdbdbd", "#e65100"
BAR_PX = 72  # the bar's width, beside its number


def bar_scale(loads: tuple[float, ...] | list[float], cores: int) -> float:
    """Where the bars of these loads end: twice the cores, doubled until every load fits."""
    scale = 2.0 * cores
    while any(v > scale for v in loads):
        scale *= 2
    return scale


def load_bar(load: float | None, cores: int, scale: float, running: bool = True) -> str:
    """One load as HTML: its number, orange past the cores, and its bar on ``scale``
    (blue to the cores, orange past them, a dark mark at the cores; grey when stopped)."""
    if load is None:
        return _bar_html("-", "#666", [], cores / scale, f"not read yet; {cores} core(s)")
    over = load > cores
    below, past = min(load, cores) / scale, max(0.0, min(load, scale) - cores) / scale
    fills = (BAR, OVER) if running else (GREY, "#8d8d8d")  # a stopped node's: history
    parts = [(0.0, below, fills[0]), (cores / scale, past, fills[1])]
    hover = f"{load:.2f}: {load / cores:.0%} of {cores} core(s)"
    hover += f", x{load / cores:.1f} the cores: overloaded" if over else ""
    hover += f"; the bar ends at {scale:g}, the mark is at the cores"
    colour = OVER_TEXT if over and running else ("#212121" if running else "#757575")
    return _bar_html(f"{load:.2f}", colour, parts, cores / scale, hover, bold=over)


def _bar_html(
    number: str,
    colour: str,
    parts: list[tuple[float, float, str]],
    mark: float,
    hover: str,
    bold: bool = False,
) -> str:
    weight = "bold" if bold else "normal"
    segments = "".join(
        f'<div class="sshdist-loadbar-part" data-left="{left:.4f}" data-width="{width:.4f}" '
        f'style="position:absolute;top:0;bottom:0;left:{left:.2%};width:{width:.2%};'
        f'background:{fill}"></div>'
        for left, width, fill in parts
        if width > 0
    )
    return (
        f'<div class="sshdist-loadbar" title="{escape(hover, quote=True)}" '
        'style="display:flex;align-items:center;gap:4px;font-size:13px">'
        f'<span class="sshdist-loadbar-number" style="width:38px;text-align:right;'
        f'color:{colour};font-weight:{weight}">{number}</span>'
        f'<div style="position:relative;width:{BAR_PX}px;height:14px;background:#e0e0e0">'
        f"{segments}"
        f'<div class="sshdist-loadbar-mark" data-left="{mark:.4f}" style="position:absolute;'
        f'top:-3px;bottom:-3px;left:{mark:.2%};border-left:2px solid {MARK}"></div>'
        "</div></div>"
    )


def overload_words(load: float, cores: int) -> str:
    """For the terminal's table: the share of the cores, with a ``!`` past them."""
    return f"{load / cores:.0%}" + ("!" if load > cores else "")
