"""ssh_config files read as OpenSSH 9 reads them: ``Include`` (globs, ``~``, relative
to ``~/.ssh`` or ``/etc/ssh``), ``Host`` and ``Match`` blocks, first value wins across
the files, and ``%`` tokens where OpenSSH expands them.  Each file is parsed once and
kept while it stays the same."""

from __future__ import annotations

import getpass
import glob as globlib
import hashlib
import heapq
import os
import re
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SshConfigError
from .sshfiles import HostPatterns, cached_parse

SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"
"""The system-wide file OpenSSH reads after the user's, unless a file is named (``-F``)."""

USER_SSH_CONFIG = "~/.ssh/config"

_COMMANDS = {"proxycommand", "remotecommand", "localcommand", "knownhostscommand"}
_MULTI = {"identityfile", "certificatefile"}
_MAX_INCLUDE_DEPTH = 16


def _split_args(text: str) -> list[str]:
    """OpenSSH's argv_split: whitespace-separated words, "double" or 'single' quotes,
    backslash escapes, and a word starting with '#' ends the line."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] == "#":
            break
        word, quote = [], None
        while i < n and (quote or not text[i].isspace()):
            c = text[i]
            if c == "\\" and i + 1 < n and text[i + 1] in "\\\"' ":
                word.append(text[i + 1])
                i += 2
                continue
            if quote and c == quote:
                quote = None
            elif not quote and c in "\"'":
                quote = c
            else:
                word.append(c)
            i += 1
        if quote:
            raise ValueError("unterminated quote")
        words.append("".join(word))
    return words


@dataclass
class _Entry:
    """One line that matters: Host, Match, Include or an option."""

    kind: str
    where: str
    key: str = ""
    args: list[str] = field(default_factory=list)
    pattern: HostPatterns | None = None
    criteria: list[tuple[bool, str, Any]] = field(default_factory=list)


_MATCH_CRITERIA = {"all", "canonical", "final", "host", "originalhost", "user", "localuser"}
_MATCH_CRITERIA_WITH_ARG = {"host", "originalhost", "user", "localuser", "exec"}


def _parse_match(args: list[str], where: str) -> list[tuple[bool, str, Any]]:
    criteria: list[tuple[bool, str, Any]] = []
    i = 0
    while i < len(args):
        word = args[i]
        negate = word.startswith("!")
        name = word.lstrip("!").lower()
        i += 1
        if name not in _MATCH_CRITERIA and name != "exec":
            raise SshConfigError(
                f"{where}: Match {name} is not supported by sshdist (it reads Match all, "
                "canonical, final, host, originalhost, user, localuser and exec); "
                "rewrite that block or name another file with ssh_config="
            )
        if name not in _MATCH_CRITERIA_WITH_ARG:
            criteria.append((negate, name, None))
            continue
        if i >= len(args):
            raise SshConfigError(f"{where}: Match {name} needs an argument")
        arg = args[i]
        i += 1
        if name == "exec":
            criteria.append((negate, name, arg))
        else:
            patterns = [p for p in arg.split(",") if p]
            criteria.append((negate, name, HostPatterns(patterns, fold_case=name == "host")))
    if not criteria:
        raise SshConfigError(f"{where}: Match needs a criterion (Match all matches every host)")
    return criteria


def _parse_file(path: str) -> _ConfigFile:
    entries: list[_Entry] = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SshConfigError(f"cannot read ssh_config file {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head = re.match(r"([^\s=]+)\s*=?\s*", line)
        if head is None:
            continue
        key, rest = head.group(1).lower(), line[head.end() :]
        where = f"{path} line {number}"
        if key in _COMMANDS:
            entries.append(_Entry("option", where, key, [rest]))
            continue
        try:
            args = _split_args(rest)
        except ValueError as exc:
            raise SshConfigError(f"{where}: {exc}") from None
        if key == "host":
            entries.append(_Entry("host", where, pattern=HostPatterns(args, fold_case=False)))
        elif key == "match":
            entries.append(_Entry("match", where, criteria=_parse_match(args, where)))
        elif key == "include":
            entries.append(_Entry("include", where, args=args))
        elif args:
            entries.append(_Entry("option", where, key, args))
    return _ConfigFile(entries)


@dataclass
class _Block:
    """A ``Host`` or ``Match`` line and the lines under it, up to the next such line;
    ``head`` is None for the lines before the first."""

    head: _Entry | None
    body: list[_Entry] = field(default_factory=list)


class _ConfigFile:
    """A parsed file, in blocks, with the ``Host`` blocks that name hosts outright
    indexed by those names: a lookup visits only the blocks that can apply to its host,
    not all 1,000 of a big file's."""

    def __init__(self, entries: list[_Entry]) -> None:
        self.blocks = [_Block(None)]
        self.by_host: dict[str, list[int]] = {}
        self.always = [0]  # the first block, Match blocks, Host blocks with patterns
        for entry in entries:
            if entry.kind not in ("host", "match"):
                self.blocks[-1].body.append(entry)
                continue
            i = len(self.blocks)
            self.blocks.append(_Block(entry))
            names = entry.pattern.literal if entry.pattern is not None else None
            if names is None:
                self.always.append(i)
            for name in names or ():
                self.by_host.setdefault(name, []).append(i)

    def blocks_for(self, host: str) -> Iterable[_Block]:
        """The blocks that may apply to ``host``, in the file's order."""
        named = self.by_host.get(host)
        order = heapq.merge(self.always, named) if named else self.always
        return (self.blocks[i] for i in order)


def _read(path: Path) -> _ConfigFile | None:
    """The file parsed, once while it stays the same; None if it does not exist."""
    return cached_parse(path, _parse_file)


class _Lookup:
    """One pass of OpenSSH's reading of its files for one host: first value wins."""

    def __init__(self, host: str, options: dict[str, Any], final: bool, timeout: float) -> None:
        self.host = host
        self.options = options
        self.final = final
        self.want_final = False
        self.timeout = timeout

    def read(self, path: Path, base: Path, depth: int = 0) -> None:
        parsed = _read(path)
        if parsed is None:
            return
        for block in parsed.blocks_for(self.host):
            head = block.head
            if head is not None and head.kind == "host":
                assert head.pattern is not None
                if not head.pattern.matches(self.host):
                    continue
            elif head is not None and not self._match(head):
                continue
            for entry in block.body:
                if entry.kind == "include":
                    self._include(entry, base, depth)
                else:
                    self._set(entry.key, entry.args)

    def _include(self, entry: _Entry, base: Path, depth: int) -> None:
        if depth + 1 >= _MAX_INCLUDE_DEPTH:
            raise SshConfigError(f"{entry.where}: Include nested too deeply")
        for arg in entry.args:
            pattern = os.path.expanduser(arg)
            if not os.path.isabs(pattern):
                pattern = os.path.join(base, pattern)
            for name in sorted(globlib.glob(pattern)):
                # A Match inside an included file does not change the including file's state.
                self.read(Path(name), base, depth + 1)

    def _set(self, key: str, args: list[str]) -> None:
        o = self.options
        if key in _MULTI:
            if args[0] not in o.setdefault(key, []):
                o[key].append(args[0])
        elif key in ("proxycommand", "proxyjump"):
            # OpenSSH takes whichever of the two comes first.
            if "proxycommand" not in o and "proxyjump" not in o:
                o[key] = args[0]
        elif key == "userknownhostsfile":
            o.setdefault(key, args)
        elif key not in o:
            o[key] = args[0]

    def current_host(self) -> str:
        if self.final:
            return self.options.get("hostname", self.host)
        if "hostname" in self.options:
            return _expand(self.options["hostname"], {"h": self.host})
        return self.host

    def _match(self, entry: _Entry) -> bool:
        result = True
        for negate, name, arg in entry.criteria:
            if name == "all":
                ok = True
            elif name in ("canonical", "final"):
                self.want_final = True
                ok = self.final
            elif name == "host":
                ok = arg.matches(self.current_host())
            elif name == "originalhost":
                ok = arg.matches(self.host)
            elif name == "user":
                ok = arg.matches(self.options.get("user", _local_user()))
            elif name == "localuser":
                ok = arg.matches(_local_user())
            else:
                if not result:
                    continue  # OpenSSH skips an exec once an earlier criterion failed
                ok = self._exec(arg, entry.where)
            if ok == negate:
                result = False
        return result

    def _exec(self, command: str, where: str) -> bool:
        host = self.current_host()
        tokens = _tokens(
            host.lower(),
            self.host,
            int(self.options.get("port", 22)),
            self.options.get("user", _local_user()),
            self.options.get("proxyjump", ""),
        )
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", _expand(command, tokens)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SshConfigError(
                f"{where}: Match exec {command!r} did not finish within {self.timeout:g} s"
            ) from None
        return done.returncode == 0


def _local_user() -> str:
    return getpass.getuser()


def _tokens(hostname: str, original: str, port: int, user: str, jump: str) -> dict[str, str]:
    """The values of OpenSSH's % tokens for one connection."""
    local = socket.gethostname()
    home = os.path.expanduser("~")
    conn = hashlib.sha1(f"{local}{hostname}{port}{user}{jump}".encode()).hexdigest()
    return {
        "%": "%",
        "C": conn,
        "d": home,
        "h": hostname,
        "i": str(os.getuid()),
        "j": jump,
        "k": original,
        "L": local.split(".")[0],
        "l": local,
        "n": original,
        "p": str(port),
        "r": user,
        "u": _local_user(),
    }


def _expand(text: str, tokens: dict[str, str]) -> str:
    """OpenSSH's percent_expand: ``%x`` for the tokens this option accepts; any other
    ``%x`` is an error there as here."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in tokens:
            raise SshConfigError(f"unknown token %{m.group(1)} in ssh_config value {text!r}")
        return tokens[m.group(1)]

    return re.sub(r"%(.?)", one, text)


_PATH_TOKENS = "%CdhijkLlnpru"
_PROXY_TOKENS = "%hnpr"


def read_ssh_config(
    host: str,
    files: list[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
    *,
    user: str | None = None,
    port: int | None = None,
    proxy_jump: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """What OpenSSH's files say for ``host``, as ``ssh -G`` reads them: ``files`` are
    ``(path, base)`` pairs read in order, first value winning across all of them, with
    relative ``Include`` paths resolved against ``base``.  ``user``, ``port`` and
    ``proxy_jump`` are the command line's, seen by ``Match user`` and the tokens.
    Keys are lower-case; ``hostname`` is always set; tokens are expanded where
    OpenSSH expands them."""
    seed: dict[str, Any] = {}
    if user:
        seed["user"] = user
    if port:
        seed["port"] = str(port)
    if proxy_jump:
        seed["proxyjump"] = proxy_jump
    pass_ = _Lookup(host, dict(seed), final=False, timeout=timeout)
    for path, base in files:
        pass_.read(Path(path).expanduser(), Path(base).expanduser())
    options = pass_.options
    options["hostname"] = _expand(options.get("hostname", host), {"%": "%", "h": host}).lower()
    if pass_.want_final:
        # Match final / canonical: OpenSSH reads the files once more, with HostName known.
        pass_ = _Lookup(host, options, final=True, timeout=timeout)
        for path, base in files:
            pass_.read(Path(path).expanduser(), Path(base).expanduser())
        options = pass_.options
    tokens = _tokens(
        options["hostname"],
        host,
        int(options.get("port", 22)),
        options.get("user") or _local_user(),
        "" if options.get("proxyjump", "none").lower() == "none" else options["proxyjump"],
    )
    path_tokens = {k: v for k, v in tokens.items() if k in _PATH_TOKENS}
    proxy_tokens = {k: v for k, v in tokens.items() if k in _PROXY_TOKENS}
    for key in ("identityfile", "certificatefile"):
        if key in options:
            options[key] = [_expand(os.path.expanduser(f), path_tokens) for f in options[key]]
    if "userknownhostsfile" in options:
        options["userknownhostsfile"] = [
            _expand(os.path.expanduser(f), path_tokens) for f in options["userknownhostsfile"]
        ]
    if options.get("proxycommand", "none").lower() != "none":
        options["proxycommand"] = _expand(options["proxycommand"], proxy_tokens)
    return options
