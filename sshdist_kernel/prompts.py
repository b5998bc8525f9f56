"""Who answers a login's questions (a one-time code, a password), and on which thread.

OpenSSH asks on the terminal; a notebook asks through the kernel's stdin channel
(``input_request``, a password field), which ipykernel reaches through ``getpass`` and
``input`` while a cell runs.  ``ask_person`` does whichever applies when it is called.
Many nodes connect on threads of their own, and a question must be asked on the
caller's thread (that is where a notebook's cell and a terminal's Ctrl-C are):
``PromptRelay`` carries the questions there, one at a time.  Answers are never kept.
"""

from __future__ import annotations

import builtins
import getpass
import os
import queue
import threading
from typing import Any

from .sshconfig import Prompt

_TERMINAL_GETPASS = tuple(
    f for f in (getattr(getpass, n, None) for n in ("unix_getpass", "win_getpass")) if f
)


class PromptUnavailable(Exception):
    """A login needs an answer and nobody can give one here (no terminal, no notebook
    front end that takes input, BatchMode).  ``advice`` says what to do instead, where
    the asker knows better than the general advice."""

    def __init__(self, why: str, advice: str | None = None) -> None:
        super().__init__(why)
        self.advice = advice


def _has_terminal() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def ask_person(text: str, echo: bool) -> str:
    """Ask the person at hand, as ``ssh`` would: the kernel's front end while a notebook
    cell runs (ipykernel puts its own ``getpass`` and ``input`` in place then), else
    the terminal.  ``PromptUnavailable`` when there is neither."""
    in_kernel = getpass.getpass not in _TERMINAL_GETPASS
    if not in_kernel and not _has_terminal():
        raise PromptUnavailable("there is no terminal or notebook to ask in")
    try:
        return builtins.input(text) if echo else getpass.getpass(text)
    except EOFError:
        raise PromptUnavailable("the input ended before an answer") from None
    except Exception as exc:  # ipykernel's StdinNotImplementedError, by name: no import
        if type(exc).__name__ == "StdinNotImplementedError":
            raise PromptUnavailable("this front end does not take input") from None
        raise


class _Question:
    __slots__ = ("text", "echo", "answer", "error", "done")

    def __init__(self, text: str, echo: bool) -> None:
        self.text, self.echo = text, echo
        self.answer: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()


_FINISHED = object()


class PromptRelay:
    """Questions from connecting threads, asked one at a time on the thread that made
    the relay, in its ``serve``.  After ``serve`` (a reconnect later on) ``ask`` asks
    directly."""

    def __init__(self, prompt: Prompt | None) -> None:
        self.prompt = prompt
        self._questions: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Questions are kept for the thread that made the relay until its serve ends.
        self._serving: int | None = threading.get_ident()
        self._lock = threading.Lock()  # one question at a time when asked directly
        self._interrupted = False

    def ask(self, text: str, echo: bool) -> str:
        if self.prompt is None:
            raise PromptUnavailable("no prompt was given")
        if self._interrupted:
            raise PromptUnavailable("the call that asked was interrupted")
        serving = self._serving
        if serving is None or serving == threading.get_ident():
            with self._lock:
                return self.prompt(text, echo)
        question = _Question(text, echo)
        self._questions.put(question)
        while not question.done.wait(1.0):
            if self._interrupted:  # put just after the queue was emptied for good
                raise PromptUnavailable("the call that asked was interrupted")
        if question.error is not None:
            raise question.error
        return question.answer  # as the prompt gave it: sshauth names a None or a non-str

    def finished(self) -> None:
        """A worker's last word (``serve`` counts them): it asks nothing more."""
        self._questions.put(_FINISHED)

    def serve(self, workers: int) -> None:
        """Answer questions on this thread until each of ``workers`` has said it
        ``finished``; a Ctrl-C here is raised here, and the waiting workers hear that
        nobody answers."""
        try:
            while workers > 0:
                item = self._questions.get()
                if item is _FINISHED:
                    workers -= 1
                    continue
                try:
                    with self._lock:
                        item.answer = self.prompt(item.text, item.echo)
                except Exception as exc:
                    item.error = exc
                except BaseException:  # Ctrl-C: raised here, below
                    item.error = PromptUnavailable("the question was interrupted")
                    raise
                finally:
                    item.done.set()
        except BaseException:
            self._interrupted = True
            raise
        finally:
            self._stop_serving()

    def interrupted(self) -> None:
        """The call was interrupted, perhaps before ``serve`` ran: questions waiting and
        to come are answered 'nobody' (else their workers wait for ever)."""
        self._interrupted = True
        self._stop_serving()

    def _stop_serving(self) -> None:
        self._serving = None
        while True:  # questions that arrive after an interrupt are answered 'nobody'
            try:
                item = self._questions.get_nowait()
            except queue.Empty:
                break
            if item is not _FINISHED:
                item.error = PromptUnavailable("the call that asked was interrupted")
                item.done.set()
