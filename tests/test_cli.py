"""The command line: every registered command has help, errors are one line with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from longvid.cli import COMMANDS, main

LONGVID = [sys.executable, "-m", "longvid.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LONGVID, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_registered_command():
    proc = run("--help")
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert f"longvid {name}" in capsys.readouterr().out


def test_unknown_command_fails():
    proc = run("no-such-command")
    assert proc.returncode != 0
    assert "invalid choice" in proc.stderr


def test_no_command_prints_help_and_fails():
    proc = run()
    assert proc.returncode == 2
    assert "usage: longvid" in proc.stdout
