"""Files parsed once while they stay the same (ssh_config, known_hosts, key files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sshdist_kernel import sshfiles
from sshdist_kernel.sshfiles import cached_parse


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(sshfiles, "_parsed", {})
    return []


def _counting(parses: list[str]):
    def parse(path: str) -> str:
        parses.append(path)
        return Path(path).read_text()

    return parse


def test_a_file_is_parsed_once_until_it_changes(tmp_path: Path, parses: list[str]) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    parse = _counting(parses)
    assert [cached_parse(path, parse) for _ in range(3)] == ["one"] * 3
    assert parses == [str(path)]
    # Same size and modification time, new content: the change time still tells.
    st = path.stat()
    path.write_text("two")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cached_parse(path, parse) == "two"
    replaced = tmp_path / "g"
    replaced.write_text("six")
    replaced.replace(path)
    assert cached_parse(path, parse) == "six"
    assert len(parses) == 3


def test_a_companion_file_that_changes_means_a_new_parse(tmp_path: Path, parses: list[str]) -> None:
    path, cert = tmp_path / "key", tmp_path / "key-cert.pub"
    path.write_text("k")
    parse = _counting(parses)
    for _ in range(2):
        cached_parse(path, parse, companions=[str(cert)])
    cert.write_text("c")  # appears
    cached_parse(path, parse, companions=[str(cert)])
    assert len(parses) == 2


def test_a_missing_file_is_none_and_an_error_is_not_kept(tmp_path: Path, parses: list[str]) -> None:
    path = tmp_path / "f"
    parse = _counting(parses)
    assert cached_parse(path, parse) is None
    assert parses == []

    def broken(p: str) -> str:
        parses.append(p)
        raise ValueError("bad file")

    path.write_text("x")
    for _ in range(2):
        with pytest.raises(ValueError, match="bad file"):
            cached_parse(path, broken)
    assert len(parses) == 2
    assert cached_parse(path, parse) == "x"  # another parser of the same file: its own entry


def test_forget_parsed_reads_every_file_afresh(tmp_path: Path, parses: list[str]) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    parse = _counting(parses)
    cached_parse(path, parse)
    sshfiles.forget_parsed()
    cached_parse(path, parse)
    assert len(parses) == 2
