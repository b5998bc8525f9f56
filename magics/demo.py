"""``make demo``, second part: run notebooks/dist_map_demo.ipynb as Jupyter would and
print each cell with what it showed."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "dist_map_demo.ipynb"


def cell_output(cell: nbformat.NotebookNode) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            parts.append(o.data.get("text/plain", "") + "\n")
        elif o.output_type == "error":
            parts.append(f"{o.ename}: {o.evalue}\n")
    return "".join(parts)


def main() -> int:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    print(f"executing {NOTEBOOK.name} with nbclient...\n")
    NotebookClient(nb, kernel_name="python3", timeout=300, startup_timeout=60).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        print("\n".join(f">>> {line}" for line in cell.source.splitlines()))
        print(cell_output(cell).rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
