"""``make demo`` as a newcomer runs it: real nodes come up, values print, nodes stop."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_prints_the_four_values_and_the_load_of_each_node() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sshdist_kernel.demo"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("=> 3  $1  (guile-user)  scheme") == 3
    assert out.count("=> 'HELLO'  $4  (guile-user)  scheme  printed 'printed, and the") == 3
    assert "$2 $3" in out
    assert out.count("NodeReplError wrong-type-arg") == 3
    assert out.count("load average:") == 3
    assert "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81, 100, 121]" in out
    assert "distribute: (3, " in out
    assert "killed mid-call: complete and in order: True" in out
    assert re.search(r"^  job \d+ moved from node2 to node[13]$", out, re.MULTILINE)
    assert out.rstrip().endswith("local nodes stopped")


def test_demo_runs_the_dist_map_notebook_and_prints_its_cells() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sshdist_magics.demo"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert ">>> %load_ext sshdist_magics" in out
    assert "(3, 1267650600228229401496703205376, 'GUILE')" in out
    assert "([0, 1, 4, 9, 16], 20)" in out
    assert "same results: True" in out
