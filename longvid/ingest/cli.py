"""``longvid ingest``: official release files → manifest.parquet + rejects.parquet.

longvid ingest conf/sources/webvid.yaml [key=value ...] [--out DIR]
longvid ingest conf/build/demo.yaml --out DIR          # every source under its `sources:`
longvid ingest --source howto100m --root DIR_OR_S3 --out DIR [key=value ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from longvid.config import deep_merge, parse_overrides, read_yaml, validate_config
from longvid.errors import ConfigError
from longvid.ingest.config import SOURCE_MODELS, IngestConfig, source_from_dict
from longvid.ingest.runner import format_counts, run_ingest


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="read official release files into manifest.parquet + rejects.parquet",
        description="Read a source release (Ego4D, HowTo100M, HD-VILA, MiraData, WebVid or a "
        "generic folder/list) as downloaded, and write manifest.parquet, rejects.parquet and "
        "ingest_summary.json. Rejected records are data, not failures: the exit status is 0 "
        "unless a whole file is in the wrong format or the config is wrong.",
    )
    p.add_argument(
        "config",
        nargs="?",
        help="a source YAML (conf/sources/x.yaml), an ingest "
        "config or a build config with a `sources:` list",
    )
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (e.g. root=/data)")
    p.add_argument("--source", choices=list(SOURCE_MODELS), help="source name (without config)")
    p.add_argument("--root", help="release root: a directory or s3://bucket/prefix")
    p.add_argument("--out", help="output directory or s3:// prefix (default: ingest-out)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> IngestConfig:
    """The ingest job described by the command line."""
    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)  # `longvid ingest --source x --root y key=value`
        config = None
    job: dict[str, Any] = {}
    if config is None:
        if not args.source or not args.root:
            raise ConfigError("ingest: give a config file, or --source NAME and --root DIR")
        data = deep_merge({"name": args.source, "root": args.root}, parse_overrides(overrides))
        job["sources"] = [source_from_dict(data, "--source/--root")]
    else:
        data = read_yaml(config)
        if "sources" in data:
            if overrides:
                data = deep_merge(data, parse_overrides(overrides))
            job_keys = set(IngestConfig.model_fields)
            if set(data) <= job_keys:  # an ingest config: validate every key
                job = dict(data)
            else:  # a build config: only its sources concern ingest
                job["sources"] = data["sources"]
        else:
            data = deep_merge(data, parse_overrides(overrides)) if overrides else data
            if args.source:
                data.setdefault("name", args.source)
            if args.root:
                data["root"] = args.root
            job["sources"] = [source_from_dict(data, str(config))]
    if args.out:
        job["out"] = args.out
    if args.no_progress:
        job["progress"] = False
    return validate_config(
        {**job, "sources": [s if isinstance(s, dict) else s.model_dump() for s in job["sources"]]},
        IngestConfig,
        str(config) if config else "command line",
    )


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    results = run_ingest(cfg)
    print(format_counts(results))
    print(f"wrote {cfg.out}/manifest.parquet and rejects.parquet")
    return 0
