"""Which client carries a session: paramiko in this process (``session.Session``, the
default), or OpenSSH's own ``ssh`` over a ControlMaster (``opensshsession``)."""

from __future__ import annotations

from typing import Any

from .opensshsession import OpenSshSession
from .prompts import ask_person
from .session import Session
from .sshconfig import resolve_options

TRANSPORTS = ("paramiko", "openssh")


def make_session(
    host: str, transport: str = "paramiko", **options: Any
) -> Session | OpenSshSession:
    """Connect and authenticate to ``host`` (an ssh_config alias, ``host``,
    ``user@host`` or ``user@host:port``); see ``resolve_options`` for the keywords.
    Codes and passwords are asked of the person at hand (``prompts.ask_person``)
    unless ``prompt`` says otherwise (None: nobody is asked).
    ``transport="openssh"`` runs everything through the system's ``ssh`` client."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be 'paramiko' or 'openssh', not {transport!r}")
    options.setdefault("prompt", ask_person)
    kind = OpenSshSession if transport == "openssh" else Session
    return kind(resolve_options(host, **options))
