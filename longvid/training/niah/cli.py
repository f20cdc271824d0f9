"""``longvid eval niah [CONFIG] --out DIR [--checkpoint D] [--haystack V] [--needles J]
[key=value ...]``: dotted overrides are positional, as for ``longvid train`` and ``build``
(``--set key=value`` is kept as an alias)."""

from __future__ import annotations

import argparse
from pathlib import Path

from longvid.training.cli import MixedArgsParser


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="long-context evaluations of a model (niah)", description="Evaluations."
    )
    sub = p.add_subparsers(dest="evaluation", metavar="EVALUATION", required=True)
    sub._parser_class = MixedArgsParser  # overrides before, between or after the options
    n = sub.add_parser(
        "niah",
        help="needle in a haystack: frames x depths grid",
        description="Insert needle images into a long haystack video at several depths and "
        "ask four-option questions; writes results.json, niah.html and a figure to --out.",
    )
    n.add_argument("config", nargs="?", default=None, help="YAML config (conf/eval/niah.yaml)")
    n.add_argument("--out", required=True, help="output directory")
    n.add_argument("--checkpoint", default=None, help="model directory")
    n.add_argument("--haystack", default=None, help="haystack video file")
    n.add_argument("--needles", default=None, help="needle JSON file")
    n.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="dotted config overrides (YAML values), e.g. 'frames=[32,64]' dropout=true",
    )  # fmt: skip
    n.add_argument(
        "--set", dest="set_overrides", action="append", default=[], metavar="key=value",
        help="the same as a positional key=value (kept for older command lines)",
    )  # fmt: skip
    n.set_defaults(func=run)


def overrides_of(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """(config path, overrides): a first positional ``key=value`` that is not a file is an
    override (``longvid eval niah --out D frames=[32]``, no config)."""
    config, overrides = args.config, [*args.overrides, *args.set_overrides]
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)
        config = None
    for key in ("checkpoint", "haystack", "needles"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    return config, overrides


def run(args: argparse.Namespace) -> int:
    from longvid.config import load_config
    from longvid.training.niah.config import NiahConfig
    from longvid.training.niah.run import run_niah

    config, overrides = overrides_of(args)
    cfg = load_config(config, NiahConfig, overrides)
    results = run_niah(cfg, args.out)
    s = results["summary"]
    print(f"{s['probes']} probes: exact {s['exact']:.3f}, option {s['option']:.3f}")
    return 0
