"""How arguments, ssh_config and OpenSSH's defaults are merged (no connection made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sshdist_kernel import NodeError
from sshdist_kernel.sshconfig import resolve_options


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(
        "Host hpc1\n    HostName 10.1.2.3\n    User alice\n    Port 2222\n"
        "    IdentityFile ~/keys/hpc\n    IdentitiesOnly yes\n"
        "    UserKnownHostsFile /etc/hpc_known_hosts\n"
        "    StrictHostKeyChecking accept-new\n    ProxyJump gate\n"
        "Host *\n    User fallback\n"
    )
    return path


def test_ssh_config_fills_in_what_the_caller_leaves_out(config: Path) -> None:
    o = resolve_options("hpc1", ssh_config=config)
    assert (o.alias, o.hostname, o.user, o.port) == ("hpc1", "10.1.2.3", "alice", 2222)
    assert o.identity_files == [str(Path("~/keys/hpc").expanduser())]
    assert o.identities_only and o.proxy_jump == "gate"
    assert o.known_hosts[0] == "/etc/hpc_known_hosts"
    assert o.host_key_policy == "accept-new"
    assert o.known_hosts_name == "[10.1.2.3]:2222"
    assert o.target == "hpc1 (alice@10.1.2.3:2222)"


def test_arguments_win_over_ssh_config(config: Path) -> None:
    o = resolve_options("bob@hpc1:2200", ssh_config=config, host_key_policy="strict")
    assert (o.user, o.port, o.host_key_policy) == ("bob", 2200, "strict")
    o = resolve_options("hpc1", ssh_config=config, user="carol", port=22)
    assert (o.user, o.port, o.known_hosts_name) == ("carol", 22, "10.1.2.3")


def test_a_host_without_an_entry_gets_the_wildcard_and_defaults(config: Path) -> None:
    o = resolve_options("other.example", ssh_config=config)
    assert (o.hostname, o.user, o.port, o.proxy_jump) == ("other.example", "fallback", 22, None)
    assert o.known_hosts[:2] == [
        str(Path(p).expanduser()) for p in ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
    ]


def test_bracketed_ipv6_with_a_port() -> None:
    o = resolve_options("root@[::1]:2022", ssh_config="/dev/null")
    assert (o.user, o.hostname, o.port) == ("root", "::1", 2022)


def test_a_missing_ssh_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="ssh_config file .*nope does not exist"):
        resolve_options("hpc1", ssh_config=tmp_path / "nope")


def test_an_unknown_host_key_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="host_key_policy"):
        resolve_options("h", ssh_config="/dev/null", host_key_policy="yes")
