"""Host lists as clusters write them: pure expansion and compression, hostfiles and the
Slurm environment; then the same forms made into nodes on the local nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshdist_kernel import (
    compress_hosts,
    expand_hosts,
    make_nodes,
    read_hostfile,
    slurm_hosts,
)
from sshdist_kernel.hostlist import MAX_HOSTS


@pytest.mark.parametrize(
    ("spec", "hosts"),
    [
        ("node[01-04]", ["node01", "node02", "node03", "node04"]),
        ("node[8-11]", ["node8", "node9", "node10", "node11"]),
        ("cn[1-4,7]", ["cn1", "cn2", "cn3", "cn4", "cn7"]),
        ("r[1-2]n[1-3]", ["r1n1", "r1n2", "r1n3", "r2n1", "r2n2", "r2n3"]),
        ("a,b,cn[1-2]", ["a", "b", "cn1", "cn2"]),
        ("a, b ,c", ["a", "b", "c"]),
        ("n[08-10]-ib", ["n08-ib", "n09-ib", "n10-ib"]),
        ("n[007]", ["n007"]),
        ("me@cn[1-2]:2222", ["me@cn1:2222", "me@cn2:2222"]),
        ("me@cn1:2222,cn2", ["me@cn1:2222", "cn2"]),
        ("[::1]:2222,me@[fe80::1]", ["[::1]:2222", "me@[fe80::1]"]),
        ("b,a,b,n[1-2],n1", ["b", "a", "n1", "n2"]),
        ("hpc1.example.org", ["hpc1.example.org"]),
        ("cn[01-16/2]", [f"cn{n:02d}" for n in range(1, 16, 2)]),
        ("n[1-10/3]", ["n1", "n4", "n7", "n10"]),
        ("n[8-12/2]", ["n8", "n10", "n12"]),
        ("n[001-120/50]", ["n001", "n051", "n101"]),
        ("n[1-3/5]", ["n1"]),
        ("n[2-6/2,9,12-13/1]", ["n2", "n4", "n6", "n9", "n12", "n13"]),
        ("r[1-3/2]n[1-2]", ["r1n1", "r1n2", "r3n1", "r3n2"]),
    ],
)
def test_expand_hosts(spec: str, hosts: list[str]) -> None:
    assert expand_hosts(spec) == hosts


def test_expand_hosts_takes_a_list_of_host_lists() -> None:
    assert expand_hosts(["n[1-2]", "m1", "n2"]) == ["n1", "n2", "m1"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("node[1-3", "host list 'node[1-3': '[' at position 4 is never closed"),
        ("node1]", "host list 'node1]': ']' at position 5 closes no '['"),
        ("n[5-1]", "host list 'n[5-1]': the range 5-1 in 'n[5-1]' runs backwards; write 1-5"),
        ("", "the host list is empty: name at least one host"),
        ("  ", "the host list is empty: name at least one host"),
        ("a,,b", "host list 'a,,b' has an empty entry (two commas, or one at an end)"),
        ("a,", "host list 'a,' has an empty entry (two commas, or one at an end)"),
        ("n[]", "host list 'n[]': [] in 'n[]' is not numbers and ranges like [1-4,7] or [01-16]"),
        ("n[a-c]", "[a-c] in 'n[a-c]' is not numbers and ranges"),
        ("n[1-]", "[1-] in 'n[1-]' is not numbers and ranges"),
        ("n[[1]]", "host list 'n[[1]]': brackets inside brackets in 'n[[1]]'"),
        ("node1 node2", "'node1 node2' contains a space; separate hosts with ','"),
        ("u[1-2]@h", "brackets belong in the host name, not 'u[1-2]'"),
        (
            "n[1-1000000]",
            "host list 'n[1-1000000]' names more than 100,000 hosts "
            "('n[1-1000000]' alone is 1,000,000); check the ranges",
        ),
        ("r[1-1000]n[1-1000]", "names more than 100,000 hosts"),
        ("n[1-2000000/10]", "('n[1-2000000/10]' alone is 200,000)"),
        (
            "cn[01-16/0]",
            "host list 'cn[01-16/0]': the range 01-16/0 in 'cn[01-16/0]' has step 0; "
            "a step is 1 or more",
        ),
        (
            "cn[1-4/x]",
            "host list 'cn[1-4/x]': the step 'x' in 'cn[1-4/x]' is not a number; "
            "write a range and its step like 01-16/2",
        ),
        ("cn[1-4/]", "the step '' in 'cn[1-4/]' is not a number"),
        ("cn[1-4/-1]", "the step '-1' in 'cn[1-4/-1]' is not a number"),
        ("cn[1-9/2/3]", "the step '2/3' in 'cn[1-9/2/3]' is not a number"),
        (
            "cn[5/2]",
            "host list 'cn[5/2]': 5/2 in 'cn[5/2]' puts a step on a single number; "
            "a step needs a range, like 01-16/2",
        ),
        ("n[5-1/2]", "the range 5-1 in 'n[5-1/2]' runs backwards; write 1-5"),
        ("n[/2]", "[/2] in 'n[/2]' is not numbers and ranges"),
        ("n[1-999999999999999999999]", "names more than 100,000 hosts"),
    ],
)
def test_malformed_host_lists_are_clear_value_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        expand_hosts(spec)
    assert message in str(caught.value)


def test_the_cap_counts_the_whole_list() -> None:
    assert len(expand_hosts(f"n[1-{MAX_HOSTS}]")) == MAX_HOSTS
    with pytest.raises(ValueError, match="names more than 100,000 hosts"):
        expand_hosts(f"n[1-{MAX_HOSTS}],m1")
    assert len(expand_hosts(f"n[1-{10 * MAX_HOSTS}/10]")) == MAX_HOSTS


@pytest.mark.parametrize(
    ("hosts", "spec"),
    [
        (["node01", "node02", "node03", "node07"], "node[01-03,07]"),
        (["n9", "n10", "n11"], "n[9-11]"),
        (["n1", "n02"], "n[1,02]"),
        (["r1n1", "r1n2", "r2n1"], "r1n[1-2],r2n1"),
        (["b", "a", "n3", "n1"], "b,a,n[3,1]"),
        (["me@n1:22", "n2"], "me@n1:22,n2"),
        (["cn01", "cn03", "cn05", "cn07"], "cn[01-07/2]"),
        (["n8", "n10", "n12", "n14"], "n[8-14/2]"),
        (["n01", "n03", "n05"], "n[01-05/2]"),
        (["n1", "n3", "n5"], "n[1,3,5]"),  # 1-5/2 is no shorter
        (["n9", "n11", "n13", "n15", "n20"], "n[9-15/2,20]"),
        (["n1", "n4", "n7", "n10", "n2"], "n[1-10/3,2]"),
        (["n1", "n3", "n5", "n7", "n8", "n9"], "n[1,3,5,7-9]"),  # a run of ones as before
        (["n7", "n5", "n3", "n1"], "n[7,5,3,1]"),
        (["n1", "n03", "n05", "n07", "n9"], "n[1,03-07/2,9]"),  # widths as written
    ],
)
def test_compress_hosts(hosts: list[str], spec: str) -> None:
    assert compress_hosts(hosts) == spec
    assert expand_hosts(spec) == hosts


def test_compress_refuses_a_name_a_host_list_cannot_hold() -> None:
    with pytest.raises(ValueError, match="host name 'a,b' cannot be written in a host list"):
        compress_hosts(["a,b"])


_names = st.text(alphabet="abn-._", min_size=0, max_size=3)
_numbers = st.text(alphabet="0123456789", min_size=1, max_size=4)
_host = st.builds(
    lambda a, n, b, m: a + n + b + m,
    _names,
    st.one_of(st.just(""), _numbers),
    _names,
    st.one_of(st.just(""), _numbers),
).filter(bool)


@given(st.integers(0, 500), st.integers(2, 30), st.integers(4, 20), st.integers(1, 4))
def test_an_evenly_stepped_run_compresses_to_one_stepped_range(
    first: int, step: int, count: int, width: int
) -> None:
    last = first + step * (count - 1)
    hosts = [f"cn{n:0{width}d}" for n in range(first, last + 1, step)]
    assert compress_hosts(hosts) == f"cn[{first:0{width}d}-{last:0{width}d}/{step}]"
    assert expand_hosts(compress_hosts(hosts)) == hosts


@given(st.lists(_host, unique=True, max_size=40))
def test_expanding_a_compressed_list_gives_back_the_hosts(hosts: list[str]) -> None:
    if not hosts:
        return
    assert expand_hosts(compress_hosts(hosts)) == hosts


_range = st.builds(
    lambda lo, k, w, step: f"{lo:0{w}d}-{lo + k:0{w}d}{step}" if k else f"{lo:0{w}d}",
    st.integers(0, 120),
    st.integers(0, 12),
    st.integers(1, 3),
    st.sampled_from(["", "", "/1", "/2", "/3", "/5"]),
)
_bracket = st.lists(_range, min_size=1, max_size=3).map(",".join)
_entry = st.builds(
    lambda a, r, b: f"{a}[{r}]{b}" if r else a + b,
    st.text(alphabet="abcn", min_size=1, max_size=3),
    st.one_of(st.just(""), _bracket),
    st.text(alphabet="-ib", max_size=2),
)


@given(st.lists(_entry, min_size=1, max_size=5))
def test_a_host_list_and_its_compression_name_the_same_hosts(entries: list[str]) -> None:
    hosts = expand_hosts(",".join(entries))
    assert expand_hosts(compress_hosts(hosts)) == hosts


def test_read_hostfile_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text(
        "# the rack\n\nnode[01-03]   # three\n  login1\nnode02\nme@gpu[1-2]:2222, spare\n"
    )
    assert read_hostfile(hostfile) == [
        "node01",
        "node02",
        "node03",
        "login1",
        "me@gpu1:2222",
        "me@gpu2:2222",
        "spare",
    ]


def test_a_bad_hostfile_line_names_the_file_and_line(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node1\n# fine so far\nnode[2-\n")
    with pytest.raises(ValueError) as caught:
        read_hostfile(hostfile)
    assert str(caught.value) == (
        f"{hostfile}, line 3: host list 'node[2-': '[' at position 4 is never closed"
    )
    hostfile.write_text("node1 slots=4\n")  # an MPI hostfile's form
    with pytest.raises(ValueError, match=r"hosts, line 1: .*'node1 slots=4' contains a space"):
        read_hostfile(hostfile)


def test_a_hostfile_without_hosts_or_missing_is_an_error(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match="names no hosts"):
        read_hostfile(hostfile)
    with pytest.raises(FileNotFoundError, match="missing"):
        read_hostfile(tmp_path / "missing")


@pytest.mark.parametrize(
    ("environ", "hosts"),
    [
        ({"SLURM_JOB_NODELIST": "cn[01-02,05]"}, ["cn01", "cn02", "cn05"]),
        ({"SLURM_NODELIST": "cn7"}, ["cn7"]),
        ({"SLURM_JOB_NODELIST": "a[1-2]-b[1-2],c"}, ["a1-b1", "a1-b2", "a2-b1", "a2-b2", "c"]),
        ({"SLURM_JOB_NODELIST": "new1", "SLURM_NODELIST": "old1"}, ["new1"]),
    ],
)
def test_slurm_hosts(environ: dict[str, str], hosts: list[str]) -> None:
    assert slurm_hosts(environ) == hosts


def test_slurm_hosts_outside_an_allocation_or_malformed() -> None:
    with pytest.raises(ValueError, match="^not inside a Slurm allocation: SLURM_JOB_NODELIST"):
        slurm_hosts({"HOME": "/root"})
    with pytest.raises(ValueError, match=r"^SLURM_JOB_NODELIST='cn\[3-1\]': .* runs backwards"):
        slurm_hosts({"SLURM_JOB_NODELIST": "cn[3-1]"})


# -- on the local nodes, through their ssh_config aliases node1..node3 -----------------


def _names_and_answers(nodes: list) -> list[tuple[str, object]]:
    from sshdist_kernel import node_eval

    try:
        return [(n.name, node_eval(n, "(+ 1 2)").value) for n in nodes]
    finally:
        for n in nodes:
            n.close()


def test_make_nodes_takes_a_host_list(ssh_config: str) -> None:
    made = make_nodes("node[1-3]", ssh_config=ssh_config)
    assert _names_and_answers(made) == [("node1", 3), ("node2", 3), ("node3", 3)]


def test_make_nodes_expands_list_entries_and_keeps_order(ssh_config: str) -> None:
    made = make_nodes(["node3", "node[1-2]"], ssh_config=ssh_config)
    assert [n.name for n in made] == ["node3", "node1", "node2"]
    _names_and_answers(made)
    with pytest.raises(ValueError, match="runs backwards"):
        make_nodes("node[3-1]", ssh_config=ssh_config)


def test_a_hostfile_and_a_slurm_allocation_on_the_local_nodes(
    ssh_config: str, tmp_path: Path
) -> None:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# our nodes\nnode[2-3]\nnode1\n")
    made = make_nodes(read_hostfile(hostfile), ssh_config=ssh_config)
    assert _names_and_answers(made) == [("node2", 3), ("node3", 3), ("node1", 3)]
    made = make_nodes(slurm_hosts({"SLURM_JOB_NODELIST": "node[1-2]"}), ssh_config=ssh_config)
    assert _names_and_answers(made) == [("node1", 3), ("node2", 3)]
