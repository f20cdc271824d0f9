"""``longvid audit``: check a built corpus and write a report people can read.

longvid audit ROOT [key=value ...] --out DIR                  # DIR/index.html + DIR/report.json
longvid audit ROOT --out DIR --deep                           # decode every clip
longvid audit ROOT --out DIR --against eval_list.txt|videos/  # leakage against evaluation videos
longvid audit ROOT --out DIR --compare OTHER_ROOT|report.json # what changed since another build

Exit status: 0 when every check passes, 1 when any fails (the report says which and why),
2 for a wrong config or command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from longvid.audit.config import AuditConfig
from longvid.config import load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "audit" / "default.yaml"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "audit",
        help="check a built corpus and write an HTML + JSON report",
        description="Verify every shard of a built corpus (existence, size, checksum, tar "
        "structure, member offsets, KEY.json against samples.parquet, decodable clips), check "
        "the accounting (inputs = accepted + rejected), and write DIR/index.html (one "
        "self-contained page) and DIR/report.json (the same figures): totals, distributions, "
        "rejects, declared vs probed metadata, duplicates, licences, the build's run summary. "
        "A Ray job over the shards (local Ray, or RAY_ADDRESS). Exit 1 when a check fails.",
    )
    p.add_argument("root", help="corpus root written by `longvid build` (folder or s3://...)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides of the audit config")
    p.add_argument("--out", required=True, help="report folder (or s3:// prefix)")
    p.add_argument("--config", help="audit config YAML (default: conf/audit/default.yaml)")
    p.add_argument("--deep", action="store_true",
                   help="decode every clip (default: checks.decode_fraction of them)")
    p.add_argument("--against", metavar="LIST_OR_VIDEOS",
                   help="evaluation videos: a list of ids/URLs (txt, csv, tsv, json, jsonl), or "
                   "a folder / file of videos (also compared by embedding)")
    p.add_argument("--compare", metavar="OTHER", dest="compare_with",
                   help="another corpus root, or an earlier report.json: show what changed")
    p.add_argument("--progress", action="store_true", help="progress lines on stderr: each part, and the shard pass at most every 2 s")
    p.set_defaults(func=run)


def audit_config(args: argparse.Namespace) -> AuditConfig:
    overrides = list(args.overrides)
    if args.deep:
        overrides.append("checks.decode_fraction=1.0")
    config = args.config or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None)
    return load_config(config, AuditConfig, overrides)


def run(args: argparse.Namespace) -> int:
    from longvid.pipelines.audit import run_audit

    cfg = audit_config(args)
    result = run_audit(args.root, args.out, cfg, against=args.against,
                       compare_with=args.compare_with, progress=args.progress)
    r = result.report
    for c in r["checks"]:
        mark = "pass" if c["passed"] else "FAIL"
        print(f"  [{mark}] {c['title']}" + (f": {c['count']} problem(s) "
                                              f"({', '.join(c['reasons'])})" if c["count"] else ""))
        for p in c["problems"][:3]:
            print(f"         {p['message']}")
    t = r["totals"]
    print(f"{t['samples']} samples, {t['hours']:.3f} h in {t['shards']} shards; "
          f"verdict: {r['verdict'].upper()}")
    print(f"wrote {result.json_uri}")
    print(result.html_uri)
    return 0 if result.passed else 1
