"""The code's layout holds: the package's modules import each other in floors (no import
circle of any length, sshdist_kernel never imports sshdist_magics) and none is over 400
lines.  Read with ``ast``, nothing imported, so a module that fails to import still counts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# import name -> its directory (pyproject's package-dir: sshdist_magics lives in magics/)
PACKAGES = {"sshdist_kernel": ROOT / "sshdist_kernel", "sshdist_magics": ROOT / "magics"}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every Python module of the two packages, by its dotted import name."""
    found: dict[str, Path] = {}
    for package, directory in PACKAGES.items():
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's own modules that ``name`` imports, anywhere in it: a lazy import
    inside a function, or one for type hints only (``TYPE_CHECKING``), is an import too."""
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        # `import a.b.c` runs a, a.b and a.b.c: the deepest one that is a module of ours
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                # `from . import x` / `from .sexp import reader`: x may be a module itself
                if f"{source}.{alias.name}" in known:
                    add(f"{source}.{alias.name}")
                else:
                    add(source)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: each strongly connected group of modules (Tarjan), as a path
    round it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def test_the_reader_sees_the_imports() -> None:
    """The graph is read right: known edges are in it, so an empty answer means something."""
    edges = graph()
    assert "sshdist_kernel.errors" in edges["sshdist_kernel.node"]
    assert "sshdist_kernel.sexp" in edges["sshdist_kernel"] or any(
        m.startswith("sshdist_kernel.sexp") for m in edges["sshdist_kernel.rrepl"]
    )
    assert "sshdist_kernel" in edges["sshdist_magics.magics"] or any(
        m.startswith("sshdist_kernel.") for m in edges["sshdist_magics.magics"]
    )


def test_cycles_finds_a_circle_of_three() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    edges = graph()
    circles = cycles(edges)
    described = [
        " <-> ".join(group)
        + ": "
        + "; ".join(f"{m} imports {', '.join(sorted(edges[m] & set(group)))}" for m in group)
        for group in circles
    ]
    assert not circles, "import circles:\n" + "\n".join(described)


def test_sshdist_kernel_never_imports_the_magics() -> None:
    up = {
        name: sorted(m for m in targets if m.split(".")[0] == "sshdist_magics")
        for name, targets in graph().items()
        if name.split(".")[0] == "sshdist_kernel"
    }
    assert not {name: ms for name, ms in up.items() if ms}


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_is_at_most_400_lines(name: str) -> None:
    path = modules()[name]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"
