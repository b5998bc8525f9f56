"""``python -m sshdist_kernel install|list|remove`` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def sshdist_kernel(*args: str, jupyter_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JUPYTER_PATH": str(jupyter_path / "share" / "jupyter")}
    return subprocess.run(
        [sys.executable, "-m", "sshdist_kernel", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_kernelspec_per_node_with_no_secret_in_it(tmp_path: Path) -> None:
    prefix = tmp_path / "jupyter"
    key = tmp_path / "id_test"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nSECRET\n")
    for host, extra in (
        ("hpc1", ["--user", "alice", "--identity", str(key)]),
        ("hpc2", ["--port", "2222", "--display-name", "Big iron"]),
        ("hpc3", ["--guile", "/opt/guile/bin/guile"]),
    ):
        done = sshdist_kernel(
            "install", "--host", host, "--prefix", str(prefix), *extra, jupyter_path=prefix
        )
        assert done.returncode == 0, done.stderr
        assert f"installed kernelspec sshdist-{host} in " in done.stdout
    kernels = prefix / "share" / "jupyter" / "kernels"
    assert sorted(p.name for p in kernels.iterdir()) == [
        "sshdist-hpc1",
        "sshdist-hpc2",
        "sshdist-hpc3",
    ]
    spec = json.loads((kernels / "sshdist-hpc1" / "kernel.json").read_text())
    assert spec["argv"][:3] == [sys.executable, "-m", "sshdist_kernel.kernel"]
    assert spec["argv"][3:] == [
        "-f",
        "{connection_file}",
        "--host",
        "hpc1",
        "--kernel-name",
        "sshdist-hpc1",
        "--user",
        "alice",
        "--identity",
        str(key.resolve()),
    ]
    assert spec["display_name"] == "Guile on hpc1 (SSH)"
    assert spec["language"] == "scheme"
    assert spec["metadata"]["sshdist"] == {
        "host": "hpc1",
        "user": "alice",
        "identity": str(key.resolve()),
    }
    for path in (kernels / "sshdist-hpc1").iterdir():
        assert b"SECRET" not in path.read_bytes()
    assert {p.name for p in (kernels / "sshdist-hpc1").iterdir()} == {
        "kernel.json",
        "logo-32x32.png",
        "logo-64x64.png",
    }
    hpc2 = json.loads((kernels / "sshdist-hpc2" / "kernel.json").read_text())
    assert hpc2["display_name"] == "Big iron" and hpc2["argv"][-2:] == ["--port", "2222"]
    hpc3 = json.loads((kernels / "sshdist-hpc3" / "kernel.json").read_text())
    assert hpc3["argv"][-2:] == ["--guile", "/opt/guile/bin/guile"]
    assert hpc3["metadata"]["sshdist"] == {"host": "hpc3", "guile": "/opt/guile/bin/guile"}

    listed = sshdist_kernel("list", jupyter_path=prefix).stdout
    assert "sshdist-hpc1" in listed and "Big iron" in listed

    assert sshdist_kernel("remove", "sshdist-hpc1", jupyter_path=prefix).returncode == 0
    assert sorted(p.name for p in kernels.iterdir()) == ["sshdist-hpc2", "sshdist-hpc3"]
    missing = sshdist_kernel("remove", "sshdist-hpc1", jupyter_path=prefix)
    assert missing.returncode == 1 and "no sshdist kernelspec named" in missing.stderr


def test_kernel_names_are_made_safe() -> None:
    from sshdist_kernel.kernelspec import default_name

    assert default_name("alice@HPC.example.org:2222") == "sshdist-alice-hpc.example.org-2222"
