"""The prompt relay that asks connecting threads' questions on the caller's thread."""

from __future__ import annotations

import threading

from sshdist_kernel.prompts import PromptRelay


def test_serve_ends_at_each_workers_last_word_though_its_thread_still_runs() -> None:
    # A worker says it finished just before its thread ends: serve counts the words,
    # not live threads (which it found alive, then waited for ever).
    relay = PromptRelay(lambda text, echo: "answer")
    release = threading.Event()
    worker = threading.Thread(target=lambda: (relay.finished(), release.wait(10)))
    worker.start()
    server = threading.Thread(target=relay.serve, args=(1,))
    server.start()
    server.join(10)
    alive = worker.is_alive()
    release.set()
    worker.join(10)
    assert not server.is_alive(), "serve waited for a worker that had said its last word"
    assert alive  # it ended while the worker still ran


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
    relay.serve(len(workers))
    assert sorted(answers) == ["CODE?", "PASSWORD?"]
    assert asked_on == [threading.get_ident()] * 2
