"""live_calls.ipynb in JupyterLab in headless Chromium, run a cell at a time as a person
would: a --bg dist_map, a cell run while it works, the Cancel button clicked, and the
load dashboard; then saved, closed and reopened with a new kernel, its calls' summaries
still there.  Screenshots land in build/screenshots/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .test_browser import (
    SHOTS,
    jupyterlab_on,
    notebook_page,
    open_notebook,
    pytestmark,  # noqa: F401 - skipped where the browser test is
)

NOTEBOOK = "live_calls.ipynb"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    yield from jupyterlab_on(NOTEBOOK, tmp_path)


def run_cell(page: Any, index: int, *, wait: bool = True) -> None:
    """Run the notebook's cell ``index`` (markdown cells count), as Shift-Enter would;
    ``wait=False`` returns once it started (a cell that waits for input never ends)."""
    page.evaluate(
        """async ([i, wait]) => {
            const panel = window.jupyterapp.shell.currentWidget;
            panel.content.activeCellIndex = i;
            const ran = window.jupyterapp.commands.execute('notebook:run-cell');
            if (wait) { await ran; }
        }""",
        [index, wait],
    )


def output_of(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea")


@pytest.mark.timeout(300)
def test_a_background_call_is_cancelled_from_its_widget(lab: str) -> None:
    with notebook_page(lab, 1400, 1100, failed=str(SHOTS / "live_calls_failed.png")) as page:
        run_cell(page, 1)
        output_of(page, 1).get_by_text("3 node(s) ready").wait_for(timeout=90_000)
        run_cell(page, 3)  # %dist_map --bg: the widget, at once
        cancel = output_of(page, 3).get_by_role("button", name="Cancel")
        cancel.wait_for(timeout=30_000)
        total = output_of(page, 3).get_by_text(re.compile(r"^[1-9]\d*/30 items, "))
        total.wait_for(timeout=30_000)  # the rows advance while it works
        run_cell(page, 5)  # another cell runs meanwhile
        meanwhile = output_of(page, 5).get_by_text(re.compile(r"meanwhile: \d+ of 30"))
        meanwhile.wait_for(timeout=30_000)
        assert "running: True" in meanwhile.inner_text()
        page.screenshot(path=str(SHOTS / "live_calls_running.png"), full_page=True)
        cancel.click()
        output_of(page, 3).get_by_text(
            re.compile(r"dist_map cancelled: \d+ of 30 items done on 3 nodes; nodes ready")
        ).wait_for(timeout=30_000)
        # The widget gave way to the call's static summary: no Cancel button is left.
        summary = output_of(page, 3).locator(".sshdist-summary")
        summary.get_by_text(re.compile(r"^dist_map: 30 item\(s\) on ")).wait_for(timeout=30_000)
        assert cancel.count() == 0
        run_cell(page, 8)  # %dist_result job
        cancelled = output_of(page, 8).get_by_text("CancelledError: dist_map cancelled")
        cancelled.wait_for(timeout=30_000)
        for index in (10, 11, 12):
            run_cell(page, index)
        output_of(page, 12).get_by_text("(3, 'DONE')").wait_for(timeout=30_000)
        output_of(page, 3).screenshot(path=str(SHOTS / "live_calls_cancelled.png"))
        run_cell(page, 14)  # %loadavg: the dashboard
        board = output_of(page, 14)
        board.get_by_text("load average").wait_for(timeout=30_000)
        run_cell(page, 15)  # the nodes get busy; the chart draws their load
        output_of(page, 15).get_by_text(re.compile(r"^dist_map: 12 item")).wait_for(timeout=90_000)
        text = board.inner_text()
        for name in ("node1", "node2", "node3"):
            assert name in text
        assert len(re.findall(r"\b\d+\.\d\d\b", text)) >= 9, text  # 1/5/15 min, each node
        assert board.locator("svg polyline").count() >= 3
        # enough refreshes that the chart has a line to show (4 points a second apart)
        page.wait_for_function(
            """() => [...document.querySelectorAll('svg polyline')].some(
                p => p.getAttribute('points').trim().split(/\\s+/).length >= 4)""",
            timeout=60_000,
        )
        board.scroll_into_view_if_needed()
        board.screenshot(path=str(SHOTS / "live_calls_load.png"))


# A --bg call cancelled after it began on every node: its summary's line, then its ending.
STOPPED_SUMMARY = re.compile(
    r"^dist_map: 30 item\(s\) on 3 node\(s\), 0 failover\(s\), \d+ done, stopped after [\d.]+ s"
)
CANCELLED_LINE = re.compile(r"dist_map cancelled: \d+ of 30 items done on 3 nodes; nodes ready")


def saved_outputs(path: Path, index: int) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["cells"][index]["outputs"]


@pytest.mark.timeout(300)
def test_a_saved_notebook_reopened_with_a_new_kernel_shows_the_calls_summaries(
    lab: str, tmp_path: Path
) -> None:
    with notebook_page(lab, 1400, 1100, failed=str(SHOTS / "reopened_failed.png")) as page:
        run_cell(page, 1)
        output_of(page, 1).get_by_text("3 node(s) ready").wait_for(timeout=90_000)
        run_cell(page, 3)  # %dist_map --bg: its widget, until the call ends
        output_of(page, 3).get_by_role("button", name="Cancel").wait_for(timeout=30_000)
        output_of(page, 3).get_by_text(re.compile(r"^[1-9]\d*/30 items, ")).wait_for(
            timeout=30_000
        )  # at work on every node
        # Ended by job.cancel() rather than waited for (ten seconds of sleeps, and a
        # dist_map started meanwhile waits for all of them): its widget gives way to the
        # static summary of a stopped call, which is what is saved.
        run_cell(page, 7)
        output_of(page, 7).get_by_text("True", exact=True).wait_for(timeout=30_000)
        ended = output_of(page, 3).locator(".sshdist-summary")
        ended.get_by_text(STOPPED_SUMMARY).wait_for(timeout=60_000)
        ended.get_by_text(CANCELLED_LINE).wait_for(timeout=30_000)
        run_cell(page, 15)  # a dist_map followed in its cell
        output_of(page, 15).get_by_text(re.compile(r"^dist_map: 12 item")).wait_for(timeout=90_000)
        page.evaluate(
            """async () => {
                const panel = window.jupyterapp.shell.currentWidget;
                await panel.context.save();
                await panel.sessionContext.shutdown();
                panel.dispose();
            }"""
        )
        # What was saved: each call's summary, no widget view for a new kernel to miss.
        saved = tmp_path / NOTEBOOK
        for index in (3, 15):
            for out in saved_outputs(saved, index):
                assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})
        (summary,) = [o for o in saved_outputs(saved, 3) if o["output_type"] == "display_data"]
        assert "sshdist-summary" in "".join(summary["data"]["text/html"])
        plain = "".join(summary["data"]["text/plain"])
        assert STOPPED_SUMMARY.match(plain), plain
        assert CANCELLED_LINE.search(plain), plain
        open_notebook(page, lab)  # a fresh kernel, as a person reopening it the next day
        reopened = output_of(page, 3).locator(".sshdist-summary")
        reopened.get_by_text(STOPPED_SUMMARY).wait_for(timeout=60_000)
        reopened.get_by_text(CANCELLED_LINE).wait_for(timeout=30_000)
        for name in ("node1", "node2", "node3"):
            assert reopened.get_by_text(name, exact=True).count() == 1
        output_of(page, 15).get_by_text(re.compile(r"^dist_map: 12 item")).wait_for()
        page.wait_for_function(  # the new kernel is up: widgets would have been looked for
            """() => window.jupyterapp.shell.currentWidget.sessionContext.session
                ?.kernel?.status === 'idle'""",
            timeout=60_000,
        )
        assert "model not found" not in page.locator(".jp-Notebook").inner_text()
        page.screenshot(path=str(SHOTS / "reopened_calls.png"), full_page=True)
