"""Which keys a session offers, and in what order, as ``ssh`` chooses them: ssh-agent's
keys, then IdentityFile keys, an encrypted IdentityFile being used through the agent
when the agent holds it.  Every failure is an ``AuthenticationError`` naming the file."""

from __future__ import annotations

import base64
import binascii
import os
import struct
from pathlib import Path
from typing import Any

import paramiko

from .errors import AuthenticationError, ConnectError
from .sshconfig import SessionOptions
from .sshfiles import cached_parse

_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_OPENSSH_MAGIC = b"openssh-key-v1\0"


def public_blob(path: str) -> bytes | None:
    """The public half of a private key file without its passphrase: from ``PATH.pub``,
    or from the OpenSSH private key format, which stores it in the clear."""
    try:
        pub = Path(path + ".pub").read_text().split()
        if len(pub) >= 2:
            return base64.b64decode(pub[1])
    except (OSError, ValueError, binascii.Error):
        pass
    try:
        text = Path(path).read_text(errors="replace")
        body = text.split("-----BEGIN OPENSSH PRIVATE KEY-----")[1]
        data = base64.b64decode("".join(body.split("-----END")[0].split()))
        if not data.startswith(_OPENSSH_MAGIC):
            return None
        at = len(_OPENSSH_MAGIC)
        for _ in range(3):  # cipher name, kdf name, kdf options
            (length,) = struct.unpack(">I", data[at : at + 4])
            at += 4 + length
        (count,) = struct.unpack(">I", data[at : at + 4])
        (length,) = struct.unpack(">I", data[at + 4 : at + 8])
        return data[at + 8 : at + 8 + length] if count >= 1 else None
    except (OSError, IndexError, ValueError, binascii.Error, struct.error):
        return None


def _load_key(path: str) -> paramiko.PKey:
    """A key file, read once while it (and its ``-cert.pub``, which paramiko reads
    beside it) stays the same, or ``ValueError`` saying in a few words why it cannot
    be used: 64 nodes made with one key load it once, not 64 times."""
    key = cached_parse(path, _read_key, companions=(path + "-cert.pub",))
    return _read_key(path) if key is None else key  # None: missing, and _read_key says so


def _read_key(path: str) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        raise ValueError("encrypted: add it to ssh-agent") from None
    except TypeError as exc:  # paramiko's word for some encrypted files
        if "password" in str(exc).lower():
            raise ValueError("encrypted: add it to ssh-agent") from None
        raise ValueError(f"unreadable key: {exc}") from None
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - cryptography's errors vary by key type
        raise ValueError(f"not a usable private key: {type(exc).__name__}") from None


def _identity_files(o: SessionOptions) -> list[str]:
    if o.identity_files:
        return o.identity_files
    home = Path("~/.ssh").expanduser()
    return [str(home / name) for name in _DEFAULT_KEYS if (home / name).is_file()]


def authenticate(transport: paramiko.Transport, o: SessionOptions) -> None:
    """Offer the keys in ssh's order until the host accepts one."""
    agent = None
    try:
        agent_keys: list[Any] = []
        if o.allow_agent and os.environ.get("SSH_AUTH_SOCK"):
            try:
                agent = paramiko.Agent()
                agent_keys = list(agent.get_keys())
            except (paramiko.SSHException, OSError):
                agent_keys = []
        candidates: list[tuple[str, Any]] = []
        skipped: list[str] = []
        by_blob = {k.asbytes(): k for k in agent_keys}
        if not o.identities_only:
            candidates += [(f"agent key {k.get_name()}", k) for k in agent_keys]
        for path in _identity_files(o):
            try:
                candidates.append((path, _load_key(path)))
            except ValueError as why:
                held = by_blob.get(public_blob(path) or b"")
                if held is not None:  # the agent holds this file's key: use it there
                    if o.identities_only:
                        candidates.append((f"{path} (through ssh-agent)", held))
                else:
                    skipped.append(f"{path} ({why})")
        _offer(transport, o, candidates, skipped)
    finally:
        if agent is not None:
            agent.close()


def _offer(
    transport: paramiko.Transport,
    o: SessionOptions,
    candidates: list[tuple[str, Any]],
    skipped: list[str],
) -> None:
    tried: list[str] = []
    seen: set[bytes] = set()
    for label, key in candidates:
        if key.asbytes() in seen:
            continue
        seen.add(key.asbytes())
        tried.append(label)
        try:
            transport.auth_publickey(o.user, key)
        except paramiko.BadAuthenticationType as exc:
            raise AuthenticationError(
                f"{o.target} does not accept public keys (it allows: "
                f"{', '.join(exc.allowed_types)})"
            ) from None
        except paramiko.AuthenticationException:
            continue
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(
                f"the connection to {o.target} broke during authentication: {exc}"
            ) from None
        if transport.is_authenticated():
            return
    detail = f"tried {', '.join(tried)}" if tried else "no key to offer"
    if skipped:
        detail += f"; could not use {', '.join(skipped)}"
    raise AuthenticationError(
        f"{o.target} refused authentication as {o.user}: {detail}. Check User and "
        f"IdentityFile in ssh_config, or add the key with ssh-add."
    )
