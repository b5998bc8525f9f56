"""After a cell fails, abort the cells queued behind it, and only those.

ipykernel sends a failed cell's execute reply first and only then begins aborting
the queued execute requests (``stop_on_error``).  A front end that sends the next
cell as soon as it has the error reply (jupyter console, a test client, a person
quick with Shift-Enter on a busy machine) can have that cell queued before the
marker that ends the abort: it is aborted and shows nothing.  Beginning the abort
before the reply goes out means a request sent after the error was known is never
aborted.  Requests that have reached the kernel when a cell fails are aborted; ones
still on their way (a "run all" whose first cell fails within a millisecond) may
escape and run, as with ipykernel itself, which ends the abort the same way.
"""

from __future__ import annotations

from typing import Any


class AbortBeforeReply:
    """A mixin for an ipykernel ``Kernel``: listed before it, it begins the abort when
    the reply's metadata is made (just before the reply is sent), and makes the
    abort ipykernel asks for after sending a no-op."""

    _abort_begun = False

    def finish_metadata(self, parent: dict, metadata: dict, reply_content: dict) -> dict:
        metadata = super().finish_metadata(parent, metadata, reply_content)  # type: ignore[misc]
        content = parent.get("content", {})
        if (
            parent.get("header", {}).get("msg_type") == "execute_request"
            and reply_content.get("status") == "error"
            and not content.get("silent", False)
            and content.get("stop_on_error", True)
        ):
            super()._abort_queues(parent["header"].get("subshell_id"))  # type: ignore[misc]
            self._abort_begun = True
        return metadata

    def _abort_queues(self, subshell_id: str | None = None) -> Any:
        if self._abort_begun:
            self._abort_begun = False
            return None
        return super()._abort_queues(subshell_id)  # type: ignore[misc]
