"""``longvid export videochat-flash OUT --corpus ROOT``: the corpus in the layout VideoChat-Flash's
training code reads.

That trainer takes a YAML with a ``datasets:`` list; each entry names an annotation file
(``json_path``: a JSON list of records), the folder its ``video`` paths are relative to
(``data_root``) and a ``sampling_strategy`` (``all``, ``first:N``, ``first:P%``, ``end:N``). A record
is LLaVA-style: ``{"id", "video", "conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", "value": "..."}], "start"?, "end"?}``, ``start``/``end`` (seconds) selecting a
span of the video.

Written under OUT::

    videochat_flash.yaml                 the data YAML (absolute paths unless --relative)
    annotations/<bucket>_<task>.json     one file per bucket and QA task (long_temporal_grounding,
                                         short_caption, ...), one single-turn record per QA pair
    videos/<source>/<KEY>.mp4            the clips (--videos clip, the default)

With ``--videos source`` no clip is written: records point at the source videos (local paths or
URIs, relative to their common folder) with the sample's ``start``/``end``.

Only accepted samples (rows of ``samples.parquet``) are exported; records are in key order, so
the same corpus always gives the same files.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import yaml

from longvid import storage
from longvid.annotate.qa import VIDEO_PLACEHOLDER
from longvid.errors import FormatError, LongvidError
from longvid.shards import read_sample, read_table

YAML_NAME = "videochat_flash.yaml"
_STRATEGY_HELP = "sampling_strategy of every YAML entry: all, first:N, first:P%%, end:N"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a built corpus in another trainer's layout",
        description="Export the accepted samples of a built corpus for another trainer.",
    )
    fmt = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    v = fmt.add_parser(
        "videochat-flash",
        help="annotation JSON files + data YAML for VideoChat-Flash's training code",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("out", help="output folder (or s3:// prefix)")
    v.add_argument("--corpus", required=True, help="built corpus root (with samples.parquet)")
    v.add_argument("--videos", choices=("clip", "source"), default="clip",
                   help="clip: write each sample's clip; source: point at the source video "
                   "with start/end (default: clip)")
    v.add_argument("--sampling", default="all", help=_STRATEGY_HELP)
    v.add_argument("--relative", action="store_true",
                   help="paths in the YAML relative to OUT (run the trainer from OUT)")
    v.set_defaults(func=run)


def check_strategy(value: str) -> str:
    kind, _, n = value.partition(":")
    ok = value == "all" or (kind in ("first", "end", "random") and n and (
        n.isdigit() or (n.endswith("%") and n[:-1].isdigit())))
    if not ok:
        raise LongvidError(f"--sampling {value!r}: expected all, first:N, first:P%, end:N")
    return value


def common_root(uris: Iterable[str]) -> str:
    """The longest common folder of ``uris`` (works for paths and s3:// or http URIs)."""
    parts = [u.split("/")[:-1] for u in uris]
    if not parts:
        return ""
    common = parts[0]
    for p in parts[1:]:
        n = 0
        while n < min(len(common), len(p)) and common[n] == p[n]:
            n += 1
        common = common[:n]
    return "/".join(common)


def records_of(meta: dict[str, Any], video: str, span: tuple[float, float] | None
               ) -> dict[str, list[dict[str, Any]]]:
    """Single-turn records of one sample, by task. ``meta`` is the sample's KEY.json."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n, qa in enumerate(meta.get("qa") or []):
        q, a = str(qa.get("question", "")).strip(), str(qa.get("answer", "")).strip()
        if not q or not a:
            continue
        rec: dict[str, Any] = {
            "id": f"{meta['key']}-{n}",
            "video": video,
            "conversations": [{"from": "human", "value": f"{VIDEO_PLACEHOLDER}\n{q}"},
                              {"from": "gpt", "value": a}],
            "task": qa.get("task"),
            "source": meta.get("source"),
            "duration": (meta.get("clip") or {}).get("duration"),
        }
        if span is not None:
            rec["start"], rec["end"] = span
        out[str(qa.get("task"))].append(rec)
    return out


def export_videochat_flash(corpus: str, out: str, videos: str = "clip",
                           sampling: str = "all", relative: bool = False) -> dict[str, Any]:
    """Write the export (see the module docstring); returns a summary with counts per file."""
    check_strategy(sampling)
    rows = sorted(read_table(storage.join(corpus, "samples.parquet")).to_pylist(),
                  key=lambda r: r["key"])
    files: dict[str, list[dict[str, Any]]] = defaultdict(list)
    sources: list[str] = []
    for row in rows:
        want = {"json", "mp4"} if videos == "clip" else {"json"}
        sub = {**row, "members": [m for m in row["members"] if m["ext"] in want]}
        got = read_sample(corpus, sub)
        try:
            meta = json.loads(got["json"])
        except (KeyError, ValueError) as exc:
            raise FormatError(f"{corpus}: sample {row['key']}: no readable KEY.json ({exc})"
                              ) from None
        if videos == "clip":
            video, span = f"{row['source']}/{row['key']}.mp4", None
            storage.write_bytes(storage.join(out, "videos", video), got["mp4"])
        else:  # the absolute URI for now; made relative to the common folder below
            video = str(meta.get("source_uri"))
            span = (float(meta["span"]["start"]), float(meta["span"]["end"]))
            sources.append(video)
        for task, recs in records_of(meta, video, span).items():
            files[f"{row['bucket']}_{task}"] += recs
    if videos == "clip":
        data_root = storage.join(out, "videos")
    else:
        data_root = common_root(sources)
        for recs in files.values():
            for rec in recs:
                rec["video"] = rec["video"][len(data_root):].lstrip("/") if data_root else (
                    rec["video"])
    entries = []
    counts = {}
    for name in sorted(files):
        rel = f"annotations/{name}.json"
        storage.write_bytes(storage.join(out, rel),
                            json.dumps(files[name], ensure_ascii=False, indent=1).encode())
        json_path = rel if relative else _absolute(storage.join(out, rel))
        root = data_root
        if relative and videos == "clip":
            root = "videos"
        elif not storage.is_remote(root) and root:
            root = _absolute(root)
        entries.append({"json_path": json_path, "data_root": root, "sampling_strategy": sampling})
        counts[rel] = len(files[name])
    doc = yaml.safe_dump({"datasets": entries}, sort_keys=False, allow_unicode=True)
    storage.write_bytes(storage.join(out, YAML_NAME), doc.encode())
    return {"yaml": storage.join(out, YAML_NAME), "samples": len(rows), "files": counts,
            "records": sum(counts.values())}


def _absolute(path: str) -> str:
    return path if storage.is_remote(path) else os.path.abspath(path)


def run(args: argparse.Namespace) -> int:
    summary = export_videochat_flash(args.corpus, args.out, args.videos, args.sampling,
                                     args.relative)
    for rel, n in summary["files"].items():
        print(f"{n:8d}  {rel}")
    print(f"{summary['records']} records from {summary['samples']} samples; data YAML: "
          f"{summary['yaml']}")
    return 0
