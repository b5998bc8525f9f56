"""Cluster figures for ``make bench``: 64 compute nodes behind a login node at OpenSSH's
default limits that asks for a key and then a one-time code (``LocalCluster``), and 64
nodes on one such sshd directly.  Needs root (the cluster writes /etc/pam.d, a cgroup
and nft rules); elsewhere the rows are left out, and ``main`` says so."""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sshdist_kernel import NodeError, make_nodes, make_session
from sshdist_kernel.localcluster import LocalCluster
from sshdist_kernel.localnodes import established_to

COMPUTE = 64
RUNS = 3


def cluster_figures(where: str) -> dict[str, float]:
    """``make_nodes`` of the 64 compute nodes through the 2FA login node (each run asks
    one code), and 64 sessions opened at once straight to one sshd at MaxStartups
    10:30:100."""
    if os.geteuid() != 0:
        print("cluster figures skipped: the local cluster needs root")
        return {}
    figures: dict[str, float] = {}
    cluster = LocalCluster.up(Path(where) / "cluster", compute=COMPUTE)
    try:
        config = str(cluster.ssh_config)
        took, up, connections, asked = [], [], [], []
        for _ in range(RUNS):
            questions: list[str] = []

            def person(text: str, echo: bool, questions: list[str] = questions) -> str:
                questions.append(text)
                return cluster.totp_code()

            t = time.perf_counter()
            made = make_nodes(
                cluster.compute_names, ssh_config=config, prompt=person, on_error="skip"
            )
            took.append((time.perf_counter() - t) * 1000)
            up.append(len(made))
            connections.append(established_to(cluster.login_port))
            asked.append(len(questions))
            for n in made:
                n.close()
        figures.update(
            {
                "cluster_make_nodes_64_up": min(up),
                "cluster_login_connections": max(connections),
                "cluster_codes_asked_64": max(asked),
                "cluster_make_nodes_64_ms": statistics.median(took),
            }
        )
    finally:
        cluster.down()
    plain = LocalCluster.up(Path(where) / "plain", compute=1, auth="publickey")
    try:
        same, ups = [], []
        for _ in range(RUNS):
            t = time.perf_counter()
            ups.append(_sessions_at_once(str(plain.ssh_config), COMPUTE))
            same.append((time.perf_counter() - t) * 1000)
        figures["one_sshd_default_limits_64_sessions_up"] = min(ups)
        figures["one_sshd_default_limits_64_sessions_ms"] = statistics.median(same)
    finally:
        plain.down()
    return figures


def _sessions_at_once(config: str, count: int) -> int:
    """SSH sessions opened to one sshd from ``count`` threads at once (no REPL: 64
    Guiles starting on one 2-core machine measure the machine, not MaxStartups)."""

    def one(_: int) -> bool:
        try:
            make_session("login", ssh_config=config).close()
        except NodeError:
            return False
        return True

    with ThreadPoolExecutor(count) as pool:
        return sum(pool.map(one, range(count)))
