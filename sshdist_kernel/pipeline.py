"""Requests sent ahead of their answers on one remote REPL: a distributed call keeps a
node's next chunks waiting there, so no round trip is idle time.  The records and the
REPL's state stay ``rrepl``'s; this is the run of requests one caller keeps in flight."""

from __future__ import annotations

import threading

from .errors import EvalCancelled, NodeError, NodeReplError, NodeTimeoutError
from .replchannel import EvalResult, OutputCallback, _request
from .rrepl import Rrepl, _ReplClosed


def open_pipeline(
    rrepl: Rrepl, deadline: float | None, cancel: threading.Event | None = None
) -> Pipeline:
    """Take ``rrepl`` for a run of quiet requests sent ahead of their answers;
    ``NodeTimeoutError`` if it stays busy past ``deadline``."""
    rrepl.take_for_pipeline(deadline, cancel)
    return Pipeline(rrepl)


class Pipeline:
    """Quiet requests sent ahead on one REPL, answered in order: a distributed call
    keeps a node's next chunk waiting there, so no round trip is idle time.  Holds the
    REPL until ``close``; one with answers still due is interrupted then (its waiting
    requests are cancelled) and settles in the background, as an abandoned evaluation."""

    def __init__(self, rrepl: Rrepl) -> None:
        self.rrepl = rrepl
        self.outstanding = 0  # requests sent whose answer is not read yet
        self.sent = 0
        self.waiting_cancelled = False  # cancel_waiting was sent
        self._open = True

    @property
    def others_waiting(self) -> bool:
        """Another caller waits for the REPL: send no more ahead, let it in between."""
        return self.rrepl._waiters > 0

    def send(self, source: str, attachment: bytes | None, deadline: float | None) -> None:
        """Send one more request.  A REPL found closed before this pipeline sent anything
        raises ``_ReplClosed`` (nothing was evaluated: a node may open a new one)."""
        rrepl = self.rrepl
        rrepl._answers_due += 1
        try:
            rrepl._stream.send(_request(source, attachment, True), deadline, "sending a request")
        except NodeTimeoutError:
            self.close()
            raise
        except NodeError as exc:
            self._release()
            if self.sent == 0:
                raise _ReplClosed(str(exc)) from None
            raise
        except BaseException:  # Ctrl-C: what went out is stopped in the background
            self.outstanding += 1
            self.close()
            raise
        self.outstanding += 1
        self.sent += 1

    def cancel_waiting(self, deadline: float | None) -> None:
        """Let the running request finish and cancel those waiting behind it: each is
        answered at once with ``NodeReplError`` key ``interrupted`` (another caller
        waits for the REPL, and should not wait for all of them)."""
        if self.outstanding > 1 and not self.waiting_cancelled and self.rrepl.pipelines:
            self.waiting_cancelled = True
            self.rrepl._stream.send(b"c0\n", deadline, "cancelling requests sent ahead")

    def answer(
        self,
        deadline: float | None,
        on_output: OutputCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> EvalResult:
        """The oldest request's answer.  ``NodeReplError`` (the code failed) leaves the
        pipeline open; ``EvalCancelled``, ``NodeTimeoutError`` or Ctrl-C close it (the
        node is interrupted), and so does a ``NodeError`` (the REPL broke)."""
        rrepl = self.rrepl
        rrepl._stream.cancel = cancel
        try:
            result = rrepl._read_answer(deadline, on_output, None, None, None, quiet=True)
        except NodeReplError:
            self.outstanding -= 1
            raise
        except NodeTimeoutError:
            outcome = self.close()
            raise NodeTimeoutError(
                f"{rrepl.where} did not finish the evaluation in time; {outcome}"
            ) from None
        except EvalCancelled:
            self.close()
            raise
        except NodeError:  # the connection broke: nothing to interrupt
            self._release()
            raise
        except BaseException:  # Ctrl-C
            self.close()
            raise
        finally:
            rrepl._stream.cancel = None
        self.outstanding -= 1
        return result

    def close(self) -> str:
        """Let the REPL go: at once when every answer is read, else once the node has
        been interrupted (in the background); says how that went."""
        if not self._open:
            return self.rrepl.state_after_abandon()
        if self.outstanding == 0:
            self._release()
            return ""
        self._open = False
        self.rrepl._pipeline_thread = None
        return self.rrepl._abandon(wait=0)  # the recovery releases the lock

    def _release(self) -> None:
        if self._open:
            self._open = False
            self.rrepl._pipeline_thread = None
            self.rrepl._lock.release()
