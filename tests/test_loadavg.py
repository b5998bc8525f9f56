"""``%loadavg`` and its monitor on the real local nodes: the terminal's table, the
notebook's live widget rows, and nodes that stop answering."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from sshdist_magics.loadavg import LoadMonitor, LoadRow, _reason
from sshdist_magics.loadbar import OVER, OVER_TEXT
from sshdist_magics.loadchart import FONT, PLOT, chart, chart_title
from sshdist_magics.loadgrid import load_grid

from sshdist_kernel import Node, NodeError, make_nodes
from sshdist_kernel.localnodes import LocalNodes

from .conftest import wait_until
from .test_magics import ctrl_c_into_the_cell

CORES = os.sysconf("SC_NPROCESSORS_ONLN")  # the local nodes run on this machine
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def ip(local_nodes: LocalNodes) -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "sshdist_magics")
    yield shell


@pytest.fixture
def shell(ip: InteractiveShell, nodes: list[Node]) -> Iterator[InteractiveShell]:
    """The shell with ``lnodes`` (fresh nodes); monitors stopped and names removed after."""
    ip.user_ns["lnodes"] = nodes
    yield ip
    ip.run_line_magic("loadavg", "--stop")
    for name in ("lnodes", "mon"):
        ip.user_ns.pop(name, None)


@pytest.fixture
def notebook(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> InteractiveShell:
    """The shell as the magics see it under a Jupyter kernel (widgets, not text)."""
    monkeypatch.setattr(shell, "kernel", object(), raising=False)
    return shell


def polyline_points(svg: str) -> list[list[tuple[float, float]]]:
    return [
        [tuple(map(float, p.split(","))) for p in points.split()]
        for points in re.findall(r'<polyline points="([^"]*)"', svg)
    ]


def bar_shown(html: str) -> dict[str, object]:
    """What a load bar shows: its number and colour, the blue and orange parts' widths
    (fractions of the bar) and where the cores' mark stands."""
    number = re.search(
        r'class="sshdist-loadbar-number" style="[^"]*color:(#\w+)[^"]*">([^<]*)<', html
    )
    parts = re.findall(
        r'data-left="([\d.]+)" data-width="([\d.]+)" style="[^"]*background:(#\w+)', html
    )
    mark = re.search(r'class="sshdist-loadbar-mark" data-left="([\d.]+)"', html)
    assert number and mark, html
    return {
        "number": number[2],
        "colour": number[1],
        "parts": [(float(left), float(width), fill) for left, width, fill in parts],
        "filled": sum(float(width) for _, width, _ in parts),
        "past cores": sum(float(w) for _, w, fill in parts if fill == OVER),
        "mark": float(mark[1]),
        "hover": re.search(r'title="([^"]*)"', html)[1],
    }


def row_widgets(mon: LoadMonitor, i: int) -> dict[str, object]:
    """One node's row of the dashboard, by what each widget shows."""
    row = mon.widget().children[2 + i].children  # after the title and the column heads
    name, state, version, cores, one, five, fifteen, graph, seen = row
    return {"name": name, "state": state, "version": version, "cores": cores} | {
        "bars": [one, five, fifteen],
        "chart": graph,
        "seen": seen,
    }


def test_in_a_terminal_a_table_shows_the_load_as_numbers_and_against_the_cores(
    shell, capsys
) -> None:
    assert shell.run_cell("%loadavg lnodes").result is None
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:11] == [
        "node", "state", "guile", "cores", "1", "min", "5", "min", "15", "min", "read",
    ]  # fmt: skip
    assert len(lines) == 4
    for name, line in zip(["node1", "node2", "node3"], lines[1:], strict=True):
        fields = line.split()
        assert fields[:2] == [name, "running"] and fields[2].startswith("3.")
        assert int(fields[3]) == CORES
        for load, share in zip(fields[4:10:2], fields[5:10:2], strict=True):
            assert re.fullmatch(r"\d+\.\d\d", load)
            over = "!" if float(load) > CORES else ""  # past the cores: marked
            assert share == f"{float(load) / CORES:.0%}{over}"
        assert re.fullmatch(r"\d\d:\d\d:\d\d", fields[10])
        assert re.fullmatch(r"[▁▂▃▄▅▆▇█]", fields[11])  # one sample so far
    assert "LoadMonitor" not in "\n".join(lines)


def test_minus_o_stores_the_monitor_and_showing_it_again_reads_as_the_table(shell, capsys) -> None:
    assert shell.run_cell("%loadavg -o mon lnodes").result is None
    mon = shell.user_ns["mon"]
    assert repr(mon) == "<LoadMonitor of node1, node2, node3, every 2 s, not refreshing>"
    capsys.readouterr()
    mon.poll()
    shell.run_cell("mon")
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("node ") and "<LoadMonitor" not in out
    assert [len(r.history) for r in mon.rows] == [2, 2, 2]


def test_bad_input_is_a_clear_error(shell) -> None:
    assert "usage: %loadavg" in str(shell.run_cell("%loadavg").error_in_exec)
    for every in ("0", "-1"):
        error = shell.run_cell(f"%loadavg --every {every} lnodes").error_in_exec
        assert f"--every: the seconds between refreshes must be above 0, not {every}" in str(error)
    for every in ("inf", "100000"):
        error = shell.run_cell(f"%loadavg --every {every} lnodes").error_in_exec
        assert (
            f"--every: the seconds between refreshes must be at most 86400 (a day), not {every}"
            in str(error)
        )
    error = shell.run_cell("%loadavg --every nan lnodes").error_in_exec
    assert "--every: the seconds between refreshes must be above 0, not nan" in str(error)
    assert "'nodez' does not name nodes" in str(shell.run_cell("%loadavg nodez").error_in_exec)


def test_in_a_notebook_the_magic_shows_one_live_dashboard_and_stop_ends_it(notebook) -> None:
    with capture_output() as shown:
        result = notebook.run_cell("%loadavg --every 0.2 -o mon lnodes")
    assert result.result is None and result.error_in_exec is None
    mon = notebook.user_ns["mon"]
    assert [o.data[WIDGET]["model_id"] for o in shown.outputs] == [mon.widget().model_id]
    assert "<LoadMonitor" not in shown.stdout
    assert repr(mon).endswith("every 0.2 s, refreshing>")
    # It refreshes in place: the same chart widget draws a longer line.
    graph = row_widgets(mon, 0)["chart"]
    # (0.8 s alone; over 10 s once, in a whole-suite run beside an extra busy loop: cause
    # not found, as eight busy loops alone leave it at five samples a second)
    try:
        wait_until(lambda: len(polyline_points(graph.value)[0]) >= 4, 30)
    except pytest.fail.Exception:
        rows = [(r.node.name, len(r.history), r.running, r.problem) for r in mon.rows]
        pytest.fail(f"four samples not drawn in 30 s: {rows}, reading {mon.reading()}")
    # ``mon`` in a later cell shows another view of the same live widgets.
    data, _ = notebook.display_formatter.format(mon)
    assert data[WIDGET]["model_id"] == mon.widget().model_id
    notebook.run_line_magic("loadavg", "--stop")
    wait_until(lambda: not any(t.is_alive() for t in mon._threads), what="the watchers to end")
    assert repr(mon).endswith("not refreshing>")
    assert "not refreshing" in mon.widget().children[0].value


def test_the_widget_rows_show_numbers_cores_bars_and_a_chart_of_the_history(nodes) -> None:
    mon = LoadMonitor(nodes[:2], every=1)
    mon.poll()
    mon.poll()
    for i, r in enumerate(mon.rows):
        row = row_widgets(mon, i)
        assert row["name"].value == f"<b>node{i + 1}</b>" and ">running<" in row["state"].value
        assert row["version"].value.startswith("3.") and row["cores"].value == str(CORES)
        bars = [bar_shown(b.value) for b in row["bars"]]
        assert [b["number"] for b in bars] == [f"{v:.2f}" for v in r.load]
        if max(r.load) <= 2 * CORES:  # the bars run to twice the cores: the mark halfway
            assert [b["mark"] for b in bars] == [0.5] * 3
        assert all(0 < b["filled"] <= 1 for b in bars if float(b["number"]) > 0)
        svg = row["chart"].value
        assert svg.startswith("<svg") and "stopped" not in svg
        (line,) = polyline_points(svg)
        assert len(line) == 2 == len(r.history)
        assert re.search(f'fill="#ef6c00"[^>]*>{CORES}</text>', svg)  # marks the cores' line
    # A burst on one node: its 1-minute bar goes past the mark, in orange; the bars
    # of its row run to 4x the cores now (3x is past 2x), the mark a quarter along.
    r = mon.rows[0]
    r.answered((3 * CORES, 0.25, 0.5))
    mon._draw(r)
    one, five, fifteen = (bar_shown(b.value) for b in row_widgets(mon, 0)["bars"])
    assert [one["number"], five["number"], fifteen["number"]] == [
        f"{3 * CORES:.2f}",
        "0.25",
        "0.50",
    ]
    assert one["mark"] == five["mark"] == 0.25
    assert one["filled"] == pytest.approx(0.75) and one["past cores"] == pytest.approx(0.5)
    assert one["colour"] == OVER_TEXT and five["colour"] != OVER_TEXT
    assert five["past cores"] == 0 and five["filled"] == pytest.approx(0.25 / (4 * CORES), abs=1e-4)
    # The other nodes' rows keep their own scale (the machine's real load permitting).
    if max(mon.rows[1].load) <= 2 * CORES:
        assert all(bar_shown(b.value)["mark"] == 0.5 for b in row_widgets(mon, 1)["bars"])


def draw_load(mon: LoadMonitor, i: int, load: tuple[float, float, float]) -> list[dict]:
    """Feed one node's row a reading and return its bars as drawn."""
    row = mon.rows[i]
    row.cores = 2
    row.answered(load)
    mon._draw(row)
    return [bar_shown(b.value) for b in row_widgets(mon, i)["bars"]]


def test_a_load_past_the_cores_shows_how_far_past(nodes) -> None:
    mon = LoadMonitor(nodes[:1], every=1)
    mon.widget()
    light, just_over, far_over = (draw_load(mon, 0, (v, 1.0, 1.0))[0] for v in (1.5, 3.3, 12.7))
    # Below the cores: blue only, short of the mark, the number in its plain colour.
    assert light["past cores"] == 0 and light["filled"] == pytest.approx(1.5 / 4, abs=1e-4)
    assert light["colour"] != OVER_TEXT and "overloaded" not in light["hover"]
    # 3.3 and 12.7 on 2 cores: both orange past the mark, but not alike.
    assert just_over["colour"] == far_over["colour"] == OVER_TEXT
    assert just_over["mark"] == 0.5  # on a bar to 4 (twice the cores)
    assert far_over["mark"] == 0.125  # on a bar to 16: 12.7 is past 8
    assert just_over["past cores"] == pytest.approx((3.3 - 2) / 4, abs=1e-4)
    assert far_over["past cores"] == pytest.approx((12.7 - 2) / 16, abs=1e-4)
    assert far_over["past cores"] - just_over["past cores"] > 0.3  # a third of the bar
    assert "x1.6 the cores: overloaded" in just_over["hover"]
    assert "x6.3 the cores: overloaded" in far_over["hover"]
    # Exactly at the cores is full, not over.
    at = draw_load(mon, 0, (2.0, 1.0, 1.0))[0]
    assert at["filled"] == pytest.approx(0.5) and at["past cores"] == 0
    assert at["colour"] != OVER_TEXT
    # The terminal's table says the same in plain text: a share and a ``!`` past the cores.
    table = mon.text().splitlines()
    assert table[0].endswith("; a load past the cores has a !")
    assert table[1].split()[4:10] == ["2.00", "100%", "1.00", "50%", "1.00", "50%"]
    draw_load(mon, 0, (12.7, 3.3, 1.0))
    assert mon.text().splitlines()[1].split()[4:10] == [
        "12.70", "635%!", "3.30", "165%!", "1.00", "50%",
    ]  # fmt: skip
    # A stopped node's bars are grey, its overload still marked by the number's place.
    mon.rows[0].running = False
    mon._draw(mon.rows[0])
    stopped = bar_shown(row_widgets(mon, 0)["bars"][0].value)
    assert stopped["colour"] != OVER_TEXT and OVER not in [f for *_, f in stopped["parts"]]


def test_the_chart_column_says_the_span_it_draws(nodes) -> None:
    for every, span in ((1, "last 1 min"), (2, "last 2 min"), (0.2, "last 12 s")):
        mon = LoadMonitor(nodes[:1], every=every)
        heads = [h.value for h in mon.widget().children[1].children]
        assert span in heads[-2] and heads[-2].endswith(f">{chart_title(every)}</span>")
        axis = "−" + span.removeprefix("last ")
        assert f">{axis}</text>" in chart([1.0], cores=2, every=every)


def test_the_chart_scales_to_the_cores_and_breaks_where_the_node_was_away() -> None:
    svg = chart([0.0, 1.0, 2.0], cores=2, every=1.0)
    ((_, zero), (_, one), (_, two)) = polyline_points(svg)[0]
    assert zero - one == pytest.approx(one - two, abs=0.1)  # a straight scale from 0
    assert f'y1="{two:.1f}"' in svg  # 2.0 sits on the dashed line at the 2 cores
    assert 'fill="none"' in svg  # a line, never a filled (black) shape
    assert ">6</text>" in chart([5.2], cores=4, every=1.0)  # past the cores, the scale grows
    first, second = polyline_points(chart([0.5, 1.0, None, 2.0], cores=2, every=1.0))
    assert len(first) == 2 and len(second) == 1 and first[-1][0] < second[0][0]
    assert "stopped: gone" in chart([1.0], cores=2, every=1.0, stopped="stopped: gone")


def test_the_chart_is_drawn_against_time() -> None:
    # Readings 1 s apart, then 10 s without any, then one now: a gap as long as that.
    ages = [14.0, 13.0, 12.0, 11.0, 1.0, 0.0]
    first, second = polyline_points(chart([1.0] * 6, cores=2, every=1.0, ages=ages))
    xs = [x for x, _ in first + second]
    assert len(first) == 4 and len(second) == 2
    x0, x1, _, _ = PLOT
    per_second = (x1 - x0) / 60  # the plot's width over its 60 s
    assert xs[1] - xs[0] == pytest.approx(per_second, abs=0.1)
    assert xs[4] - xs[3] == pytest.approx(10 * per_second, abs=0.1)
    assert xs[-1] == pytest.approx(x1)  # now, at the right
    # Readings older than the chart's minute have left it.
    (kept,) = polyline_points(chart([1.0, 2.0, 3.0], cores=2, every=1.0, ages=[90.0, 1.0, 0.0]))
    assert len(kept) == 2


def test_a_row_knows_when_each_sample_was_taken(nodes) -> None:
    row = LoadRow(nodes[0])
    row.answered((0.5, 0.5, 0.5))
    row.running = False  # it failed, and is back:
    row.answered((1.0, 1.0, 1.0))
    assert list(row.history) == [0.5, None, 1.0]
    ages = row.ages()
    assert len(ages) == 3 and ages[0] >= ages[1] >= ages[2] >= 0


def test_slow_reads_on_a_busy_machine_keep_the_line_whole(nodes) -> None:
    """Every read answered, a second apart at a 0.2 s refresh (each read took most of
    its 2 s bound on an overloaded machine): one line, not four dots as if the node had
    been away (the line broke after 2.5 refreshes, and the test below failed under load)."""
    mon = LoadMonitor(nodes[:1], every=0.2)
    mon.poll()
    mon.widget()
    row = mon.rows[0]
    row.history.clear()
    row.times.clear()
    now = time.monotonic()
    for i, load in enumerate((0.5, 0.7, 0.9, 1.1)):
        row.history.append(load)
        row.times.append(now - 3 + i)
    mon._draw(row)
    assert [len(p) for p in polyline_points(row_widgets(mon, 0)["chart"].value)] == [4]


def _sshd_of(node: Node) -> int:
    """The sshd process serving the node's connection: the parent of its Guile."""
    stat = Path(f"/proc/{node.rrepl.pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_a_node_that_stops_answering_turns_stopped_keeps_its_history_and_comes_back(
    nodes, stopped
) -> None:
    mon = LoadMonitor(nodes, every=0.2)
    mon.poll()
    mon.widget()
    mon.start()
    try:
        wait_until(lambda: all(len(r.history) >= 3 for r in mon.rows), what="three samples")
        sshd = _sshd_of(nodes[2])
        os.kill(sshd, signal.SIGSTOP)
        stopped.append(sshd)
        node3 = mon.rows[2]
        wait_until(lambda: not node3.running, timeout=4 * mon.timeout + 2, what="node3 stopped")
        kept = list(node3.history)
        assert len(kept) >= 3 and node3.problem == f"no answer in {mon.timeout:g} s"
        # The others keep refreshing while node3 hangs.
        seen = len(mon.rows[0].history)
        wait_until(lambda: len(mon.rows[0].history) >= min(seen + 3, 61), what="node1 on")
        assert mon.rows[0].running and mon.rows[1].running
        assert list(node3.history) == kept
        row = row_widgets(mon, 2)
        assert ">stopped<" in row["state"].value and "no answer in" in row["state"].value
        assert f"stopped: no answer in {mon.timeout:g} s" in row["chart"].value
        assert [len(p) for p in polyline_points(row["chart"].value)] == [len(kept)]
        line = mon.text().splitlines()[3]
        assert line.split()[:2] == ["node3", "stopped"] and line.endswith("(no answer in 2 s)")
        # Continued, it answers again: the line goes on after a gap.
        os.kill(sshd, signal.SIGCONT)
        wait_until(lambda: node3.running, timeout=4 * mon.timeout + 2, what="node3 back")
        assert list(node3.history)[: len(kept) + 1] == [*kept, None]
    finally:
        mon.stop()


def test_a_node_whose_connection_dropped_is_reconnected_and_runs_again(
    nodes, local_nodes, stopped
) -> None:
    mon = LoadMonitor(nodes, every=0.2)
    mon.poll()
    mon.start()
    try:
        wait_until(lambda: all(len(r.history) >= 3 for r in mon.rows), what="three samples")
        node3 = mon.rows[2]
        listener = local_nodes.nodes[2].pid
        os.kill(listener, signal.SIGSTOP)  # no new connection is answered for now
        stopped.append(listener)
        os.kill(_sshd_of(nodes[2]), signal.SIGKILL)  # and the node's connection drops
        wait_until(lambda: not node3.running, timeout=4 * mon.timeout + 2, what="node3 stopped")
        assert node3.problem == f"no answer in {mon.timeout:g} s"
        kept = [v for v in node3.history if v is not None]
        os.kill(listener, signal.SIGCONT)
        wait_until(lambda: node3.running, timeout=4 * mon.timeout + 2, what="node3 back")
        history = list(node3.history)
        assert history[: len(kept) + 1] == [*kept, None]  # the history, then a gap
        assert mon.text().splitlines()[3].split()[:2] == ["node3", "running"]
        assert mon.rows[0].running and mon.rows[1].running
        assert nodes[2].eval("(+ 1 2)", timeout=10).value == 3  # on a fresh REPL
    finally:
        mon.stop()


def test_a_node_that_cannot_be_reached_is_retried_less_and_less_often(nodes) -> None:
    mon = LoadMonitor(nodes[2:], every=0.2)
    mon.poll()
    node3 = mon.rows[0]
    nodes[2].session.close()  # dropped, not closed by its user
    port = nodes[2].session.options.port
    nodes[2].session.options = replace(nodes[2].session.options, port=_closed_port())
    try:
        for backoff in (0.2, 0.4, 0.8):
            node3.retry_at = 0.0  # due now
            mon.poll()
            assert (node3.running, node3.problem, node3.backoff) == (
                False, "connection refused", backoff
            )  # fmt: skip
        mon.poll()  # not due yet: no attempt, the row as it was
        assert node3.backoff == 0.8
    finally:
        nodes[2].session.options = replace(nodes[2].session.options, port=port)
    node3.retry_at = 0.0
    mon.poll()
    assert node3.running and node3.backoff == 0.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ctrl_c_while_the_first_read_waits_is_one_line(shell, nodes, stopped, capsys) -> None:
    sshd = _sshd_of(nodes[2])
    os.kill(sshd, signal.SIGSTOP)
    stopped.append(sshd)
    with ctrl_c_into_the_cell(shell, 0.5):
        result = shell.run_cell("%loadavg -o mon lnodes")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    seen = capsys.readouterr()
    assert seen.out + seen.err == (
        "loadavg interrupted while waiting for node3: no dashboard was started\n"
    )
    assert "mon" not in shell.user_ns


def test_a_closed_node_is_stopped_at_once_and_the_others_run(nodes) -> None:
    nodes[1].close()
    mon = LoadMonitor(nodes, every=1)
    mon.poll()
    assert [r.state() for r in mon.rows] == ["running", "stopped", "running"]
    assert mon.rows[1].problem == "connection closed" and not mon.rows[1].history


def test_many_nodes_are_a_grid_of_squares_with_the_busiest_named(
    ssh_config: str, local_nodes: LocalNodes
) -> None:
    # 18 nodes (six connections to each local sshd): past the 16 that get a row each.
    many = make_nodes(["node1", "node2", "node3"] * 6, ssh_config=ssh_config)
    try:
        mon = LoadMonitor(many, every=1)
        mon.poll()
        box = mon.widget()
        title, grid = box.children
        assert "a square per node" in title.value
        shown = grid.value
        assert shown.startswith('<div style="font-size:12px">18 nodes: 18 running, 0 stopped; ')
        hovers = re.findall(r'<span title="([^"]*)" style="display:inline-block', shown)
        assert len(hovers) == 18
        read = (
            rf"node\d: [\d.]+ [\d.]+ [\d.]+ on {CORES} cores \(\d+%(, overloaded)?\), Guile 3\..*"
        )
        assert all(re.fullmatch(read, h) for h in hovers), hovers
        assert repr(mon).endswith(", ... (18 nodes), every 1 s, not refreshing>")
        # One node stops: its square turns grey, and the count says so at the next redraw.
        many[4].session.close()
        many[4].closed = True
        mon.poll()
        mon._draw_grid(now=True)
        assert "18 nodes: 17 running, 1 stopped" in grid.value
        assert "node2: stopped (connection closed)" in grid.value
    finally:
        for n in many:
            n.close()


def test_a_stopped_rows_reason_is_whole_unless_very_long() -> None:
    said = "node7 (root@10.0.0.7:22) sent a host key that is not in known_hosts"
    assert _reason(NodeError(said), 2.0) == said  # once cut at 50 characters
    long = _reason(NodeError("x" * 500), 2.0)
    assert len(long) == 120 and long.endswith("…")
    assert _reason(NodeError("the connection was refused"), 2.0) == "connection refused"


def label_boxes(svg: str) -> list[tuple[str, float, float, float, float]]:
    """Each SVG label's text and box (left, top, right, bottom), from the coordinates
    and anchor the chart gives it: glyphs at most 0.64 em wide (DejaVu Sans' digits),
    0.75 em above the baseline and 0.25 em below."""
    boxes = []
    for x, y, anchor, words in re.findall(
        r'<text x="([\d.]+)" y="([\d.]+)"[^>]*text-anchor="(\w+)"[^>]*>([^<]*)</text>', svg
    ):
        width, left = 0.64 * FONT * len(words), float(x)
        left -= {"start": 0, "middle": width / 2, "end": width}[anchor]
        boxes.append((words, left, float(y) - 0.75 * FONT, left + width, float(y) + 0.25 * FONT))
    return boxes


@pytest.mark.parametrize(
    ("history", "cores"),
    [([1.0], 2), ([2.5], 2), ([12.7], 2), ([99.0], 2), ([0.5, 300.0], 64), ([1.0], 128)],
)
def test_the_charts_labels_are_legible_and_none_overlaps(history, cores) -> None:
    svg = chart(history, cores=cores, every=2.0, stopped="stopped: gone")
    assert f"font:{FONT}px" in svg and FONT >= 11
    width, height = (float(v) for v in re.search(r'width="(\d+)" height="(\d+)"', svg).groups())
    boxes = label_boxes(svg)
    words = [b[0] for b in boxes]
    assert {"0", str(cores), "−2 min", "now"} <= set(words), words
    for i, (a, *box) in enumerate(boxes):
        left, top, right, bottom = box
        assert 0 <= left and right <= width and 0 <= top and bottom <= height, (a, box)
        for b, *other in boxes[i + 1 :]:
            apart = right <= other[0] or other[2] <= left or bottom <= other[1] or other[3] <= top
            assert apart, f"{a!r} {box} overlaps {b!r} {other}"
    # The cores' label stands at the right end of the dashed line, not by the axis' 0.
    (cores_label,) = [b for b in boxes if b[0] == str(cores) and b[1] >= PLOT[1]]
    line = re.search(r'<line x1="[\d.]+" x2="([\d.]+)" y1="([\d.]+)"', svg)
    assert cores_label[1] > float(line[1]) and cores_label[2] < float(line[2]) < cores_label[4]


def test_the_grid_of_many_nodes_tells_overload_from_full(nodes) -> None:
    rows = [LoadRow(n) for n in nodes]
    for row, one in zip(rows, (1.9, 3.3, 12.7), strict=True):
        row.cores = 2
        row.answered((one, 1.0, 1.0))
    shown = load_grid(rows)
    colours = re.findall(r'display:inline-block;[^"]*background:(#\w+)', shown)
    assert len(set(colours)) == 3  # full, over, and far over: three colours
    hovers = re.findall(r'<span title="([^"]*)"', shown)
    assert [", overloaded" in h for h in hovers] == [False, True, True]
    assert "&gt;100%: overloaded" in shown and "&gt;200%" in shown
