"""``longvid audit``: the Ray job that checks a built corpus and writes its report.

1. Read the corpus tables (index, samples, rejects, summaries, ledger) on the driver.
2. One Ray Data task per shard (:func:`longvid.audit.shardcheck.audit_shard`): verify size,
   checksum, headers and member offsets, parse every KEY.json, hash every clip, decode a picked
   fraction of them. Remote shards are read once each, by the worker that checks them.
3. Duplicates (:mod:`longvid.dedup`, the build filter's search): exact pairs by a Ray Data
   group-by of clip hashes, embedding and fingerprint pairs inside k-means clusters.
4. On the driver: accounting, leakage (``against``: ids, embeddings and fingerprints of
   evaluation videos), comparison (``compare_with``), verdicts; then ``OUT/report.json``,
   ``OUT/index.html`` and ``OUT/duplicates.parquet``.

Local Ray by default; ``ray.address`` or RAY_ADDRESS for a cluster (every worker must reach the
corpus root).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from longvid import storage
from longvid.audit import compare as compare_mod
from longvid.audit.config import AuditConfig
from longvid.audit.corpus import Corpus, load_corpus
from longvid.audit.duplicates import corpus_samples
from longvid.audit.eval_embed import (
    embedding_leaks,
    eval_frame_hashes,
    is_video_input,
    list_videos,
)
from longvid.audit.gallery import build_gallery
from longvid.audit.html import render_html
from longvid.audit.leakage import EvalItem, id_leaks, normalise_id, read_eval_list
from longvid.audit.report import build_report, corpus_duplicates
from longvid.audit.shardcheck import ROW_FIELDS, audit_shard, problem
from longvid.dedup import DedupResult
from longvid.dedup.fingerprint import FRAMES
from longvid.dedup.leaks import fingerprint_leaks
from longvid.errors import LongvidError
from longvid.pipelines.dedup_exact import exact_pairs_ray

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_HTML = "index.html"
DUPLICATES_PARQUET = "duplicates.parquet"  # longvid.dedup.DUPLICATES_SCHEMA
_ROW_COLUMNS = ("key", "shard", "members", *(c for c, _, _ in ROW_FIELDS))


@dataclass
class AuditResult:
    report: dict[str, Any]
    json_uri: str
    html_uri: str

    @property
    def passed(self) -> bool:
        return self.report["verdict"] == "pass"


def _absolute(uri: str) -> str:
    return uri if storage.is_remote(uri) else str(Path(uri).resolve())


def ray_address(cfg: AuditConfig) -> str:
    """Config, then RAY_ADDRESS, then a new local Ray (never a stranger's cluster by accident)."""
    return cfg.ray.address or os.environ.get("RAY_ADDRESS") or "local"


def connect_ray(cfg: AuditConfig) -> bool:
    """Start or join Ray; True when this call started it (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = ray_address(cfg)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address == "local":
        kwargs.update(num_cpus=cfg.ray.num_cpus, num_gpus=cfg.ray.num_gpus,
                      include_dashboard=False)
    ray.init(address=address, **kwargs)
    return True


def _task(item: dict[str, Any], root: str, opts_json: str, s3_json: str) -> dict[str, Any]:
    from longvid.config import S3Config

    storage.configure(S3Config.model_validate_json(s3_json))
    info = json.loads(item["info"])
    rows = json.loads(item["rows"])
    try:
        out = audit_shard(root, info, rows, json.loads(opts_json))
    except Exception as exc:  # e.g. access denied: this shard fails, the job goes on
        why = str(exc) if isinstance(exc, LongvidError) else f"{type(exc).__name__}: {exc}"
        out = {"url": info["url"], "facts": [], "decoded": 0, "bytes": 0, "seconds": 0.0,
               "embedding_model": None,
               "problems": [problem(info["url"], None, "unreadable_shard",
                                    f"{storage.join(root, info['url'])}: {why}")]}
    return {"result": json.dumps(out, default=str)}


def _want_embeddings(corpus: Corpus) -> bool:
    """Read KEY.emb.npy only when samples.parquet does not carry the vectors already."""
    for r, e in zip(corpus.samples, corpus.extras, strict=True):
        if any(m["ext"] == "emb.npy" for m in r.get("members") or []) and not e.get("embedding"):
            return True
    return False


def _clip_size(row: dict[str, Any]) -> int | None:
    return next((int(m["size"]) for m in row.get("members") or [] if m["ext"] == "mp4"), None)


def shard_work(corpus: Corpus, cfg: AuditConfig) -> tuple[list[tuple[dict, list[dict]]], dict]:
    """``([(index entry, rows of samples.parquet), ...], options)``: what each shard task gets."""
    # equal clips have equal sizes: only clips whose size another clip shares need a hash
    sizes = Counter(_clip_size(r) for r in corpus.samples)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r, extra in zip(corpus.samples, corpus.extras, strict=True):
        row = {c: r.get(c) for c in _ROW_COLUMNS}
        row["_clip_sha256"] = (extra.get("scores") or {}).get("clip_sha256")
        row["_hash_clip"] = sizes[_clip_size(r)] > 1
        groups.setdefault(r["shard"], []).append(row)
    work = [(s.index_entry(), groups.get(s.url, [])) for s in corpus.index.shards]
    opts = {**cfg.checks.model_dump(mode="json"), "hash_clips": cfg.duplicates.exact,
            "want_embeddings": _want_embeddings(corpus)}
    return work, opts


def check_shards(corpus: Corpus, cfg: AuditConfig, progress: bool) -> list[dict[str, Any]]:
    """Run :func:`audit_shard` over every shard of the index as a Ray Data job."""
    if not corpus.index.shards:
        return []
    import ray
    import ray.data

    work, opts = shard_work(corpus, cfg)
    items = [{"info": json.dumps(info), "rows": json.dumps(rows)} for info, rows in work]
    started_ray = connect_ray(cfg)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_stats_logs = False
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        fn = functools.partial(_task, root=corpus.root, opts_json=json.dumps(opts),
                               s3_json=cfg.s3.model_dump_json())
        ds = ds.map(fn, num_cpus=1, concurrency=cfg.concurrency)
        results = []
        started = time.monotonic()
        for row in ds.iter_rows():
            results.append(json.loads(row["result"]))
            if progress:
                done = len(results)
                mb = sum(r["bytes"] for r in results) / 1e6
                print(f"audit: shards {done}/{len(items)}  {mb:.1f} MB  "
                      f"({mb / max(time.monotonic() - started, 1e-9):.1f} MB/s)",
                      file=sys.stderr, flush=True)
    finally:
        if started_ray:
            ray.shutdown()
    order = {s.url: i for i, s in enumerate(corpus.index.shards)}
    return sorted(results, key=lambda r: order.get(r["url"], len(order)))


def _corpus_embeddings(corpus: Corpus, results: list[dict[str, Any]]):
    import numpy as np

    facts = {f["key"]: f for res in results for f in res.get("facts", [])}
    keys, records, vecs = [], [], []
    for r, e in zip(corpus.samples, corpus.extras, strict=True):
        v = e.get("embedding") or facts.get(r["key"], {}).get("embedding")
        if v:
            keys.append(r["key"])
            records.append(str(r.get("record_id")))
            vecs.append(np.asarray(v, dtype=np.float32))
    if not vecs:
        return keys, records, None
    return keys, records, np.stack(vecs)


def find_corpus_duplicates(corpus: Corpus, results: list[dict[str, Any]], cfg: AuditConfig
                           ) -> DedupResult:
    """The duplicates table: exact pairs by a Ray Data group-by of the clip hashes, the rest by
    longvid.dedup on the driver (the build filter's search)."""
    facts = {f["key"]: f for res in results for f in res.get("facts", [])}
    exact = None
    if cfg.duplicates.exact and corpus.samples:
        hashes = [facts.get(r["key"], {}).get("clip_sha256")
                  or (e.get("scores") or {}).get("clip_sha256")
                  for r, e in zip(corpus.samples, corpus.extras, strict=True)]
        exact = exact_pairs_ray([r["key"] for r in corpus.samples], hashes)
    return corpus_duplicates(corpus, facts, cfg, exact)


def fingerprint_check(corpus: Corpus, videos: list[str], cfg: AuditConfig) -> dict[str, Any]:
    """Samples that are copies of evaluation videos by perceptual fingerprint (every frame of
    each evaluation video hashed; longvid.dedup.leaks)."""
    import numpy as np

    search = cfg.duplicates.search
    out: dict[str, Any] = {"videos": len(videos), "checked": False,
                           "max_bits": search.fingerprint_max_bits}
    s = corpus_samples(corpus.samples, corpus.extras, {})
    if search.fingerprint_max_bits is None:
        out["skipped"] = "duplicates.search.fingerprint_max_bits is null"
        return out
    if s.fp_valid is None:
        out["skipped"] = "the corpus has no fingerprints (built before they were computed)"
        return out
    hashes, colours, owner, done, failed = [], [], [], [], []
    for v in videos:
        try:
            with storage.local_copy(v) as local:
                h, c = eval_frame_hashes(str(local))
        except LongvidError as exc:
            failed.append({"video": v, "error": str(exc)})
            continue
        hashes.append(h)
        colours.append(c)
        owner.append(np.full(len(h), len(done)))
        done.append((v, len(h)))
    leaks = []
    if hashes:
        leaks = fingerprint_leaks(s.fp_hashes, s.fp_colours, s.fp_valid, np.concatenate(hashes),
                                  np.concatenate(colours), np.concatenate(owner), search)
    results, leaked = [], set()
    for k, (v, frames) in enumerate(done):
        hits = sorted((x for x in leaks if x.video == k), key=lambda x: (x.bits, s.keys[x.row]))
        leaked.update(str(s.keys[x.row]) for x in hits)
        results.append({"video": v, "frames": frames, "samples": len(hits),
                        "matches": [{"key": str(s.keys[x.row]),
                                     "record_id": str(s.records[x.row]), "bits": int(x.bits)}
                                    for x in hits[: cfg.report.max_rows]]})
    out.update(checked=True, results=results, failed=failed, samples=len(leaked),
               leaked_keys=sorted(leaked))
    return out


def check_leakage(corpus: Corpus, results: list[dict[str, Any]], against: str,
                  cfg: AuditConfig) -> dict[str, Any]:
    """Id matches (always) and embedding matches (video files, embedded corpus)."""
    lc = cfg.leakage
    videos: list[str] = []
    if is_video_input(against, lc.video_exts):
        videos = list_videos(against, lc.video_exts)
        items = [EvalItem(raw=v.rsplit("/", 1)[-1], id=normalise_id(v), where=v) for v in videos]
    else:
        items = read_eval_list(against)
    out: dict[str, Any] = {"against": against, "kind": "videos" if videos else "list"}
    ids = id_leaks(items, corpus.samples, corpus.manifest, cfg.report.max_rows)
    out["ids"] = ids
    problems = [
        problem(None, k, "leak_video_id",
                f"evaluation item {m['eval']!r} ({m['where']}) is source video "
                f"{', '.join(m['records'])} of {m['samples']} sample(s), e.g. {k}")
        for m in ids["matches"] for k in m["keys"][:1]
    ]
    if videos:
        lineage = next((r["embedding_model"] for r in results if r.get("embedding_model")), None)
        keys, records, embs = _corpus_embeddings(corpus, results)
        emb = embedding_leaks(videos, lineage, keys, records, embs, lc.near_cosine, lc.window_s,
                              lc.frames_per_window, lc.device, cfg.report.max_rows,
                              cfg.duplicates.search)
        out["embeddings"] = emb
        for res in emb.get("results", []):
            for m in res["matches"][:1]:
                problems.append(problem(
                    None, m["key"], "leak_embedding",
                    f"evaluation video {res['video']}: sample {m['key']} ({m['record_id']}) "
                    f"has embedding cosine {m['cosine']:.4f} ≥ {lc.near_cosine} "
                    f"({res['samples']} sample(s) at or above it)"))
        for f in emb.get("failed", []):
            problems.append(problem(None, None, "leak_embedding",
                                    f"evaluation video {f['video']} could not be embedded: "
                                    f"{f['error']}"))
        fp = fingerprint_check(corpus, videos, cfg)
        out["fingerprints"] = fp
        limit = cfg.duplicates.search.fingerprint_max_bits
        for res in fp.get("results", []):
            for m in res["matches"][:1]:
                problems.append(problem(
                    None, m["key"], "leak_fingerprint",
                    f"evaluation video {res['video']}: sample {m['key']} ({m['record_id']}) "
                    f"is a copy of its frames (fingerprint {m['bits']} of "
                    f"{FRAMES * 64} bits apart, at most {limit}; {res['samples']} sample(s))"))
        for f in fp.get("failed", []):
            problems.append(problem(None, None, "leak_fingerprint",
                                    f"evaluation video {f['video']} could not be decoded: "
                                    f"{f['error']}"))
    out["problems"] = problems
    return out


def _say(progress: bool, line: str) -> None:
    if progress:
        print(line, file=sys.stderr, flush=True)


def run_audit(root: str, out: str, cfg: AuditConfig | None = None, *,
              against: str | None = None, compare_with: str | None = None,
              progress: bool = False) -> AuditResult:
    """Audit the corpus at ``root`` and write ``out/report.json`` and ``out/index.html``."""
    cfg = cfg or AuditConfig()
    started = time.monotonic()
    storage.configure(cfg.s3)
    root = _absolute(root)
    corpus = load_corpus(root)
    started_ray = connect_ray(cfg)
    try:
        t = time.monotonic()
        results = check_shards(corpus, cfg, progress)
        shard_seconds = time.monotonic() - t
        _say(progress, f"audit: duplicates among {len(corpus.samples)} samples")
        t = time.monotonic()
        found = find_corpus_duplicates(corpus, results, cfg)
        dedup_seconds = time.monotonic() - t
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    t = time.monotonic()
    if against:
        _say(progress, f"audit: leakage against {against}")
    leakage = check_leakage(corpus, results, against, cfg) if against else None
    leakage_seconds = time.monotonic() - t
    compared = None
    if compare_with:
        compared = compare_mod.compare(compare_mod.figures(corpus),
                                       compare_mod.load_baseline(_absolute(compare_with)))
    nbytes = sum(r["bytes"] for r in results)
    audit_run = {
        "ray_address": ray_address(cfg) if corpus.index.shards else None,
        "shards_checked": len(results),
        "bytes_read": nbytes,
        "shard_pass_seconds": round(shard_seconds, 3),
        "mb_per_second": round(nbytes / 1e6 / shard_seconds, 2) if shard_seconds > 0 else None,
        "samples_read": sum(len(r.get("facts", [])) for r in results),
        "clips_decoded": sum(r.get("decoded", 0) for r in results),
        "decode_fraction": cfg.checks.decode_fraction,
        "task_seconds": round(sum(float(r.get("seconds") or 0) for r in results), 3),
        "duplicates_seconds": round(dedup_seconds, 3),
        "leakage_seconds": round(leakage_seconds, 3) if against else None,
        "samples_in_table": len(corpus.samples),
    }
    report = build_report(corpus, results, cfg, audit_run, leakage, compared, found)
    out = _absolute(out)
    json_uri, html_uri = storage.join(out, REPORT_JSON), storage.join(out, REPORT_HTML)
    if not storage.is_remote(out):
        Path(out).mkdir(parents=True, exist_ok=True)
    if cfg.gallery.enabled:
        _say(progress, "audit: gallery")
        t = time.monotonic()
        report["gallery"] = build_gallery(corpus.root, out, corpus.samples,
                                          report["duplicates"]["list"], corpus.rejects,
                                          cfg.gallery)
        report["run"]["audit"]["gallery_seconds"] = round(time.monotonic() - t, 3)
    report["run"]["audit"]["wall_seconds"] = round(time.monotonic() - started, 3)
    storage.write_bytes(json_uri, (json.dumps(report, indent=1, ensure_ascii=False,
                                              default=str) + "\n").encode("utf-8"))
    storage.write_bytes(html_uri, render_html(report).encode("utf-8"))
    buf = pa.BufferOutputStream()
    pq.write_table(found.table, buf)
    storage.write_bytes(storage.join(out, DUPLICATES_PARQUET), buf.getvalue().to_pybytes())
    return AuditResult(report, json_uri, html_uri)
