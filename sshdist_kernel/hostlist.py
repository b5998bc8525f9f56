"""Host lists as clusters write them: ``node[01-16]``, ``cn[1-4,7]``, ``r[1-2]n[1-3]``,
ClusterShell's steps ``cn[01-16/2]``, comma lists, hostfiles and the current Slurm
allocation, expanded without Slurm's tools.  Pure functions, no I/O except
``read_hostfile``."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

MAX_HOSTS = 100_000
"""The most hosts one host list may name: a typo such as ``node[1-1000000]`` is refused
before anything is built."""

SLURM_VARIABLES = ("SLURM_JOB_NODELIST", "SLURM_NODELIST")

_RANGE = re.compile(r"(\d+)(?:-(\d+))?(?:/(.*))?")
_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$", re.DOTALL)


def expand_hosts(spec: str | Iterable[str]) -> list[str]:
    """The hosts a Slurm/pdsh-style host list names, in order, each once: ``node[01-03]``
    is node01, node02, node03 and ``node[1-7/2]`` every second one, node1, node3, node5,
    node7; commas outside brackets separate entries; ``user@`` and
    ``:port`` are kept around each expanded host.  ``ValueError`` says what is wrong."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    hosts: dict[str, None] = {}
    for one in specs:
        if not isinstance(one, str):
            raise TypeError(f"a host list is a string, not {one!r}")
        entries = _split_top(one)
        if not entries:
            raise ValueError("the host list is empty: name at least one host")
        for entry in entries:
            for host in _expand_entry(entry, one, MAX_HOSTS - len(hosts)):
                hosts.setdefault(host, None)
            if len(hosts) > MAX_HOSTS:
                raise ValueError(f"host list {one!r} names more than {MAX_HOSTS:,} hosts")
    return list(hosts)


def compress_hosts(hosts: Iterable[str]) -> str:
    """A host list that expands to ``hosts`` in the same order (``scontrol show
    hostlist``'s form, without sorting): neighbours that differ only in their last
    number share one bracket, ``node[01-03,07]``, evenly stepped ones ``cn[01-07/2]``."""
    out: list[str] = []
    group: list[tuple[str, str, str]] = []  # (prefix, number, suffix) sharing a bracket

    def flush() -> None:
        if len(group) == 1:
            prefix, number, suffix = group[0]
            out.append(prefix + number + suffix)
        elif group:
            prefix, _, suffix = group[0]
            out.append(f"{prefix}[{_ranges([n for _, n, _ in group])}]{suffix}")
        group.clear()

    for host in hosts:
        if not host or any(c in host for c in ",[] \t\n") and not _is_ipv6_entry(host):
            raise ValueError(f"host name {host!r} cannot be written in a host list")
        match = _LAST_NUMBER.match(host)
        if match is None or "@" in host or ":" in host:
            flush()
            out.append(host)
            continue
        prefix, number, suffix = match.groups()
        if group and (group[0][0], group[0][2]) != (prefix, suffix):
            flush()
        group.append((prefix, number, suffix))
    flush()
    return ",".join(out)


def read_hostfile(path: str | os.PathLike[str]) -> list[str]:
    """The hosts in a hostfile: one host or host list per line, ``#`` comments and blank
    lines allowed, each host once.  A bad line is a ``ValueError`` naming file and line."""
    hosts: dict[str, None] = {}
    text = Path(path).expanduser().read_text()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.partition("#")[0].strip()
        if not line:
            continue
        try:
            expanded = expand_hosts(line)
        except ValueError as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from None
        for host in expanded:
            hosts.setdefault(host, None)
        if len(hosts) > MAX_HOSTS:
            raise ValueError(f"{path}: names more than {MAX_HOSTS:,} hosts")
    if not hosts:
        raise ValueError(f"{path} names no hosts (only blank lines and comments)")
    return list(hosts)


def slurm_hosts(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The nodes of the current Slurm allocation, from ``SLURM_JOB_NODELIST`` (or the
    older ``SLURM_NODELIST``), expanded here: Slurm's own tools are not needed."""
    for name in SLURM_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            try:
                return expand_hosts(value)
            except ValueError as exc:
                raise ValueError(f"{name}={value!r}: {exc}") from None
    raise ValueError(
        "not inside a Slurm allocation: SLURM_JOB_NODELIST is not set "
        "(run under salloc, sbatch or srun, or name the hosts)"
    )


def _split_top(spec: str) -> list[str]:
    """Entries separated by commas outside brackets, stripped; an empty one is an error."""
    entries: list[str] = []
    depth, start = 0, 0
    for i, c in enumerate(spec):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"host list {spec!r}: ']' at position {i} closes no '['")
        elif c == "," and depth == 0:
            entries.append(spec[start:i])
            start = i + 1
    if depth > 0:
        raise ValueError(f"host list {spec!r}: '[' at position {spec.rindex('[')} is never closed")
    entries.append(spec[start:])
    entries = [e.strip() for e in entries]
    if entries == [""]:
        return []
    if "" in entries:
        raise ValueError(f"host list {spec!r} has an empty entry (two commas, or one at an end)")
    return entries


def _is_ipv6_entry(entry: str) -> bool:
    """``[::1]``, ``user@[fe80::1]:2222``: an address in brackets, not a range."""
    host = entry.rpartition("@")[2]
    return host.startswith("[") and ":" in host.partition("]")[0]


def _expand_entry(entry: str, spec: str, room: int) -> list[str]:
    if any(c.isspace() for c in entry):
        raise ValueError(f"host list {spec!r}: {entry!r} contains a space; separate hosts with ','")
    if "[" not in entry or _is_ipv6_entry(entry):
        return [entry]
    user, at, rest = entry.rpartition("@")
    if "[" in user:
        raise ValueError(f"host list {spec!r}: brackets belong in the host name, not {user!r}")
    host, port = rest, ""
    head, colon, tail = rest.rpartition(":")
    if colon and tail.isdigit() and "]" not in tail:
        host, port = head, colon + tail
    parts = re.split(r"\[([^\[\]]*)\]", host)
    # parts alternates text and bracket contents: text, inner, text, inner, ..., text
    texts, inners = parts[0::2], parts[1::2]
    if any("[" in t or "]" in t for t in texts):
        raise ValueError(f"host list {spec!r}: brackets inside brackets in {entry!r}")
    choices = [_bracket(inner, entry, spec) for inner in inners]
    count = 1
    for c in choices:
        count *= c.size()
    if count > room:
        raise ValueError(
            f"host list {spec!r} names more than {MAX_HOSTS:,} hosts ({entry!r} alone "
            f"is {count:,}); check the ranges"
        )
    out = []
    for numbers in itertools.product(*[c.strings() for c in choices]):
        name = texts[0] + "".join(n + t for n, t in zip(numbers, texts[1:], strict=True))
        out.append(f"{user}{at}{name}{port}")
    return out


class _Choices:
    """A bracket's numbers, counted without being built (``[1-99999999]`` is one range)."""

    def __init__(self, ranges: list[tuple[int, int, int, int] | str]) -> None:
        self.ranges = ranges  # a number as written, or (first, last, width, step)

    def size(self) -> int:
        return sum(1 if isinstance(r, str) else (r[1] - r[0]) // r[3] + 1 for r in self.ranges)

    def strings(self) -> Iterable[str]:
        for r in self.ranges:
            if isinstance(r, str):
                yield r
            else:
                lo, hi, width, step = r
                for n in range(lo, hi + 1, step):
                    yield str(n).zfill(width)


def _bracket(inner: str, entry: str, spec: str) -> _Choices:
    ranges: list[tuple[int, int, int, int] | str] = []
    for item in inner.split(","):
        match = _RANGE.fullmatch(item.strip())
        if match is None:
            raise ValueError(
                f"host list {spec!r}: [{inner}] in {entry!r} is not numbers and ranges "
                "like [1-4,7] or [01-16]"
            )
        lo, hi, step = match.groups()
        if step is not None and not re.fullmatch(r"\d+", step):
            raise ValueError(
                f"host list {spec!r}: the step {step!r} in {entry!r} is not a number; "
                "write a range and its step like 01-16/2"
            )
        if step is not None and hi is None:
            raise ValueError(
                f"host list {spec!r}: {item.strip()} in {entry!r} puts a step on a single "
                "number; a step needs a range, like 01-16/2"
            )
        if step is not None and int(step) == 0:
            raise ValueError(
                f"host list {spec!r}: the range {item.strip()} in {entry!r} has step 0; "
                "a step is 1 or more"
            )
        if hi is None:
            ranges.append(lo)
        elif int(hi) < int(lo):
            raise ValueError(
                f"host list {spec!r}: the range {lo}-{hi} in {entry!r} runs backwards; "
                f"write {hi}-{lo}"
            )
        else:
            ranges.append((int(lo), int(hi), len(lo), int(step or 1)))
    return _Choices(ranges)


def _ranges(numbers: list[str]) -> str:
    """``["01", "02", "03", "07"]`` as ``01-03,07``: a run continues while the next
    number is one more, written at the run's first width.  Numbers left on their own that
    go up by an even step share a stepped run, ``["1", "4", "7", "10"]`` as ``1-10/3``,
    where that is shorter; such a run stops before a number that starts a run of ones."""
    items: list[str] = []
    i = 0
    while i < len(numbers):
        first = numbers[i]
        step = int(numbers[i + 1]) - int(first) if i + 1 < len(numbers) else 0
        end = i + 1
        while (
            step > 0
            and end < len(numbers)
            and _next_in_run(first, numbers[end - 1], numbers[end], step)
            and (step == 1 or not _starts_run(numbers, end))
        ):
            end += 1
        run = numbers[i:end]
        if step == 1 and len(run) > 1:
            items.append(f"{first}-{run[-1]}")
        elif len(run) > 1 and len(f"{first}-{run[-1]}/{step}") < len(",".join(run)):
            items.append(f"{first}-{run[-1]}/{step}")
        else:
            items.append(first)
            end = i + 1
        i = end
    return ",".join(items)


def _next_in_run(first: str, last: str, n: str, step: int) -> bool:
    """Whether ``n`` continues a run from ``first`` that has reached ``last``: ``step``
    more, written at ``first``'s width as expanding the run would write it."""
    return int(n) == int(last) + step and str(int(n)).zfill(len(first)) == n


def _starts_run(numbers: list[str], i: int) -> bool:
    """Whether ``numbers[i]`` and the next one make a run of ones (it comes first)."""
    return i + 1 < len(numbers) and _next_in_run(numbers[i], numbers[i], numbers[i + 1], 1)
