"""How a session logs in, as ``ssh`` does: the methods the server allows, in
PreferredAuthentications' order, each only once the server asks for it (so
``AuthenticationMethods publickey,keyboard-interactive`` gets a key, then a one-time
code).  Keys: ssh-agent's, then IdentityFile's (an encrypted file or a public key
used through the agent when the agent holds its key), each certificate (``-cert.pub``
beside a key, or ``CertificateFile``) offered before its plain key.  Codes and
passwords are asked of ``SessionOptions.prompt`` on the connecting thread.  Every
failure is an ``AuthenticationError`` naming the method and what was tried."""

from __future__ import annotations

import base64
import binascii
import copy
import os
import queue
import struct
import threading
from pathlib import Path
from typing import Any

import paramiko
from paramiko.auth_handler import AuthHandler

from .errors import AuthenticationError, ConnectError
from .prompts import PromptUnavailable
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
        certified = copy.copy(match)
        try:
            certified.load_certificate(path)
        except ValueError as exc:
            skipped.append(f"certificate {path} ({exc})")
            continue
        out.append((f"certificate {path}", certified))
    return out + candidates


def _keys(o: SessionOptions, agent_keys: list[Any]) -> tuple[list[tuple[str, Any]], list[str]]:
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


class _Login:
    """One login's state: the methods left, what each tried, what the server said."""

    def __init__(self, transport: paramiko.Transport, o: SessionOptions) -> None:
        self.transport = transport
        self.o = o
        self.notes: dict[str, str] = {}
        self.passed: list[str] = []  # methods that succeeded partially

    def who(self) -> str:
        return f"({self.o.user}@{self.o.alias})"

    def ask(self, text: str, echo: bool) -> str:
        o = self.o
        if o.batch_mode:
            raise PromptUnavailable("BatchMode is on in ssh_config")
        if o.prompt is None:
            raise PromptUnavailable("no prompt was given")
        return o.prompt(text, echo)

    # -- methods: each returns the methods allowed next (partial success) or None

    def publickey(self, agent_keys: list[Any]) -> list[str] | None:
        candidates, skipped = _keys(self.o, agent_keys)
        tried: list[str] = []
        seen: set[bytes] = set()
        for label, key in candidates:
            ident = key.asbytes() + (key.public_blob.key_blob if key.public_blob else b"")
            if ident in seen:
                continue
            seen.add(ident)
            tried.append(label)
            try:
                following = self.transport.auth_publickey(self.o.user, key)
            except paramiko.BadAuthenticationType:
                break
            except paramiko.AuthenticationException:
                continue
            if self.transport.is_authenticated() or following:
                self.passed.append(f"publickey ({label})")
                return following
        detail = f"tried {', '.join(tried)}" if tried else "no key to offer"
        if skipped:
            detail += f"; could not use {', '.join(skipped)}"
        self.notes["publickey"] = detail
        return None

    def keyboard_interactive(self) -> list[str] | None:
        """The server's questions (a one-time code, usually), asked on this thread:
        paramiko calls its handler on the transport's thread, which only passes them on."""
        questions: queue.SimpleQueue[Any] = queue.SimpleQueue()
        refused = 0
        asked: list[str] = []
        for _ in range(self.o.password_prompts):
            finished = _SignalledEvent(questions)

            def handler(title: str, instructions: str, prompts: list[Any]) -> list[str]:
                if not prompts:
                    return []
                box: dict[str, Any] = {"prompts": prompts, "instructions": instructions}
                box["done"] = threading.Event()
                questions.put(box)
                box["done"].wait()
                if "error" in box:
                    raise paramiko.AuthenticationException(box["error"])
                return box["answers"]

            handler_owner = AuthHandler(self.transport)
            self.transport.auth_handler = handler_owner
            handler_owner.auth_interactive(self.o.user, handler, finished, "")
            failure: BaseException | None = None
            while not finished.is_set() and self.transport.is_active():
                try:
                    box = questions.get(timeout=1.0)
                except queue.Empty:
                    continue
                if box is None:
                    continue
                try:
                    box["answers"] = self._answer(box["instructions"], box["prompts"], asked)
                except BaseException as exc:
                    failure = exc
                    box["error"] = "nobody answered"
                    box["done"].set()
                    self.transport.close()
                    break
                box["done"].set()
            if failure is not None:
                raise failure
            try:
                following = handler_owner.wait_for_response(finished)
            except paramiko.BadAuthenticationType:
                self.notes["keyboard-interactive"] = "the server stopped offering it"
                return None
            except paramiko.AuthenticationException:
                if not self.transport.is_active():
                    break
                refused += 1
                if not asked:  # refused without asking anything: asking again cannot help
                    break
                continue
            if self.transport.is_authenticated() or following:
                self.passed.append("keyboard-interactive")
                return following
        what = " and ".join(dict.fromkeys(asked)) or "its questions"
        self.notes["keyboard-interactive"] = (
            f"the answer to {what} was refused {refused} time(s)"
            if asked
            else "it was refused without a question"
        )
        return None

    def _answer(self, instructions: str, prompts: list[Any], asked: list[str]) -> list[str]:
        answers = []
        for text, echo in prompts:
            label = text.strip().rstrip(":").strip() or "a question"
            asked.append(f'"{label}"')
            shown = f"{self.who()} {text.lstrip()}"
            if instructions.strip():
                shown = f"{instructions.strip()}\n{shown}"
            answers.append(self.ask(shown, bool(echo)))
        return answers

    def password(self) -> list[str] | None:
        o = self.o
        refused = 0
        for _ in range(o.password_prompts):
            secret = self.ask(f"{o.user}@{o.alias}'s password: ", False)
            try:
                following = self.transport.auth_password(o.user, secret, fallback=False)
            except paramiko.BadAuthenticationType:
                break
            except paramiko.AuthenticationException:
                if not self.transport.is_active():
                    break
                refused += 1
                continue
            finally:
                del secret
            if self.transport.is_authenticated() or following:
                self.passed.append("password")
                return following
        self.notes["password"] = f"the password was refused {refused} time(s)"
        return None

    def gssapi(self) -> list[str] | None:
        if not getattr(paramiko, "GSS_AUTH_AVAILABLE", False):
            self.notes["gssapi-with-mic"] = (
                f"GSSAPI (Kerberos) is not available in paramiko {paramiko.__version__}; "
                "make the node with transport='openssh' to log in with Kerberos"
            )
            return None
        try:
            following = self.transport.auth_gssapi_with_mic(
                self.o.user, self.o.hostname, self.o.gssapi_delegate
            )
        except paramiko.AuthenticationException as exc:
            self.notes["gssapi-with-mic"] = f"refused ({exc})"
            return None
        if self.transport.is_authenticated() or following:
            self.passed.append("gssapi-with-mic")
            return following
        return None


class _SignalledEvent(threading.Event):
    """An event that also wakes a queue's reader when set (paramiko sets it when the
    server answers), so waiting for questions and for the end is one wait."""

    def __init__(self, wake: queue.SimpleQueue[Any]) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake.put(None)


def _allowed(transport: paramiko.Transport, user: str) -> list[str] | None:
    """The methods the server allows (asked with method "none", as ssh does), or None
    when "none" itself let us in."""
    try:
        transport.auth_none(user)
    except paramiko.BadAuthenticationType as exc:
        return list(exc.allowed_types)
    except paramiko.AuthenticationException:
        return ["publickey", "keyboard-interactive", "password"]
    return None if transport.is_authenticated() else []


def authenticate(transport: paramiko.Transport, o: SessionOptions) -> None:
    """Log in as ``ssh`` would: method after method, in order, until the server says
    the login is complete; ``AuthenticationError`` naming each method and why not."""
    agent = None
    login = _Login(transport, o)
    try:
        allowed = _allowed(transport, o.user)
        if allowed is None:
            return
        agent_keys: list[Any] = []
        if o.allow_agent and os.environ.get("SSH_AUTH_SOCK"):
            try:
                agent = paramiko.Agent()
                agent_keys = list(agent.get_keys())
            except (paramiko.SSHException, OSError):
                agent_keys = []
        done: set[str] = set()
        while not transport.is_authenticated():
            method = next((m for m in o.auth_methods if m in allowed and m not in done), None)
            if method is None:
                break
            done.add(method)
            if method == "publickey":
                following = login.publickey(agent_keys)
            elif method == "keyboard-interactive":
                following = login.keyboard_interactive()
            elif method == "password":
                following = login.password()
            else:
                following = login.gssapi()
            if following:  # partial success: the server wants another method too
                allowed = list(following)
                if method in following:  # the same method again (two keys, say)
                    done.discard(method)
    except PromptUnavailable as why:
        raise AuthenticationError(_unanswered(login, why)) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        if transport.is_authenticated():
            return
        raise ConnectError(
            f"the connection to {o.target} broke during authentication: {exc}"
        ) from None
    finally:
        if agent is not None:
            agent.close()
    if not transport.is_authenticated():
        raise AuthenticationError(_refusal(login, allowed))


def _unanswered(login: _Login, why: PromptUnavailable) -> str:
    o = login.o
    first = f"{o.target} accepted {', '.join(login.passed)}, then" if login.passed else o.target
    return (
        f"{first} asked for a one-time code or password as {o.user} ({why}): make the "
        "node in a terminal or a notebook cell, which asks for it, or pass "
        "prompt=lambda text, echo: ... to make_node/make_nodes"
    )


def _refusal(login: _Login, allowed: list[str]) -> str:
    o = login.o
    parts = [f"{m}: {login.notes[m]}" for m in o.auth_methods if m in login.notes]
    offered = [m for m in allowed if m not in o.auth_methods and m != "hostbased"]
    if not parts:
        parts.append(
            f"it allows {', '.join(allowed) or 'no method'}, and ssh_config's "
            f"PreferredAuthentications and *Authentication settings leave "
            f"{', '.join(o.auth_methods) or 'none'}"
        )
    elif offered:
        parts.append(f"it also allows {', '.join(offered)}, which ssh_config switches off")
    first = (
        f"{o.target} accepted {', '.join(login.passed)} but then refused authentication as {o.user}"
        if login.passed
        else f"{o.target} refused authentication as {o.user}"
    )
    hint = (
        " Check User and IdentityFile in ssh_config, or add the key with ssh-add."
        if list(login.notes) == ["publickey"] and not login.passed
        else ""
    )
    return f"{first}: {'; '.join(parts)}.{hint}"
