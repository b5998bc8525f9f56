"""The notebooks, executed by nbclient as Jupyter would, against local nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from sshdist_kernel import kernelspec
from sshdist_kernel.localnodes import LocalNodes

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture
def node1_kernel(
    local_nodes: LocalNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The kernelspec the tour names, installed in this test's own Jupyter path."""
    kernelspec.install("node1", prefix=str(tmp_path), ssh_config=str(local_nodes.ssh_config))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    yield "sshdist-node1"


def shown(cell: nbformat.NotebookNode) -> list[str]:
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":  # consecutive writes show as one text, as in Jupyter
            if out and out[-1].startswith("stream:"):
                out[-1] += o.text
            else:
                out.append("stream:" + o.text)
        elif o.output_type == "execute_result":
            out.append(o.data["text/plain"])
        elif o.output_type == "error":
            out.append(f"{o.ename}: {o.evalue}")
    return [o.removeprefix("stream:") for o in out]


def test_the_remote_guile_kernel_tour(node1_kernel: str) -> None:
    nb = nbformat.read(NOTEBOOKS / "remote_guile_kernel.ipynb", as_version=4)
    NotebookClient(nb, kernel_name=node1_kernel, timeout=60, startup_timeout=60).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert shown(code[0]) == ["$1 = 3"]
    assert shown(code[1]) == ["$2 = (0 1 4 9 16 25)"]
    assert shown(code[2]) == ["printed on the node\n", '$3 = 144\n$4 = "and a second value"']
    assert shown(code[3]) == ["$5 = (3 (0 1 4 9 16 25))"]
    assert shown(code[4])[0].startswith("wrong-type-arg: In procedure car")
    assert shown(code[5]) == ['$6 = "STILL HERE"']
    assert "ECMAScript" in shown(code[6])[0]
    assert shown(code[7]) == ["$7 = 42"]
    assert shown(code[9])[-1] == "$9 = (tour)"
    assert code[7].outputs[0].metadata["sshdist"]["language"] == "ecmascript"
