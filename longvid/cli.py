"""``longvid <command>``. Each command lives in its own module, which exposes
``register(subparsers)``: it adds its parser and sets ``func(args) -> int``. Only commands that
exist are listed here, so ``longvid --help`` shows what works.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from longvid import __version__
from longvid.errors import LongvidError

# name → module that registers it, in the order shown by --help
COMMANDS: dict[str, str] = {
    "audit": "longvid.pipelines.audit_cli",
    "build": "longvid.pipelines.cli",
    "convert": "longvid.training.model.convert",
    "eval": "longvid.training.niah.cli",
    "export": "longvid.annotate.export",
    "export-model": "longvid.training.model.export",
    "infer": "longvid.training.infer",
    "ingest": "longvid.ingest.cli",
    "sample-corpus": "longvid.samples.corpus",
    "train": "longvid.training.cli",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with ``only`` that one (a command's module may import
    torch: ``longvid build`` on a cluster driver should not pay for the trainer's imports)."""
    parser = argparse.ArgumentParser(
        prog="longvid",
        description="Build a long-video training corpus from public video datasets, audit it, "
        "and train a HiCo video LLM on it.",
    )
    parser.add_argument("--version", action="version", version=f"longvid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command named in ``argv`` (after the global flags), if any."""
    words = [a for a in argv if a not in ("-v", "--verbose")]
    return words[0] if words and words[0] in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(_command_of(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LongvidError as exc:
        print(f"longvid: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("longvid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
