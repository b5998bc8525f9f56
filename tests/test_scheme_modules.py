"""The loop's Scheme modules (``sshdist_kernel/scheme/sshdist/*.scm``): one
``(sshdist NAME)`` module a file, importing one another without a cycle, sent as one
text in which each comes after those it uses, under a cache key that any change to
one of them changes."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from sshdist_kernel import guile, sexp
from sshdist_kernel.sexp import Keyword, Symbol

SCHEME = Path(str(resources.files("sshdist_kernel").joinpath("scheme").joinpath("sshdist")))

_TOP_DEFINE = re.compile(r"^\(define\*? \(?([^\s()]+)", re.MULTILINE)
_SET = re.compile(r"\(set! ([^\s()]+)")


def _header(name: str) -> list:
    """The module's first form, read."""
    return sexp.read(sexp.split_forms(guile.module_text(name))[0])


def _imports(name: str) -> dict[str, list[str] | None]:
    """The sshdist modules ``name`` imports: NAME -> the names it selects (None: all)."""
    header = _header(name)
    found: dict[str, list[str] | None] = {}
    for key, spec in zip(header[2::2], header[3::2], strict=True):
        if key != Keyword("use-module"):
            continue
        selected = None
        if isinstance(spec[0], list):  # ((sshdist X) #:select (...))
            spec, options = spec[0], spec[1:]
            if Keyword("select") in options:
                selected = [str(s) for s in options[options.index(Keyword("select")) + 1]]
        if spec[0] == Symbol("sshdist"):
            found[str(spec[1])] = selected
    return found


def _exports(name: str) -> set[str]:
    header = _header(name)
    exports: set[str] = set()
    for key, spec in zip(header[2::2], header[3::2], strict=True):
        if key in (Keyword("export"), Keyword("export-syntax"), Keyword("re-export")):
            exports.update(str(s) for s in spec)
    return exports


def test_each_file_is_one_sshdist_module_named_as_the_file() -> None:
    assert sorted(p.stem for p in SCHEME.glob("*.scm")) == sorted(guile.MODULES)
    for name in guile.MODULES:
        header = _header(name)
        assert header[:2] == [Symbol("define-module"), [Symbol("sshdist"), Symbol(name)]], name
        assert _exports(name), f"(sshdist {name}) exports nothing"
        # One module a file: no second define-module further down.
        assert guile.module_text(name).count("(define-module") == 1, name


def test_the_modules_import_one_another_without_a_cycle_in_the_order_they_are_sent() -> None:
    graph = {name: set(_imports(name)) for name in guile.MODULES}
    for name, uses in graph.items():
        assert uses <= set(guile.MODULES), f"(sshdist {name}) imports {uses - set(guile.MODULES)}"
    # Each module is sent after every module it imports: the order is a topological
    # one, so the graph has no cycle (a module importing itself included).
    sent: set[str] = set()
    for name in guile.MODULES:
        assert graph[name] <= sent, f"(sshdist {name}) comes before {graph[name] - sent}"
        sent.add(name)
    # And the graph alone, whatever the order, has none.
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for used in graph[name]:
                visit(used, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())


def test_a_module_selects_only_names_the_other_exports_and_reaches_no_private_one() -> None:
    for name in guile.MODULES:
        for used, selected in _imports(name).items():
            if selected is not None:
                missing = set(selected) - _exports(used)
                assert not missing, f"(sshdist {name}) selects {missing} of (sshdist {used})"
        assert "(@@ (sshdist" not in guile._stripped(guile.module_text(name)), name


def test_no_module_sets_a_variable_of_another() -> None:
    # Compiled, a module's variables it never set!s itself may be inlined (Guile 3.0's
    # declarative modules): another module's set! would then go unseen.
    defined = {name: set(_TOP_DEFINE.findall(guile.module_text(name))) for name in guile.MODULES}
    for name in guile.MODULES:
        for target in _SET.findall(guile.module_text(name)):
            others = [m for m in guile.MODULES if m != name and target in defined[m]]
            assert target in defined[name] or not others, (
                f"(sshdist {name}) sets {target}, a variable of (sshdist {others[0]})"
            )


def test_a_change_to_any_module_changes_the_cache_key() -> None:
    loader, texts = guile._loader(), [guile.module_text(name) for name in guile.MODULES]
    assert guile.joined(texts) == guile._program()
    key = guile.program_key(loader, guile.joined(texts))
    assert key == guile._program_key()
    keys = {key}
    for i, name in enumerate(guile.MODULES):
        changed = list(texts)
        changed[i] = texts[i].replace("(define ", "(define  ", 1)
        assert changed[i] != texts[i], name
        keys.add(guile.program_key(loader, guile.joined(changed)))
    assert len(keys) == len(guile.MODULES) + 1
    # So does a change to the loader; a comment is not sent, and changes nothing.
    assert guile.program_key(loader + " ", guile.joined(texts)) != key
    commented = [texts[0] + "\n;;; a new comment\n", *texts[1:]]
    assert guile.program_key(loader, guile.joined(commented)) == key


def _guile_3() -> str | None:
    path = shutil.which("guile")
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    return path if version.split("\n")[0].rsplit(" ", 1)[-1].startswith("3.") else None


@pytest.mark.skipif(_guile_3() is None, reason="no Guile 3.0 here")
def test_every_name_a_module_uses_is_bound_in_it(tmp_path: Path) -> None:
    # Guile 3.0's compiler names each variable a module uses that neither it defines
    # nor its imports give (Guile 2.2's warns wrongly for a file of several modules):
    # a missing import would otherwise show only when that code first runs.
    source = tmp_path / "program.scm"
    source.write_text(guile._program(), encoding="utf-8")
    code = (
        "(use-modules (system base compile))"
        f"(compile-file {sexp.write(str(source))} #:output-file {sexp.write(str(source) + '.go')}"
        " #:opts '(#:warnings (unbound-variable arity-mismatch format)))"
    )
    done = subprocess.run(
        [str(_guile_3()), "-q", "--no-auto-compile", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr, done.stderr


def _guiles() -> list[str]:
    return [g for g in ("guile-3.0", "guile-2.2") if shutil.which(g)]


_DESCRIBE = """
(define (names iface)
  (sort (module-map (lambda (k v) (symbol->string k)) iface) string<?))
(write
 (map (lambda (name)
        (let ((m (resolve-module (list 'sshdist name))))
          (list name (names (module-public-interface m))
                (map (lambda (u)
                       (cons (module-name u)
                             (if (eq? (car (module-name u)) 'sshdist) (names u) '())))
                     (module-uses m)))))
      '(%s)))
"""


@pytest.mark.parametrize("guile_command", _guiles())
def test_the_program_sent_makes_the_modules_the_files_define(
    guile_command: str, tmp_path: Path
) -> None:
    # The text sent has each header as a define-module* call (guile._module_call): the
    # modules it makes, their exports and their imports (with the names they select)
    # are those of the files loaded as Guile loads modules, from its load path.
    describe = _DESCRIBE % " ".join(guile.MODULES)
    program = tmp_path / "program.scm"
    program.write_text(guile._program(), encoding="utf-8")
    run = [guile_command, "-q", "--no-auto-compile", "-c"]
    loaded = subprocess.run(
        [
            guile_command,
            "-q",
            "--no-auto-compile",
            "-L",
            str(SCHEME.parent),
            "-c",
            "(use-modules (sshdist rrepl) (sshdist jupyter))" + describe,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    sent = subprocess.run(
        [
            *run,
            f"(use-modules (ice-9 rdelim)) (eval-string (call-with-input-file"
            f" {sexp.write(str(program))} read-string))" + describe,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0 and sent.returncode == 0, loaded.stderr + sent.stderr
    assert "sshdist" in loaded.stdout
    assert sent.stdout == loaded.stdout
