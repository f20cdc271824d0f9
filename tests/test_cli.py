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


@pytest.mark.parametrize(
    ("argv", "config", "overrides"),
    [
        # positional key=value overrides, as `longvid train` / `build`, before or after options
        (["conf/eval/niah.yaml", "--out", "D", "frames=[32,64]", "--checkpoint", "C",
          "dropout=true"], "conf/eval/niah.yaml", ["frames=[32,64]", "dropout=true",
                                                   "checkpoint=C"]),
        (["--out", "D", "frames=[32]", "depths=[0.5]"], None, ["frames=[32]", "depths=[0.5]"]),
        # --set is kept as an alias
        (["frames=[32]", "--out", "D", "--set", "device=cpu"], None, ["frames=[32]",
                                                                       "device=cpu"]),
        (["conf/eval/niah.yaml", "--out", "D"], "conf/eval/niah.yaml", []),
    ],
)  # fmt: skip
def test_eval_niah_takes_overrides_as_the_other_commands(argv, config, overrides):
    from longvid.cli import build_parser
    from longvid.training.niah.cli import overrides_of

    args = build_parser("eval").parse_args(["eval", "niah", *argv])
    assert args.out == "D"
    assert overrides_of(args) == (config, overrides)


def test_eval_niah_override_errors_name_the_key(tmp_path, capsys):
    code = main(["eval", "niah", "conf/eval/niah.yaml", "--out", str(tmp_path), "frames=[0]"])
    assert code != 0
    assert "frames" in capsys.readouterr().err
