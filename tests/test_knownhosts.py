"""known_hosts lines as OpenSSH reads them (pure parsing: no sshd needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from pathlib import Path

import paramiko
import pytest

from sshdist_kernel.knownhosts import names_match, read_host_keys


def _hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.mark.parametrize(
    ("patterns", "name", "matches"),
    [
        ("node1", "node1", True),
        ("NODE1", "node1", True),
        ("node1,node2", "node2", True),
        ("node?", "node7", True),
        ("node?", "node10", False),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com,!bad.example.com", "bad.example.com", False),
        ("!bad.example.com,*.example.com", "good.example.com", True),
        ("[127.0.0.1]:2222", "[127.0.0.1]:2222", True),
        ("[127.0.0.1]:2222", "[127.0.0.1]:2223", False),
        ("127.0.0.1", "[127.0.0.1]:2222", False),
        (_hashed("[127.0.0.1]:2222"), "[127.0.0.1]:2222", True),
        (_hashed("[127.0.0.1]:2222"), "[127.0.0.1]:2223", False),
        ("|1|not base64|x", "node1", False),
    ],
)
def test_host_patterns(patterns: str, name: str, matches: bool) -> None:
    assert names_match(patterns, name) is matches


def _key_line() -> tuple[paramiko.PKey, str]:
    key = paramiko.ECDSAKey.generate()
    return key, f"{key.get_name()} {key.get_base64()}"


def test_markers_comments_and_broken_lines(tmp_path: Path) -> None:
    good, good_text = _key_line()
    revoked, revoked_text = _key_line()
    other, other_text = _key_line()
    known = tmp_path / "known_hosts"
    known.write_text(
        "# comment\n\n"
        f"@cert-authority *.example.com {other_text}\n"
        "half a line\n"
        "node1 ecdsa-sha2-nistp256 not-base64!!\n"
        "node1 ssh-unknown AAAA\n"
        f"node1,node9 {good_text}\n"
        f"@revoked * {revoked_text}\n"
        f"@revoked other-host {other_text}\n"
    )
    found = read_host_keys([str(known), str(tmp_path / "missing")], "node1")
    assert list(found.keys) == [good.get_name()]
    assert found.keys[good.get_name()].asbytes() == good.asbytes()
    assert found.is_revoked(revoked)
    assert not found.is_revoked(good)
    assert not found.is_revoked(other)  # revoked for another host only


def test_a_file_is_parsed_once_and_again_when_it_changes(tmp_path: Path, monkeypatch) -> None:
    from sshdist_kernel import knownhosts

    parses = []
    parse = knownhosts._parse
    monkeypatch.setattr(knownhosts, "_parse", lambda *a: parses.append(a) or parse(*a))
    first, first_text = _key_line()
    known = tmp_path / "known_hosts"
    padding = "".join(f"pad{i}.example.com {first_text}\n" for i in range(1000))
    known.write_text(padding + f"node1 {first_text}\n")
    for name in ("node1", "node1", "pad7.example.com", "absent"):
        read_host_keys([str(known)], name)
    assert len(parses) == 1
    assert read_host_keys([str(known)], "NODE1").keys[first.get_name()] == first

    second, second_text = _key_line()
    known.write_text(f"node1 {second_text}\n")  # a new key: read again, not the cached one
    assert read_host_keys([str(known)], "node1").keys[second.get_name()] == second
    assert len(parses) == 2
    assert not read_host_keys([str(known)], "pad7.example.com").keys


def test_hashed_and_wildcard_lines_keep_the_files_order(tmp_path: Path) -> None:
    hashed, hashed_text = _key_line()
    later, later_text = _key_line()
    known = tmp_path / "known_hosts"
    known.write_text(
        f"{_hashed('[127.0.0.1]:2222')} {hashed_text}\n"
        f"[127.0.0.1]:2222 {later_text}\n"
        f"[127.0.0.1]:* {later_text}\n"
    )
    found = read_host_keys([str(known)], "[127.0.0.1]:2222")
    assert found.keys[hashed.get_name()] == hashed  # the first line wins, hashed or not
    assert read_host_keys([str(known)], "[127.0.0.1]:9").keys[later.get_name()] == later
    assert not read_host_keys([str(known)], "[127.0.0.2]:2222").keys


def test_a_key_rewritten_in_place_with_the_same_size_and_time_is_read_again(
    tmp_path: Path,
) -> None:
    first, first_text = _key_line()
    second, second_text = _key_line()
    known = tmp_path / "known_hosts"
    known.write_text(f"node1 {first_text}\n")
    assert read_host_keys([str(known)], "node1").keys[first.get_name()] == first
    st = known.stat()
    with open(known, "r+") as f:  # the same file, the same size, then its old time back
        f.write(f"node1 {second_text}\n")
    os.utime(known, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (known.stat().st_size, known.stat().st_ino) == (st.st_size, st.st_ino)
    assert read_host_keys([str(known)], "node1").keys[second.get_name()] == second


def test_a_fifo_named_as_known_hosts_is_skipped_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "known_hosts"
    os.mkfifo(fifo)
    found = []
    reader = threading.Thread(
        target=lambda: found.append(read_host_keys([str(fifo), os.devnull], "node1")),
        daemon=True,
    )
    reader.start()
    reader.join(10)
    if reader.is_alive():  # let the blocked open go, so nothing is left behind
        with open(fifo, "w"):
            pass
    assert found and not found[0].keys
