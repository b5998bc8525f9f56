"""Where and how to reach a host: the caller's arguments merged over ssh_config over
OpenSSH's defaults, as ``ssh HOST`` would merge them."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import NodeError, SshConfigError
from .openssh_config import SYSTEM_SSH_CONFIG, USER_SSH_CONFIG, read_ssh_config

CONNECT_TIMEOUT = 10.0
"""Seconds for the TCP connection, the SSH handshake and authentication, each."""

Prompt = Callable[[str, bool], str]
"""Asks a person: ``prompt(text, echo)`` returns the answer to ``text`` (shown as it is
typed when ``echo``): a one-time code, a password.  Answers are never kept."""

AUTH_METHODS = ("gssapi-with-mic", "publickey", "keyboard-interactive", "password")
"""OpenSSH's default PreferredAuthentications, less hostbased (a host's key, not a user's)."""

_METHOD_SWITCHES = {
    "gssapi-with-mic": ("gssapiauthentication", "no"),
    "publickey": ("pubkeyauthentication", "yes"),
    "keyboard-interactive": ("kbdinteractiveauthentication", "yes"),
    "password": ("passwordauthentication", "yes"),
}


@dataclass
class SessionOptions:
    """Where and how to connect, after ssh_config and the caller's arguments are merged."""

    alias: str
    hostname: str
    port: int = 22
    user: str = field(default_factory=getpass.getuser)
    identity_files: list[str] = field(default_factory=list)
    identities_only: bool = False
    allow_agent: bool = True
    known_hosts: list[str] = field(default_factory=list)
    host_key_policy: str = "strict"
    proxy_command: str | None = None
    proxy_jump: str | None = None
    ssh_config: str | None = None
    system_ssh_config: str | None = SYSTEM_SSH_CONFIG
    timeout: float = CONNECT_TIMEOUT
    certificate_files: list[str] = field(default_factory=list)
    auth_methods: tuple[str, ...] = AUTH_METHODS[1:]
    """The methods to try, in order: PreferredAuthentications less those switched off."""
    password_prompts: int = 3
    batch_mode: bool = False
    gssapi_delegate: bool = False
    prompt: Prompt | None = field(default=None, compare=False, repr=False)
    """Who answers codes and passwords; None: nobody (see ``sshdist_kernel.prompts``)."""

    def connection_key(self) -> tuple[object, ...]:
        """What makes two connections the same one: where, as whom, how, through what.
        Not the alias (two names for one host share), the timeout or the prompt."""
        return (
            self.hostname,
            self.port,
            self.user,
            tuple(self.identity_files),
            self.identities_only,
            self.allow_agent,
            tuple(self.known_hosts),
            self.host_key_policy,
            self.proxy_command,
            self.proxy_jump,
            self.ssh_config,
            self.system_ssh_config,
            tuple(self.certificate_files),
            self.auth_methods,
            self.batch_mode,
        )

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts lists this host under, as OpenSSH writes it."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    @property
    def target(self) -> str:
        label = f"{self.user}@{self.hostname}:{self.port}"
        if self.proxy_jump:  # its loss is the jump host's, as often as not: say which
            label += f" through {self.proxy_jump}"
        return label if self.alias == self.hostname else f"{self.alias} ({label})"


_HOST_REFUSED = set("'`\"$\\;&<>|(){}")
_USER_REFUSED = set("'`\";&<>|(){}")


def _refused(name: str, refused: set[str]) -> str | None:
    """Why OpenSSH would refuse ``name`` on its command line, or None."""
    if not name:
        return "is empty"
    if name.startswith("-"):
        return "starts with '-'"
    bad = next((c for c in name if c in refused or c.isspace() or not c.isprintable()), None)
    return None if bad is None else f"contains {bad!r}"


def check_names(host: str, user: str | None) -> None:
    """Refuse what OpenSSH refuses on its command line, before any ProxyCommand could
    expand it into a shell: a leading '-', shell metacharacters, spaces, control
    characters.  ``ValueError`` naming the character."""
    why = _refused(host, _HOST_REFUSED)
    if why:
        raise ValueError(
            f"host name {host!r} {why}, which OpenSSH refuses in a host name; "
            "nothing was run. Give the host as an ssh_config alias, host, user@host or "
            "user@host:port."
        )
    why = None if user is None else _refused(user, _USER_REFUSED)
    if why or (user or "").endswith("\\"):
        raise ValueError(
            f"user name {user!r} {why or 'ends in a backslash'}, which OpenSSH refuses; "
            "nothing was run"
        )


def _split_host(spec: str) -> tuple[str | None, str, int | None]:
    """``user@host:port`` into its parts; plain aliases come back as they are."""
    user, _, rest = spec.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):
        inner, _, tail = rest[1:].partition("]")
        host = inner
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
    elif rest.count(":") == 1:
        name, _, p = rest.partition(":")
        if p.isdigit():
            host, port = name, int(p)
    return (user or None), host, port


def resolve_options(
    host: str,
    *,
    user: str | None = None,
    port: int | None = None,
    identity: str | os.PathLike[str] | list[str] | None = None,
    ssh_config: str | os.PathLike[str] | None = None,
    known_hosts: str | os.PathLike[str] | None = None,
    host_key_policy: str | None = None,
    allow_agent: bool = True,
    proxy_jump: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
    system_ssh_config: str | os.PathLike[str] | None = SYSTEM_SSH_CONFIG,
    prompt: Prompt | None = None,
) -> SessionOptions:
    """Merge the caller's arguments over ssh_config over OpenSSH's defaults.

    Without ``ssh_config``, ``~/.ssh/config`` then ``system_ssh_config`` are read, first
    value winning; a named ``ssh_config`` is the only file read, as with ``ssh -F``.
    ``prompt`` answers one-time codes and passwords (``Prompt``)."""
    spec_user, alias, spec_port = _split_host(host)
    check_names(alias, user or spec_user)
    if ssh_config:
        config_path = Path(ssh_config).expanduser()
        if not config_path.exists():
            raise NodeError(f"ssh_config file {config_path} does not exist")
        # As with ssh -F: relative Includes still resolve against ~/.ssh.
        files = [(config_path, Path("~/.ssh"))]
        system = None
    else:
        config_path = Path(USER_SSH_CONFIG).expanduser()
        system = os.fspath(system_ssh_config) if system_ssh_config else None
        files = [(config_path, Path("~/.ssh"))]
        if system:
            files.append((Path(system), Path(system).parent))
    found = read_ssh_config(
        alias,
        files,
        user=user or spec_user,
        port=port or spec_port,
        proxy_jump=proxy_jump,
        timeout=timeout,
    )
    if isinstance(identity, (str, os.PathLike)):
        identities = [os.fspath(identity)]
    elif identity:
        identities = [os.fspath(i) for i in identity]
    else:
        identities = list(found.get("identityfile", []))
    if known_hosts:
        known = [os.fspath(known_hosts)]
    elif "userknownhostsfile" in found:
        known = list(found["userknownhostsfile"])
    else:
        known = ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"]
    known.append("/etc/ssh/ssh_known_hosts")
    policy = host_key_policy or (
        "accept-new" if found.get("stricthostkeychecking", "").lower() == "accept-new" else "strict"
    )
    if policy not in ("strict", "accept-new"):
        raise ValueError(f"host_key_policy must be 'strict' or 'accept-new', not {policy!r}")
    proxy_command = found.get("proxycommand")
    jump = found.get("proxyjump")
    return SessionOptions(
        alias=alias,
        hostname=found["hostname"],
        port=int(found.get("port", 22)),
        user=found.get("user") or getpass.getuser(),
        identity_files=[str(Path(i).expanduser()) for i in identities],
        identities_only=found.get("identitiesonly", "no").lower() == "yes",
        allow_agent=allow_agent,
        known_hosts=[str(Path(k).expanduser()) for k in known],
        host_key_policy=policy,
        proxy_command=None if (proxy_command or "none").lower() == "none" else proxy_command,
        proxy_jump=None if (jump or "none").lower() == "none" else jump,
        ssh_config=str(config_path) if ssh_config else None,
        system_ssh_config=system,
        timeout=timeout,
        certificate_files=[str(Path(c).expanduser()) for c in found.get("certificatefile", [])],
        auth_methods=_auth_methods(found),
        password_prompts=_whole(
            found.get("numberofpasswordprompts", "3"), "NumberOfPasswordPrompts"
        ),
        batch_mode=_yes(found.get("batchmode", "no")),
        gssapi_delegate=_yes(found.get("gssapidelegatecredentials", "no")),
        prompt=prompt,
    )


def jump_options(o: SessionOptions) -> SessionOptions | None:
    """The options of the last hop of ``o``'s ProxyJump, itself reached through the
    hops before it: one connection to it serves every host behind it."""
    if not o.proxy_jump:
        return None
    *rest, last = o.proxy_jump.split(",")
    return resolve_options(
        last,
        ssh_config=o.ssh_config,
        system_ssh_config=o.system_ssh_config,
        timeout=o.timeout,
        proxy_jump=",".join(rest) or None,
        prompt=o.prompt,
    )


def _yes(value: str) -> bool:
    """An ssh_config flag: OpenSSH's yes/true (and, for PubkeyAuthentication, its
    ``unbound``/``host-bound`` forms of yes)."""
    return value.lower() in ("yes", "true", "unbound", "host-bound")


def _whole(value: str, name: str) -> int:
    if not value.isdigit():
        raise SshConfigError(f"{name} must be a whole number in ssh_config, not {value!r}")
    return int(value)


def _auth_methods(found: dict[str, object]) -> tuple[str, ...]:
    """PreferredAuthentications (OpenSSH's order by default), less the methods that
    ssh_config switches off; methods OpenSSH knows and sshdist does not (hostbased)
    are left out, as OpenSSH leaves out what it cannot do."""
    preferred = str(found.get("preferredauthentications", ",".join(AUTH_METHODS)))
    switches = dict(_METHOD_SWITCHES)
    if "kbdinteractiveauthentication" not in found and "challengeresponseauthentication" in found:
        switches["keyboard-interactive"] = ("challengeresponseauthentication", "yes")
    chosen = []
    for method in preferred.split(","):
        method = method.strip().lower()
        if method in switches and method not in chosen:
            key, default = switches[method]
            if _yes(str(found.get(key, default))):
                chosen.append(method)
    return tuple(chosen)
