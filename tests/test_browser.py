"""The notebooks in a real browser: JupyterLab served on 127.0.0.1, Debian's Chromium
driven by Playwright (no browser download).  Here node_loadavg.ipynb is run and its
widget rows checked as rendered and updating; test_browser_live.py uses the same
server and browser.  Screenshots land in build/screenshots/."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sshdist_kernel.localnodes import _free_port

from .conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "build" / "screenshots"
SCREENSHOT = SHOTS / "node_loadavg.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


def jupyterlab_on(notebook: str, tmp_path: Path) -> Iterator[str]:
    """JupyterLab on a free loopback port, serving a copy of ``notebook``: its URL."""
    shutil.copy(ROOT / "notebooks" / notebook, tmp_path)
    SHOTS.mkdir(parents=True, exist_ok=True)
    # No news toast over the notebook, and no requests to the internet for it.
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    port, token = _free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={tmp_path}",
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.open_browser=False",
            "--allow-root",  # harmless for an ordinary user; needed when CI runs as root
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "lab.log").open("wb"),
        stdin=subprocess.DEVNULL,
        # Settings and the saved layout of this server's own: not whatever the last
        # JupyterLab on this machine left in ~/.jupyter (open panels, a narrower page).
        env={
            **os.environ,
            "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        },
    )

    def up() -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/status?token={token}", timeout=1
            ):
                return True
        except OSError:
            return server.poll() is not None  # stop waiting if it died

    try:
        wait_until(up, timeout=60, what="JupyterLab to answer")
        assert server.poll() is None, (tmp_path / "lab.log").read_text()[-2000:]
        yield f"http://127.0.0.1:{port}/lab/tree/{notebook}?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    yield from jupyterlab_on("node_loadavg.ipynb", tmp_path)


def open_notebook(page: Any, url: str) -> None:
    """Open the notebook and wait until its kernel (Python 3) is up."""
    page.goto(url, timeout=60_000)
    page.wait_for_function(
        "() => window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=60_000
    )
    page.wait_for_function(
        "() => document.querySelector('.jp-Notebook .jp-Cell') !== null", timeout=60_000
    )
    page.wait_for_function(  # the kernel is up and idle
        "() => document.querySelector('.jp-Notebook-ExecutionIndicator,"
        " .jp-Toolbar-kernelStatus') !== null",
        timeout=60_000,
    )
    # JupyterLab may ask which kernel to start: the notebook's own, Python 3.  Wait for
    # whichever comes first, that question or a kernel chosen without it (before, the
    # question was waited for 15 s each time it was not asked).
    page.wait_for_function(
        """() => {
            const asked = [...document.querySelectorAll('.jp-Dialog button')]
                .some(b => b.innerText.trim() === 'Select');
            const context = window.jupyterapp.shell.currentWidget?.sessionContext;
            return asked || !!context?.session?.kernel;
        }""",
        timeout=60_000,
    )
    select = page.get_by_role("button", name="Select", exact=True)
    if select.count():
        select.click()
    # The notebook the whole width, as a person reading it would have it: a fresh
    # layout opens the file browser beside it.
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")


@contextmanager
def notebook_page(url: str, width: int, height: int, *, failed: str) -> Iterator[Any]:
    """Headless Debian Chromium showing the notebook at ``url``, its kernel up; a failure
    inside leaves a screenshot at ``failed``, and the browser is closed either way."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        try:
            open_notebook(page, url)
            yield page
        except Exception:
            page.screenshot(path=failed, full_page=True)
            raise
        finally:
            browser.close()


@contextmanager
def machine_overloaded(processes: int, seconds: int) -> Iterator[None]:
    """``processes`` busy loops at the lowest priority (they count in the load average
    yet yield the cores to anyone else), each ended after ``seconds`` whatever happens
    to the test, and stopped when the block ends."""
    busy = [
        subprocess.Popen(
            ["timeout", str(seconds), "nice", "-n", "19", "yes"],
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    try:
        yield
    finally:
        for p in busy:
            p.terminate()  # timeout passes it on to its yes
        for p in busy:
            p.wait(10)


@pytest.mark.timeout(480)
def test_load_rows_render_and_update_in_jupyterlab(jupyterlab: str) -> None:
    from .test_browser_live import output_of, run_cell  # that module imports this one

    cores = os.cpu_count() or 1  # the local nodes' cores: they run on this machine
    # The machine the nodes share is overloaded from the start (twice as many busy loops
    # as it has cores and more), so that its 1-minute load, an average read every 5 s,
    # climbs while the notebook opens and runs its first cells, not only after them.
    with (
        machine_overloaded(4 * cores, 300),
        notebook_page(
            jupyterlab, 1400, 1000, failed=str(SCREENSHOT.with_name("failed.png"))
        ) as page,
    ):
        run_cell(page, 1)  # %nodes: three local nodes
        run_cell(page, 2)  # %loadavg --every 1 -o mon nodes
        rows = page.locator(".widget-hbox:has(.sshdist-loadbar)")
        page.wait_for_function(
            "() => document.querySelectorAll('.sshdist-loadbar').length >= 9", timeout=60_000
        )
        names = [rows.nth(i).locator(".widget-html").first.inner_text() for i in range(3)]
        assert names == ["node1", "node2", "node3"]
        heads = output_of(page, 2).inner_text()
        assert "1 min load, last 1 min" in heads  # --every 1: 60 samples a second apart

        def read_at() -> list[str]:
            return [rows.nth(i).locator(".widget-label").last.inner_text() for i in range(3)]

        first = read_at()
        try:  # the same cells as read_at's, until one of them changes
            page.wait_for_function(
                """(first) => [...document.querySelectorAll(
                        '.widget-hbox:has(.sshdist-loadbar)')].slice(0, 3)
                    .some((row, i) => [...row.querySelectorAll('.widget-label')]
                        .pop()?.innerText !== first[i])""",
                arg=first,
                timeout=60_000,
            )
        except playwright.TimeoutError:
            pytest.fail(f"the load rows did not refresh: still {first}")
        assert read_at() != first, "the load rows did not refresh"
        run_cell(page, 4)  # the nodes busy for a few seconds
        run_cell(page, 6)  # node3 stopped: its row turns stopped; the others run on
        page.wait_for_function(
            "() => [...document.querySelectorAll('.widget-html')]"
            ".some(e => e.innerText.trim() === 'stopped')",
            timeout=90_000,
        )
        states = [rows.nth(i).locator(".widget-html").nth(1).inner_text() for i in range(3)]
        assert states[2] == "stopped"
        # Until node1's 1 minute load is well past its cores.
        page.wait_for_function(
            """(cores) => {
                const one = document.querySelector('.sshdist-loadbar-number');
                return one && parseFloat(one.innerText) > 1.5 * cores;
            }""",
            arg=cores,
            timeout=240_000,
        )
        # Read in one go: the row's HTML is redrawn every second, and an element
        # found in one call may be gone by the next (its computed colour then '').
        shown = page.evaluate(
            """() => {
                const node1 = document.querySelector('.widget-hbox:has(.sshdist-loadbar)');
                const bar = node1.querySelector('.sshdist-loadbar');
                const number = node1.querySelector('.sshdist-loadbar-number');
                const mark = bar.querySelector('.sshdist-loadbar-mark');
                const past = bar.querySelectorAll('.sshdist-loadbar-part')[1];
                return {
                    colour: getComputedStyle(number).color,
                    mark: mark.getBoundingClientRect().x,
                    past: past.getBoundingClientRect().x,
                    width: past.getBoundingClientRect().width,
                };
            }"""
        )
        assert shown["colour"] == "rgb(230, 81, 0)", shown  # orange past the cores
        # The part past the cores is drawn: a bar to 4x the cores with the mark at 1x
        # (or further out), not a full bar.
        assert shown["past"] == pytest.approx(shown["mark"], abs=2) and shown["width"] > 3
        output_of(page, 2).scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        run_cell(page, 7)  # mon.stop()
