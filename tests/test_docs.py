"""The manual (docs/, `make docs`): it builds with Sphinx without a single warning, and
what a user looks for is in it: every public name, every magic, the how-tos, the
README's tables it includes.  One build for the module, into a temporary directory."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sshdist_magics import SshdistMagics

import sshdist_kernel

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html"]
        + ["-d", str(out / ".doctrees"), str(ROOT / "docs"), str(out / "html")],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
    )
    assert build.returncode == 0, f"sphinx-build failed:\n{build.stdout}\n{build.stderr}"
    # -W turns warnings into a failure; --keep-going still prints them all: none.
    assert "WARNING" not in build.stderr and "ERROR" not in build.stderr, build.stderr
    return out / "html"


def page(site: Path, name: str) -> str:
    path = site / name
    assert path.is_file(), f"{name} was not built"
    return path.read_text()


def text(markup: str) -> str:
    """A page's words, tags dropped and entities decoded, spaces collapsed."""
    words = html.unescape(re.sub(r"<[^>]+>", "", markup))
    return re.sub(r"\s+", " ", words)


def test_api_page_documents_dist_map_async_with_its_parameters(site: Path) -> None:
    api = page(site, "reference/api.html")
    start = api.index('id="sshdist_kernel.dist_map_async"')
    end = api.index("</dt>", start)
    signature = text(api[start:end])
    for parameter in ("nodes", "proc", "lst", "timeout", "job_timeout", "chunksize", "on_event"):
        assert re.search(rf"\b{parameter}\b", signature), (parameter, signature)
    assert "DistCall" in signature
    # and its docstring under it
    assert "to wait on, watch or cancel" in text(api[end : api.index("</dd>", end)])


def test_every_public_name_is_in_the_reference(site: Path) -> None:
    reference = page(site, "reference/api.html") + page(site, "reference/values.html")
    missing = [
        name for name in sshdist_kernel.__all__ if f'id="sshdist_kernel.{name}"' not in reference
    ]
    assert not missing, f"public names the reference does not document: {missing}"


def test_every_magic_has_its_help_on_the_magics_page(site: Path) -> None:
    magics = page(site, "reference/magics.html")
    names = [*SshdistMagics.magics["line"], *SshdistMagics.magics["cell"]]
    missing = [name for name in names if f'id="magic-{name}"' not in magics]
    assert not missing, f"magics the reference does not show: {missing}"
    # the help is the magic's own: its usage line and its options
    words = text(magics)
    assert (
        "%dist_map [-o NAME] [--timeout S] [--stream] [--group-outputs node|fold] [--bg] "
        "NODES PROC LST" in words
    )
    assert "--partial" in words  # %dist_result's
    assert "--max-connecting N" in words


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("howto/login-nodes.html", "one-time code"),
        ("howto/host-lists.html", "SLURM_JOB_NODELIST"),
        ("howto/certificates.html", "CertificateFile"),
        ("howto/openssh-transport.html", 'transport="openssh"'),
        ("howto/repl-servers.html", "node_stop_server"),
        ("howto/guile-versions.html", "guile-2.2"),
        ("howto/background-calls.html", "partial()"),
        ("howto/load-dashboard.html", "%loadavg"),
        ("tutorial/local-nodes.html", "LocalNodes.up(3)"),
        ("tutorial/cluster.html", "ProxyJump login"),
        ("tutorial/guile-kernel.html", "python -m sshdist_kernel install --host"),
    ],
)
def test_the_tutorials_and_how_tos_are_there(site: Path, name: str, words: str) -> None:
    assert words in text(page(site, name))


def test_included_pieces_come_from_their_sources(site: Path) -> None:
    # The README's tables, included: the errors page has its error classes and what goes
    # wrong; the measured page its figures beside Guile-SSH's.
    errors = text(page(site, "errors.html"))
    assert "IncompleteInputError" in errors and "What can go wrong" in errors
    assert "Guile-SSH 0.16.2" in text(page(site, "measured.html"))
    # The protocol as (sshdist framing) describes it, and the commands' own --help.
    assert "Requests, client to loop" in text(page(site, "design/protocol.html"))
    cli = text(page(site, "reference/cli.html"))
    assert "usage: sshdist nodes up" in cli and "usage: python -m sshdist_kernel install" in cli
