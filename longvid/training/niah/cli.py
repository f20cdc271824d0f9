"""``longvid eval niah [CONFIG] --out DIR [--checkpoint D] [--haystack V] [--needles J]
[key=value ...]``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="long-context evaluations of a model (niah)", description="Evaluations."
    )
    sub = p.add_subparsers(dest="evaluation", metavar="EVALUATION", required=True)
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
        "--set", dest="overrides", action="append", default=[], metavar="key=value",
        help="config override, e.g. --set 'frames=[32,64]' (repeatable)",
    )  # fmt: skip
    n.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from longvid.config import load_config
    from longvid.training.niah.config import NiahConfig
    from longvid.training.niah.run import run_niah

    overrides = list(args.overrides)
    for key in ("checkpoint", "haystack", "needles"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(args.config, NiahConfig, overrides)
    results = run_niah(cfg, args.out)
    s = results["summary"]
    print(f"{s['probes']} probes: exact {s['exact']:.3f}, option {s['option']:.3f}")
    return 0
