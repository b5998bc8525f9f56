"""A call's rows as its events make them: each node's bar of its own share, row text
that stays true while a node holds several chunks, failovers counted by node, and the
static summary an ended call leaves in the notebook."""

from __future__ import annotations

from types import SimpleNamespace

from sshdist_magics.display import Progress
from sshdist_magics.finalview import summary_bundle
from sshdist_magics.progressview import ProgressView

from sshdist_kernel import DistEvent, NodeError


def call_of(names: list[str], total: int) -> tuple[Progress, list]:
    nodes = [SimpleNamespace(name=n) for n in names]
    return Progress("dist_map", nodes, total, terminal=False, say=lambda _: None), nodes  # type: ignore[arg-type]


def event(kind: str, index: int, size: int, node: object, detail: object = None) -> DistEvent:
    return DistEvent(kind, SimpleNamespace(index=index, size=size), node, detail)  # type: ignore[arg-type]


def run_job(progress: Progress, index: int, size: int, node: object) -> None:
    progress.hear(event("start", index, size, node))
    progress.hear(event("done", index, size, node))


def test_a_node_that_finished_its_share_has_a_full_bar_and_the_total_counts_the_call() -> None:
    progress, (a, b, c) = call_of(["node1", "node2", "node3"], 60)
    for i, node in enumerate((a, b, c)):
        run_job(progress, i, 20, node)
    assert [r.fraction for r in progress.rows.values()] == [1.0, 1.0, 1.0]
    view = ProgressView("dist_map", 60)
    view.update(progress, final="done")
    bars = list(view.bars.values())
    assert [(b.value, b.max) for b in bars] == [(20, 20)] * 3
    assert (view.total_bar.value, view.total_bar.max) == (60, 60)
    # Running: the bar is of what it was given so far, done and running.
    progress.hear(event("start", 3, 10, a))
    assert progress.rows[id(a)].fraction == 20 / 30
    view.update(progress)
    assert (bars[0].value, bars[0].max) == (20, 30)
    # Stopped in it: the job stays in its bar, unfinished.
    progress.close("stopped", say=False)
    assert progress.rows[id(a)].fraction == 20 / 30
    assert progress.rows[id(a)].status == "stopped in job 3"


def test_a_node_told_of_its_next_job_still_says_what_it_runs() -> None:
    progress, (a, b) = call_of(["node1", "node2"], 40)
    progress.hear(event("start", 0, 5, a))
    progress.hear(event("start", 1, 5, b))
    progress.hear(event("failed", 1, 5, b, NodeError("gone")))
    progress.hear(event("moved", 4, 5, b, a))
    progress.hear(event("moved", 5, 5, b, a))
    row = progress.rows[id(a)]
    assert row.status == "running job 0 (5 items); next: job 4, from node2; job 5, from node2"
    progress.hear(event("done", 0, 5, a))
    progress.hear(event("start", 4, 5, a))
    assert row.status == "running job 4 (5 items), from node2; next: job 5, from node2"
    # An idle node's next is its next, not something it runs.
    progress2, (c,) = call_of(["node3"], 5)
    progress2._row(c).will_run(7, "a copy: node1 is slow")
    assert progress2.rows[id(c)].status == "next: job 7, a copy: node1 is slow"


def test_a_failed_node_is_one_failover_however_many_chunks_it_gave_back() -> None:
    progress, (a, b, c) = call_of(["node1", "node2", "node3"], 30)
    run_job(progress, 0, 6, b)
    progress.hear(event("start", 1, 4, b))
    progress.hear(event("failed", 1, 4, b, NodeError("Guile was killed")))
    for index, size, to in ((5, 4, a), (6, 3, c), (7, 3, a)):
        progress.hear(event("moved", index, size, b, to))
    assert progress.failovers == 1
    failed = progress.rows[id(b)]
    assert failed.status == "FAILED: jobs 5, 6, 7 moved to node1, node3"
    assert failed.fraction == 6 / 16  # what it finished, of what it was given
    summary = progress.summary()
    assert "on 1 node(s), 1 failover(s) (3 jobs, 10 items moved), in " in summary
    one, (x, y) = call_of(["node1", "node2"], 4)
    one.hear(event("moved", 2, 4, x, y))
    assert one.rows[id(x)].status == "FAILED: job 2 moved to node2"
    assert "1 failover(s) (1 job, 4 items moved)" in one.summary()


def test_the_static_summary_has_a_row_per_node_and_a_text_twin() -> None:
    progress, (a, b, c) = call_of(["node1", "node2", "node3"], 30)
    run_job(progress, 0, 10, a)
    run_job(progress, 1, 10, a)
    run_job(progress, 2, 10, b)
    progress.close("done", say=False)
    bundle = summary_bundle(progress, "done", [])
    text = bundle["text/plain"].splitlines()
    assert text[0].startswith("dist_map: 30 item(s) on 2 node(s), 0 failover(s), in ")
    assert text[1:] == [
        "  node1  20 items in 2 jobs, done",
        "  node2  10 items in 1 job, done",
        "  node3  0 items in 0 jobs, not needed",
    ]
    page = bundle["text/html"]
    assert page.count("<tr>") == 3 and "width:100%" in page and "not needed" in page
    assert "VBox" not in page and "VBox" not in bundle["text/plain"]


def test_the_static_summary_of_many_nodes_is_the_grid_and_a_count_by_state() -> None:
    progress, nodes = call_of([f"cn{i:02}" for i in range(20)], 40)
    for i, node in enumerate(nodes[:10]):
        run_job(progress, i, 4, node)
    progress.close("done", say=False)
    bundle = summary_bundle(progress, "done", [])
    assert bundle["text/plain"].splitlines()[1:] == ["  20 nodes: 10 done, 10 not needed"]
    assert "<tr>" not in bundle["text/html"] and bundle["text/html"].count('title="cn') == 20
