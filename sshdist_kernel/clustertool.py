"""The local cluster's error, and how its modules run the tools they need (``nft``,
``oathtool``, ``ssh-keygen``): a failure is a ``LocalClusterError`` naming what failed."""

from __future__ import annotations

import subprocess

from .localsshd import LocalNodesError


class LocalClusterError(LocalNodesError):
    """The local cluster could not be started, used or stopped."""


def run(argv: list[str], what: str, stdin: str | None = None) -> str:
    """``argv``'s output; ``what`` heads the error if it is missing or fails."""
    try:
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise LocalClusterError(f"{what}: {argv[0]} is not installed ({exc})") from None
    if done.returncode != 0:
        raise LocalClusterError(f"{what}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout
