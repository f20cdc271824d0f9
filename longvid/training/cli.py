"""``longvid train CONFIG --out DIR [--resume auto|CKPT] [--stop-after N|F|half] [key=value ...]``

One process, or one per GPU/CPU slot under torchrun (the same command line after
``torchrun --nproc_per_node=N -m longvid.cli``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


class MixedArgsParser(argparse.ArgumentParser):
    """Lets ``key=value`` overrides stand before, between or after the options
    (``longvid train c.yaml --out D data.corpus=X --resume auto``)."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:  # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def register(subparsers: argparse._SubParsersAction) -> None:
    default_class = subparsers._parser_class
    subparsers._parser_class = MixedArgsParser
    try:
        p = _add_parser(subparsers)
    finally:
        subparsers._parser_class = default_class
    p.set_defaults(func=run)


def _add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a HiCo video LLM through the short-to-long curriculum",
        description="Run the curriculum of a train config (conf/train/*.yaml) on built "
        "corpora: checkpoints, metrics.jsonl, TensorBoard events and the final model go to "
        "--out. Under torchrun every process runs this same command (DDP).",
    )
    p.add_argument("config", help="train config YAML (e.g. conf/train/demo.yaml)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--resume",
        default=None,
        help="'auto' = the newest complete checkpoint of the run (a fresh start when there is "
        "none), or a checkpoint folder",
    )
    p.add_argument(
        "--stop-after",
        default=None,
        metavar="STEP|FRACTION|half",
        help="stop cleanly after writing a checkpoint at this global step (or fraction of all "
        "steps); --resume auto continues",
    )
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted config overrides (YAML values)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    from longvid.config import load_config
    from longvid.training.config import TrainConfig
    from longvid.training.trainer import Trainer

    config = Path(args.config)
    cfg = load_config(config, TrainConfig, args.overrides)
    result = Trainer(
        cfg,
        args.out,
        resume=args.resume,
        stop_after=args.stop_after,
        config_dir=config.resolve().parent,
    ).run()
    return 0 if result.global_step > 0 or result.total_steps == 0 else 1
