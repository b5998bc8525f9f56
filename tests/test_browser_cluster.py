"""cluster_login.ipynb in JupyterLab in headless Chromium, run a cell at a time as a
person would: the test starts a local cluster (a login node asking for a key and then a
one-time code, 64 compute nodes behind it) and names it to the notebook through
SSHDIST_CLUSTER_DIR in JupyterLab's environment; when ``%nodes`` shows JupyterLab's
password box, the test types the cluster's next code into it and presses Enter.
Screenshots land in build/screenshots/."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .test_browser import SHOTS, jupyterlab_on, notebook_page
from .test_browser import pytestmark as browser_mark
from .test_browser_live import output_of, run_cell

NOTEBOOK = "cluster_login.ipynb"
COMPUTE = 64

pytestmark = [
    browser_mark,  # skipped where the other browser tests are
    pytest.mark.skipif(
        os.geteuid() != 0, reason="a local cluster needs root: /etc/pam.d, a cgroup, nft rules"
    ),
]

# Counts the stdin boxes JupyterLab adds to the page, from before the cell runs.
COUNT_STDIN_BOXES = """() => {
    window.stdinBoxes = 0;
    new MutationObserver(changes => {
        for (const change of changes) {
            for (const added of change.addedNodes) {
                if (added.nodeType !== 1) { continue; }
                const boxes = added.matches('input.jp-Stdin-input') ? [added]
                    : [...added.querySelectorAll('input.jp-Stdin-input')];
                window.stdinBoxes += boxes.length;
            }
        }
    }).observe(document.body, {childList: true, subtree: true});
}"""


def down_to(page: Any, index: int) -> dict[str, float]:
    """The page's clip from its top to 8 px below cell ``index``, the whole width."""
    box = page.locator(".jp-Notebook .jp-Cell").nth(index).bounding_box()
    viewport = page.viewport_size
    bottom = min(box["y"] + box["height"] + 8, viewport["height"])
    return {"x": 0, "y": 0, "width": viewport["width"], "height": bottom}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    from sshdist_kernel.localcluster import LocalCluster

    made = LocalCluster.up(tmp_path / "cluster", compute=COMPUTE)
    try:
        yield made
    finally:
        made.down()


@pytest.fixture
def lab(cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """JupyterLab (and so its kernels) with SSHDIST_CLUSTER_DIR naming the cluster; it is
    stopped before the cluster is."""
    monkeypatch.setenv("SSHDIST_CLUSTER_DIR", str(cluster.dir))
    served = tmp_path / "lab"
    served.mkdir()
    yield from jupyterlab_on(NOTEBOOK, served)


# Cells are started without waiting for them (run_cell's wait would be unbounded); each
# wait is for the cell's output, with a timeout.
@pytest.mark.timeout(300)
def test_the_one_time_code_is_typed_once_for_64_nodes(cluster: Any, lab: str) -> None:
    with notebook_page(lab, 1100, 1500, failed=str(SHOTS / "cluster_login_failed.png")) as page:
        # The notebook alone, without the file browser (once the layout is restored).
        page.evaluate(
            """async () => {
                await window.jupyterapp.restored;
                window.jupyterapp.shell.collapseLeft();
            }"""
        )
        page.wait_for_function(
            "() => !document.querySelector('#jp-left-stack:not(.lm-mod-hidden)')", timeout=10_000
        )
        run_cell(page, 1, wait=False)
        output_of(page, 1).get_by_text(
            f"login node 127.0.0.1:{cluster.login_port}, 64 compute nodes cn01..cn64"
        ).wait_for(timeout=30_000)
        page.evaluate(COUNT_STDIN_BOXES)
        run_cell(page, 3, wait=False)  # %nodes: it waits for the code
        nodes_out = output_of(page, 3)
        box = nodes_out.locator("input.jp-Stdin-input")
        box.wait_for(timeout=60_000)
        assert box.get_attribute("type") == "password"
        prompt = nodes_out.locator(".jp-Stdin-prompt").inner_text()
        assert "One-time password" in prompt, prompt
        box.fill(cluster.totp_code())
        # The page down to the cell's password box (and a little below it).
        page.screenshot(path=str(SHOTS / "cluster_login_prompt.png"), clip=down_to(page, 4))
        box.press("Enter")
        nodes_out.get_by_text(re.compile(r"^64 node\(s\) ready in [\d.]+ s")).wait_for(
            timeout=90_000
        )
        text = nodes_out.inner_text()
        assert re.search(r"cn\[01-64\]: Guile 3\.\S+ \(64 nodes\)", text), text
        assert "FAILED" not in text
        assert text.count("One-time password") == 1, text  # the answered prompt stays shown
        run_cell(page, 5, wait=False)
        output_of(page, 5).get_by_text("64 nodes; connections to the login node: 1").wait_for(
            timeout=30_000
        )
        run_cell(page, 7, wait=False)
        output_of(page, 7).get_by_text("([0, 1, 4, 9, 16], 408321, True)").wait_for(timeout=90_000)
        assert re.search(
            r"dist_map: 640 item\(s\) on \d+ node\(s\)", output_of(page, 7).inner_text()
        )
        assert page.evaluate("() => window.stdinBoxes") == 1
        # From the %nodes cell to the dist_map's result: the notebook scrolled to it.
        # The windowed notebook draws what scrolled in on the next frames: waited for,
        # then for the result's cell to be drawn in the viewport.
        page.evaluate(
            """async () => {
                document.querySelectorAll('.jp-Notebook .jp-Cell')[2]
                    .scrollIntoView({block: 'start'});
                await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
            }"""
        )
        output_of(page, 7).get_by_text("([0, 1, 4, 9, 16], 408321, True)").wait_for(
            state="visible", timeout=10_000
        )
        page.screenshot(path=str(SHOTS / "cluster_login_done.png"), clip=down_to(page, 7))
        run_cell(page, 9, wait=False)
        output_of(page, 9).get_by_text("nodes closed").wait_for(timeout=30_000)
        assert page.evaluate("() => window.stdinBoxes") == 1
