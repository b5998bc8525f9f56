"""IPython magics for sshdist-kernel: ``%load_ext sshdist_magics``.

``%nodes``, ``%%with_ssh``, ``%%distribute``, ``%dist_map``, ``%dist_result`` and
``%loadavg`` (``%magic?`` shows each one's help)."""

from __future__ import annotations

from typing import Any

from .errors import SshdistError
from .magics import SshdistMagics

__all__ = ["SshdistError", "SshdistMagics", "load_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """What ``%load_ext sshdist_magics`` runs: the magics registered in ``ipython``."""
    ipython.register_magics(SshdistMagics)
