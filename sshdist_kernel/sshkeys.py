"""Which keys a session offers, in ``ssh``'s order: ssh-agent's, then IdentityFile's
(an encrypted file, or a public key, used through the agent when the agent holds its
key), each certificate (``-cert.pub`` beside a key, or ``CertificateFile``) before its
plain key.  Key files are read once while they stay the same."""

from __future__ import annotations

import base64
import binascii
import copy
import struct
import time
from pathlib import Path
from typing import Any

import paramiko

from .sshconfig import SessionOptions
from .sshfiles import cached_parse

_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_OPENSSH_MAGIC = b"openssh-key-v1\0"


def public_blob(path: str) -> bytes | None:
    """The public half of a private key file without its passphrase: from ``PATH.pub``,
    from the OpenSSH private key format, which stores it in the clear, or the file
    itself when it is a public key (an IdentityFile naming an agent's key)."""
    for candidate in (path + ".pub", path):
        blob = _public_key_line(candidate)
        if blob is not None:
            return blob
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


def _public_key_line(path: str) -> bytes | None:
    """The key in a public key file (``ssh-ed25519 AAAA... comment``), or None."""
    try:
        with open(path, "rb") as f:
            words = f.read(16384).split()
        if len(words) >= 2 and words[0].startswith((b"ssh-", b"ecdsa-", b"sk-")):
            return base64.b64decode(words[1])
    except (OSError, ValueError, binascii.Error):
        pass
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


def _cert_fields(cert: paramiko.PublicBlob) -> bytes:
    """A certificate's public key fields, to match it with its key: after the
    certificate's type and nonce, the key's fields come as in the plain key's blob."""
    msg = paramiko.Message(cert.key_blob)
    msg.get_string()  # type
    msg.get_string()  # nonce
    return cert.key_blob[len(msg.get_so_far()) :]


def _key_fields(key: Any) -> bytes:
    msg = paramiko.Message(key.asbytes())
    msg.get_string()
    return key.asbytes()[len(msg.get_so_far()) :]


_FOREVER = 2**64 - 1


def _outside_validity(after_key: bytes) -> str | None:
    """Why a certificate is not valid now (its fields after the key's: serial, type,
    key id, principals, valid after, valid before), or None: the server would only say
    it refused it."""
    try:
        msg = paramiko.Message(after_key)
        msg.get_int64()  # serial
        msg.get_int()  # user or host
        msg.get_string()  # key id
        msg.get_string()  # principals
        after, before = msg.get_int64(), msg.get_int64()
    except Exception:  # noqa: BLE001 - a short or odd certificate: the server decides
        return None
    now = time.time()
    if before != _FOREVER and now >= before:
        return f"expired on {_utc(before)}"
    if now < after:
        return f"not valid before {_utc(after)}"
    return None


def _utc(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _with_certificates(
    candidates: list[tuple[str, Any]], o: SessionOptions, skipped: list[str]
) -> list[tuple[str, Any]]:
    """Each CertificateFile offered, before its key, with the key (a file's or the
    agent's) whose public half it certifies, as OpenSSH pairs them."""
    out: list[tuple[str, Any]] = []
    for path in o.certificate_files:
        try:
            cert = paramiko.PublicBlob.from_file(path)
            fields = _cert_fields(cert)
        except (OSError, ValueError, paramiko.SSHException) as exc:
            skipped.append(f"certificate {path} ({getattr(exc, 'strerror', None) or exc})")
            continue
        match = next((k for _, k in candidates if fields.startswith(_key_fields(k))), None)
        if match is None:
            skipped.append(f"certificate {path} (no IdentityFile or agent key matches it)")
            continue
        late = _outside_validity(fields[len(_key_fields(match)) :])
        if late:
            skipped.append(f"certificate {path} ({late})")
            continue
        certified = copy.copy(match)
        try:
            certified.load_certificate(path)
        except ValueError as exc:
            skipped.append(f"certificate {path} ({exc})")
            continue
        out.append((f"certificate {path}", certified))
    return out + candidates


def offered_keys(
    o: SessionOptions, agent_keys: list[Any]
) -> tuple[list[tuple[str, Any]], list[str]]:
    """The keys to offer, in ssh's order, and the files that could not be used."""
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
            elif _public_key_line(path) is not None:
                skipped.append(f"{path} (a public key whose private half is not in ssh-agent)")
            else:
                skipped.append(f"{path} ({why})")
    return _with_certificates(candidates, o, skipped), skipped
