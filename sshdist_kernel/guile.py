"""Guile as the REPL language behind ``Rrepl``: the command lines that start the
framed loop (the ``(sshdist ...)`` modules of ``scheme/sshdist``), a REPL server and
its bridge, and what Guile input and version output look like, and what its answers
to inspection mean."""

from __future__ import annotations

import functools
import hashlib
import re
import shlex
import textwrap
from importlib import resources
from typing import Any

from . import sexp
from .errors import IncompleteInputError

_DOCUMENTED = re.compile(r"- Scheme Procedure: (\S+)(.*)")


def _keyword_name(entry: Any) -> str:
    # procedure-arguments gives (#:name . slot); the caller types #:name, shown as name.
    key = entry.car if isinstance(entry, sexp.Pair) else entry
    return str(key).removeprefix("#:")


def _signature(name: str, arguments: Any) -> str:
    """``(name a b #:optional c #:key d #:allow-other-keys . rest)`` from Guile's
    procedure-arguments alist; Guile's own ``_`` where it knows no name."""
    if not isinstance(arguments, list):
        return f"({name} ...)"
    parts = [name]
    for entry in arguments:
        head = entry.car if isinstance(entry, sexp.Pair) else entry[0]
        if head == "required":
            parts += [str(a) for a in entry[1:]]
        elif head == "optional" and entry[1:]:
            parts += ["#:optional", *(str(a) for a in entry[1:])]
        elif head == "keyword" and entry[1:]:
            parts += ["#:key", *(_keyword_name(k) for k in entry[1:])]
        elif head == "allow-other-keys?" and isinstance(entry, sexp.Pair) and entry.cdr is True:
            parts.append("#:allow-other-keys")
        elif head == "rest" and isinstance(entry, sexp.Pair) and entry.cdr:
            parts += [".", str(entry.cdr)]
    return "(" + " ".join(parts) + ")"


def _documented_signature(name: str, doc: str) -> tuple[str, str] | None:
    """``(name key alist)`` and the rest of the text, from the manual's entry for a
    built-in (``- Scheme Procedure: assoc key alist``), whose names Guile does not keep."""
    first, _, body = doc.partition("\n")
    match = _DOCUMENTED.fullmatch(first.strip())
    if not match or match[1] != name:
        return None
    arguments = " ".join(match[2].split())
    return f"({name} {arguments})" if arguments else f"({name})", textwrap.dedent(body).strip()


def _names_known(arguments: Any) -> bool:
    """Whether procedure-arguments named every argument (a built-in's are ``_``)."""
    if not isinstance(arguments, list):
        return False
    for entry in arguments:
        values = [entry.cdr] if isinstance(entry, sexp.Pair) else entry[1:]
        if any(isinstance(v, str) and v == "_" for v in values):
            return False
    return True


def _inspection_text(name: str, info: list) -> str:
    """What Shift-Tab shows: the kind, the call with its argument names, the docstring."""
    kind, arguments, doc, printed = info
    lines = [f"{name}: {kind}"]
    if kind == "procedure":
        signature = _signature(name, arguments)
        documented = _documented_signature(name, doc) if isinstance(doc, str) else None
        if documented and not _names_known(arguments):
            signature, doc = documented
        lines.append(signature)
    if doc:
        lines += ["", doc]
    if kind == "value":
        lines.append(printed)
    return "\n".join(lines)


MODULES = (
    "framing",
    "packing",
    "arglists",
    "errors",
    "interrupts",
    "capture",
    "display",
    "input",
    "evaluation",
    "loop",
    "pump",
    "server",
    "rrepl",
    "jupyter",
)
"""The ``(sshdist NAME)`` modules the remote loop is made of, each in
``scheme/sshdist/NAME.scm``, in the order they are loaded: each after those it uses
(see ``scheme/sshdist/rrepl.scm``)."""


def module_text(name: str) -> str:
    """The text of module ``(sshdist NAME)``'s file."""
    scheme = resources.files(__package__).joinpath("scheme").joinpath("sshdist")
    return scheme.joinpath(f"{name}.scm").read_text("utf-8")


def _stripped(text: str) -> str:
    """``text`` with its comment lines and blank lines dropped, to keep the command
    line short."""
    lines = (line for line in text.splitlines() if not line.lstrip().startswith(";"))
    return "\n".join(line for line in lines if line.strip())


_HEADER_LISTS = {
    sexp.Keyword("use-module"): "imports",
    sexp.Keyword("export"): "exports",
    sexp.Keyword("export-syntax"): "exports",
    sexp.Keyword("re-export"): "re-exports",
}


def _module_call(header: str) -> str:
    """A module's ``(define-module (sshdist NAME) ...)`` form as what it expands into:
    ``define-module*`` called when the form is compiled and when it runs.  Guile 2.2's
    evaluator takes about 1.5 ms to expand one define-module form (3.0's 0.4 ms),
    which a loop started from source paid for each of its modules; the call takes a
    tenth of that.  Only the options the modules use are known: another is an error."""
    form = sexp.read(header)
    lists: dict[str, list] = {"imports": [], "exports": [], "re-exports": []}
    for option, value in zip(form[2::2], form[3::2], strict=True):
        kind = _HEADER_LISTS.get(option)
        if kind is None:
            raise ValueError(f"define-module {form[1]}: option {option} is not handled here")
        if kind == "imports":
            # (ice-9 threads) or ((sshdist framing) #:select (...)), as define-module has it
            lists[kind].append(value if isinstance(value[0], list) else [value])
        else:
            lists[kind].extend(value)
    options = "".join(f" #:{kind} '{sexp.write(items)}" for kind, items in lists.items() if items)
    return (
        "(eval-when (expand load eval)"
        f" (set-current-module (define-module* '{sexp.write(form[1])}{options})))"
    )


def _sent(text: str) -> str:
    """One module's text as it is sent: no comments, its header a call (``_module_call``)."""
    text = _stripped(text)
    start = text.index("(define-module ")
    end = sexp.datum_end(text, start)
    return text[:start] + _module_call(text[start:end]) + text[end:]


def joined(texts: list[str]) -> str:
    """The program sent to a node: the modules' texts, in the order of ``MODULES``,
    as one text.  Guile reads it as one file (compiled into one ``.go``, or evaluated
    form by form): each module's header makes the module the forms after it are in."""
    return "\n".join(_sent(text) for text in texts)


def program_key(loader: str, program: str) -> str:
    """Names a program's compiled copy in a node's cache (with Guile's version): any
    change to the loader or to a module's code (not its comments) is a new name."""
    return hashlib.sha256((loader + program).encode()).hexdigest()[:24]


@functools.cache
def _program() -> str:
    """Read once a process: every REPL a node opens sends the same source."""
    return joined([module_text(name) for name in MODULES])


@functools.cache
def _loader() -> str:
    """``loader.scm``: the procedure that runs the program, compiled when it can."""
    return _stripped(resources.files(__package__).joinpath("loader.scm").read_text("utf-8"))


@functools.cache
def _program_key() -> str:
    return program_key(_loader(), _program())


@functools.lru_cache(maxsize=64)
def _guile_command(guile: str, cache: bool, cache_dir: str | None, code: str) -> str:
    """The shell command that loads the program and runs ``code``: made once per
    kind of REPL, not once per node (writing the 40 KB program as a Scheme string
    cost ~2.7 ms of CPU, which hundreds of nodes each paid)."""
    if cache:
        load = "({} {} {} {} {})".format(
            _loader(),
            sexp.write(_program()),
            sexp.write(_program_key()),
            "#f" if cache_dir is None else sexp.write(cache_dir),
            sexp.write(guile),
        )
    else:
        load = "(eval-string " + sexp.write(_program()) + ")"
    return f"{shlex.quote(guile)} -q --no-auto-compile -c {shlex.quote(load + ' ' + code)}"


class GuileRepl:
    """Guile's REPL (3.0, or 2.2), driven through ``(sshdist rrepl)``; ``guile`` is the
    command that runs it on the node: a path or a name on the node's PATH.

    The node keeps a compiled copy of the loop in ``cache_dir`` (None: its
    ``$XDG_CACHE_HOME/sshdist``, else ``~/.cache/sshdist``), made the first time
    and used only if that directory and file are the node user's alone (see
    ``loader.scm``); ``cache=False`` always runs the loop from its source."""

    name = "guile"

    def __init__(self, guile: str = "guile", *, cache: bool = True, cache_dir: str | None = None):
        self.guile = guile
        self.cache = cache
        self.cache_dir = cache_dir

    @property
    def executable(self) -> str:
        return self.guile

    def missing_message(self, where: str, status: int, text: str) -> str:
        what = "is not installed on" if status == 127 else "cannot be run on"
        path = " (or not on its PATH)" if status == 127 and "/" not in self.guile else ""
        return (
            f"Guile command {self.guile!r} {what} {where}{path}: {text or f'exit {status}'}. "
            "Install Guile there (Debian: guile-3.0), or name the one to run with guile= "
            "(a path or a command)."
        )

    def program(self) -> str:
        """The loop's source: its modules (``scheme/sshdist/*.scm``, the rich display
        API of ``jupyter.scm`` last) with their comments dropped, to keep the command
        line short."""
        return _program()

    def _guile(self, code: str) -> str:
        return _guile_command(self.guile, self.cache, self.cache_dir, code)

    def command(self) -> str:
        return self._guile("((@ (sshdist rrepl) main))")

    def server_command(self, address: str, pid_file: str, key_file: str | None = None) -> str:
        """Start a REPL server; ``address``, ``pid_file`` and ``key_file`` are Scheme
        expressions, evaluated on the node, for the socket address, the pid file's
        path and the file whose key every client must send first (None: no key)."""
        key = f" {key_file}" if key_file else ""
        return self._guile(f"((@ (sshdist rrepl) serve-socket) {address} {pid_file}{key})")

    def bridge_command(self, socket_path: str) -> str:
        """Join stdin/stdout to a server's Unix socket, for a channel to a server;
        ``socket_path`` is a Scheme expression evaluated on the node."""
        code = (
            "(use-modules (ice-9 binary-ports) (ice-9 threads))"
            "(define s (socket AF_UNIX SOCK_STREAM 0))"
            f"(define path {socket_path})"
            "(catch 'system-error (lambda () (connect s AF_UNIX path))"
            " (lambda (key . args) (format (current-error-port)"
            ' "cannot connect to the REPL server at ~a: ~a~%" path'
            " (strerror (system-error-errno (cons key args)))) (exit 1)))"
            # Socket ports are unbuffered: without a buffer each read takes one byte.
            "(setvbuf s 'block 65536)"
            "(define (pump from to done)"
            " (let loop () (let ((bv (get-bytevector-some from)))"
            "  (if (eof-object? bv) (done)"
            "   (begin (put-bytevector to bv) (force-output to) (loop))))))"
            "(call-with-new-thread (lambda () (pump (current-input-port) s"
            " (lambda () (shutdown s 1)))))"
            "(pump s (current-output-port) (lambda () #t))"
        )
        return f"{shlex.quote(self.guile)} -q --no-auto-compile -c {shlex.quote(code)}"

    def version_command(self) -> str:
        return f"{shlex.quote(self.guile)} --version"

    def parse_version(self, output: str) -> str | None:
        # "guile (GNU Guile) 3.0.8"
        first = output.splitlines()[0] if output else ""
        return first.rsplit(" ", 1)[-1] or None

    def check_input(self, source: str, language: str) -> None:
        if language != "scheme" or source.lstrip().startswith(","):
            return
        status = sexp.input_status(source)
        if status == "incomplete":
            raise IncompleteInputError(
                "the input ends inside a form; the REPL would wait for the rest, "
                "so it was not sent: close every parenthesis and string",
                key="incomplete-input",
            )

    # -- queries for a notebook front end (run as quiet evaluations) ------------------

    def completion_source(self, prefix: str) -> str:
        """Scheme for the sorted names bound in the current module that start with ``prefix``."""
        return (
            "((@ (srfi srfi-1) delete-duplicates) (sort ((@ (ice-9 session) apropos-fold)"
            " (lambda (module name var data) (cons (symbol->string name) data)) '()"
            f' (string-append "^" ((@ (ice-9 regex) regexp-quote) {sexp.write(prefix)}))'
            " ((@ (ice-9 session) apropos-fold-accessible) (current-module))) string<?))"
        )

    def inspection_source(self, name: str) -> str:
        """Scheme for ``(kind arguments documentation printed)`` of ``name`` in the current
        module, or #f when nothing is bound to it.  The arguments are those of
        ``procedure-arguments``: their names for a procedure defined at the REPL (``(sshdist
        arglists)`` records them), ``_`` for a built-in; a built-in's documentation is the manual's
        entry (``- Scheme Procedure: assoc key alist ...``)."""
        return (
            f"(let ((var (module-variable (current-module) (string->symbol {sexp.write(name)}))))"
            " (and var (variable-bound? var)"
            "  (let ((v (variable-ref var)))"
            "   (list (cond ((procedure? v) 'procedure) ((macro? v) 'macro) (else 'value))"
            "         (and (procedure? v) ((@ (ice-9 session) procedure-arguments) v))"
            "         (and (procedure? v) (or (procedure-documentation v)"
            "              ((@ (ice-9 documentation) object-documentation) v)))"
            "         (let ((s (object->string v)))"
            "           (if (> (string-length s) 2000) (substring s 0 2000) s))))))"
        )

    def inspection_text(self, name: str, info: list) -> str:
        """What Shift-Tab shows for ``name``, from the answer to ``inspection_source``."""
        return _inspection_text(name, info)
