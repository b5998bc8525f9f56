"""The prompt relay that asks connecting threads' questions on the caller's thread."""

from __future__ import annotations

import threading

from sshdist_kernel.prompts import PromptRelay


def test_serve_ends_when_its_work_is_done_though_the_last_worker_said_so_early() -> None:
    # A worker says it finished just before its thread ends: serve, woken by that,
    # may still find it alive; nothing more comes, and serve must still end.
    relay = PromptRelay(lambda text, echo: "answer")
    worker_alive = threading.Event()
    worker_alive.set()
    relay.finished()  # the last worker's word, while it still runs
    threading.Timer(0.2, worker_alive.clear).start()  # then it ends
    server = threading.Thread(target=relay.serve, args=(lambda: not worker_alive.is_set(),))
    server.start()
    server.join(10)
    assert not server.is_alive(), "serve waited for ever for a question"


def test_questions_from_workers_are_answered_on_the_serving_thread() -> None:
    asked_on: list[int] = []

    def prompt(text: str, echo: bool) -> str:
        asked_on.append(threading.get_ident())
        return text.upper()

    relay = PromptRelay(prompt)
    answers: list[str] = []
    workers = [
        threading.Thread(target=lambda t=t: (answers.append(relay.ask(t, False)), relay.finished()))
        for t in ("code?", "password?")
    ]
    for w in workers:
        w.start()
    relay.serve(lambda: not any(w.is_alive() for w in workers))
    assert sorted(answers) == ["CODE?", "PASSWORD?"]
    assert asked_on == [threading.get_ident()] * 2
