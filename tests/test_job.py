"""Jobs: split as an exact partition (property tests), the job procedures, and
hand_out_job on a real node."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshdist_kernel import (
    Job,
    Node,
    NodeReplError,
    assign_eval,
    assign_map,
    hand_out_job,
    is_job,
    job_data,
    job_node,
    job_proc,
    job_to_sexp,
    job_type,
    make_job,
    set_job_node,
    split,
    with_ssh,
)


@given(st.lists(st.integers()), st.integers(min_value=1, max_value=50))
def test_split_is_an_exact_partition(lst: list[int], count: int) -> None:
    chunks = split(lst, count)
    assert [x for chunk in chunks for x in chunk] == lst
    assert len(chunks) <= min(count, len(lst))
    assert all(chunks)
    assert len({len(c) for c in chunks[:-1]}) <= 1  # equal chunks, then the rest


def test_split_as_in_guile_ssh_tests_and_the_chapter() -> None:
    a, b, c, d, e, f, g = "abcdefg"
    assert split([a, b, c, d, e, f, g], 3) == [[a, b], [c, d], [e, f, g]]  # "split, 1"
    assert split([a], 2) == [[a]]  # "split, 2"
    assert split([a, b, c, d], 2) == [[a, b], [c, d]]  # the chapter's example


def test_split_where_guile_ssh_repeats_items_fails_or_makes_empty_chunks() -> None:
    assert split([1, 2, 3, 4, 5, 6], 4) == [[1, 2], [3, 4], [5, 6]]  # ((1 2) (3 4) (5 6) (5 6))
    assert split(list(range(23)), 9)[-1] == [21, 22]  # Guile-SSH: wrong-type-arg
    assert split([1, 2], 4) == [[1], [2]]  # (() () () (1 2))
    assert split([], 3) == []  # (())


_GUILE_SSH_SPLITS = """
(let ((split (@ (ssh dist job) split)))
  (map (lambda (n)
         (map (lambda (count) (false-if-exception (split (iota n) count))) (iota 8 1)))
       (iota 31)))
"""


def test_split_lays_out_chunks_as_guile_ssh_does(shared_node: Node) -> None:
    """Against the real Guile-SSH split, for every case where its answer is a partition."""
    if not with_ssh(shared_node, "(false-if-exception (resolve-interface '(ssh dist job)))").value:
        pytest.skip("Guile-SSH is not installed (apt-get install guile-ssh)")
    compared = 0
    for n, row in enumerate(with_ssh(shared_node, _GUILE_SSH_SPLITS).value):
        for count, theirs in enumerate(row, start=1):
            if theirs and all(theirs) and [x for c in theirs for x in c] == list(range(n)):
                assert split(list(range(n)), count) == theirs, (n, count)
                compared += 1
    assert compared == 222  # of 248: the rest repeat items, fail, or have empty chunks


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_split_refuses_a_bad_count(count: object) -> None:
    with pytest.raises(ValueError, match="count of at least 1"):
        split([1, 2], count)


def test_job_procedures(node: Node, shared_node: Node) -> None:
    job = make_job("map", node, [1, 2], "1+")
    assert is_job(job) and not is_job("job")
    assert (job_type(job), job_node(job), job_data(job), job_proc(job)) == (
        "map",
        node,
        [1, 2],
        "1+",
    )
    moved = set_job_node(job, shared_node)
    assert moved is not job and job_node(moved) is shared_node and job_node(job) is node
    assert re.fullmatch(
        r"#<job map #<node \S+@127\.0\.0\.1:\d+/exec [0-9a-f]+> [0-9a-f]+>", repr(job)
    )
    with pytest.raises(ValueError, match="'map' or 'eval'"):
        make_job("reduce", node, [], "+")


def test_job_to_sexp() -> None:
    node = object.__new__(Node)
    assert job_to_sexp(Job("map", node, [1, "a"], "f")) == '(map f (quote (1 "a")))'
    assert job_to_sexp(Job("eval", node, None, ["(+ 1 2)", "x"])) == (
        "(map primitive-eval (quote ((begin (+ 1 2)\n) (begin x\n))))"
    )
    # An expression that ends in a comment still closes its begin.
    assert job_to_sexp(Job("eval", node, None, ["1 ; one"])).endswith("(begin 1 ; one\n))))")


def test_assign_splits_work_over_nodes(node: Node, shared_node: Node) -> None:
    jobs = assign_map([node, shared_node], [1, 2, 3], "1+")
    assert [(j.node, j.data, j.index) for j in jobs] == [(node, [1, 2], 0), (shared_node, [3], 1)]
    jobs = assign_eval([node, shared_node, node], ["1", "2"])
    assert [(j.node, j.proc) for j in jobs] == [(node, ["1"]), (shared_node, ["2"])]
    with pytest.raises(ValueError, match="no nodes"):
        assign_map([], [1], "1+")


@pytest.mark.parametrize(
    "data",
    [
        list(range(-5, 5)),  # sent packed, as int64
        [2**70, -(2**64), 3],  # beyond 64 bits: sent as text
        [0.5, -1.25, 1e300],  # sent packed, as doubles
        [1, "two", 3.0, [4]],  # anything else: sent as text
    ],
)
def test_hand_out_a_map_job(node: Node, data: list[object]) -> None:
    assert hand_out_job(make_job("map", node, data, "(lambda (x) x)")) == data


def test_hand_out_an_eval_job(node: Node) -> None:
    job = make_job("eval", node, None, ["(+ 1 2)", "(define z 4) (* z z)", '"s"'])
    assert hand_out_job(job) == [3, 16, "s"]


def test_a_failing_job_raises_node_repl_error(node: Node) -> None:
    with pytest.raises(NodeReplError, match="Wrong type"):
        hand_out_job(make_job("map", node, [1], "car"))


def test_a_job_that_gives_no_list_of_results_says_what_it_gave(node: Node) -> None:
    # The proc closes the map early; the job's value is then a list of 3 for 2 items.
    proc = "(lambda (x) x) '())) (cons* (expt 7 20000) 1 (list"
    job = make_job("map", node, ["a", "b"], proc)
    with pytest.raises(NodeReplError, match=r"the job gave \(9\d{198} instead of a list of 2"):
        hand_out_job(job)


def test_hand_out_a_map_job_of_huge_integers(node: Node) -> None:
    job = make_job("map", node, [10**5000, -(7**20000)], "(lambda (x) (* x x))")
    assert hand_out_job(job) == [10**10000, 7**40000]
