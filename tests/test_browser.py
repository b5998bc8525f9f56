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
import time
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
        env={**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings")},
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
    # JupyterLab may ask which kernel to start: the notebook's own, Python 3.
    select = page.get_by_role("button", name="Select", exact=True)
    try:
        select.wait_for(timeout=15_000)
        select.click()
    except playwright.TimeoutError:
        pass


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


@pytest.mark.timeout(300)
def test_load_rows_render_and_update_in_jupyterlab(jupyterlab: str) -> None:
    with notebook_page(
        jupyterlab, 1400, 1000, failed=str(SCREENSHOT.with_name("failed.png"))
    ) as page:
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        rows = page.locator(".widget-hbox:has(.widget-hprogress)")
        rows.first.wait_for(timeout=90_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.widget-hprogress').length >= 9", timeout=60_000
        )
        names = [rows.nth(i).locator(".widget-html").first.inner_text() for i in range(3)]
        assert names == ["node1", "node2", "node3"]

        def sparklines() -> list[str]:
            return [rows.nth(i).locator(".widget-label").last.inner_text() for i in range(3)]

        first = sparklines()
        deadline = time.monotonic() + 60
        while sparklines() == first and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        assert sparklines() != first, "the load rows did not refresh"
        # After the notebook stops node3, its row turns stopped; the others run on.
        page.wait_for_function(
            "() => [...document.querySelectorAll('.widget-html')]"
            ".some(e => e.innerText.trim() === 'stopped')",
            timeout=90_000,
        )
        states = [rows.nth(i).locator(".widget-html").nth(1).inner_text() for i in range(3)]
        assert states[2] == "stopped"
        page.screenshot(path=str(SCREENSHOT), full_page=True)
