"""A distributed call's progress as ipywidgets: the total, a row per node, and for a
background call a Cancel button and its latest failover and copy lines."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .display import Progress

LOG_LINES = 6
"""Failover and copy lines a background call's widget keeps (the latest)."""


class ProgressView:
    """ipywidgets: the total (a bar of all items, items/s, time left), then one row per
    node (a bar of the items done there, of all the call's items, and its status).  A
    background call's view also has a Cancel button (``on_cancel``) and the latest
    failover and copy lines (``log``)."""

    def __init__(
        self, what: str, total: int, on_cancel: Callable[[], object] | None = None
    ) -> None:
        import ipywidgets as w

        self._w = w
        self.total_bar = w.IntProgress(min=0, max=max(total, 1), description="all")
        self.total_label = w.Label()
        self.bars: dict[int, Any] = {}
        self.labels: dict[int, Any] = {}
        self.rows = w.VBox()
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
        from IPython.display import display

        display(self.box)

    def log(self, text: str) -> None:
        """Add a failover or copy line under the rows (the latest ``LOG_LINES`` stay)."""
        self.lines = [*self.lines, text.strip()][-LOG_LINES:]
        self.log_box.value = "<br>".join(html.escape(line) for line in self.lines)

    def update(self, progress: Progress, now: float | None = None, final: str = "") -> None:
        w = self._w
        for key, row in progress.rows.items():
            if key not in self.bars:
                self.bars[key] = w.IntProgress(
                    min=0, max=self.total_bar.max, description=row.node.name
                )
                self.labels[key] = w.Label()
                self.rows.children = (
                    *self.rows.children,
                    w.HBox([self.bars[key], self.labels[key]]),
                )
            bar = self.bars[key]
            bar.value = row.done
            if row.failed:
                bar.bar_style = "danger"
            elif row.slow:
                bar.bar_style = "warning"
            else:
                bar.bar_style = "success" if final == "done" else ""
            self.labels[key].value = row.label
        self.total_bar.value = progress.done
        self.total_label.value = progress.total_text(now, final)
        if final:
            styles = {"done": "success", "stopped": "warning"}
            self.total_bar.bar_style = styles.get(final, "danger")
            if self.cancel_button is not None:
                self.cancel_button.disabled = True
