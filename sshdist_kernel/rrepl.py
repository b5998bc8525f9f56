"""One remote REPL on one channel as its callers use it: start-up, ``rrepl_eval`` and
its errors, the REPL taken for requests sent ahead (``pipeline``), skipping to its prompt.

The remote side runs the ``(sshdist ...)`` modules (``scheme/sshdist``), a loop over
Guile's own REPL machinery that frames everything it writes as ``<TAG><LEN>\\n<bytes>``
records (read by ``records``).
Below this, ``replchannel`` reads what the records mean, and ``replinterrupts`` holds
the REPL for one evaluation at a time and stops one given up on.  The REPL language
(Guile today) sits behind ``ReplLanguage``, so another REPL is one more class.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .ctrlc import CtrlCCancels
from .errors import EvalCancelled, NodeError, NodeReplError, NodeTimeoutError
from .records import RecordStream, checked_timeout, deadline_after
from .replchannel import (
    DisplayCallback,
    EvalResult,
    FormResult,
    InputCallback,
    OutputCallback,
    _InputFailed,
    _request,
)
from .replinterrupts import RECOVERY_WAIT, InterruptibleRepl

DEFAULT_EVAL_TIMEOUT = 600.0
"""Seconds an evaluation may run before it is interrupted; pass ``timeout=None`` to wait on."""

START_TIMEOUT = 15.0
"""Seconds a fresh REPL has to say hello."""

INTERRUPT_WAIT = 1.0
"""Seconds a caller stopped by Ctrl-C waits for its evaluation to be interrupted."""


class ReplLanguage(Protocol):
    """What the channel protocol needs to know about one kind of remote REPL."""

    name: str
    executable: str
    """The command on the node that runs the REPL (named in errors when it is missing)."""

    def command(self) -> str:
        """The remote command line that starts the framed REPL loop on stdin/stdout."""

    def server_command(self, address: str, pid_file: str, key_file: str | None = None) -> str:
        """The remote command line of a REPL server on ``address``; with ``key_file``,
        it serves only clients that send that file's key first."""

    def bridge_command(self, socket_path: str) -> str:
        """The remote command line that joins a channel to a server's Unix socket."""

    def check_input(self, source: str, language: str) -> None:
        """Raise ``IncompleteInputError`` for input the REPL would wait on for ever."""

    def version_command(self) -> str:
        """A remote command that prints the REPL's version, and fails without it."""

    def missing_message(self, where: str, status: int, text: str) -> str:
        """What to do when the node's shell could not find (127) or run (126) the
        REPL's command; ``text`` is what the shell said."""

    def parse_version(self, output: str) -> str | None:
        """The version in ``version_command``'s output."""


class _ReplClosed(NodeError):
    """The REPL was closed before the request was sent: a node may open a new one."""


class Rrepl(InterruptibleRepl):
    """A live remote REPL on one channel (the chapter's RREPL channel).

    ``channel`` is a paramiko ``Channel`` (or anything with ``send``/``recv``/
    ``settimeout``/``close``).  ``interrupter`` stops this REPL's running evaluation
    from outside (a REPL server's client); without one, the interrupt travels on the
    channel itself.  ``alive(timeout, conclusive)`` tells whether the connection still
    answers (``RecordStream``): a wait that hears nothing for ``PROBE_AFTER`` seconds
    asks it.
    """

    def __init__(
        self,
        channel: Any,
        *,
        where: str,
        language: ReplLanguage,
        interrupter: Callable[[Rrepl], None] | None = None,
        alive: Callable[[float, bool], bool] | None = None,
        timeout: float = START_TIMEOUT,
    ) -> None:
        self.language = language
        missing = functools.partial(language.missing_message, where)
        super().__init__(RecordStream(channel, where, alive, missing), where, interrupter)
        self._marks = 0  # m requests sent (each mark is new)
        self._pipeline_thread: int | None = None  # the thread whose Pipeline holds the lock
        deadline = time.monotonic() + timeout
        self.banner = self._stream.skip_banner(deadline)
        tag, payload = self._next_record(deadline, "start")
        if tag != "h":
            self._stream.fail(f"the remote REPL on {where} did not start (got {tag!r} first)")
        pid, version, client = payload.decode().split("\n")
        self.pid = int(pid)
        self.version = version
        self.client_id = int(client)

    # -- evaluation -------------------------------------------------------------

    def eval(
        self,
        source: str,
        *,
        timeout: float | None = DEFAULT_EVAL_TIMEOUT,
        on_output: OutputCallback | None = None,
        on_form: Callable[[FormResult], None] | None = None,
        on_display: DisplayCallback | None = None,
        on_input: InputCallback | None = None,
        attachment: bytes | None = None,
        quiet: bool = False,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> EvalResult:
        """Evaluate every form of ``source`` as if typed at the REPL; the four values
        come from the last form.  ``NodeReplError`` if the code fails, ``NodeError`` if
        the REPL or its connection does.  ``attachment`` travels as raw bytes beside
        the source (see ``attachment-list`` in ``(sshdist packing)``).  ``quiet`` evaluations leave
        the value history alone (for completion and the like): their numbers are 0.

        ``on_display`` receives each rich output the code sends, in order with
        ``on_output``; they are also in the result's ``displays``.  With ``on_input``,
        code that reads its current input port asks it for a line (None: the end of
        the input); without it, such reads get the end of file at once.  If
        ``on_input`` raises, the evaluation is interrupted and ``NodeReplError``
        (key ``input-callback``) says why; Ctrl-C there interrupts as it does anywhere.

        ``timeout`` bounds the whole call, waiting for an earlier evaluation included:
        past it the evaluation is interrupted in the background and the caller gets
        ``NodeTimeoutError`` at once.  ``deadline`` (a ``time.monotonic()`` instant)
        replaces it for a caller that spent part of its ``timeout`` already.  Once
        ``cancel`` is set the caller stops waiting (``EvalCancelled``, within 50 ms) and
        the evaluation is interrupted in the background, as after a timeout.

        On the main thread a Ctrl-C sets the cancel (``ctrlc``) rather than raising
        wherever the thread is (inside paramiko it could leave a lock held): the
        caller gets its ``KeyboardInterrupt`` once the evaluation is interrupted."""
        with CtrlCCancels(cancel) as ctrl_c:
            try:
                return self._eval(
                    source,
                    checked_timeout(timeout),
                    (on_output, on_form, on_display, ctrl_c.raising(on_input)),
                    attachment,
                    quiet,
                    deadline,
                    ctrl_c.event,
                )
            except EvalCancelled:
                if not ctrl_c.hit:
                    raise
                self.wait_settled(INTERRUPT_WAIT)  # as when Ctrl-C raised in the reader
        raise KeyboardInterrupt

    def _eval(
        self,
        source: str,
        timeout: float | None,
        callbacks: tuple[
            OutputCallback | None,
            Callable[[FormResult], None] | None,
            DisplayCallback | None,
            InputCallback | None,
        ],
        attachment: bytes | None,
        quiet: bool,
        deadline: float | None,
        cancel: threading.Event | None,
    ) -> EvalResult:
        """``eval`` itself, its callbacks (output, form, display, input) together."""
        on_output, on_form, on_display, on_input = callbacks
        self.language.check_input(source, self.repl_language)
        if self._pipeline_thread == threading.get_ident():
            raise NodeError(
                f"{self.where} is holding chunks of a distributed call sent ahead, for this "
                "very thread (an on_event callback, say): evaluate on it from another "
                "thread, which gets in between chunks, or after the call"
            )
        if deadline is None:
            deadline = deadline_after(timeout)
        # Free (nearly always): taken without working out a wait.
        free = self._lock.acquire(False)
        if not (free or self._acquire(deadline, cancel)):
            state = "stopping an abandoned evaluation" if self.recovering else "evaluating"
            raise NodeTimeoutError(
                f"{self.where} stayed busy ({state}) for the whole {timeout:g} s allowed"
            )
        owner = True
        try:
            if self.broken:
                raise _ReplClosed(f"the REPL on {self.where} is closed; open a new one")
            if self._answers_due or self._acks_due:
                self._settle(deadline)
            if cancel is not None and cancel.is_set():  # before a byte went out
                raise EvalCancelled(
                    f"the evaluation on {self.where} was cancelled before it was sent"
                )
            request = _request(source, attachment, quiet)
            if on_input is not None:
                request = b"w0\n" + request
            self._answers_due += 1
            try:
                self._stream.send(request, deadline, "sending the request")
            except NodeTimeoutError:
                raise
            except NodeError as exc:  # nothing was evaluated: a node may open a new REPL
                raise _ReplClosed(str(exc)) from None
            except BaseException:  # Ctrl-C: the request went out whole; stop it
                owner = False
                self._abandon(wait=1.0)
                raise
            self._stream.cancel = cancel
            try:
                return self._read_answer(
                    deadline, on_output, on_form, on_display, on_input, quiet=quiet
                )
            except _InputFailed as failed:
                owner = False
                outcome = self._abandon(wait=1.0)
                cause = failed.__cause__
                raise NodeReplError(
                    f"reading input failed ({type(cause).__name__}: {cause}); {outcome}",
                    key="input-callback",
                    node=self.where,
                ) from cause
            except EvalCancelled:
                owner = False
                self._abandon(wait=0)
                raise
            except NodeTimeoutError:
                owner = False
                outcome = self._abandon(wait=0.5)
                raise NodeTimeoutError(
                    f"{self.where} did not finish the evaluation within {timeout:g} s; {outcome}"
                ) from None
            except (NodeError, NodeReplError):
                raise  # the connection broke, or the answer was read to its end
            except BaseException:
                # Ctrl-C, or a callback of the caller's failed: the answer is still
                # coming, and the next evaluation must not read it as its own.
                owner = False
                self._abandon(wait=1.0)
                raise
        finally:
            self._stream.cancel = None
            if owner:
                self._lock.release()

    @property
    def pipelines(self) -> bool:
        """Whether requests may be sent ahead of the answers (``pipeline``): an
        in-band interrupt cancels the waiting ones too; a REPL server's client is
        interrupted over another connection, which would leave them to run."""
        return self._interrupter is None

    def take_for_pipeline(self, deadline: float | None, cancel: threading.Event | None) -> None:
        """Take the REPL, settled, for a ``pipeline.Pipeline`` on this thread (which lets
        it go); ``NodeTimeoutError`` if it stays busy past ``deadline``."""
        if not self._acquire(deadline, cancel):
            raise NodeTimeoutError(f"{self.where} stayed busy for the whole time allowed")
        try:
            if self.broken:
                raise _ReplClosed(f"the REPL on {self.where} is closed; open a new one")
            if self._answers_due or self._acks_due:
                self._settle(deadline)
        except BaseException:
            self._lock.release()
            raise
        self._pipeline_thread = threading.get_ident()

    def _settle(self, deadline: float | None) -> None:
        """An earlier answer was left unread (a caller gave up on it): read it to its
        end now, or give the REPL up; a request sent over it would be read as its."""
        try:
            self._resync(deadline if deadline is not None else deadline_after(RECOVERY_WAIT))
        except Exception as exc:  # noqa: BLE001 - the REPL cannot be trusted either way
            self._stream.lost = self._stream.lost or f"an earlier answer never ended ({exc})"
            self.close()
            raise _ReplClosed(f"the REPL on {self.where} was out of step; open a new one") from None

    def skip_to_prompt(self, timeout: float = 5.0) -> None:
        """Read and drop records until the REPL shows its prompt, ready for input
        (``rrepl-skip-to-prompt``), past answers to requests sent by hand on the
        channel: an m request goes after them and its m record is the prompt, so an
        idle REPL answers at once.  ``NodeTimeoutError`` if what was sent by hand runs
        longer than ``timeout``: the REPL stays in step (the next evaluation waits for
        it; ``interrupt()`` stops it)."""
        deadline = deadline_after(timeout)
        if not self._acquire(deadline, None):
            raise NodeTimeoutError(f"{self.where} stayed busy for the whole {timeout:g} s allowed")
        try:
            if self.broken:
                raise NodeError(f"the REPL on {self.where} is closed; open a new one")
            if self._mark is None:
                self._marks += 1
                self._mark = b"%d" % self._marks
                self._answers_due += 1  # the m record ends the wait, as a p would
                self._stream.send(b"m%d\n" % len(self._mark) + self._mark, deadline, "asking")
            try:
                self._resync(deadline)
            except NodeTimeoutError:
                raise NodeTimeoutError(
                    f"{self.where} did not show its prompt within {timeout:g} s: what was "
                    "sent to it still runs (interrupt() stops it; the next evaluation waits "
                    "for it)"
                ) from None
        finally:
            self._lock.release()

    def __repr__(self) -> str:
        state = "closed" if self.broken else f"pid {self.pid}"
        return f"#<rrepl {self.where} {state}>"


def rrepl_eval(rrepl: Rrepl, expr: str, **options: Any) -> EvalResult:
    """Evaluate ``expr`` on an open RREPL channel (``rrepl-eval``): four values, or
    ``NodeReplError`` / ``NodeError``."""
    try:
        return rrepl.eval(expr, **options)
    except _ReplClosed as exc:  # a node would open a new REPL; a channel has none
        raise NodeError(str(exc)) from None


def rrepl_skip_to_prompt(rrepl: Rrepl, timeout: float = 5.0) -> None:
    """``rrepl-skip-to-prompt``: read until the REPL waits for input; ``NodeError`` on failure."""
    rrepl.skip_to_prompt(timeout)
