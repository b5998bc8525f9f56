"""The local cluster's error and what its modules share: running the tools they need
(``nft``, ``oathtool``, ``ssh-keygen``; a failure is a ``LocalClusterError`` naming what
failed), checking they are installed, and a file's age."""

from __future__ import annotations

import glob
import shutil
import subprocess
import time
from pathlib import Path

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


def check_installed(pam_oath: bool) -> None:
    """Raise if ``nft`` or ``oathtool`` (or, with ``pam_oath``, the PAM module) is missing."""
    for tool in ("nft", "oathtool"):
        if shutil.which(tool) is None:
            raise LocalClusterError(f"{tool} is not installed (apt-get install nftables oathtool)")
    if pam_oath and not any(
        glob.glob(f"{lib}/*/security/pam_oath.so") for lib in ("/lib", "/usr/lib")
    ):
        raise LocalClusterError("pam_oath is not installed (apt-get install libpam-oath)")


def made_before(path: Path, seconds: float) -> bool:
    """``path`` was last changed over ``seconds`` ago (False if it is gone)."""
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False
