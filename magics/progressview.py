"""A distributed call's progress as ipywidgets: the total, a row per node (a grid of
small squares past ``ROWS_UP_TO`` nodes), and for a background call a Cancel button and
its latest failover and copy lines."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .finalview import summary_bundle
from .nodegrid import GRID_EVERY, ROWS_UP_TO, node_grid

if TYPE_CHECKING:
    from .callprogress import CallProgress

LOG_LINES = 6
"""Failover and copy lines a background call's widget keeps (the latest)."""


def _close(widget: Any) -> None:
    """Close a widget and every widget inside it."""
    for child in getattr(widget, "children", ()):
        _close(child)
    widget.close()


class ProgressView:
    """ipywidgets: the total (a bar of all items, items/s, time left), then one row per
    node (a bar of the items done there, of the items it was given, and its status).  A
    background call's view also has a Cancel button (``on_cancel``) and the latest
    failover and copy lines (``log``).  When the call ends (``finish``) the widget is
    replaced in place by the static summary and its models closed."""

    def __init__(
        self, what: str, total: int, on_cancel: Callable[[], object] | None = None
    ) -> None:
        import ipywidgets as w

        self._w = w
        self.what = what
        self.handle: Any = None  # the display, once shown: finish() replaces it
        self.total_bar = w.IntProgress(min=0, max=max(total, 1), description="all")
        self.total_label = w.Label()
        self.bars: dict[int, Any] = {}
        self.labels: dict[int, Any] = {}
        self.rows = w.VBox()
        self.grid: Any = None  # past ROWS_UP_TO nodes, this HTML replaces the rows
        self._grid_drawn = float("-inf")
        self.lines: list[str] = []
        self.log_box = w.HTML()
        head: list[Any] = [w.HTML(f"<b>{what}</b>")]
        self.cancel_button = None
        if on_cancel is not None:
            self.cancel_button = w.Button(
                description="Cancel",
                button_style="warning",
                icon="stop",
                tooltip=f"stop the {what}",
            )
            self.cancel_button.on_click(lambda _: on_cancel())
            head.append(self.cancel_button)
        self.box = w.VBox(
            [w.HBox(head), w.HBox([self.total_bar, self.total_label]), self.rows, self.log_box]
        )

    def show(self) -> None:
        """Display the widget, with a text/plain of its own (not ``VBox(children=...``)
        for a notebook saved while the call runs."""
        from IPython.display import display

        bundle = self.box._repr_mimebundle_()
        bundle["text/plain"] = f"{self.what}: running (its progress is a widget)"
        self.handle = display(bundle, raw=True, display_id=True)

    def finish(self, progress: CallProgress, state: str) -> bool:
        """The call ended (``state``: done, failed, stopped): draw its end, replace the
        display by the static summary, close the widgets (no model is left for a saved
        notebook to miss).  Whether the summary took the widget's place."""
        self.update(progress, final=state)
        if self.handle is None:  # never shown, or finished already
            return False
        self.handle.update(summary_bundle(progress, state, self.lines), raw=True)
        self.handle = None
        _close(self.box)
        return True

    def log(self, text: str) -> None:
        """Add a failover or copy line under the rows (the latest ``LOG_LINES`` stay)."""
        self.lines = [*self.lines, text.strip()][-LOG_LINES:]
        self.log_box.value = "<br>".join(html.escape(line) for line in self.lines)

    def update(self, progress: CallProgress, now: float | None = None, final: str = "") -> None:
        if len(progress.rows) > ROWS_UP_TO:
            self._update_grid(progress, final)
        else:
            self._update_rows(progress, final)
        self.total_bar.value = progress.done
        self.total_label.value = progress.total_text(now, final)
        if final:
            styles = {"done": "success", "stopped": "warning"}
            self.total_bar.bar_style = styles.get(final, "danger")
            if self.cancel_button is not None:
                self.cancel_button.disabled = True

    def _update_grid(self, progress: CallProgress, final: str) -> None:
        if self.grid is None:
            self.grid = self._w.HTML()
            self.rows.children = (self.grid,)
        clock = time.monotonic()
        if final or clock - self._grid_drawn >= GRID_EVERY:
            self._grid_drawn = clock
            self.grid.value = node_grid(list(progress.rows.values()))

    def _update_rows(self, progress: CallProgress, final: str) -> None:
        w = self._w
        for key, row in progress.rows.items():
            if key not in self.bars:
                self.bars[key] = w.IntProgress(min=0, max=1, description=row.node.name)
                self.labels[key] = w.Label()
                self.rows.children = (
                    *self.rows.children,
                    w.HBox([self.bars[key], self.labels[key]]),
                )
            bar = self.bars[key]
            if row.given > bar.max:  # raised before the value, which may not pass it
                bar.max = row.given
            bar.value = row.done
            bar.max = max(row.given, 1)
            if row.failed:
                bar.bar_style = "danger"
            elif row.slow:
                bar.bar_style = "warning"
            else:
                bar.bar_style = "success" if final == "done" else ""
            self.labels[key].value = row.label
