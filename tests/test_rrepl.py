"""rrepl_eval against real Guile over real sshd: the four values, printed output,
errors, and the REPL staying usable after each of them."""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sshdist_kernel import (
    UNIX,
    Char,
    DisplayData,
    IncompleteInputError,
    Node,
    NodeError,
    NodeReplError,
    NodeTimeoutError,
    Symbol,
    make_node,
    node_open_rrepl,
    node_stop_server,
    rrepl_eval,
    rrepl_skip_to_prompt,
    with_ssh,
)

from .conftest import reuse_or_make, wait_until


@pytest.fixture
def shared_repl(kept_nodes: list[Node], ssh_config: str) -> Node:
    """A node on node1 made once for the module's tests that leave its REPL as they
    found it: they evaluate values, output and errors the REPL survives, and define only
    names no other test relies on; none of them counts $N, interrupts or times out.
    Before each test it must answer as an idle REPL in (guile-user) would, with nothing
    left over from the test before (one that failed half way, say); if not, a fresh
    node replaces it."""
    return reuse_or_make(kept_nodes, lambda: [make_node("node1", ssh_config=ssh_config)])[0]


def test_one_value_comes_back_with_number_module_and_language(node: Node) -> None:
    value, num, module, language = rrepl_eval(node.rrepl, "(+ 1 2)")
    assert (value, num, module, language) == (3, 1, "(guile-user)", "scheme")
    assert rrepl_eval(node.rrepl, "(* 2 21)").eval_num == 2


def test_several_values_come_back_as_tuples(node: Node) -> None:
    value, num, _, _ = rrepl_eval(node.rrepl, '(values 1 \'two "three")')
    assert value == (1, Symbol("two"), "three")
    assert num == (1, 2, 3)


@pytest.mark.parametrize("source", ["(values)", "(if #f #f)", "(define x 10)"])
def test_no_value_gives_none_and_does_not_hang(shared_repl: Node, source: str) -> None:
    result = rrepl_eval(shared_repl.rrepl, source, timeout=10)
    assert (result.value, result.eval_num) == (None, None)
    assert result.module == "(guile-user)"


def test_a_definition_is_kept(node: Node) -> None:
    rrepl_eval(node.rrepl, "(define x 10)")
    assert rrepl_eval(node.rrepl, "x").value == 10


def test_dollar_n_names_an_earlier_result(node: Node) -> None:
    rrepl_eval(node.rrepl, "(+ 40 2)")
    rrepl_eval(node.rrepl, "(list 1 2)")
    assert rrepl_eval(node.rrepl, "(list $1 $2)").value == [42, [1, 2]]


@pytest.mark.parametrize(
    ("source", "output", "value"),
    [
        ('(begin (display "hello") 42)', "hello", 42),
        ('(begin (display "hello\\n") 42)', "hello\n", 42),
        ('(display "alone")', "alone", None),
        ('(display "alone\\n")', "alone\n", None),
        ('(begin (display "$1 = 2\\n") 7)', "$1 = 2\n", 7),
        ('(begin (display "scheme@(guile-user)> ") 8)', "scheme@(guile-user)> ", 8),
        ('(begin (display "h5\\np3\\n") 9)', "h5\np3\n", 9),
    ],
)
def test_printed_output_never_loses_the_value(
    shared_repl: Node, source: str, output: str, value: object
) -> None:
    result = rrepl_eval(shared_repl.rrepl, source)
    assert result.output == output
    assert result.value == value


def test_stderr_stays_apart_from_stdout(shared_repl: Node) -> None:
    result = rrepl_eval(
        shared_repl.rrepl, '(begin (display "out") (display "err" (current-error-port)) 1)'
    )
    assert (result.output, result.error_output, result.value) == ("out", "err", 1)


@pytest.mark.parametrize(
    ("source", "key", "message"),
    [
        ("(car 1)", "wrong-type-arg", "In procedure car: Wrong type"),
        ("no-such-variable", "unbound-variable", "Unbound variable: no-such-variable"),
        ('(error "boom" 1)', "misc-error", "boom 1"),
        ("(throw 'oops)", "oops", "Throw to key `oops'"),
        ("(list #<foo>)", "read-error", ""),
        ("(+ 1 2))", "read-error", 'unexpected ")"'),
    ],
)
def test_errors_raise_node_repl_error_and_the_next_call_works(
    shared_repl: Node, source: str, key: str, message: str
) -> None:
    with pytest.raises(NodeReplError) as caught:
        rrepl_eval(shared_repl.rrepl, source)
    assert caught.value.key == key
    assert message in caught.value.message
    assert rrepl_eval(shared_repl.rrepl, "(+ 1 2)").value == 3


@pytest.mark.parametrize(
    ("source", "key", "message"),
    [  # what `guile` itself prints for each (its REPL compiles; ours interprets)
        (
            "(vector-ref (vector 1) 5)",
            "out-of-range",
            "In procedure vector-ref: Argument 2 out of range: 5",
        ),
        (
            "(car 5)",
            "wrong-type-arg",
            "In procedure car: Wrong type argument in position 1 (expecting pair): 5",
        ),
        (
            '(string-ref "abc" 7)',
            "out-of-range",
            "In procedure string-ref: Argument 2 out of range: 7",
        ),
        (
            "(cdr '())",
            "wrong-type-arg",
            "In procedure cdr: Wrong type argument in position 1 (expecting pair): ()",
        ),
        ("(+ 'a 1)", "wrong-type-arg", "In procedure +: Wrong type argument in position 1: a"),
        (
            "(list-ref (list 1 2) 5)",
            "out-of-range",
            "In procedure list-ref: Argument 2 out of range: 5",
        ),
        ("(5)", "wrong-type-arg", "Wrong type to apply: 5"),
        ("(define x 5) (x 1)", "wrong-type-arg", "Wrong type to apply: 5"),
        # A procedure defined at the REPL is named with its own argument names.
        (
            "(define (add first-term second-term) (+ first-term second-term)) (add 1)",
            "wrong-number-of-args",
            "Wrong number of arguments to #<procedure add (first-term second-term)>",
        ),
        (  # a name defined twice in one form: the builtin it ends as keeps its names
            "(begin (define (f a) 1) (define f car)) (car 1 2)",
            "wrong-number-of-args",
            "Wrong number of arguments to #<procedure car (_)>",
        ),
        (
            "(define (many a . more) a) (many)",
            "wrong-number-of-args",
            "Wrong number of arguments to #<procedure many (a . more)>",
        ),
        # define* is compiled, as at Guile's REPL: the evaluator's own said only
        # "In procedure eval: Wrong number of arguments".
        (
            "(define* (opt a #:optional b #:key size) a) (opt)",
            "wrong-number-of-args",
            "Wrong number of arguments to #<procedure opt (a #:optional b #:key size)>",
        ),
        ("(define* (kw a #:key k) a) (kw 1 2)", "keyword-argument-error", "Invalid keyword: 2"),
        # Which 3 is the bad one is not known: the procedure is named, no position.
        (
            "(make-string 3 3)",
            "wrong-type-arg",
            "In procedure make-string: Wrong type (expecting character): 3",
        ),
    ],
)
def test_errors_read_as_guiles_own_with_the_procedure_and_argument_position(
    shared_repl: Node, source: str, key: str, message: str
) -> None:
    with pytest.raises(NodeReplError) as caught:
        rrepl_eval(shared_repl.rrepl, source)
    assert (caught.value.key, caught.value.message) == (key, message)
    handled = "(catch 'out-of-range (lambda () (vector-ref (vector) 1)) (lambda (key . args) key))"
    assert rrepl_eval(shared_repl.rrepl, handled).value == Symbol("out-of-range")


def test_a_define_star_procedure_is_compiled_without_inlining_builtins(node: Node) -> None:
    # Compiled (for its arity errors) at level 0: like the evaluator's procedures, it
    # calls a car defined after it (before its first call), where Guile's default level
    # would have inlined the builtin.
    rrepl_eval(node.rrepl, "(define* (first-of l #:optional default) (car l))")
    rrepl_eval(node.rrepl, "(define (second-of l) (car (cdr l)))")
    rrepl_eval(node.rrepl, "(define (car x) 'mine)")
    assert rrepl_eval(node.rrepl, "(second-of (list 1 2))").value == Symbol("mine")
    assert rrepl_eval(node.rrepl, "(first-of (list 1 2))").value == Symbol("mine")


def test_output_printed_before_an_error_is_kept(shared_repl: Node) -> None:
    with pytest.raises(NodeReplError) as caught:
        rrepl_eval(shared_repl.rrepl, '(begin (display "partial") (car 1))')
    assert caught.value.output == "partial"


def test_incomplete_input_is_refused_before_it_is_sent(node: Node) -> None:
    rrepl_eval(node.rrepl, "(+ 1 1)")
    with pytest.raises(IncompleteInputError, match="not sent"):
        rrepl_eval(node.rrepl, "(+ 1")
    # Nothing reached the REPL: the next value is $2, not an error.
    assert rrepl_eval(node.rrepl, "(+ 2 2)").eval_num == 2


def test_strings_with_quotes_newlines_and_non_ascii(shared_repl: Node) -> None:
    text = 'She said "héllo"\nλ → 日本 \\ \t end'
    source = '(string-append "She said \\"héllo\\"\\n" "λ → 日本 \\\\ \\t end")'
    assert rrepl_eval(shared_repl.rrepl, source).value == text
    assert rrepl_eval(shared_repl.rrepl, f'(begin (display "{text[:5]}λ") 1)').output == "She sλ"


def test_a_100000_element_list_as_a_value(shared_repl: Node) -> None:
    assert rrepl_eval(shared_repl.rrepl, "(iota 100000)").value == list(range(100000))


def test_10_mb_of_printed_output(shared_repl: Node) -> None:
    source = (
        '(let ((line (string-append (make-string 99 #\\x) "\\n")))'
        " (do ((i 0 (1+ i))) ((= i 100000) 'done) (display line)))"
    )
    result = rrepl_eval(shared_repl.rrepl, source, timeout=60)
    assert result.value == Symbol("done")
    assert len(result.output) == 10_000_000
    assert result.output == ("x" * 99 + "\n") * 100000


def test_printed_output_streams_while_the_code_runs(shared_repl: Node, tmp_path: Path) -> None:
    # The remote code waits (bounded) for a file that the test writes only once the
    # first line has arrived, so the line must come back before the evaluation ends.
    flag = tmp_path / "seen"
    source = (
        '(begin (display "first\\n")'
        f' (let wait ((i 0)) (if (and (< i 500) (not (file-exists? "{flag}")))'
        " (begin (usleep 10000) (wait (1+ i)))))"
        ' (display "second\\n")'
        f' (file-exists? "{flag}"))'
    )
    chunks: list[str] = []

    def on_output(stream: str, text: str) -> None:
        chunks.append(text)
        flag.touch()

    result = rrepl_eval(shared_repl.rrepl, source, on_output=on_output)
    assert result.value is True
    assert chunks == ["first\n", "second\n"]


def test_ecmascript_reports_its_language(node: Node) -> None:
    switched = rrepl_eval(node.rrepl, ",L ecmascript")
    assert switched.language == "ecmascript"
    assert "ECMAScript" in switched.output
    value, _, _, language = rrepl_eval(node.rrepl, "1+2;")
    assert (value, language) == (3, "ecmascript")
    assert rrepl_eval(node.rrepl, ",L scheme").language == "scheme"
    assert rrepl_eval(node.rrepl, "(+ 1 2)").value == 3


def test_a_module_change_shows_in_the_module_value(node: Node) -> None:
    result = rrepl_eval(node.rrepl, "(define-module (sshdist test)) (define y 5) y")
    assert (result.value, result.module) == (5, "(sshdist test)")
    assert rrepl_eval(node.rrepl, ",m (guile-user)").module == "(guile-user)"


def test_several_forms_run_in_order_and_the_last_gives_the_values(node: Node) -> None:
    result = rrepl_eval(node.rrepl, "(define a 1) (+ a 1) (values a 3)")
    assert [f.values for f in result.forms] == [(), (2,), (1, 3)]
    assert (result.value, result.eval_num) == ((1, 3), (2, 3))


def test_meta_commands_work(shared_repl: Node) -> None:
    assert "real time" in rrepl_eval(shared_repl.rrepl, ",time (+ 1 2)").output
    assert "car" in rrepl_eval(shared_repl.rrepl, ",apropos ^car$").output


def test_unreadable_values_are_opaque_not_errors(shared_repl: Node) -> None:
    value = rrepl_eval(shared_repl.rrepl, "(lambda (x) x)").value
    assert re.fullmatch(r"#<procedure \w+ .*>", str(value))
    assert rrepl_eval(shared_repl.rrepl, "(make-vector 2)").value[0].text == "#<unspecified>"


def test_reading_stdin_does_not_hang(shared_repl: Node) -> None:
    assert str(rrepl_eval(shared_repl.rrepl, "(read)", timeout=10).value) == "#<eof>"


def test_input_put_back_or_closed_does_not_reach_the_next_request(node: Node) -> None:
    rrepl_eval(node.rrepl, "(unread-char #\\x (current-input-port))")
    assert str(rrepl_eval(node.rrepl, "(read-char)", timeout=10).value) == "#<eof>"
    rrepl_eval(node.rrepl, "(close-port (current-input-port))")
    assert str(rrepl_eval(node.rrepl, "(read-char)", timeout=10).value) == "#<eof>"


def test_integers_of_any_size_come_back_exact(shared_repl: Node) -> None:
    big = rrepl_eval(shared_repl.rrepl, "(values (expt 10 40) (- (expt 2 70)) -7 0)").value
    assert big == (10**40, -(2**70), -7, 0)


def run_endless_loop(node: Node) -> tuple[threading.Thread, list[BaseException]]:
    """Start an endless loop on ``node`` in a thread; return once the loop runs."""
    errors: list[BaseException] = []
    started = threading.Event()

    def run() -> None:
        try:
            rrepl_eval(
                node.rrepl,
                '(begin (display "started\\n") (let loop () (loop)))',
                timeout=30,
                on_output=lambda stream, text: started.set(),
            )
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(10), "the loop did not start"
    return worker, errors


def test_interrupt_stops_an_endless_loop_and_keeps_state(node: Node) -> None:
    rrepl_eval(node.rrepl, "(define kept 'yes)")
    worker, errors = run_endless_loop(node)
    node.interrupt()
    worker.join(10)
    assert not worker.is_alive()
    assert isinstance(errors[0], NodeReplError)
    assert (errors[0].key, errors[0].message) == ("signal", "User interrupt")
    assert rrepl_eval(node.rrepl, "kept").value == Symbol("yes")


@pytest.mark.parametrize("repl_port", [None, UNIX])
def test_an_interrupted_evaluation_records_no_value(ssh_config: str, repl_port: object) -> None:
    # Code that survives the interrupt still returns a value (a (sleep 100) woken
    # by SIGINT returns 98): the call was interrupted, so it is no value, no $N.
    node = make_node("node1", ssh_config=ssh_config, repl_port=repl_port)
    try:
        assert rrepl_eval(node.rrepl, "(+ 1 1)").eval_num == 1
        started = threading.Event()
        survivor = '(catch #t (lambda () (display "go\\n") (sleep 100)) (lambda _ 98))'
        timer = threading.Thread(target=lambda: started.wait(10) and node.interrupt())
        timer.start()
        with pytest.raises(NodeReplError) as caught:
            rrepl_eval(node.rrepl, survivor, timeout=30, on_output=lambda *_: started.set())
        timer.join()
        assert (caught.value.key, caught.value.message) == ("signal", "User interrupt")
        assert rrepl_eval(node.rrepl, "(+ 2 2)").eval_num == 2
    finally:
        if repl_port is not None:
            node_stop_server(node)
        node.close()


def test_a_timed_out_evaluation_is_interrupted_and_the_repl_recovers(node: Node) -> None:
    rrepl_eval(node.rrepl, "(define kept 1)")
    with pytest.raises(
        NodeTimeoutError, match="within 0.5 s; it was interrupted, and the REPL kept"
    ):
        rrepl_eval(node.rrepl, "(let loop () (loop))", timeout=0.5)
    assert rrepl_eval(node.rrepl, "kept").value == 1


def test_a_second_rrepl_channel_is_a_separate_repl(shared_repl: Node) -> None:
    other = node_open_rrepl(shared_repl)
    try:
        rrepl_eval(shared_repl.rrepl, "(define only-here 1)")
        with pytest.raises(NodeReplError, match="only-here"):
            rrepl_eval(other, "only-here")
        assert rrepl_eval(other, "(+ 1 1)").value == 2
    finally:
        other.close()


def test_skip_to_prompt_drops_an_answer_nobody_waited_for(node: Node) -> None:
    r = node.rrepl
    r.channel.sendall(b"e7\n(+ 1 2)")  # a request sent outside rrepl_eval
    rrepl_skip_to_prompt(r, timeout=10)
    assert rrepl_eval(r, "(+ 2 2)").eval_num == 2


def test_skip_to_prompt_on_an_idle_repl_returns_and_leaves_it_usable(node: Node) -> None:
    r = node.rrepl
    before = rrepl_eval(r, "(+ 1 1)").eval_num
    for _ in range(3):
        rrepl_skip_to_prompt(r, timeout=1)  # nothing was sent: the prompt is there
    assert rrepl_eval(r, "(+ 2 2)", timeout=5).eval_num == before + 1
    assert node.restarts == 0


def test_skip_to_prompt_past_a_long_request_sent_by_hand_times_out_in_step(node: Node) -> None:
    r = node.rrepl
    r.channel.sendall(b"e26\n(begin (usleep 1500000) 5)" + b"e7\n(+ 1 2)")
    with pytest.raises(NodeTimeoutError, match="did not show its prompt within 0.3 s"):
        rrepl_skip_to_prompt(r, timeout=0.3)
    # The next evaluation waits for those two answers and reads its own.
    result = rrepl_eval(r, "(* 6 7)", timeout=10)
    assert result.value == 42
    rrepl_skip_to_prompt(r, timeout=1)
    assert rrepl_eval(r, "(+ 1 1)", timeout=5).value == 2 and node.restarts == 0


def test_a_failing_output_callback_leaves_the_repl_in_step(node: Node) -> None:
    def broken(stream: str, text: str) -> None:
        raise RuntimeError("the display went away")

    with pytest.raises(RuntimeError, match="display went away"):
        rrepl_eval(node.rrepl, '(begin (display "x\\n") (usleep 200000) 41)', on_output=broken)
    assert rrepl_eval(node.rrepl, "(+ 1 1)").value == 2


def test_interrupts_landing_at_any_moment_never_kill_the_repl(node: Node) -> None:
    pid = node.rrepl.pid
    loop = "(let loop ((i 0)) (if (< i 100000) (loop (1+ i)) i))"
    for k in range(30):
        timer = threading.Timer(k * 0.002, node.interrupt)
        timer.start()
        try:
            assert rrepl_eval(node.rrepl, loop).value == 100000
        except NodeReplError as exc:
            # An interrupt sent just after the request (the loop was still ending the
            # last one) stops it before it begins: an interrupt of that request too.
            assert (exc.key, exc.message) in (
                ("signal", "User interrupt"),
                (
                    "interrupted",
                    "Interrupted before it began (it waited behind an interrupted request).",
                ),
            ), exc
        timer.join()
    assert rrepl_eval(node.rrepl, "'alive").value == "alive"
    assert node.rrepl.pid == pid


def test_a_quiet_evaluation_leaves_the_value_history_alone(node: Node) -> None:
    assert rrepl_eval(node.rrepl, "(+ 1 1)").eval_num == 1
    assert rrepl_eval(node.rrepl, "(* 7 6)", quiet=True).value == 42
    assert rrepl_eval(node.rrepl, "(list $1 (+ 2 2))").value == [2, 4]
    assert rrepl_eval(node.rrepl, "$2").value == [2, 4]
    timed = rrepl_eval(node.rrepl, ",time (+ 40 2)", quiet=True)
    assert timed.output.startswith("42\n")  # printed bare, as with value-history off
    assert rrepl_eval(node.rrepl, "(+ 1 2)").eval_num == 4


# -- what real code does: children, floods, closed ports, interrupts while printing ----


def test_a_child_process_prints_into_the_output_not_into_the_protocol(shared_repl: Node) -> None:
    rrepl_eval(shared_repl.rrepl, "(define kept 'yes)")
    result = rrepl_eval(
        shared_repl.rrepl, '(begin (display "a\\n") (system "echo hi; echo oops >&2") (+ 2 3))'
    )
    assert (result.value, result.output, result.error_output) == (5, "a\nhi\n", "oops\n")
    assert rrepl_eval(shared_repl.rrepl, "kept").value == Symbol("yes")


def test_children_that_read_stdin_or_write_binary_leave_the_protocol_alone(node: Node) -> None:
    pid = node.rrepl.pid
    assert rrepl_eval(node.rrepl, '(system "cat")').value == 0  # stdin is /dev/null
    binary = rrepl_eval(node.rrepl, '(system "head -c 200000 /dev/urandom")')
    assert binary.value == 0 and len(binary.output) > 100000
    late = rrepl_eval(node.rrepl, '(system "(sleep 0.2; echo late) &")')
    assert late.value == 0
    assert rrepl_eval(node.rrepl, "(begin (usleep 400000) 'after)").value == Symbol("after")
    assert node.rrepl.pid == pid


def test_megabytes_on_stderr_arrive_whole(shared_repl: Node) -> None:
    guile = rrepl_eval(
        shared_repl.rrepl,
        "(let ((p (current-error-port))) (display (make-string 3000000 #\\x) p) 7)",
    )
    assert (guile.value, len(guile.error_output)) == (7, 3000000)
    child = rrepl_eval(
        shared_repl.rrepl, "(system \"head -c 3000000 /dev/zero | tr '\\\\0' y >&2\")"
    )
    assert (child.value, child.error_output) == (0, "y" * 3000000)


def test_megabytes_on_stderr_arrive_whole_from_a_repl_server(ssh_config: str) -> None:
    node = make_node("node3", UNIX, ssh_config=ssh_config)
    try:
        result = with_ssh(
            node,
            "(let ((p (current-error-port))) (display (make-string 3000000 #\\x) p) 7)",
            timeout=5,  # one byte a packet through the server's bridge took minutes
        )
        assert (result.value, len(result.error_output)) == (7, 3000000)
    finally:
        node_stop_server(node)
        node.close()


@pytest.mark.parametrize("port", ["(current-output-port)", "(current-error-port)"])
def test_code_that_closes_its_output_port_keeps_the_repl(node: Node, port: str) -> None:
    pid = node.rrepl.pid
    rrepl_eval(node.rrepl, "(define kept 1)")
    rrepl_eval(node.rrepl, f"(close-port {port})")
    with pytest.raises(NodeReplError):  # printing on a port closed in the same form fails
        rrepl_eval(node.rrepl, f'(begin (close-port {port}) (display "x" {port}))')
    again = rrepl_eval(
        node.rrepl, '(begin (display "out") (display "err" (current-error-port)) kept)'
    )
    assert (again.value, again.output, again.error_output) == (1, "out", "err")
    assert rrepl_eval(node.rrepl, '(system "echo child")').output == "child\n"
    assert node.rrepl.pid == pid


def test_two_hundred_interrupts_of_a_printing_loop_keep_the_repl(node: Node) -> None:
    rrepl_eval(node.rrepl, "(define kept 'yes)")
    pid = node.rrepl.pid
    loop = '(let loop () (display "line\\n") (loop))'
    rng = random.Random(8)
    for _ in range(200):
        timers: list[threading.Timer] = []

        def interrupt_soon(stream: str, text: str, timers: list = timers) -> None:
            if not timers:  # the loop prints: interrupt it a moment later
                timers.append(threading.Timer(rng.uniform(0, 0.004), node.interrupt))
                timers[0].start()

        with pytest.raises(NodeReplError) as stopped:
            rrepl_eval(node.rrepl, loop, timeout=30, on_output=interrupt_soon)
        timers[0].join()
        assert (stopped.value.key, stopped.value.message) == ("signal", "User interrupt")
    assert rrepl_eval(node.rrepl, "kept").value == Symbol("yes")
    assert node.rrepl.pid == pid


def test_timeouts_of_a_printing_loop_keep_the_repl(node: Node) -> None:
    rrepl_eval(node.rrepl, "(define kept 'yes)")
    pid = node.rrepl.pid
    for _ in range(20):
        with pytest.raises(NodeTimeoutError, match="kept its definitions"):
            rrepl_eval(node.rrepl, '(let loop () (display "line\\n") (loop))', timeout=0.05)
    assert rrepl_eval(node.rrepl, "kept", timeout=10).value == Symbol("yes")
    assert node.rrepl.pid == pid


def test_an_interrupt_reaches_a_child_the_repl_waits_for(node: Node) -> None:
    timer = threading.Timer(0.5, node.interrupt)
    started = time.monotonic()
    with pytest.raises(NodeReplError, match="User interrupt"):
        rrepl_eval(
            node.rrepl,
            # Guile runs the interrupt when system returns, at times only after the
            # next one: the second sleep is short, the first must be cut short.
            '(begin (display "go\\n") (system "sleep 30") (system "sleep 1"))',
            timeout=20,
            on_output=lambda stream, text: timer.start(),
        )
    timer.join()
    assert time.monotonic() - started < 5  # Ctrl-C stopped the sleep, as in a terminal
    assert rrepl_eval(node.rrepl, "(+ 1 1)").value == 2


def test_code_that_sets_other_output_ports_gets_its_own_back_next_request(node: Node) -> None:
    rrepl_eval(node.rrepl, "(set-current-output-port (open-output-string))")
    rrepl_eval(node.rrepl, "(set-current-error-port (open-output-string))")
    again = rrepl_eval(node.rrepl, '(begin (display "out") (display "err" (current-error-port)))')
    assert (again.output, again.error_output) == ("out", "err")


# -- rich display: (sshdist jupyter) ---------------------------------------------------


def test_displays_arrive_in_order_with_printed_output(shared_repl: Node) -> None:
    seen: list[object] = []
    result = rrepl_eval(
        shared_repl.rrepl,
        '(display "before\\n") (jupyter-html "<b>hi</b>") (display "after") 7',
        on_output=lambda stream, text: seen.append(text),
        on_display=seen.append,
    )
    shown = DisplayData({"text/html": "<b>hi</b>"})
    assert seen == ["before\n", shown, "after"]
    assert (result.value, result.output, result.displays) == (7, "before\nafter", (shown,))


def test_the_jupyter_form_and_every_module_reach_the_api(node: Node) -> None:
    result = rrepl_eval(
        node.rrepl,
        '(jupyter display "text/html" "<b>hi</b>")'
        " (define-module (elsewhere))"
        ' (jupyter-markdown "*md*") (jupyter latex "$x$")',
    )
    assert [d.data for d in result.displays] == [
        {"text/html": "<b>hi</b>"},
        {"text/markdown": "*md*", "text/plain": "*md*"},
        {"text/latex": "$x$", "text/plain": "$x$"},
    ]
    assert result.module == "(elsewhere)"


def test_png_bytes_arrive_base64_and_round_trip(shared_repl: Node) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    source = (
        "(use-modules (rnrs bytevectors))"
        f' (jupyter-png (u8-list->bytevector \'({" ".join(map(str, png))})) #:text "a chart")'
        ' (jupyter-display "image/png" "aGk=")'  # text for a binary type is base64 already
    )
    first, second = rrepl_eval(shared_repl.rrepl, source).displays
    assert base64.b64decode(first.data["image/png"]) == png
    assert first.data["text/plain"] == "a chart"
    assert second.data == {"image/png": "aGk="}


def test_json_maps_scheme_data_to_json_values(shared_repl: Node) -> None:
    source = (
        '(define table (make-hash-table)) (hash-set! table "k" \'v)'
        " (jupyter-json (list 1 -2.5 1/4 \"s\\\"q\" 'sym #:kw 'null #t #f (vector 1 '(2))"
        ' \'((a . 1) ("b" 2 3)) table \'() (vector \'((x . 1)) \'("c" "d"))))'
    )
    (shown,) = rrepl_eval(shared_repl.rrepl, source).displays
    expected = [1, -2.5, 0.25, 's"q', "sym", "kw", None, True, False, [1, [2]]]
    expected += [{"a": 1, "b": [2, 3]}, {"k": "v"}, [], [{"x": 1}, ["c", "d"]]]
    assert shown.data["application/json"] == expected
    assert json.loads(shown.data["text/plain"]) == expected
    shared = rrepl_eval(shared_repl.rrepl, "(let ((v (vector 1))) (jupyter-json (list v v)))")
    assert shared.displays[0].data["application/json"] == [[1], [1]]  # shared, not a cycle
    deep = "(jupyter-json (let loop ((i 0) (x '())) (if (= i 5000) x (loop (1+ i) (list x)))))"
    (too_deep,) = rrepl_eval(shared_repl.rrepl, deep).displays  # deeper than Python parses: text
    assert too_deep.data["application/json"].startswith("[[[[")


def test_what_a_thread_prints_after_its_request_survives_a_quiet_request(node: Node) -> None:
    # Completion and inspection are quiet requests: what a thread of earlier code
    # printed or showed meanwhile waits for the next evaluation instead of being lost.
    rrepl_eval(
        node.rrepl,
        "(define th (call-with-new-thread (lambda () (usleep 100000)"
        ' (display "late\\n") (jupyter-html "<b>late</b>"))))',
    )
    # Both records have come back, unasked for, by the time a completion is asked.
    wait_until(lambda: len(node.rrepl.channel.in_buffer) >= 40, 10, "the thread's records")
    assert rrepl_eval(node.rrepl, "(begin (join-thread th) 'joined)", quiet=True).output == ""
    seen: list[str] = []
    result = rrepl_eval(node.rrepl, "(+ 1 2)", on_output=lambda stream, text: seen.append(text))
    assert (result.value, result.output, seen) == (3, "late\n", ["late\n"])
    assert result.displays == (DisplayData({"text/html": "<b>late</b>"}),)


def test_text_a_thread_left_without_a_newline_survives_a_quiet_request(
    node: Node, tmp_path: Path
) -> None:
    # No newline: the text waits in the port's buffer, where the quiet request's own
    # flush used to take it for its output (a completion then lost it).
    mark = tmp_path / "printed"
    rrepl_eval(
        node.rrepl,
        "(call-with-new-thread (lambda () (usleep 100000)"
        f' (display "late") (close-port (open-output-file "{mark}"))))',
    )
    wait_until(mark.exists, 10, "the thread to print")
    assert rrepl_eval(node.rrepl, "(+ 1 1)", quiet=True).output == ""
    result = rrepl_eval(node.rrepl, "(+ 1 2)")
    assert (result.value, result.output) == (3, "late")


def test_an_output_is_updated_by_its_display_id(shared_repl: Node) -> None:
    result = rrepl_eval(
        shared_repl.rrepl,
        '(jupyter-html "<p>1</p>" #:id \'progress)'
        ' (jupyter-update-display "progress" "text/html" "<p>2</p>")',
    )
    assert result.displays == (
        DisplayData({"text/html": "<p>1</p>"}, "progress", update=False),
        DisplayData({"text/html": "<p>2</p>"}, "progress", update=True),
    )


@pytest.mark.parametrize(
    ("source", "key", "message"),
    [
        ('(jupyter-display 42 "x")', "wrong-type-arg", "In procedure jupyter-display: "),
        ('(jupyter-display "text/html" 42)', "wrong-type-arg", "in position 2 (expecting a str"),
        ('(jupyter-html "x" #:id (list 1))', "wrong-type-arg", "for #:id (expecting a display"),
        ('(jupyter-update-display #f "text/html" "x")', "wrong-type-arg", "in position 1"),
        ("(jupyter-json (cons 1 2))", "wrong-type-arg", "Cannot be written as JSON: (1 . 2)"),
        ("(jupyter-json (/ 1. 0.))", "wrong-type-arg", "Cannot be written as JSON: +inf.0"),
        ('(jupyter nothing "x")', "misc-error", "No jupyter procedure nothing; there are"),
        (
            "(jupyter-markdown 5)",
            "wrong-type-arg",
            "In procedure jupyter-markdown: Wrong type "
            "argument in position 1 (expecting a string or a bytevector): 5",
        ),
        (
            '(jupyter-html "x" #:id #t)',
            "wrong-type-arg",
            "In procedure jupyter-html: Wrong type argument for #:id",
        ),
        ("(jupyter-json (/ (expt 10 400) 3))", "wrong-type-arg", "Cannot be written as JSON: 1"),
        (
            "(let ((v (vector 1))) (vector-set! v 0 v) (jupyter-json v))",
            "wrong-type-arg",
            "a list, vector or hash table contains itself",
        ),
        (
            "(let ((h (make-hash-table))) (hash-set! h 'me h) (jupyter-json h))",
            "wrong-type-arg",
            "a list, vector or hash table contains itself",
        ),
    ],
)
def test_bad_display_arguments_are_guile_errors_and_the_repl_stays(
    shared_repl: Node, source: str, key: str, message: str
) -> None:
    with pytest.raises(NodeReplError) as caught:
        rrepl_eval(shared_repl.rrepl, f'(display "printed") {source}')
    assert (caught.value.key, caught.value.output) == (key, "printed")
    assert message in caught.value.message
    assert rrepl_eval(shared_repl.rrepl, '(jupyter-html "ok")').displays[0].data == {
        "text/html": "ok"
    }


# -- input: code that reads its current input port ------------------------------------


def _answers(*lines: str | None) -> tuple[list[str], Callable[[str], str | None]]:
    """An ``on_input`` that answers ``lines`` in turn, and the prompts it was given."""
    prompts: list[str] = []
    left = iter(lines)

    def answer(prompt: str) -> str | None:
        prompts.append(prompt)
        return next(left)

    return prompts, answer


@pytest.fixture(params=[None, UNIX], ids=["exec", "server"])
def any_node(request: pytest.FixtureRequest, ssh_config: str) -> Iterator[Node]:
    """node1 with a REPL on an exec channel, or on a REPL server (stopped after)."""
    n = make_node("node1", request.param, ssh_config=ssh_config)
    yield n
    if request.param is not None:
        node_stop_server(n)
    n.close()


def test_reads_ask_the_caller_for_lines(any_node: Node) -> None:
    prompts, answer = _answers("first", "second\n", "(a b)")
    result = any_node.eval(
        '(use-modules (ice-9 rdelim)) (display "name? ")'
        " (list (read-line) (read-line) (read) (read-char))",
        on_input=answer,
        on_output=lambda stream, text: prompts.append(text),
    )
    assert result.value == ["first", "second", [Symbol("a"), Symbol("b")], Char("\n")]
    assert prompts == ["name? ", "", "", ""]  # printed before it asks


def test_reads_get_the_end_of_file_without_a_caller_or_when_it_says_so(any_node: Node) -> None:
    source = "(use-modules (ice-9 rdelim)) (list (eof-object? (read-line)) (eof-object? (read)))"
    assert any_node.eval(source).value == [True, True]
    prompts, answer = _answers(None, None)
    assert any_node.eval(source, on_input=answer).value == [True, True]
    assert prompts == ["", ""]


def test_an_interrupt_while_the_code_waits_for_input_keeps_the_repl(any_node: Node) -> None:
    any_node.eval("(use-modules (ice-9 rdelim)) (define kept 'yes)")

    def ctrl_c(prompt: str) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        any_node.eval("(read-line)", on_input=ctrl_c, timeout=20)
    assert any_node.settle(10) == "ready"
    assert any_node.eval("kept", timeout=10).value == Symbol("yes")

    # An interrupt from elsewhere while the caller still thinks about its answer.
    answered = threading.Event()

    def slow(prompt: str) -> str:
        threading.Thread(target=any_node.interrupt).start()
        answered.wait(10)
        return "too late"

    timer = threading.Timer(1.0, answered.set)
    timer.start()
    with pytest.raises(NodeReplError, match="User interrupt"):
        any_node.eval('(list (read-line) (display "not reached"))', on_input=slow, timeout=20)
    timer.join()
    again = any_node.eval("(list kept (read-line))", on_input=lambda prompt: "fresh", timeout=10)
    assert again.value == [Symbol("yes"), "fresh"]


def test_an_input_callback_that_fails_is_a_clear_error(any_node: Node) -> None:
    any_node.eval("(use-modules (ice-9 rdelim)) (define kept 'yes)")

    def broken(prompt: str) -> str:
        raise ValueError("no keyboard here")

    with pytest.raises(NodeReplError) as caught:
        any_node.eval("(read-line)", on_input=broken, timeout=20)
    assert caught.value.key == "input-callback"
    assert "reading input failed (ValueError: no keyboard here)" in caught.value.message
    assert any_node.settle(10) == "ready"
    assert any_node.eval("kept", timeout=10).value == Symbol("yes")


def test_a_client_gone_while_the_code_waits_for_input_hangs_nothing(
    any_node: Node, ssh_config: str
) -> None:
    any_node.eval("(define kept 'yes)")
    pid = any_node.rrepl.pid

    def leave(prompt: str) -> str:
        any_node.rrepl.close()
        return "never sent"

    with pytest.raises(NodeError):
        any_node.eval('(read-char) (display "after")', on_input=leave, timeout=20)
    if any_node.repl_port is None:  # the REPL of an exec channel ends with it
        wait_until(lambda: not _running(pid), timeout=10, what="the waiting guile to end")
    else:  # a server's client reads the end of its input; the server serves on
        other = make_node("node1", any_node.repl_port, ssh_config=ssh_config)
        try:
            assert other.eval("kept", timeout=10).value == Symbol("yes")
        finally:
            other.close()


def _running(pid: int) -> bool:
    """Alive and not a zombie (the local nodes run on this machine)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z"


def test_a_procedure_defined_at_the_repl_prints_as_guile_prints_a_compiled_one(
    shared_repl: Node,
) -> None:
    rrepl_eval(shared_repl.rrepl, "(define* (opt a #:optional b #:key size . rest) a)")
    text = rrepl_eval(shared_repl.rrepl, "((@@ (sshdist rrepl) procedure-text) opt)").value
    assert text == "#<procedure opt (a #:optional b #:key size . rest)>"


def test_integer_values_read_the_short_way_are_what_the_reader_gives() -> None:
    from sshdist_kernel import sexp
    from sshdist_kernel.replchannel import _read_value

    texts = ["3", "-5", "0", "-0", "007", "12345678901234567890", "9" * 5000, "-" + "1" * 4001]
    texts += ["-", "", "+3", "1/2", "-1.5", "1e3", "\u0663", "#t", "(1 2)", '"7"', "3 ", "x1"]
    for text in texts:
        got, want = _read_value(text), sexp.read_value(text)
        assert (type(got), got) == (type(want), want), text


class _ScriptedChannel:
    """A channel whose REPL answers an evaluation with a (+ 1 2) answer in two reads,
    the second with text on the channel's stderr, and an interrupt with its i record."""

    closed = False

    def __init__(self) -> None:
        import queue

        self.reads: queue.Queue[tuple[bytes, bytes]] = queue.Queue()
        self.stderr = b""
        self.timeout: float | None = None
        hello = b"1\n3.0.9\n0"
        self.reads.put((b"\0sshdist-rrepl\0h%d\n" % len(hello) + hello, b""))

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def recv(self, size: int) -> bytes:
        import queue

        try:
            data, err = self.reads.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError from None
        self.stderr += err
        return data

    def recv_stderr_ready(self) -> bool:
        return bool(self.stderr)

    def recv_stderr(self, size: int) -> bytes:
        data, self.stderr = self.stderr, b""
        return data

    def send(self, data: bytes) -> int:
        if data.startswith(b"e"):
            self.reads.put((b"g0\nv3\n1\n3f0\n", b""))
            self.reads.put((b"p19\n(guile-user)\nscheme", b"oops\n"))
        elif data.startswith(b"i"):
            self.reads.put((b"i0\n", b""))
        return len(data)

    def close(self) -> None:
        self.closed = True


def test_a_failing_callback_on_the_last_record_leaves_the_repl_in_step() -> None:
    from sshdist_kernel.guile import GuileRepl
    from sshdist_kernel.rrepl import Rrepl

    rrepl = Rrepl(_ScriptedChannel(), where="scripted", language=GuileRepl())

    def on_output(stream: str, text: str) -> None:
        raise RuntimeError(f"callback failed on {text!r}")

    # The stderr text comes with the p record: the answer was read to its end, so the
    # recovery waits only for its interrupt's acknowledgement and keeps the REPL.
    with pytest.raises(RuntimeError, match="oops"):
        rrepl.eval("(+ 1 2)", on_output=on_output)
    assert rrepl.wait_settled(10)
    assert not rrepl.broken
    assert rrepl.eval("(+ 1 2)").value == 3
