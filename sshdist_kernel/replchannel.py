"""One REPL channel's conversation, below the REPL's state: requests framed, records read
and counted (answers and interrupt acknowledgements due), and one request's records read
into its result (``EvalResult``), the input it asks for answered on the way.

``rrepl.Rrepl`` builds on it: the lock, evaluations and what becomes of one abandoned.
"""

from __future__ import annotations

import codecs
import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import sexp, unpacking
from .displaydata import DisplayData, display_data
from .errors import NodeError, NodeReplError
from .records import RecordStream, deadline_after

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


class _InputFailed(Exception):
    """The caller's ``on_input`` raised while the code waited for its answer."""


class ReplChannel:
    """The records of one REPL channel (``stream``) as requests and their answers: what
    is still due, the module and language the last answer left, the answers read."""

    def __init__(self, stream: RecordStream, where: str) -> None:
        self.where = where
        self._stream = stream
        self._acks_due = 0  # interrupt requests not yet answered (i records)
        self._answers_due = 0  # requests sent whose p record is not read yet
        self._mark: bytes | None = None  # skip_to_prompt's m request, until its m record
        self._node_seconds: float | None = None  # the last p record's time
        self._stray: list[tuple[str, bytes]] = []  # o, e, d records a quiet request kept
        self.module = "(guile-user)"
        self.repl_language = "scheme"

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
