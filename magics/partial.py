"""What a call that did not finish had made: a stopped or failed call's values are not
lost, ``%dist_result --partial`` gives them (a dict, index -> value), and the magics say
so on standard output when the call ends short."""

from __future__ import annotations

from sshdist_kernel import DistCall


def partial_note(call: DistCall, name: str | None = None) -> str | None:
    """``12 of 30 items were done: %dist_result --partial job gives their values, by
    index``, or None when nothing was done (or everything was)."""
    done = len(call.partial())
    if done == 0 or done == call.total:
        return None
    return (
        f"{done} of {call.total} {call.unit} were done: "
        f"%dist_result --partial{f' {name}' if name else ''} gives their values, by index"
    )


def say_partial(call: DistCall, name: str | None = None) -> None:
    """The note, if any, as a note: on standard output."""
    note = partial_note(call, name)
    if note:
        print(note, flush=True)
