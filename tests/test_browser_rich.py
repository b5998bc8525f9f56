"""rich_output.ipynb in JupyterLab in headless Chromium, on the Guile kernel of a local
node: the displays Guile code sends (HTML, Markdown, LaTeX, an SVG chart, JSON, an
output updated in place) rendered by JupyterLab itself, and a (read-line) answered in
the notebook's input box.  The screenshot lands in build/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sshdist_kernel import kernelspec
from sshdist_kernel.localnodes import LocalNodes

from .test_browser import (
    SHOTS,
    jupyterlab_on,
    notebook_page,
    pytestmark,  # noqa: F401 - skipped where the browser test is
)
from .test_browser_live import output_of, run_cell

SCREENSHOT = SHOTS / "rich_output.png"


@pytest.fixture
def lab(local_nodes: LocalNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """JupyterLab with the node1 kernelspec the notebook names."""
    prefix = tmp_path / "prefix"
    kernelspec.install("node1", prefix=str(prefix), ssh_config=str(local_nodes.ssh_config))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    yield from jupyterlab_on("rich_output.ipynb", tmp_path)


@pytest.mark.timeout(300)
def test_guile_displays_render_in_jupyterlab_and_read_line_asks_the_page(lab: str) -> None:
    with notebook_page(
        lab, 1200, 1700, failed=str(SCREENSHOT.with_name("rich_failed.png"))
    ) as page:
        run_cell(page, 1)
        html = output_of(page, 1).locator(".jp-RenderedHTMLCommon b")
        html.wait_for(timeout=90_000)
        assert html.inner_text() == "Guile"
        texts = output_of(page, 1).locator(".jp-OutputArea-output").all_inner_texts()
        assert [t.strip() for t in texts] == [
            "printed first",
            "Hello from Guile on the node",
            "printed after the HTML",
        ]
        run_cell(page, 3)
        output_of(page, 3).locator("li").nth(1).wait_for(timeout=30_000)
        output_of(page, 3).locator("mjx-container, .MathJax").first.wait_for(timeout=30_000)
        run_cell(page, 5)
        chart = output_of(page, 5).locator(".jp-RenderedSVG img, .jp-RenderedSVG svg")
        chart.wait_for(timeout=30_000)
        assert chart.bounding_box()["width"] >= 600  # drawn at its own size
        output_of(page, 5).get_by_text("$1 = 118").wait_for(timeout=10_000)
        run_cell(page, 7)
        output_of(page, 7).get_by_text("longest").first.wait_for(timeout=30_000)
        run_cell(page, 9)
        output_of(page, 9).get_by_text("step 5 of 5").wait_for(timeout=30_000)
        assert "starting" not in output_of(page, 9).inner_text()
        run_cell(page, 11, wait=False)  # it waits for the input
        box = output_of(page, 11).locator("input.jp-Stdin-input")
        box.wait_for(timeout=30_000)
        box.fill("Ada")
        box.press("Enter")
        output_of(page, 11).get_by_text('$2 = "hello, Ada"').wait_for(timeout=30_000)
        output_of(page, 11).scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOT), full_page=True)
