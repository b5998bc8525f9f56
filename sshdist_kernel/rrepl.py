"""One remote REPL on one channel: start-up, ``rrepl_eval``, errors, interrupt.

The remote side runs ``rrepl.scm``, a loop over Guile's own REPL machinery that
frames everything it writes as ``<TAG><LEN>\\n<bytes>`` records (read by ``records``).
This module is the only place that knows what the records mean; the REPL language
(Guile today) sits behind ``ReplLanguage``, so another REPL is one more class.
"""

from __future__ import annotations

import codecs
import functools
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import sexp, unpacking
from .ctrlc import CtrlCCancels
from .displaydata import DisplayData, display_data
from .errors import EvalCancelled, NodeError, NodeReplError, NodeTimeoutError
from .records import CANCEL_POLL, RecordStream, checked_timeout, deadline_after, seconds_left

DEFAULT_EVAL_TIMEOUT = 600.0
"""Seconds an evaluation may run before it is interrupted; pass ``timeout=None`` to wait on."""

START_TIMEOUT = 15.0
"""Seconds a fresh REPL has to say hello."""

RECOVERY_TRIES = 3
"""Interrupts sent to an abandoned evaluation before its REPL is given up."""

RECOVERY_WAIT = 2.0
"""Seconds an interrupted evaluation has to come back to the prompt, per interrupt."""

INTERRUPT_WAIT = 1.0
"""Seconds a caller stopped by Ctrl-C waits for its evaluation to be interrupted."""

ACK_WAIT = 1.5
"""Seconds the REPL has to acknowledge an interrupt (its pump thread answers at once,
whatever the code does): one that does not is stopped (SIGSTOP) or hung, and is given
up at once, so the next call gets a fresh REPL within its own timeout."""

OutputCallback = Callable[[str, str], None]
"""Called as ``on_output(stream, text)`` with stream ``"stdout"`` or ``"stderr"``."""


DisplayCallback = Callable[[DisplayData], None]
"""Called as ``on_display(display)`` in order with printed output."""

InputCallback = Callable[[str], "str | None"]
"""Called as ``on_input(prompt)`` when the code reads its input: a line, or None for
the end of the input."""


@dataclass(frozen=True)
class FormResult:
    """What one top-level form gave: its values, their numbers ($N) and their printed text."""

    values: tuple[Any, ...]
    eval_nums: tuple[int, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class EvalResult:
    """The chapter's four values (result, eval number, module, language) and what was printed.

    Unpacks as the four values: ``value, num, module, language = rrepl_eval(...)``.
    One value gives a value and an int; several give two tuples; none gives None, None.
    """

    value: Any
    eval_num: int | tuple[int, ...] | None
    module: str
    language: str
    output: str = ""
    error_output: str = ""
    forms: tuple[FormResult, ...] = field(default=(), repr=False)
    displays: tuple[DisplayData, ...] = field(default=(), repr=False)
    node_seconds: float | None = field(default=None, repr=False)
    """How long the node worked on the request, the round trip left out."""

    def __iter__(self) -> Iterator[Any]:
        return iter((self.value, self.eval_num, self.module, self.language))


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


class _NoAck(Exception):
    """The REPL did not acknowledge an interrupt in time: it is given up."""


class _InputFailed(Exception):
    """The caller's ``on_input`` raised while the code waited for its answer."""


class Rrepl:
    """A live remote REPL on one channel (the chapter's RREPL channel).

    ``channel`` is a paramiko ``Channel`` (or anything with ``send``/``recv``/
    ``settimeout``/``close``).  ``interrupter`` stops this REPL's running evaluation
    from outside (a REPL server's client); without one, the interrupt travels on the
    channel itself.  ``alive(timeout)`` tells whether the connection still answers:
    a wait that hears nothing for ``PROBE_AFTER`` seconds asks it.
    """

    def __init__(
        self,
        channel: Any,
        *,
        where: str,
        language: ReplLanguage,
        interrupter: Callable[[Rrepl], None] | None = None,
        alive: Callable[[float], bool] | None = None,
        timeout: float = START_TIMEOUT,
    ) -> None:
        self.where = where
        self.language = language
        missing = functools.partial(language.missing_message, where)
        self._stream = RecordStream(channel, where, alive, missing)
        self._interrupter = interrupter
        self._lock = threading.Lock()  # one evaluation at a time
        self._acks_due = 0  # interrupt requests not yet answered (i records)
        self._answers_due = 0  # requests sent whose p record is not read yet
        self._mark: bytes | None = None  # skip_to_prompt's m request, until its m record
        self._marks = 0  # m requests sent (each mark is new)
        self._waiters = 0  # callers waiting for the lock
        self._pipeline_thread: int | None = None  # the thread whose Pipeline holds the lock
        self._node_seconds: float | None = None  # the last p record's time
        self._settled = threading.Event()  # clear while an abandoned evaluation stops
        self._settled.set()
        self._stray: list[tuple[str, bytes]] = []  # o, e, d records a quiet request kept
        self.module = "(guile-user)"
        self.repl_language = "scheme"
        deadline = time.monotonic() + timeout
        self.banner = self._stream.skip_banner(deadline)
        tag, payload = self._next_record(deadline, "start")
        if tag != "h":
            self._stream.fail(f"the remote REPL on {where} did not start (got {tag!r} first)")
        pid, version, client = payload.decode().split("\n")
        self.pid = int(pid)
        self.version = version
        self.client_id = int(client)

    @property
    def channel(self) -> Any:
        return self._stream.channel

    @property
    def broken(self) -> bool:
        return self._stream.broken

    @property
    def lost(self) -> str | None:
        """Why the REPL had to be given up, if it was."""
        return self._stream.lost

    def _next_record(self, deadline: float | None, doing: str) -> tuple[str, bytes]:
        tag, payload = self._stream.next_record(deadline, doing)
        if tag == "i":  # an interrupt request was handled
            self._acks_due = max(self._acks_due - 1, 0)
        elif tag == "p":  # the request is answered: the module and language it left
            if self._mark is None:  # (else it may be a request sent by hand: not counted)
                self._answers_due = max(self._answers_due - 1, 0)
            module, _, rest = payload.decode("utf-8", "replace").partition("\n")
            language, _, micros = rest.partition("\n")
            self.module, self.repl_language = module, language
            self._node_seconds = int(micros) / 1e6 if micros.isdigit() else None
        elif tag == "m" and payload == self._mark:  # every request before it is answered
            self._mark = None
            self._answers_due = 0
        return tag, payload

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
        the source (see ``attachment-list`` in rrepl.scm).  ``quiet`` evaluations leave
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
                    timeout=timeout,
                    on_output=on_output,
                    on_form=on_form,
                    on_display=on_display,
                    on_input=ctrl_c.raising(on_input),
                    attachment=attachment,
                    quiet=quiet,
                    deadline=deadline,
                    cancel=ctrl_c.event,
                )
            except EvalCancelled:
                if not ctrl_c.hit:
                    raise
                self.wait_settled(INTERRUPT_WAIT)  # as when Ctrl-C raised in the reader
        raise KeyboardInterrupt

    def _eval(
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
        """``eval`` itself."""
        timeout = checked_timeout(timeout)
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

    def let_waiter_in(self, timeout: float) -> None:
        """Just after letting the REPL go: wait up to ``timeout`` seconds until a caller
        that waited for it has taken it (or none waits)."""
        deadline = time.monotonic() + timeout
        while self._waiters and not self._lock.locked() and time.monotonic() < deadline:
            time.sleep(0.0005)

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

    def _acquire(self, deadline: float | None, cancel: threading.Event | None) -> bool:
        """Take the REPL for one evaluation before ``deadline``; ``EvalCancelled`` if
        ``cancel`` is set first."""
        self._waiters += 1  # a pipeline stops sending ahead for it (see Pipeline)
        try:
            if cancel is None:
                left = seconds_left(deadline)
                return self._lock.acquire(timeout=-1 if left is None else left)
            while not cancel.is_set():
                left = seconds_left(deadline)
                if left is not None and left <= 0:
                    return False
                slice_ = CANCEL_POLL if left is None else min(left, CANCEL_POLL)
                if self._lock.acquire(timeout=slice_):
                    return True
            raise EvalCancelled(f"the wait for {self.where} was cancelled before it was free")
        finally:
            self._waiters -= 1

    def _read_answer(
        self, deadline, on_output, on_form, on_display, on_input, quiet=False
    ) -> EvalResult:
        printed = {"o": [], "e": []}
        displays: list[DisplayData] = []
        decoders: dict[str, codecs.IncrementalDecoder] = {}  # made at a stream's first record
        forms: list[FormResult] = []
        values: list[Any] = []
        nums: list[int] = []
        texts: list[str] = []
        error: tuple[str, str] | None = None
        self._stream.take_stderr()  # what came between requests is nobody's
        # What a thread of earlier code printed or showed after its request ended comes
        # before the g record that begins this answer; a quiet request (completion,
        # inspection) keeps it for the next evaluation, rather than losing it.
        waiting, self._stray = ([], self._stray) if quiet else (self._stray, [])
        begun = False
        while True:
            tag, payload = waiting.pop(0) if waiting else self._next_record(deadline, "evaluating")
            if tag == "g":
                begun = True
                continue
            if quiet and not begun and tag in "oed":
                self._stray.append((tag, payload))
                continue
            text = self._stream.take_stderr()
            if text:
                printed["e"].append(text)
                if on_output:
                    on_output("stderr", text)
            if tag in "oe":
                decoder = decoders.get(tag)
                if decoder is None:
                    decoder = decoders[tag] = codecs.getincrementaldecoder("utf-8")("replace")
                text = decoder.decode(payload)
                printed[tag].append(text)
                if on_output and text:
                    on_output("stdout" if tag == "o" else "stderr", text)
            elif tag == "v":
                num, _, text = payload.decode("utf-8", "replace").partition("\n")
                nums.append(int(num))
                texts.append(text)
                values.append(_read_value(text))
            elif tag == "b":
                num, text, value = _unpack_value(payload)
                nums.append(num)
                texts.append(text)
                values.append(value)
            elif tag == "f":
                form = FormResult(tuple(values), tuple(nums), tuple(texts))
                forms.append(form)
                if on_form:
                    on_form(form)
                values, nums, texts = [], [], []
            elif tag == "d":
                shown = display_data(payload)
                displays.append(shown)
                if on_display:
                    on_display(shown)
            elif tag == "r":
                self._answer_input(payload, deadline, on_input)
            elif tag == "x":
                key, _, message = payload.decode("utf-8", "replace").partition("\n")
                error = (key, message.strip())
            elif tag == "p":
                break
            elif tag != "i":
                self._stream.fail(f"the REPL on {self.where} sent an unknown record {tag!r}")
        output = "".join(printed["o"])
        error_output = "".join(printed["e"])
        if error is not None:
            raise NodeReplError(
                error[1], key=error[0], node=self.where, output=output, error_output=error_output
            )
        last = forms[-1] if forms else None
        if last is None or not last.values:
            value, num = None, None
        elif len(last.values) == 1:
            value, num = last.values[0], last.eval_nums[0]
        else:
            value, num = last.values, last.eval_nums
        return EvalResult(
            value,
            num,
            self.module,
            self.repl_language,
            output,
            error_output,
            tuple(forms),
            tuple(displays),
            self._node_seconds,
        )

    def _answer_input(
        self, prompt: bytes, deadline: float | None, on_input: InputCallback | None
    ) -> None:
        """The code waits for a line (an ``r`` record): ask ``on_input`` and send its
        answer, a line ending in a newline, or the end of the input (an empty ``s``)."""
        line = None
        if on_input is not None:
            try:
                line = on_input(prompt.decode("utf-8", "replace"))
            except Exception as exc:  # Ctrl-C (BaseException) goes the usual way
                raise _InputFailed() from exc
            if line is not None and not isinstance(line, str):
                raise _InputFailed() from TypeError(
                    f"on_input must return a string or None, not {type(line).__name__}"
                )
        data = b"" if line is None else (line if line.endswith("\n") else line + "\n").encode()
        self._stream.send(b"s%d\n" % len(data) + data, deadline, "sending input")

    def _resync(self, deadline: float | None) -> None:
        """Read and drop records until the last request is answered and every
        interrupt acknowledged: the REPL then waits for input."""
        while self._answers_due or self._acks_due:
            self._next_record(deadline, "waiting for the prompt")

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

    def _abandon(self, wait: float) -> str:
        """Stop waiting for an evaluation: interrupt it and resynchronise in the
        background (which then owns the lock), waiting ``wait`` seconds for that;
        say how it went."""
        self._stream.cancel = None  # the recovery reads on, whatever the caller cancels
        self._settled.clear()

        def recover() -> None:
            try:
                self._recover()
            finally:
                self._settled.set()
                self._lock.release()

        threading.Thread(target=recover, daemon=True, name=f"sshdist recover {self.where}").start()
        self._settled.wait(wait)
        return self.state_after_abandon()

    @property
    def recovering(self) -> bool:
        """An abandoned evaluation is being interrupted; the REPL is not ready yet."""
        return not self._settled.is_set()

    def wait_settled(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an abandoned evaluation to stop; True
        once none is stopping (the REPL may still have been closed: see ``broken``)."""
        return self._settled.wait(timeout)

    def _recover(self) -> None:
        for attempt in range(RECOVERY_TRIES):
            try:
                self.interrupt()
                if attempt == 0 and self._interrupter is None:
                    self._await_ack()
                self._resync(time.monotonic() + RECOVERY_WAIT)
                return
            except _NoAck:
                self._stream.lost = (
                    f"the REPL on {self.where} did not acknowledge an interrupt within "
                    f"{ACK_WAIT:g} s (its guile stopped or hung)"
                )
                break
            except NodeTimeoutError:
                continue
            except Exception:  # noqa: BLE001 - whatever went wrong, the REPL is given up
                break
        if not self.broken:
            self._stream.lost = self._stream.lost or (
                f"the evaluation on {self.where} did not stop after {RECOVERY_TRIES} interrupts"
            )
            self.close()

    def _await_ack(self) -> None:
        """Read (and drop) records until the interrupts sent are acknowledged; ``_NoAck``
        if that takes over ``ACK_WAIT`` seconds."""
        deadline = time.monotonic() + ACK_WAIT
        try:
            while self._acks_due:
                self._next_record(deadline, "waiting for the interrupt to be acknowledged")
        except NodeTimeoutError:
            raise _NoAck() from None

    def state_after_abandon(self) -> str:
        """What became of an abandoned evaluation, in words for an error message."""
        if self.broken:
            return (
                "its REPL could not be stopped and was closed: the next call starts a fresh "
                "REPL, without the earlier definitions"
            )
        if self.recovering:
            return "it is being interrupted; the next call waits for that"
        return "it was interrupted, and the REPL kept its definitions"

    def interrupt(self) -> None:
        """Stop the running evaluation, as Ctrl-C would."""
        if self.broken:
            return
        if self._interrupter is not None:
            self._interrupter(self)
            return
        self._send_interrupt(self.client_id, deadline_after(RECOVERY_WAIT))

    def interrupt_client(self, client_id: int, timeout: float = 5.0) -> None:
        """Ask the REPL process behind this channel to interrupt another of its clients
        (a REPL server serves several; each has a number)."""
        deadline = deadline_after(timeout)
        self._send_interrupt(client_id, deadline)
        self._resync(deadline)

    def _send_interrupt(self, client_id: int, deadline: float | None) -> None:
        payload = str(int(client_id)).encode()
        self._acks_due += 1  # the REPL answers every i request with one i record
        self._stream.send(b"i%d\n" % len(payload) + payload, deadline, "interrupting")

    def close(self) -> None:
        """Close the channel.  A REPL still evaluating sees its input end and stops
        its whole process group (SIGINT, then SIGTERM, then SIGKILL)."""
        self._stream.close()

    def __repr__(self) -> str:
        state = "closed" if self.broken else f"pid {self.pid}"
        return f"#<rrepl {self.where} {state}>"


def _request(source: str, attachment: bytes | None, quiet: bool) -> bytes:
    """An ``e`` (or ``q``) request, after its ``a`` attachment if it has one."""
    data = source.encode("utf-8")
    request = (b"q%d\n" if quiet else b"e%d\n") % len(data) + data
    if attachment is not None:
        request = b"a%d\n" % len(attachment) + attachment + request
    return request


def _read_value(text: str) -> Any:
    """``sexp.read_value``, with a short way for what most values are: a decimal integer
    short enough for ``int``.  The same value either way."""
    digits = text[1:] if text[:1] == "-" else text
    if digits.isdigit() and digits.isascii() and len(digits) < 4000:
        return int(text)
    return sexp.read_value(text)


def _unpack_value(payload: bytes) -> tuple[int, str, list[Any]]:
    """A ``b`` record: ``N\\nTYPE\\n`` and a list's items as raw little-endian bytes
    (TYPE s64) or packed (TYPE pack, see ``unpacking``); with a text to show for it."""
    first = payload.index(b"\n")
    second = payload.index(b"\n", first + 1)
    kind = payload[first + 1 : second].decode()
    if kind == "pack":
        try:
            packed = unpacking.unpack(payload[second + 1 :])
        except unpacking.PackingError as e:
            raise NodeError(f"the REPL sent a packed value that does not add up: {e}") from None
        return int(payload[:first]), unpacking.preview(packed), packed
    if kind != "s64":
        raise NodeError(f"the REPL sent a value of unknown type {kind!r}")
    items = array("q")
    items.frombytes(payload[second + 1 :])
    if sys.byteorder == "big":
        items.byteswap()
    return int(payload[:first]), f"#<{len(items)} {kind} integers>", items.tolist()


def rrepl_eval(rrepl: Rrepl, expr: str, **options: Any) -> EvalResult:
    """Evaluate ``expr`` on an open RREPL channel (``rrepl-eval``): four values, or
    ``NodeReplError`` / ``NodeError``."""
    return rrepl.eval(expr, **options)


def rrepl_skip_to_prompt(rrepl: Rrepl, timeout: float = 5.0) -> None:
    """``rrepl-skip-to-prompt``: read until the REPL waits for input; ``NodeError`` on failure."""
    rrepl.skip_to_prompt(timeout)
