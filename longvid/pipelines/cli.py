"""``longvid build``: manifest (or sources) → WebDataset shards, index, tables and summary.

longvid build conf/build/demo.yaml [key=value ...]
longvid build --manifest INGEST_OUT --out DIR_OR_S3 [key=value ...]
longvid build ... --restart          # throw away an earlier build at the same output root
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from longvid.config import load_config
from longvid.errors import ConfigError
from longvid.pipelines.config import BuildConfig


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "build",
        help="turn a manifest into WebDataset shards with Ray (resumable)",
        description="Probe, decode once (shot detection + scores), segment by per-source "
        "policy, cut and write WebDataset shards + index.json + samples.parquet + "
        "rejects.parquet + summary.json. Rerunning the same command resumes: committed units "
        "are skipped, leftovers of an interrupted run are removed. Local Ray by default; "
        "RAY_ADDRESS or ray.address for a cluster.",
    )
    p.add_argument("config", nargs="?", help="build config YAML (conf/build/*.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--manifest", help="ingest output (folder or manifest.parquet)")
    p.add_argument("--out", help="output root: folder or s3://bucket/prefix")
    p.add_argument(
        "--restart",
        action="store_true",
        help="delete an earlier build at the output root and start again",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="plan only: print records, units, pending units and expected shards; writes "
        "nothing and starts no Ray",
    )
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> BuildConfig:
    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)  # `longvid build --manifest m --out o key=value`
        config = None
    if args.manifest:
        overrides.append(f"manifest={json.dumps(args.manifest)}")
        overrides.append("sources=null")
    if args.out:
        overrides.append(f"output.root={json.dumps(args.out)}")
    if args.no_progress:
        overrides.append("progress=false")
    if config is None and not args.manifest:
        raise ConfigError("build: give a build config, or --manifest INGEST_OUT --out DIR")
    return load_config(config, BuildConfig, overrides)


def run(args: argparse.Namespace) -> int:
    from longvid.pipelines.build import dry_run, run_build

    cfg = build_config(args)
    if args.dry_run:
        plan = dry_run(cfg, restart=args.restart)
        print(format_dry_run(plan))
        return 0
    result = run_build(cfg, restart=args.restart)
    print(format_summary(result.summary))
    print(f"wrote {result.root}")
    return 0


def format_dry_run(p: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"manifest {p['manifest']} ({p['manifest_fingerprint']})",
            f"records {p['records']} (new since the last build: {p['new_records']}); "
            f"plan generations {p['generations']}",
            f"units {p['units']}: committed {p['committed_units']}, pending {p['pending_units']} "
            f"({p['pending_declared_hours']} h of declared video)",
            f"expected new shards ~{p['expected_new_shards']} "
            f"(at {p['bytes_per_source_second']} bytes per source second)",
            f"dry run: nothing written, no Ray started ({p['wall_seconds']} s)",
        ]
    )


def format_summary(s: dict[str, Any]) -> str:
    rec = s["records"]
    lines = [
        f"units {s['units']['committed']}/{s['units']['total']} "
        f"(skipped this run: {s['units']['skipped_this_run']})",
        f"records {rec['manifest']}: accepted {rec['accepted']}, rejected {rec['rejected']} "
        f"(+ {rec['ingest_rejected']} rejected at ingest)",
        f"samples {s['samples']} in {s['shards']['count']} shards "
        f"({s['shards']['bytes'] / 1e6:.1f} MB); sample rejects {s['sample_rejects']}",
        f"source video {s['source_hours']:.3f} h; wall {s['run']['wall_seconds']:.1f} s; "
        f"{s['run']['source_hours_per_hour']} source-h/h this run",
    ]
    for src, c in s["by_source"].items():
        lines.append(
            f"  {src:>10}: records {c.get('records', 0)} accepted {c.get('accepted', 0)}"
            f" rejected {c.get('rejected', 0)} samples {c.get('samples', 0)} "
            f"(short {c.get('samples_short', 0)}, long {c.get('samples_long', 0)})"
        )
    if s.get("qa_by_task"):
        lines.append("QA items: " + ", ".join(f"{k} {v}" for k, v in s["qa_by_task"].items()))
    if s["rejects_by_reason"]:
        lines.append("rejects: " + ", ".join(f"{k} {v}" for k, v in s["rejects_by_reason"].items()))
    return "\n".join(lines)
