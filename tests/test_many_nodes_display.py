"""What the magics show for hundreds of nodes: the progress widget's grid of squares,
the node table's host lists (a row per node for a few)."""

from __future__ import annotations

import re
from types import SimpleNamespace

from sshdist_magics.display import NodeTable, Progress
from sshdist_magics.progressview import ROWS_UP_TO, ProgressView, node_grid


def progress_of(count: int) -> tuple[Progress, list]:
    # The display needs only the nodes' names: it draws what the call's events said.
    nodes = [SimpleNamespace(name=f"cn{i:03}") for i in range(count)]
    return Progress("dist_map", nodes, 1000, terminal=False), nodes  # type: ignore[arg-type]


def test_a_few_nodes_have_a_row_each() -> None:
    progress, nodes = progress_of(ROWS_UP_TO)
    view = ProgressView("dist_map", 1000)
    view.update(progress)
    assert len(view.rows.children) == ROWS_UP_TO and view.grid is None


def test_many_nodes_are_a_grid_of_squares_counted_by_state() -> None:
    progress, nodes = progress_of(300)
    rows = [progress.rows[id(n)] for n in nodes]
    for i, row in enumerate(rows[:200]):
        row.starts(i, 3)
    for i, row in enumerate(rows[:100]):
        row.finishes(i, 3)
    rows[5].failed = True
    rows[150].slow = True
    view = ProgressView("dist_map", 1000)
    view.update(progress)
    assert view.rows.children == (view.grid,)  # no widget per node
    shown = view.grid.value
    assert "300 nodes: " in shown
    counts = dict((state, int(n)) for n, state in re.findall(r"</span> (\d+) (\w+)", shown))
    assert counts == {"running": 99, "done": 99, "slow": 1, "failed": 1, "waiting": 100}
    squares = re.findall(r'<span title="([^"]*)" style="display:inline-block', shown)
    assert len(squares) == 300
    assert squares[0] == "cn000: 3 items, finished job 0"
    assert squares[299] == "cn299: 0 items, waiting"
    # The final state is drawn at once, whenever the last redraw was.
    rows[299].starts(400, 1)
    rows[299].finishes(400, 1)
    view.update(progress, final="done")
    assert "cn299: 1 item, finished job 400" in view.grid.value


def test_the_grid_of_an_ended_call_says_which_nodes_were_not_needed_or_stopped() -> None:
    progress, nodes = progress_of(20)
    rows = [progress.rows[id(n)] for n in nodes]
    rows[0].starts(0, 3)
    rows[0].finishes(0, 3)
    rows[1].starts(1, 3)  # still running when the call is stopped
    progress.close("stopped", say=False)
    shown = node_grid(rows)
    counts = dict(
        (state, int(n)) for n, state in re.findall(r"</span> (\d+) ([\w ]+?)(?:,|<)", shown)
    )
    assert counts == {"done": 1, "stopped": 1, "not needed": 18}


def test_the_node_table_of_many_nodes_is_a_host_list_per_guile_and_the_failures() -> None:
    up = [SimpleNamespace(name=f"cn{i:03}", version="3.0.8") for i in range(1, 301)]
    up[9].version = "2.2.7"
    failed = {f"cn{i:03}": f"cn{i:03} refused the connection" for i in range(301, 321)}
    rows = NodeTable(up, 12.5, failed).rows()  # type: ignore[arg-type]
    assert rows[0] == "300 of 320 node(s) ready in 12.50 s; 20 host(s) failed"
    assert rows[1] == "  cn[001-009,011-300]: Guile 3.0.8 (299 nodes)"
    assert rows[2] == "  cn010: Guile 2.2.7 (1 node)"
    assert rows[3] == "  cn301        FAILED: cn301 refused the connection"
    assert len(rows) == 3 + 16 + 1
    assert rows[-1] == ("  and 4 more that failed: cn[317-320] (the node list's .failed says why)")
    # None came up: there is no node list to look in.
    nothing = NodeTable([], 3.0, failed).rows()
    assert nothing[-1] == "  and 4 more that failed: cn[317-320]"
    # A few nodes: a row each, where it is, its state and its Guile.
    session = SimpleNamespace(user="u", host="10.0.0.1", port=22)
    three = [
        SimpleNamespace(name=n.name, version=n.version, session=session, repl_port=None,
                        closed=False, ready=True)
        for n in up[:3]
    ]  # fmt: skip
    few = NodeTable(three, 1.0).rows()  # type: ignore[arg-type]
    assert len(few) == 4
    assert few[1].split() == ["cn001", "u@10.0.0.1:22", "ready", "Guile", "3.0.8"]
