"""How arguments, ssh_config and OpenSSH's defaults are merged (no connection made)."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sshdist_kernel import NodeError, openssh_config
from sshdist_kernel.openssh_config import read_ssh_config
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
    assert o.target == "hpc1 (alice@10.1.2.3:2222 through gate)"


def test_a_host_behind_a_jump_host_is_named_with_it(config: Path) -> None:
    """When the login node's connection dies, 8 nodes behind it said 'the remote REPL
    on cn05 (root@...) ended' each, and nothing named the login node."""
    assert "through gate" in resolve_options("hpc1", ssh_config=config).target
    assert "through" not in resolve_options("gate", ssh_config=config).target


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


# ssh_config as OpenSSH reads it, checked against OpenSSH's own answers.

SSH = shutil.which("ssh")
needs_ssh = pytest.mark.skipif(SSH is None, reason="OpenSSH's client is not installed")
LOCAL_USER = getpass.getuser()


def ssh_G(host: str, config: Path) -> dict[str, str]:
    """What ``ssh -G -F config host`` prints for the options sshdist uses."""
    out = subprocess.run(
        [SSH, "-G", "-F", str(config), host],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
        check=True,
    ).stdout
    keys = {"hostname", "user", "port", "proxyjump", "userknownhostsfile"}
    return {k: v for k, _, v in (line.partition(" ") for line in out.splitlines()) if k in keys}


def ssh_expanded(host: str, config: Path) -> tuple[str, list[str]]:
    """The ProxyCommand and IdentityFiles ``ssh`` runs and loads once tokens are
    expanded (``ssh -G`` prints them unexpanded); the ProxyCommand prints no banner, so
    ssh gives up at once."""
    err = subprocess.run(
        [SSH, "-v", "-F", str(config), "-o", "BatchMode=yes", host, "true"],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    ).stderr
    proxy = re.search(r"Executing proxy command: exec (.*)", err)
    files = re.findall(r"identity file (.*) type -?\d+", err)
    return (proxy.group(1) if proxy else ""), [f for f in files if not f.endswith("-cert")]


def ours(host: str, files: list[tuple[Path, Path]]) -> dict[str, str]:
    """read_ssh_config's answer, written the way ssh -G writes it."""
    found = read_ssh_config(host, files)
    mine = {
        "hostname": found["hostname"],
        "user": found.get("user", LOCAL_USER),
        "port": str(found.get("port", 22)),
    }
    if found.get("proxyjump", "none").lower() != "none":
        mine["proxyjump"] = found["proxyjump"]
    if "userknownhostsfile" in found:
        mine["userknownhostsfile"] = " ".join(found["userknownhostsfile"])
    return mine


def agree(hosts: list[str], config: Path, files: list[tuple[Path, Path]] | None = None) -> None:
    files = files or [(config, Path("~/.ssh"))]
    for host in hosts:
        theirs = ssh_G(host, config)
        if "userknownhostsfile" not in ours(host, files):
            theirs.pop("userknownhostsfile", None)
        assert ours(host, files) == theirs, host


@needs_ssh
def test_include_globs_in_order_inside_a_host_block_as_ssh_G(tmp_path: Path) -> None:
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "20-b.conf").write_text("User bob\nPort 2020\n")
    (inc / "10-a.conf").write_text("User alice\nHost db*\n  Port 5432\n")
    (inc / "skip.txt").write_text("User never\n")
    config = tmp_path / "config"
    config.write_text(
        f"Host web* db2\n  Include {inc}/*.conf {tmp_path}/absent/*.conf\n  Port 2201\n"
        f"Host db*\n  HostName %h.db.example\nHost *\n  User everyone\n"
        f"  Include {tmp_path}/tail.conf\n"
    )
    (tmp_path / "tail.conf").write_text("ProxyJump gate\nMatch host never\n  Port 1\n")
    agree(["web1", "db1", "db2", "other"], config)
    assert ours("web1", [(config, Path("~/.ssh"))])["user"] == "alice"


@needs_ssh
def test_match_criteria_as_ssh_G(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Match originalhost short\n  HostName long.example.org\n"
        "Match host long.example.org\n  Port 2022\n"
        "Match host *.example.org,!bad.example.org\n  User orguser\n"
        "Match user orguser\n  ProxyJump gate1\n"
        "Match !host *.example.org originalhost 10.*\n  User net\n"
        'Match originalhost ex* exec "test %n = ex1"\n  Port 3333\n'
        f"Match localuser {LOCAL_USER}\n  UserKnownHostsFile /kh/%h-%p-%r /kh2/%n\n"
        "Match final host *.final.example\n  User late\n"
        "Host fin\n  HostName fin.final.example\n"
        "Match all\n  Port 2999\n"
    )
    hosts = ["short", "long.example.org", "bad.example.org", "ok.example.org", "10.0.0.5"]
    agree([*hosts, "ex1", "ex2", "fin", "other"], config)
    assert ours("short", [(config, Path("~/.ssh"))])["port"] == "2022"


@needs_ssh
def test_host_patterns_negation_and_case_as_ssh_G(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Host !n9 n?\n  User one\nHost Upper\n  Port 2000\nHost *\n  HostName %h.Cluster.Example\n"
    )
    agree(["n1", "n9", "n10", "Upper", "upper"], config)


@needs_ssh
def test_tokens_as_ssh_expands_them(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Host n*\n  HostName %h.cluster\n  User u%h\n"
        "  IdentityFile ~/keys/%h-%p-%r-%u-%n-%%-%d-%k-%l-%L-%i-%C\n"
        "  IdentityFile /keys/second_%h\n"
        "  ProxyCommand printf %h:%p:%r:%n:%%\n"
        "  UserKnownHostsFile /kh/%h_%r\n"
        "Host n2\n  Port 2202\n"
    )
    for host in ("n1", "n2"):
        proxy, identities = ssh_expanded(host, config)
        found = read_ssh_config(host, [(config, Path("~/.ssh"))])
        assert (found["proxycommand"], found["identityfile"]) == (proxy, identities)
    agree(["n1", "n2"], config)


@needs_ssh
def test_system_file_after_the_users_first_value_wins(tmp_path: Path) -> None:
    """OpenSSH reads ~/.ssh/config then /etc/ssh/ssh_config, each starting afresh; ssh -G
    with -F reads one file, so it reads one that Includes the two in turn."""
    etc = tmp_path / "etc"
    (etc / "ssh_config.d").mkdir(parents=True)
    (etc / "ssh_config.d" / "50-site.conf").write_text("Host *\n  User site\n  Port 2100\n")
    system = etc / "ssh_config"
    system.write_text("Include ssh_config.d/*.conf\nHost *\n  ProxyJump sysgate\n")
    user = tmp_path / "user_config"
    user.write_text("Host mine\n  Port 2222\nHost none\n  ProxyJump none\n")
    both = tmp_path / "both"
    both.write_text(
        f"Include {user}\nInclude {etc}/ssh_config.d/*.conf\nHost *\n  ProxyJump sysgate\n"
    )
    agree(["mine", "none", "other"], both, files=[(user, Path("~/.ssh")), (system, etc)])
    found = read_ssh_config("mine", [(user, Path("~/.ssh")), (system, etc)])
    assert (found["port"], found["user"], found["proxyjump"]) == ("2222", "site", "sysgate")


def test_resolve_options_reads_the_users_file_then_the_system_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh" / "conf.d").mkdir(parents=True)
    (tmp_path / ".ssh" / "config").write_text("Include conf.d/*\nHost hpc\n  Port 2222\n")
    (tmp_path / ".ssh" / "conf.d" / "a").write_text("Host hpc\n  IdentityFile ~/k/%h\n")
    system = tmp_path / "etc_ssh_config"
    system.write_text("Host *\n  User sys\n  Port 1\n")
    o = resolve_options("hpc", system_ssh_config=system)
    assert (o.port, o.user, o.identity_files) == (2222, "sys", [f"{tmp_path}/k/hpc"])
    # A named file is the only one read, as with ssh -F.
    named = tmp_path / "named"
    named.write_text("Host hpc\n  Port 3\n")
    o = resolve_options("hpc", ssh_config=named, system_ssh_config=system)
    assert (o.port, o.user) == (3, LOCAL_USER)
    o = resolve_options("hpc", system_ssh_config=None)
    assert (o.port, o.user) == (2222, LOCAL_USER)


def test_unsupported_match_criteria_are_refused_with_the_line(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host a\n  Port 1\nMatch tagged x\n  Port 2\n")
    with pytest.raises(NodeError, match=r"config line 3: Match tagged is not supported"):
        resolve_options("a", ssh_config=config)


def test_each_file_is_parsed_once_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    parse = openssh_config._parse_file
    monkeypatch.setattr(openssh_config, "_parse_file", lambda p: parsed.append(p) or parse(p))
    config = tmp_path / "config"
    config.write_text("Host *\n  Port 2000\n")
    assert [resolve_options(f"n{i}", ssh_config=config).port for i in range(50)] == [2000] * 50
    assert parsed == [str(config)]
    config.write_text("Host *\n  Port 3000\n")
    os.utime(config, ns=(0, config.stat().st_mtime_ns + 10**9))
    assert resolve_options("n1", ssh_config=config).port == 3000
    assert parsed == [str(config), str(config)]


@needs_ssh
def test_a_big_file_as_ssh_G_and_a_lookup_checks_only_the_blocks_for_its_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = [f"Host h{i} alias{i}\n  Port {2000 + i}\n  User u{i}\n" for i in range(300)]
    blocks[10:10] = ["Host h2*\n  User wild\n", "Match originalhost alias5\n  Port 1\n"]
    blocks[200:200] = ["Host h7\n  Port 7777\n  HostName seven\n", "Host !h9 h?\n  User one\n"]
    config = tmp_path / "config"
    config.write_text("Compression no\n" + "".join(blocks) + "Host *\n  User everyone\n")
    agree(["h1", "alias5", "h7", "h9", "h25", "h250", "alias299", "absent"], config)

    checked = []
    matches = openssh_config.HostPatterns.matches
    monkeypatch.setattr(
        openssh_config.HostPatterns,
        "matches",
        lambda self, name: checked.append(name) or matches(self, name),
    )
    assert ours("h150", [(config, Path("~/.ssh"))])["port"] == "2150"
    assert len(checked) <= 6  # its own block, the wildcard ones, the Match: not 300
