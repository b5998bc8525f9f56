"""Background calls (``--bg``, ``%dist_result``): in a real IPython shell, and in a real
Python kernel whose widget's Cancel button is clicked the way JupyterLab clicks it."""

from __future__ import annotations

import concurrent.futures as futures
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from sshdist_magics import SshdistError

from sshdist_kernel import DistCall
from sshdist_kernel.localnodes import LocalNodes
from sshdist_kernel.nodeworkers import waiting_work

from .conftest import start_kernel, wait_until
from .test_magics import ctrl_c_into_the_cell, ip, nodes_in, run  # noqa: F401 - ip is the shell fixture

SLOW = "(lambda (x) (usleep 100000) x)"  # 0.1 s an item


def test_bg_returns_at_once_and_other_cells_run_meanwhile(ip, capsys) -> None:  # noqa: F811
    nodes_in(ip)
    assert run(ip, f"%dist_map --bg -o job nodes {SLOW} range(45)").result is None
    job = ip.user_ns["job"]
    assert isinstance(job, DistCall) and not job.done()  # 1.5 s of work on 3 nodes
    assert run(ip, "6 * 7").result == 42  # another cell, while it works
    assert not job.done() and job.total == 45
    started = capsys.readouterr().out
    assert started == (
        "dist_map runs in the background on 3 node(s); "
        "%dist_result job waits for it and shows the results\nOut[0]: 42\n"
    )
    wait_until(lambda: job.progress > 0, 5, "the background call's first items")
    result = run(ip, "%dist_result -o got job")
    assert result.result is None and ip.user_ns["got"] == list(range(45))
    *waiting, summary = capsys.readouterr().out.splitlines()
    assert all(re.match(r"  dist_map: \d+/45 items", line) for line in waiting), waiting
    assert re.fullmatch(
        r"dist_map: 45 item\(s\) on 3 node\(s\), 0 failover\(s\), in [\d.]+ s", summary
    )
    # nothing of the finished call shows up in later cells
    run(ip, "x = 1")
    assert capsys.readouterr().out == ""


def test_bg_output_is_grouped_by_node_in_dist_result(ip, capsys) -> None:  # noqa: F811
    nodes_in(ip)
    run(ip, '%%distribute --bg -o forms nodes\n(begin (display "one") 1) (begin (display "two") 2)')
    result = run(ip, "%dist_result forms")
    assert result.result == (1, 2)
    out = capsys.readouterr().out
    blocks = re.findall(r"^\[stdout:(node\d)\]\n((?:(?:one|two)\n)+)", out, re.M)
    texts = sorted(line for _, text in blocks for line in text.splitlines())
    assert texts == ["one", "two"]  # each its own line, even when one node takes both


def test_cancel_stops_the_nodes_and_dist_result_says_so(ip, capsys) -> None:  # noqa: F811
    nodes = nodes_in(ip)
    for n in nodes:
        n.eval("(define kept 7)")
    run(ip, "%dist_map --bg -o slow nodes (lambda (x) (sleep 1) x) range(60)")
    job = ip.user_ns["slow"]
    wait_until(lambda: job.progress >= 3, 5, "three items done")
    assert job.cancel() and job.cancelled()
    started = time.monotonic()
    assert [n.eval("kept", timeout=5).value for n in nodes] == [7, 7, 7]
    assert time.monotonic() - started < 1  # interrupted, not left to finish its chunk
    error = run(ip, "%dist_result slow").error_in_exec
    assert isinstance(error, SshdistError)
    assert re.fullmatch(
        r"dist_map cancelled: \d of 60 items done on 3 nodes; nodes ready", str(error)
    ), str(error)
    assert "Traceback" not in capsys.readouterr().out


def test_the_call_can_be_awaited_in_a_cell(ip) -> None:  # noqa: F811
    nodes_in(ip)
    run(ip, "%dist_map --bg -o later nodes 1+ range(5)")
    result = run(ip, "got = await later")
    assert result.success, result.error_in_exec
    assert ip.user_ns["got"] == [1, 2, 3, 4, 5]


def test_a_second_call_on_busy_nodes_says_so_and_gets_in_between_its_jobs(ip, capsys) -> None:  # noqa: F811
    nodes_in(ip)
    run(ip, f"%dist_map --bg -o first nodes {SLOW} range(60)")
    first = ip.user_ns["first"]
    # Busy means working: the first call reaches its nodes one after another (the
    # drivers start as a tree), so wait until it works on all three.
    nodes = ip.user_ns["nodes"]
    wait_until(lambda: all(waiting_work(n) for n in nodes), 10, "the first call on every node")
    capsys.readouterr()
    second = run(ip, "%dist_map nodes 1+ range(3)")
    assert second.result == [1, 2, 3]
    # The calls take turns on each node, a chunk each: the second got in after the
    # first's running chunks (0.1 s items), not after all of its 2 s of work.
    assert first.progress <= 40 and not first.done(), first.progress
    seen = capsys.readouterr()
    # A note, not an error: on stdout (a notebook shows stderr in red), nothing on stderr.
    assert seen.out.startswith(
        "node1, node2, node3 are busy with a background dist_map: this waits for them "
        "between its jobs"
    )
    assert seen.err == ""
    assert run(ip, "%dist_result first").result == list(range(60))


def test_dist_result_errors_are_clear(ip) -> None:  # noqa: F811
    nodes_in(ip)
    assert "is 5, not a call" in str(run(ip, "x = 5\n%dist_result x").error_in_exec)
    assert "not with --bg" in str(run(ip, "%dist_map --bg --stream nodes 1+ [1]").error_in_exec)
    run(ip, "%dist_map --bg -o bad nodes car [1, 2]")
    error = run(ip, "%dist_result bad").error_in_exec
    assert isinstance(error, SshdistError) and "wrong-type-arg on node" in str(error)


# -- in a notebook: the widget and its Cancel button -------------------------------------

TIMEOUT = 30


@pytest.fixture
def python_kernel(local_nodes: LocalNodes) -> Iterator[BlockingKernelClient]:
    km, kc = start_kernel("python3")
    try:
        run_in(kc, "%load_ext sshdist_magics")
        run_in(kc, f"%nodes -o nodes -F {local_nodes.ssh_config} node1 node2 node3")
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_in(kc: BlockingKernelClient, code: str, seen: list[dict] | None = None) -> dict:
    """Execute ``code``; its reply.  Every iopub message (widget updates from background
    threads included) goes to ``seen``."""
    msg_id = kc.execute(code)
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if seen is not None:
            seen.append(msg)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
        ):
            break
    while True:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def widget_models(seen: list[dict]) -> dict[str, dict[str, Any]]:
    """Each widget's state, by comm id, from the comm messages so far."""
    models: dict[str, dict[str, Any]] = {}
    for msg in seen:
        content = msg["content"]
        if msg["msg_type"] == "comm_open":
            models[content["comm_id"]] = dict(content["data"]["state"])
        elif msg["msg_type"] == "comm_msg" and content["data"].get("method") == "update":
            models.setdefault(content["comm_id"], {}).update(content["data"]["state"])
    return models


def test_the_widget_shows_progress_and_its_cancel_button_stops_the_call(python_kernel) -> None:
    kc = python_kernel
    seen: list[dict] = []
    reply = run_in(kc, "%dist_map --bg -o job nodes (lambda (x) (sleep 1) x) range(60)", seen)
    assert reply["content"]["status"] == "ok"
    views = [m for m in seen if m["msg_type"] == "display_data"]
    assert views and "application/vnd.jupyter.widget-view+json" in views[0]["content"]["data"]
    # another cell runs while the call works; the widget keeps updating meanwhile
    reply = run_in(kc, "print(job.progress < 60, job.done())", seen)
    assert reply["content"]["status"] == "ok"

    def labels() -> list[str]:
        models = widget_models(seen)
        return [m.get("value", "") for m in models.values() if m.get("_model_name") == "LabelModel"]

    def progressed() -> bool:
        while True:  # take what came since
            try:
                seen.append(kc.get_iopub_msg(timeout=0.05))
            except Exception:  # noqa: BLE001 - queue.Empty: nothing more now
                break
        return any(re.match(r"[3-9]/60 items, ", v) for v in labels())

    wait_until(progressed, 10, "the widget's total to count items")
    button = next(
        cid for cid, m in widget_models(seen).items() if m.get("_model_name") == "ButtonModel"
    )
    assert widget_models(seen)[button]["description"] == "Cancel"
    # what JupyterLab sends when the button is clicked
    click = {"comm_id": button, "data": {"method": "custom", "content": {"event": "click"}}}
    kc.shell_channel.send(kc.session.msg("comm_msg", click))

    def printed_job() -> str:
        before = len(seen)
        run_in(kc, "print(job)", seen)
        return "".join(m["content"]["text"] for m in seen[before:] if m["msg_type"] == "stream")

    wait_until(lambda: "cancelled>" in printed_job(), 10, "the click to cancel the call")
    assert re.fullmatch(r"<DistCall dist_map: \d+/60 items on 3 nodes, cancelled>\n", printed_job())

    def says_cancelled() -> bool:
        progressed()  # takes in what came since
        values = [str(m.get("value", "")) for m in widget_models(seen).values()]
        return any(v.startswith("dist_map cancelled: ") for v in values)

    wait_until(says_cancelled, 10, "the widget to say the call was cancelled")
    assert widget_models(seen)[button]["disabled"] is True
    reply = run_in(kc, "%dist_map nodes 1+ range(3)", seen)
    assert reply["content"]["status"] == "ok"


def test_dist_result_gives_the_time_the_call_took_however_late_it_is_asked(ip, capsys) -> None:  # noqa: F811
    nodes = nodes_in(ip)
    run(ip, "%dist_map --bg -o quick nodes 1+ range(3)")
    job = ip.user_ns["quick"]
    wait_until(job.done, 5, "the call to end")
    nodes[0].eval("(usleep 600000)", timeout=5)  # other work, after the call ended
    summaries = []
    for _ in range(2):
        assert run(ip, "%dist_result quick").result == [1, 2, 3]
        (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("dist_map:")]
        summaries.append(line)
    assert summaries[0] == summaries[1]
    seconds = float(re.search(r"in ([\d.]+) s$", summaries[0]).group(1))
    assert seconds < 0.5, summaries[0]


def test_ctrl_c_while_waiting_for_a_busy_node_says_it_is_still_busy(ip, capsys, tmp_path) -> None:  # noqa: F811
    nodes_in(ip)
    began = tmp_path / "began"
    run(
        ip,
        "%%distribute --bg -o d nodes[:1]\n"
        f'(begin (close-port (open-output-file "{began}")) (sleep 20) 1)',
    )
    call = ip.user_ns["d"]
    wait_until(began.exists, 5, "the background call to begin on node1")
    capsys.readouterr()
    with ctrl_c_into_the_cell(ip, 0.5):
        result = run(ip, "%%with_ssh nodes[0]\n(+ 1 2)")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    seen = capsys.readouterr()
    assert seen.err == ""
    assert re.fullmatch(
        r"node1 is busy with a background distribute: this waits for it between its jobs\n"
        r"with_ssh interrupted after 0\.\d s on node1; "
        r"node1 is still busy with the background distribute, which goes on\n",
        seen.out,
    ), seen.out
    assert not call.done()  # the background call goes on, as said
    assert call.cancel()
    call.wait_stopped(5)
    assert run(ip, "%%with_ssh nodes[0]\n(+ 1 2)").success


def cancelled_when_done(ip, name: str, proc: str, total: int, done: int) -> DistCall:  # noqa: F811
    """A ``--bg`` dist_map of ``proc`` over ``range(total)`` stored in ``name``, cancelled
    once ``done`` items are done."""
    nodes_in(ip)
    run(ip, f"%dist_map --bg -o {name} nodes {proc} range({total})")
    job = ip.user_ns[name]
    wait_until(lambda: job.progress >= done, 10, f"{done} items done")
    assert job.cancel()
    return job


def test_a_cancelled_call_says_how_far_it_got_awaited_or_shown(ip, capsys) -> None:  # noqa: F811
    job = cancelled_when_done(ip, "slow2", "(lambda (x) (sleep 1) x)", 30, 3)
    said = r"dist_map cancelled: \d+ of 30 items done on 3 nodes"
    error = run(ip, "await slow2").error_in_exec
    assert type(error).__name__ == "CancelledError" and re.fullmatch(said, str(error)), error
    with pytest.raises(futures.CancelledError, match=said):
        job.result()
    # A call made with dist_map_async: %dist_result shows it the same way.
    run(ip, "from sshdist_kernel import dist_map_async")
    run(ip, "direct = dist_map_async(nodes, '(lambda (x) (sleep 1) x)', range(30))")
    direct = ip.user_ns["direct"]
    wait_until(lambda: direct.progress >= 3, 5, "three items done")
    assert direct.cancel()
    error = run(ip, "%dist_result direct").error_in_exec
    assert type(error).__name__ == "CancelledError", error
    assert re.fullmatch(said + "; nodes ready", str(error)), error


def test_ctrl_c_in_dist_result_stops_the_wait_and_the_call_goes_on(ip, capsys) -> None:  # noqa: F811
    nodes_in(ip)
    run(ip, "%dist_map --bg -o going nodes (lambda (x) (usleep 100000) x) range(30)")
    job = ip.user_ns["going"]
    capsys.readouterr()
    with ctrl_c_into_the_cell(ip, 0.3):
        result = run(ip, "%dist_result going")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    seen = capsys.readouterr()
    assert re.fullmatch(
        r"stopped waiting for the dist_map \(\d+ of 30 items done on 3 nodes\); it goes on: "
        r"%dist_result going waits again, going\.cancel\(\) stops it\n",
        seen.out + seen.err,
    ), seen
    assert not job.cancelled()
    # The call went on to its end: waiting again gives every result.
    assert run(ip, "%dist_result -o got going").result is None
    assert ip.user_ns["got"] == list(range(30)) and not job.cancelled()


def test_after_a_cancel_the_values_done_are_kept_and_dist_result_says_where(ip, capsys) -> None:  # noqa: F811
    job = cancelled_when_done(ip, "cut", "(lambda (x) (usleep 200000) (* 10 x))", 40, 6)
    capsys.readouterr()
    error = run(ip, "%dist_result cut").error_in_exec
    assert type(error).__name__ == "CancelledError", error
    done = error.partial  # the error carries them too
    assert 6 <= len(done) < 40 and all(v == 10 * k for k, v in done.items()), done
    out = capsys.readouterr().out
    assert (
        f"{len(done)} of 40 items were done: "
        "%dist_result --partial cut gives their values, by index\n" in out
    )
    assert run(ip, "%dist_result --partial cut").result == done
    assert run(ip, "%dist_result -o kept --partial cut").result is None
    assert ip.user_ns["kept"] == done == job.partial()


def test_after_a_failure_the_values_done_are_kept(ip, capsys) -> None:  # noqa: F811
    nodes_in(ip)
    capsys.readouterr()
    code = (
        "try:\n"
        '    %dist_map nodes (lambda (x) (if (= x 25) (error "no 25") (* 2 x))) range(40)\n'
        "except NodeReplError as e:\n"
        "    caught = e\n"
    )
    run(ip, "from sshdist_kernel import NodeReplError")
    assert run(ip, code).success
    caught = ip.user_ns["caught"]
    assert 25 not in caught.partial and all(v == 2 * k for k, v in caught.partial.items())
    out = capsys.readouterr().out
    # The node that ran item 25 had answered an earlier chunk first.
    assert len(caught.partial) >= 1
    assert f"{len(caught.partial)} of 40 items were done: %dist_result --partial gives" in out
    assert run(ip, "%dist_result --partial").result == caught.partial


def test_partial_needs_a_call(ip) -> None:  # noqa: F811
    ip.run_line_magic("load_ext", "sshdist_magics")
    magics = ip.magics_manager.registry["SshdistMagics"]
    saved, magics._latest = magics._latest, None
    try:
        error = run(ip, "%dist_result --partial").error_in_exec
        assert isinstance(error, SshdistError)
        assert str(error) == "no call yet: --partial gives the values of a call made before"
    finally:
        magics._latest = saved
