"""How a session logs in, as ``ssh`` does: the methods the server allows, in
PreferredAuthentications' order, each only once the server asks for it (so
``AuthenticationMethods publickey,keyboard-interactive`` gets a key, then a one-time
code).  The keys are ``sshkeys``'.  Codes and passwords are asked of
``SessionOptions.prompt`` on the connecting thread.  Every failure is an
``AuthenticationError`` naming the method and what was tried."""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

import paramiko
from paramiko.auth_handler import AuthHandler

from .errors import AuthenticationError, ConnectError
from .prompts import PromptUnavailable
from .sshconfig import SessionOptions
from .sshkeys import offered_keys


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
        # A prompt of the caller's that breaks is named as such, not as a broken
        # handshake; what it returns goes into paramiko's thread, which a non-str kills.
        try:
            answer = o.prompt(text, echo)
        except PromptUnavailable:
            raise
        except Exception as exc:
            raise PromptUnavailable(f"the prompt failed: {type(exc).__name__}: {exc}") from None
        if answer is None:
            raise PromptUnavailable("the prompt gave no answer")
        if not isinstance(answer, (str, bytes)):
            raise PromptUnavailable(f"the prompt returned {_a(type(answer).__name__)}, not a str")
        return answer

    def _through(self, what: str, following: list[str]) -> bool:
        """Whether ``what`` let us in, or part way (the server wants another method:
        ``following``); either way it is one of the methods that passed."""
        if self.transport.is_authenticated() or following:
            self.passed.append(what)
            return True
        return False

    # -- methods: each returns the methods allowed next (partial success) or None

    def publickey(self, agent_keys: list[Any]) -> list[str] | None:
        candidates, skipped = offered_keys(self.o, agent_keys)
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
                raise
            except paramiko.AuthenticationException:
                continue
            if self._through(f"publickey ({label})", following):
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
                raise
            except paramiko.AuthenticationException:
                if not self.transport.is_active():
                    break
                refused += 1
                if not asked:  # refused without asking anything: asking again cannot help
                    break
                continue
            if self._through("keyboard-interactive", following):
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
                raise
            except paramiko.AuthenticationException:
                if not self.transport.is_active():
                    break
                refused += 1
                continue
            finally:
                del secret
            if self._through("password", following):
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
        return following if self._through("gssapi-with-mic", following) else None


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


class _SignalledEvent(threading.Event):
    """An event that also wakes a queue's reader when set (paramiko sets it when the
    server answers), so waiting for questions and for the end is one wait."""

    def __init__(self, wake: queue.SimpleQueue[Any]) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake.put(None)


def _methods_allowed(transport: paramiko.Transport, user: str) -> list[str]:
    """The methods the server allows now, asked with method "none" (as ssh does)."""
    try:
        transport.auth_none(user)
    except paramiko.BadAuthenticationType as exc:
        return list(exc.allowed_types)
    except paramiko.AuthenticationException:
        pass
    return []


def authenticate(transport: paramiko.Transport, o: SessionOptions) -> None:
    """Log in as ``ssh`` would: method after method, in order, until the server says
    the login is complete; ``AuthenticationError`` naming each method and why not."""
    agent = None
    login = _Login(transport, o)
    # What the server allows is learnt from its answers, not asked first with method
    # "none" as ssh does: that costs a round trip per connection (and CPU per node).
    allowed = list(o.auth_methods)
    told = False  # whether ``allowed`` is the server's word yet
    try:
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
            if method == "password" and not told:
                # Never ask a person for a password the server would not take.
                allowed, told = _methods_allowed(transport, o.user), True
                if method not in allowed:
                    continue
            try:
                if method == "publickey":
                    following = login.publickey(agent_keys)
                elif method == "keyboard-interactive":
                    following = login.keyboard_interactive()
                elif method == "password":
                    following = login.password()
                else:
                    following = login.gssapi()
            except paramiko.BadAuthenticationType as exc:  # not this one: these are
                allowed, told = list(exc.allowed_types), True
                continue
            if following:  # partial success: the server wants another method too
                allowed, told = list(following), True
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
    advice = why.advice or (
        "make the node in a terminal or a notebook cell, which asks for it, or pass "
        "prompt=lambda text, echo: ... to make_node/make_nodes"
    )
    return f"{first} asked for a one-time code or password as {o.user} ({why}): {advice}"


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
