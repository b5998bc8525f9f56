"""The abort after a failed cell begins before its reply is sent, once."""

from __future__ import annotations

from typing import Any

from ipykernel.kernelbase import Kernel

from sshdist_kernel.abortorder import AbortBeforeReply
from sshdist_kernel.kernel import GuileKernel


class Recording:
    """Stands for ipykernel's Kernel: records the aborts asked of it."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def finish_metadata(self, parent: dict, metadata: dict, reply_content: dict) -> dict:
        return {**metadata, "finished": True}

    def _abort_queues(self, subshell_id: str | None = None) -> None:
        self.events.append(("abort", subshell_id))


class Kernelish(AbortBeforeReply, Recording):
    pass


def request(silent: bool = False, stop_on_error: bool = True, subshell: str | None = None) -> dict:
    header = {"msg_type": "execute_request", "subshell_id": subshell}
    return {"header": header, "content": {"silent": silent, "stop_on_error": stop_on_error}}


def reply_then_ipykernel_abort(kernel: Kernelish, parent: dict, status: str) -> list[Any]:
    """What ipykernel's execute_request does: metadata, the reply, then the abort."""
    metadata = kernel.finish_metadata(parent, {}, {"status": status})
    assert metadata["finished"]
    kernel.events.append("reply sent")
    if status == "error" and parent["content"]["stop_on_error"]:
        kernel._abort_queues(parent["header"]["subshell_id"])
    return kernel.events


def test_a_failed_cell_begins_the_abort_before_its_reply_and_only_once() -> None:
    events = reply_then_ipykernel_abort(Kernelish(), request(subshell="s1"), "error")
    assert events == [("abort", "s1"), "reply sent"]


def test_no_abort_for_a_good_cell_a_silent_one_or_without_stop_on_error() -> None:
    assert reply_then_ipykernel_abort(Kernelish(), request(), "ok") == ["reply sent"]
    silent = Kernelish()
    silent.finish_metadata(request(silent=True), {}, {"status": "error"})
    assert silent.events == []
    keep_going = request(stop_on_error=False)
    assert reply_then_ipykernel_abort(Kernelish(), keep_going, "error") == ["reply sent"]


def test_an_abort_asked_otherwise_still_happens() -> None:
    kernel = Kernelish()
    kernel._abort_queues(None)
    kernel._abort_queues("s2")
    assert kernel.events == [("abort", None), ("abort", "s2")]


def test_the_guile_kernel_uses_it_over_ipykernels_own() -> None:
    mro = GuileKernel.__mro__
    assert mro.index(AbortBeforeReply) < mro.index(Kernel)
    # ipykernel still has the two places this relies on, with the same parameters.
    assert "subshell_id" in Kernel._abort_queues.__code__.co_varnames
    assert Kernel.finish_metadata.__code__.co_varnames[:4] == (
        "self",
        "parent",
        "metadata",
        "reply_content",
    )
