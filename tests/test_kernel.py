"""The Jupyter kernel, started by jupyter_client from an installed kernelspec, with its
cells running on a real local node: the conformance suite, then what it does not cover."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jupyter_kernel_test
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from sshdist_kernel import kernelspec
from sshdist_kernel.localnodes import LocalNodes, _free_port

from .conftest import start_kernel

TIMEOUT = 30


@pytest.fixture(scope="module", autouse=True)
def jupyter_path(
    local_nodes: LocalNodes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Kernelspecs for the local nodes, in a Jupyter path of this module's own; the
    kernels keep their history in a data dir of its own too."""
    prefix = tmp_path_factory.mktemp("jupyter")
    config = str(local_nodes.ssh_config)
    for host in ("node1", "node3"):
        kernelspec.install(host, prefix=str(prefix), ssh_config=config)
    # A node whose Guile is 2.2, named as a cluster's kernelspec would name it.
    kernelspec.install(
        "node2",
        name="sshdist-node2-guile22",
        prefix=str(prefix),
        ssh_config=config,
        guile="guile-2.2",
    )
    kernelspec.install(
        f"127.0.0.1:{_free_port()}",
        name="sshdist-unreachable",
        prefix=str(prefix),
        ssh_config="/dev/null",
    )
    path = str(prefix / "share" / "jupyter")
    settings = {"JUPYTER_PATH": path, "JUPYTER_DATA_DIR": str(tmp_path_factory.mktemp("data"))}
    old = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    yield path
    for key, value in old.items():
        if value is None:
            del os.environ[key]
        else:
            os.environ[key] = value


class GuileKernelConformance(jupyter_kernel_test.KernelTests):
    kernel_name = "sshdist-node1"
    language_name = "scheme"
    file_extension = ".scm"
    code_hello_world = '(display "hello, world")'
    code_stderr = '(display "oops" (current-error-port))'
    completion_samples = [{"text": "(string-up", "matches": {"string-upcase", "string-upcase!"}}]
    complete_code_samples = ["(+ 1 2)", "(define (f x) x)", ",L scheme", '(display "(")']
    incomplete_code_samples = ["(define (f x)", '(display "a', "#| open"]
    invalid_code_samples = ["(+ 1 2))"]
    code_generate_error = "(car 1)"
    code_execute_result = [{"code": "(+ 1 2)"}, {"code": "(values 1 2)"}]
    code_inspect_sample = "string-upcase"
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "(values *"

    @classmethod
    def setUpClass(cls) -> None:
        cls.km, cls.kc = start_kernel(cls.kernel_name)  # tried again on a port race
        # Completion and inspection answer nothing while the node is still connecting
        # (they never wait for it: seen once under load, when test_completion came
        # first); a silent cell waits for the connection, as a person's first cell does.
        reply = cls.kc.execute_interactive(
            "'connected", silent=True, store_history=False, timeout=60, output_hook=lambda m: None
        )
        assert reply["content"]["status"] == "ok", reply["content"]


# -- beyond the conformance suite ------------------------------------------------------


def start(name: str = "sshdist-node1") -> tuple[KernelManager, BlockingKernelClient]:
    return start_kernel(name)


@pytest.fixture
def kernel() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    km, kc = start()
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def _kept_kernels() -> Iterator[list[tuple[KernelManager, BlockingKernelClient]]]:
    """Where ``shared_kernel`` keeps its kernel between tests; shut down after the module."""
    kept: list[tuple[KernelManager, BlockingKernelClient]] = []
    yield kept
    for km, kc in kept:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _idle(km: KernelManager, kc: BlockingKernelClient) -> bool:
    """The kernel is alive and idle, its node's REPL too: a silent cell is answered at
    once (a cell still running, or waiting for input, would hold its reply up)."""
    if not km.is_alive():
        return False
    msg_id = kc.execute("(+ 1 1)", silent=True)
    try:
        while True:
            reply = kc.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]["status"] == "ok"
    except queue.Empty:
        return False


@pytest.fixture
def shared_kernel(
    _kept_kernels: list[tuple[KernelManager, BlockingKernelClient]],
) -> tuple[KernelManager, BlockingKernelClient]:
    """A node1 kernel started once for the module's tests that only ask it about itself
    or evaluate what takes no $N and leaves no state: none of them checks the cell count,
    interrupts, restarts or stops it.  Handed out only once it answers a silent cell at
    once; if it does not (a test before it failed half way through a cell), a fresh kernel
    replaces it."""
    if _kept_kernels and _idle(*_kept_kernels[0]):
        return _kept_kernels[0]
    for km, kc in _kept_kernels:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    _kept_kernels[:] = [start()]
    return _kept_kernels[0]


OUTPUTS = ("stream", "execute_result", "error", "display_data", "update_display_data")


def run(kc: BlockingKernelClient, code: str, until: Any = None) -> tuple[dict, list[dict]]:
    """Execute ``code``; return the reply and the iopub messages it caused, in order.
    ``until(msg)`` is called on each output message as it arrives."""
    msg_id = kc.execute(code)
    outputs = []
    for msg in caused_by(kc, msg_id):
        if msg["msg_type"] in OUTPUTS:
            outputs.append(msg)
            if until:
                until(msg)
    return shell_reply(kc, msg_id), outputs


def caused_by(kc: BlockingKernelClient, msg_id: str) -> Iterator[dict]:
    """The iopub messages request ``msg_id`` caused, as they come, until its idle status."""
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return
        yield msg


def shell_reply(kc: BlockingKernelClient, msg_id: str) -> dict:
    """The reply to ``msg_id``, past any stale one (wait_for_ready may have sent several
    kernel_info requests)."""
    while True:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def texts(outputs: list[dict]) -> list[tuple[str, str]]:
    shown = []
    for m in outputs:
        c = m["content"]
        if m["msg_type"] == "stream":
            shown.append((c["name"], c["text"]))
        elif m["msg_type"] == "execute_result":
            shown.append(("result", c["data"]["text/plain"]))
        elif m["msg_type"] == "error":
            shown.append(("error", f"{c['ename']}: {c['evalue']}"))
        elif m["msg_type"] in ("display_data", "update_display_data"):
            (mime,) = (k for k in c["data"] if k != "text/plain") or ("text/plain",)
            shown.append((m["msg_type"], c["transient"].get("display_id"), mime, c["data"][mime]))
    return shown


def test_kernel_info_names_scheme_the_node_and_its_guile(shared_kernel) -> None:
    _, kc = shared_kernel
    info = kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]
    assert info["language_info"] == {
        "name": "scheme",
        "mimetype": "text/x-scheme",
        "file_extension": ".scm",
        "codemirror_mode": "scheme",
        "pygments_lexer": "scheme",
    }
    run(kc, "(+ 1 1)")  # connected for sure
    banner = kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]["banner"]
    assert re.match(r"GNU Guile 3\.\S+ on node1 \(root@127\.0\.0\.1:\d+\), over SSH", banner)
    assert "#<node" not in banner  # no repr, no memory address
    assert "$N and the cell's count part ways" in banner


def test_a_kernelspec_with_guile_runs_that_guile() -> None:
    if shutil.which("guile-2.2") is None:
        pytest.skip("no guile-2.2 here (make test installs Debian's guile-2.2)")
    km, kc = start("sshdist-node2-guile22")
    try:
        assert texts(run(kc, "(string-take (version) 4)")[1]) == [("result", '$1 = "2.2."')]
        banner = kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]["banner"]
        assert banner.startswith("GNU Guile 2.2.")
        assert texts(run(kc, '(jupyter-html "<b>hi</b>") (car 1)')[1]) == [
            ("display_data", None, "text/html", "<b>hi</b>"),
            ("error", "wrong-type-arg: In procedure car: Wrong type (expecting pair): 1"),
        ]
        msg_id = kc.execute("(read-line)", allow_stdin=True)
        assert kc.get_stdin_msg(timeout=TIMEOUT)["msg_type"] == "input_request"
        kc.input("typed")
        assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_cell_of_three_forms_runs_as_typed_into_the_repl(kernel) -> None:
    _, kc = kernel
    reply, outputs = run(
        kc, '(define x 2) (begin (display "x is ") (display x) (* x 21)) (values x "two")'
    )
    assert texts(outputs) == [
        ("stdout", "x is 2"),
        ("result", "$1 = 42"),
        ("result", '$2 = 2\n$3 = "two"'),
    ]
    meta = [
        m["content"]["metadata"]["sshdist"] for m in outputs if m["msg_type"] == "execute_result"
    ]
    assert meta == [
        {"eval_num": [1], "module": "(guile-user)", "language": "scheme"},
        {"eval_num": [2, 3], "module": "(guile-user)", "language": "scheme"},
    ]
    assert reply["content"]["status"] == "ok"
    assert reply["metadata"]["sshdist"] == {
        "eval_num": [2, 3],
        "module": "(guile-user)",
        "language": "scheme",
    }


def test_output_streams_before_the_cell_ends(kernel, tmp_path: Path) -> None:
    _, kc = kernel
    flag = tmp_path / "seen"
    code = (
        '(begin (display "first\\n")'
        f' (let wait ((i 0)) (if (and (< i 1000) (not (file-exists? "{flag}")))'
        " (begin (usleep 10000) (wait (1+ i)))))"
        f' (file-exists? "{flag}"))'
    )

    def on_output(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            flag.touch()  # only now may the remote code finish

    reply, outputs = run(kc, code, until=on_output)
    assert texts(outputs) == [("stdout", "first\n"), ("result", "$1 = #t")]
    assert reply["content"]["status"] == "ok"


def test_stderr_stays_stderr_and_errors_carry_guiles_key(kernel) -> None:
    _, kc = kernel
    reply, outputs = run(kc, '(display "to err" (current-error-port)) (car 1)')
    assert texts(outputs) == [
        ("stderr", "to err"),
        (
            "error",
            "wrong-type-arg: In procedure car: "
            "Wrong type argument in position 1 (expecting pair): 1",
        ),
    ]
    content = reply["content"]
    assert (content["status"], content["ename"]) == ("error", "wrong-type-arg")
    assert content["traceback"][0].startswith("wrong-type-arg: In procedure car")
    assert texts(run(kc, "(+ 1 2)")[1]) == [("result", "$1 = 3")]


def test_meta_commands_and_a_language_switch(kernel) -> None:
    _, kc = kernel
    _, outputs = run(kc, ",L ecmascript")
    assert "ECMAScript" in outputs[0]["content"]["text"]
    reply, outputs = run(kc, "1+2;")
    assert texts(outputs) == [("result", "$1 = 3")]
    assert reply["metadata"]["sshdist"]["language"] == "ecmascript"
    run(kc, ",L scheme")
    _, outputs = run(kc, ",time (+ 1 2)")
    assert "real time" in "".join(t for _, t in texts(outputs))
    _, outputs = run(kc, ",describe car")
    assert texts(outputs)[0][0] == "stdout"


def test_completion_and_inspection_come_from_the_remote_guile(kernel) -> None:
    _, kc = kernel
    run(kc, '(define (my-area width height) "The area of a WIDTH by HEIGHT box." (* width height))')
    matches = kc.complete("(my-ar", 6, reply=True, timeout=TIMEOUT)["content"]
    assert (matches["matches"], matches["cursor_start"]) == (["my-area"], 1)
    shown = kc.inspect("(my-area 2 3)", 3, reply=True, timeout=TIMEOUT)["content"]
    assert shown["found"]
    text = shown["data"]["text/plain"]
    assert text.startswith("my-area: procedure\n(my-area ")
    assert "The area of a WIDTH by HEIGHT box." in text
    assert text.splitlines()[1].count(" ") == 2  # two required arguments
    missing = kc.inspect("no-such-thing", 3, reply=True, timeout=TIMEOUT)["content"]
    assert not missing["found"]
    assert texts(run(kc, "(my-area 2 3)")[1]) == [("result", "$1 = 6")]  # numbering kept


def inspect(kc: BlockingKernelClient, code: str) -> str:
    """The inspection text for the name the cursor ends in ``code``."""
    shown = kc.inspect(code, len(code), reply=True, timeout=TIMEOUT)["content"]
    assert shown["found"], code
    return shown["data"]["text/plain"]


def test_inspection_shows_the_names_a_procedure_was_defined_with(kernel) -> None:
    _, kc = kernel
    run(
        kc,
        '(define (add first-term second-term) "Adds two terms." (+ first-term second-term))'
        " (define* (opts a #:optional (b 2) #:key (scale 1) #:allow-other-keys . more)"
        ' "Takes every kind." a)'
        " (begin (define curry (lambda (x . xs) x)) (define answer 42))",
    )
    assert inspect(kc, "(add") == "add: procedure\n(add first-term second-term)\n\nAdds two terms."
    assert inspect(kc, "(opts") == (
        "opts: procedure\n(opts a #:optional b #:key scale #:allow-other-keys . more)"
        "\n\nTakes every kind."
    )
    assert inspect(kc, "(curry").splitlines()[1] == "(curry x . xs)"
    assert inspect(kc, "answer") == "answer: value\n42"
    # Built-ins: the manual's names where Guile has an entry, Guile's _ where not.
    assoc = inspect(kc, "(assoc").splitlines()
    assert assoc[:3] == ["assoc: procedure", "(assoc key alist)", ""]
    assert "equal?" in assoc[3]
    assert inspect(kc, "(string-upcase").splitlines()[1] == "(string-upcase str [start [end]])"
    assert inspect(kc, "(car") == "car: procedure\n(car _)"
    # A keyword the caller spells differently from the variable shows the caller's.
    run(kc, "(define* (renamed #:key (n 3 #:size)) n)")
    assert inspect(kc, "(renamed").splitlines()[1] == "(renamed #:key size)"
    assert texts(run(kc, "(add 1 2)")[1]) == [("result", "$1 = 3")]  # no $N used
    # The cursor inside a call's arguments inspects the call, as IPython does.
    assert inspect(kc, "(add 1 ").splitlines()[1] == "(add first-term second-term)"
    assert inspect(kc, "(add (car x) ").splitlines()[1] == "(add first-term second-term)"


def test_requests_no_client_should_send_get_a_reply(shared_kernel) -> None:
    _, kc = shared_kernel
    reply = kc.inspect("(car", cursor_pos=99, reply=True, timeout=TIMEOUT)["content"]
    assert (reply["status"], reply["found"]) == ("ok", True)
    reply = kc.complete("(string-up", cursor_pos=99, reply=True, timeout=TIMEOUT)["content"]
    assert "string-upcase" in reply["matches"]
    for bad in (
        {"hist_access_type": "tail", "n": "abc"},
        {"hist_access_type": "tail", "n": 2**63},
        {"hist_access_type": "range", "session": "x"},
        {"hist_access_type": "range", "session": 0, "start": 10**30},
    ):
        options = {"output": False, "raw": True, **bad}
        msg_id = kc.history(**options)
        reply = shell_reply(kc, msg_id)["content"]
        assert reply["status"] == "error" and "bad history_request" in reply["evalue"], bad


def execute(kc: BlockingKernelClient, code: str, **options: Any) -> tuple[dict, list[dict]]:
    """``run`` with execute_request options; the execute_input messages are kept too."""
    msg_id = kc.execute(code, **options)
    messages = [m for m in caused_by(kc, msg_id) if m["msg_type"] != "status"]
    return shell_reply(kc, msg_id)["content"], messages


def test_silent_cells_and_cells_kept_out_of_history_take_no_number(kernel) -> None:
    _, kc = kernel
    reply, messages = execute(kc, "(+ 1 1)")
    assert reply["execution_count"] == 1
    assert texts(messages) == [("result", "$1 = 2")]
    reply, messages = execute(kc, '(display "quiet") (* 2 3)', silent=True)
    assert (reply["status"], reply["execution_count"]) == ("ok", 1)
    assert messages == []  # nothing shown, not even the input
    reply, messages = execute(kc, '(display "shown") (* 3 3)', store_history=False)
    assert (reply["status"], reply["execution_count"]) == ("ok", 1)
    assert [
        m["content"]["execution_count"] for m in messages if m["msg_type"] == "execute_input"
    ] == [1]
    assert texts(messages) == [("stdout", "shown"), ("result", "9")]
    reply, messages = execute(kc, "(+ 2 2)")
    assert reply["execution_count"] == 2
    assert texts(messages) == [("result", "$2 = 4")]
    assert texts(execute(kc, "$1")[1]) == [("result", "$3 = 2")]


@pytest.mark.parametrize("code", ["(exit)", ",q", ",quit", "exit", "quit", "(exit 3)"])
def test_exit_asks_the_front_end_to_leave_and_the_repl_stays(kernel, code: str) -> None:
    _, kc = kernel
    run(kc, "(define kept 'yes)")
    reply, outputs = run(kc, code)
    content = reply["content"]
    assert content["status"] == "ok"
    assert content["payload"] == [{"source": "ask_exit", "keepkernel": False}]
    assert outputs == []
    assert texts(run(kc, "kept")[1]) == [("result", "$1 = yes")]


def test_kernel_info_claims_no_debugger_and_no_subshells(shared_kernel) -> None:
    _, kc = shared_kernel
    info = kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]
    assert "debugger" not in info["supported_features"]
    assert "kernel subshells" not in info["supported_features"]


def history(kc: BlockingKernelClient, **request: Any) -> list:
    msg_id = kc.history(raw=True, **request)
    return [tuple(entry) for entry in shell_reply(kc, msg_id)["content"]["history"]]


def test_history_is_kept_per_kernelspec_across_a_restart(local_nodes: LocalNodes) -> None:
    km, kc = start("sshdist-node3")
    try:
        run(kc, "(define kept-cell 1)")
        ((old, _, _),) = history(kc, hist_access_type="range", session=0, start=1)
        execute(kc, "(+ 100 1)", silent=True)
        execute(kc, "(+ 100 2)", store_history=False)
        run(kc, "(+ 40 2)")
        km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=60)
        run(kc, "(display 'after-restart)")
        ((new, _, _),) = history(kc, hist_access_type="range", session=0, start=1)
        assert new > old
        assert history(kc, hist_access_type="tail", n=3) == [
            (old, 1, "(define kept-cell 1)"),
            (old, 2, "(+ 40 2)"),
            (new, 1, "(display 'after-restart)"),
        ]
        assert history(kc, hist_access_type="range", session=-1, start=1, stop=None) == [
            (old, 1, "(define kept-cell 1)"),
            (old, 2, "(+ 40 2)"),
        ]
        assert history(kc, hist_access_type="range", session=0, start=1, stop=2) == [
            (new, 1, "(display 'after-restart)")
        ]
        assert history(kc, hist_access_type="range", session=old, start=2, output=True) == [
            (old, 2, ["(+ 40 2)", "$1 = 42"])
        ]
        assert history(kc, hist_access_type="search", pattern="(+ *", n=10) == [
            (old, 2, "(+ 40 2)")
        ]
        run(kc, "(+ 40 2)")
        assert history(kc, hist_access_type="search", pattern="(+ 4*", unique=True) == [
            (new, 2, "(+ 40 2)")
        ]
        # node1's kernels keep a history of their own.
        other_km, other_kc = start("sshdist-node1")
        try:
            found = history(other_kc, hist_access_type="search", pattern="*kept-cell*")
            assert found == []
        finally:
            other_kc.stop_channels()
            other_km.shutdown_kernel(now=True)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def wait_for_output(kc: BlockingKernelClient, msg_id: str) -> None:
    """Until the cell ``msg_id`` printed something: its code has started on the node."""
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            return


def test_rich_displays_come_in_order_with_printed_output(kernel) -> None:
    _, kc = kernel
    png = "#vu8(137 80 78 71 13 10 26 10)"
    code = (
        '(display "before\\n") (jupyter-html "<b>hi</b>" #:id "x") (display "between\\n")\n'
        f'(jupyter-png {png}) (jupyter-update-display "x" "text/html" "<i>new</i>")\n'
        "(jupyter json '((n . 1) (ok . #t))) 42"
    )
    reply, outputs = run(kc, code)
    assert reply["content"]["status"] == "ok"
    assert texts(outputs) == [
        ("stdout", "before\n"),
        ("display_data", "x", "text/html", "<b>hi</b>"),
        ("stdout", "between\n"),
        ("display_data", None, "image/png", "iVBORw0KGgo="),
        ("update_display_data", "x", "text/html", "<i>new</i>"),
        ("display_data", None, "application/json", {"n": 1, "ok": True}),
        ("result", "$1 = 42"),
    ]
    # jupyter console shows only text/plain: it says what kind of output it cannot show.
    assert outputs[1]["content"]["data"]["text/plain"] == "<text/html output>"
    assert outputs[5]["content"]["data"]["text/plain"] == '{"n":1,"ok":true}'


def test_a_silent_cell_shows_no_display(kernel) -> None:
    _, kc = kernel
    msg_id = kc.execute('(jupyter-html "<b>quiet</b>") 1', silent=True)
    shell_reply(kc, msg_id)
    assert texts(run(kc, "(+ 1 1)")[1]) == [("result", "$1 = 2")]


def test_reading_input_asks_the_front_end_and_eof_without_stdin(kernel) -> None:
    _, kc = kernel
    code = '(define got (list (read-line) (read-line))) (display "read\\n") got'
    msg_id = kc.execute(code, allow_stdin=True)
    prompts = []
    for answer in ("first line", "second"):
        request = kc.get_stdin_msg(timeout=TIMEOUT)
        assert request["msg_type"] == "input_request"
        prompts.append(request["content"]["prompt"])
        kc.input(answer)
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    assert prompts == ["node1> ", "node1> "]  # the node that reads, in the input box
    assert texts(run(kc, "got")[1]) == [("result", '$2 = ("first line" "second")')]
    msg_id = kc.execute("(eof-object? (read-line))", allow_stdin=False)
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    assert texts(run(kc, "$3")[1]) == [("result", "$4 = #t")]


def test_the_stop_button_while_the_node_waits_for_input(kernel) -> None:
    km, kc = kernel
    run(kc, "(define kept 'yes)")
    msg_id = kc.execute("(read-line)", allow_stdin=True)
    assert kc.get_stdin_msg(timeout=TIMEOUT)["msg_type"] == "input_request"
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id)["content"]
    assert (reply["status"], reply["ename"]) == ("error", "signal")
    assert texts(run(kc, "kept")[1]) == [("result", "$1 = yes")]


def test_interrupt_stops_an_endless_loop_and_keeps_state(kernel) -> None:
    km, kc = kernel
    run(kc, "(define kept 'yes)")
    msg_id = kc.execute('(begin (display "looping\\n") (let loop () (loop)))')
    wait_for_output(kc, msg_id)  # the code runs on the node
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id)["content"]
    assert (reply["status"], reply["ename"], reply["evalue"]) == (
        "error",
        "signal",
        "User interrupt",
    )
    assert texts(run(kc, "kept")[1])[-1] == ("result", "$1 = yes")


def test_an_interrupt_that_cannot_stop_the_node_says_its_definitions_are_lost(kernel) -> None:
    km, kc = kernel
    run(kc, "(define kept 'yes)")
    msg_id = kc.execute(
        '(begin (display "deaf\\n") (call-with-blocked-asyncs (lambda () (let loop () (loop)))))'
    )
    wait_for_output(kc, msg_id)  # the code runs on the node
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id)["content"]
    assert (reply["status"], reply["evalue"]) == ("error", "User interrupt")
    assert "it is being interrupted" in reply["traceback"][0]
    # The node ignores every interrupt: its REPL is given up, and the next cell
    # runs on a fresh one and says so before anything else.
    reply, outputs = run(kc, "kept")
    notice = texts(outputs)[0]
    assert notice[0] == "stderr"
    assert "did not stop after 3 interrupts" in notice[1]
    assert "definitions made before are lost" in notice[1]
    assert reply["content"]["ename"] == "unbound-variable"


def test_restart_gives_a_fresh_remote_repl(kernel) -> None:
    km, kc = kernel
    run(kc, "(define before-restart 1)")
    km.restart_kernel(now=True)
    kc.wait_for_ready(timeout=60)
    reply, outputs = run(kc, "before-restart")
    assert reply["content"]["ename"] == "unbound-variable"


def test_a_dropped_connection_is_replaced_and_the_cell_says_definitions_are_lost(
    local_nodes: LocalNodes,
) -> None:
    km, kc = start("sshdist-node3")
    try:
        assert texts(run(kc, "(define kept 1)")[1]) == []
        local_nodes.stop("node3", signal.SIGKILL)
        local_nodes.start("node3")
        # Nothing was sent to the dead REPL: the cell reconnects and runs, and says
        # first that the earlier definitions are gone.
        reply, outputs = run(kc, "(+ 40 2)")
        assert reply["content"]["status"] == "ok"
        (notice, result) = texts(outputs)
        assert notice[0] == "stderr"
        assert notice[1].startswith("[the REPL on node3 was replaced by a fresh one")
        assert notice[1].endswith("definitions made before are lost]\n")
        assert result == ("result", "$1 = 42")
        assert run(kc, "kept")[0]["content"]["ename"] == "unbound-variable"
        # Dropped in the middle of a cell: that cell is an error, the next reconnects.
        msg_id = kc.execute('(begin (display "go\\n") (sleep 30))')
        wait_for_output(kc, msg_id)  # the code runs on the node
        local_nodes.stop("node3", signal.SIGKILL)
        reply = shell_reply(kc, msg_id)["content"]
        assert (reply["status"], reply["ename"]) == ("error", "NodeError")
        assert "node3" in reply["evalue"]
        assert "The next cell reconnects" in reply["traceback"][-1]
        local_nodes.start("node3")
        assert texts(run(kc, "(+ 1 1)")[1])[-1] == ("result", "$1 = 2")
    finally:
        local_nodes.start("node3")
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_an_unreachable_node_is_a_clear_error_in_the_first_cell_not_a_dead_kernel() -> None:
    km, kc = start("sshdist-unreachable")
    try:
        reply, outputs = run(kc, "(+ 1 2)")
        assert reply["content"]["ename"] == "ConnectError"
        assert "refused the connection" in reply["content"]["evalue"]
        assert km.is_alive()
        assert run(kc, "(+ 1 2)")[0]["content"]["ename"] == "ConnectError"  # tried again
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    unittest.main()
