"""``longvid audit``: the Ray job that checks a built corpus and writes its report, out of core.

1. Read the small corpus files (index, rejects, summaries, the probed videos' columns) on the
   driver, and stream the sample table twice, batch by batch: the aggregates
   (:mod:`longvid.audit.scan`) and the table pass (:mod:`longvid.audit.tablepass`: which parts
   hold each shard, licences, per-record counts, the gallery's picks). No row list, no Python
   object per sample stays on the driver.
2. One Ray Data task per shard (:mod:`longvid.audit.shardtask`): it reads its own rows from the
   parts that hold its shard, verifies size, checksum, headers and member offsets, parses every
   KEY.json, hashes the clips that need it, decodes a picked fraction, and sends back a summary
   (counts, histogram inputs, the first ``checks.max_listed`` problems of each reason and their
   totals), folded on the driver in index order as it arrives.
3. Duplicates: the build filter's partitioned search over the sample parts when the table
   carries every signal that is on (:mod:`longvid.pipelines.dedup_partitioned`); for older
   corpora (hashes / vectors read by the shard tasks) :mod:`longvid.dedup` on the dedup columns
   streamed into arrays: exact pairs by a Ray Data group-by, the rest inside k-means clusters.
4. Accounting (Arrow per-record tables: manifest, ledger, samples, rejects), leakage
   (``against``: the evaluation ids as the hash set, the corpus streamed past it; embeddings and
   fingerprints of evaluation videos, compared a batch of corpus rows at a time), comparison (``compare_with``), verdicts; then
   ``OUT/report.json``, ``OUT/index.html`` and ``OUT/duplicates.parquet``. ``run.audit`` says how
   many shards and samples were read and how long each part took (``part_seconds``).

Local Ray by default; ``ray.address`` or RAY_ADDRESS for a cluster (every worker must reach the
corpus root).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from longvid import storage
from longvid.audit import accounting
from longvid.audit import compare as compare_mod
from longvid.audit.config import AuditConfig
from longvid.audit.corpus import Corpus, load_corpus
from longvid.audit.duplicates import iter_samples, stream_samples
from longvid.audit.eval_embed import (
    embedding_leaks,
    eval_frame_hashes,
    is_video_input,
    list_videos,
)
from longvid.audit.gallery import build_gallery, gallery_keys
from longvid.audit.html import render_html
from longvid.audit.leakage import EvalItem, id_leaks_stream, normalise_id, read_eval_list
from longvid.audit.report import build_report
from longvid.audit.scan import iter_batches, sample_parts
from longvid.audit.shardcheck import problem
from longvid.audit.shardtask import ShardTotals, group_shards, run_group_task
from longvid.audit.tablepass import ROW_COLUMNS, TablePass, table_pass
from longvid.dedup import DedupResult, Samples, find_duplicates
from longvid.dedup.fingerprint import FRAMES
from longvid.dedup.leaks import fingerprint_leaks
from longvid.dedup.partition import part_rows
from longvid.errors import LongvidError
from longvid.pipelines.dedup_exact import exact_pairs_ray
from longvid.pipelines.dedup_partitioned import find_duplicates_partitioned

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_HTML = "index.html"
DUPLICATES_PARQUET = "duplicates.parquet"  # longvid.dedup.DUPLICATES_SCHEMA
PROGRESS_EVERY_S = 2.0  # seconds between two progress lines of the shard pass
# most shards one task checks: a build's unit part holds ~10 shards' rows, all read at once
SHARDS_PER_TASK = 16


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


def _task(item: dict[str, Any], root: str, opts_json: str, s3_json: str, shared_ref: Any
          ) -> dict[str, Any]:
    import ray

    from longvid.config import S3Config

    storage.configure(S3Config.model_validate_json(s3_json))
    shared_sizes, dropped = ray.get(shared_ref)
    out = run_group_task(root, json.loads(item["infos"]), json.loads(item["parts"]),
                         json.loads(opts_json), shared_sizes, dropped)
    return {"result": json.dumps(out, default=str)}


def shards_per_task(shards: int) -> int:
    """The most shards one task checks: SHARDS_PER_TASK, and fewer when that would leave the
    cluster's CPUs fewer than two tasks each (a task checks its shards one after another)."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
    return max(1, min(SHARDS_PER_TASK, -(-shards // (2 * cpus))))


def shard_options(cfg: AuditConfig, tp: TablePass) -> dict[str, Any]:
    return {**cfg.checks.model_dump(mode="json"), "hash_clips": cfg.duplicates.exact,
            "want_embeddings": tp.want_embeddings}


def check_shards(corpus: Corpus, tp: TablePass, cfg: AuditConfig, progress: bool
                 ) -> ShardTotals:
    """Check every shard of the index as a Ray Data job: the shards are grouped by the Parquet
    parts ``tp`` found for them (:func:`group_shards`), one task per group reads its parts once
    and sends back a summary per shard, folded into :class:`ShardTotals` in index order as they
    arrive."""
    totals = ShardTotals(max_listed=cfg.checks.max_listed)
    shards = corpus.index.shards
    if not shards:
        return totals
    import ray
    import ray.data

    # samples the build dropped as duplicates are in their shard but not in the table
    dropped = {accounting.sample_reject_key(r) for r in corpus.rejects
               if accounting.is_sample_reject(r)}
    started_ray = connect_ray(cfg)
    try:
        parts = [tp.shard_parts.get(s.url, []) for s in shards]
        groups = group_shards(parts, shards_per_task(len(shards)))
        items = [{"infos": json.dumps([shards[i].index_entry() for i in g]),
                  "parts": json.dumps([parts[i] for i in g])} for g in groups]
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_stats_logs = False
        was_ordered = ctx.execution_options.preserve_order
        ctx.execution_options.preserve_order = True  # index order: a report that repeats
        shared_ref = ray.put((tp.shared_sizes, dropped))
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        fn = functools.partial(_task, root=corpus.root,
                               opts_json=json.dumps(shard_options(cfg, tp)),
                               s3_json=cfg.s3.model_dump_json(), shared_ref=shared_ref)
        ds = ds.map(fn, num_cpus=1, concurrency=cfg.concurrency)
        started = time.monotonic()
        said = 0.0
        for row in ds.iter_rows():
            for summary in json.loads(row["result"]):
                totals.add(summary)
            now = time.monotonic()
            done = totals.shards
            # a line at most every PROGRESS_EVERY_S seconds (and at the end): a 100k-shard
            # audit must not print 100k lines
            if progress and (now - said >= PROGRESS_EVERY_S or done == len(shards)):
                said = now
                took = max(now - started, 1e-9)
                eta = took / done * (len(shards) - done)
                print(f"audit: shards {done}/{len(shards)} ({len(groups)} tasks), "
                      f"{totals.rows} samples, "
                      f"{totals.bytes / 1e6:.1f} MB ({totals.bytes / 1e6 / took:.1f} MB/s, "
                      f"~{eta:.0f} s left)", file=sys.stderr, flush=True)
        ctx.execution_options.preserve_order = was_ordered
    finally:
        if started_ray:
            ray.shutdown()
    return totals


DEDUP_COLUMNS = ["key", "record_id", "bucket", "extra", "embedding", "fingerprint"]


def dedup_samples(corpus: Corpus, st: ShardTotals, cfg: AuditConfig, videos: bool
                  ) -> Samples | None:
    """The dedup columns of every sample, streamed from the table (plus what the shard tasks
    read where the table has no hash or vector): only the signals that are on (``videos``:
    leakage against evaluation videos needs embeddings and fingerprints). None when every
    signal is off."""
    dc = cfg.duplicates
    fingerprints = dc.search.fingerprint_max_bits is not None
    embeddings = dc.near_cosine is not None or videos
    if not (dc.exact or embeddings or fingerprints):
        return None
    keys, hashes = st.computed_hashes()
    return stream_samples(iter_batches(corpus.samples_uri, DEDUP_COLUMNS), keys, hashes,
                          st.emb_keys, st.emb_vectors, hashes=dc.exact, embeddings=embeddings,
                          fingerprints=fingerprints)


def table_carries_signals(st: ShardTotals) -> bool:
    """Whether the sample table itself holds every dedup signal that is on: the shard tasks
    had to hash no clip and read no vector (builds that write ``embedding``, ``fingerprint``
    and ``extra.scores.clip_sha256``)."""
    keys, _ = st.computed_hashes()
    return len(keys) == 0 and not st.emb_keys


DEDUP_WORK = ".dedup-work"  # under the audit's output folder; removed when the search is done


def find_partitioned_duplicates(corpus: Corpus, rows: int, cfg: AuditConfig, out: str
                                ) -> DedupResult:
    """The duplicates table by the build filter's partitioned search over the sample parts
    (:func:`~longvid.pipelines.dedup_partitioned.find_duplicates_partitioned`): the driver
    holds centroids, a training sample and the pairs, never a corpus-wide column."""
    dc = cfg.duplicates
    work = storage.join(out, DEDUP_WORK)
    found = find_duplicates_partitioned(sample_parts(corpus.samples_uri), dc.search, work,
                                        exact=dc.exact, near_cosine=dc.near_cosine)
    try:
        table = found.table()
        got = found.stats
        # the figures the in-memory search reports (report.duplicates.checked)
        stats: dict[str, Any] = {"samples": rows, "duplicates": table.num_rows}
        if dc.exact:
            stats["exact_pairs"] = sum(part_rows(u) for u in found.work_files
                                       if "/pairs/exact-" in u and storage.exists(u))
        if dc.near_cosine is not None and got.get("embedding_rows"):
            stats.update(embedded=got["embedding_rows"],
                         clusters=got.get("embedding_clusters", 0))
        if dc.search.fingerprint_max_bits is not None and got.get("fingerprint_rows"):
            stats["fingerprinted"] = got["fingerprint_rows"]
        stats["partitioned"] = got
    finally:
        found.remove_work(parts_too=True)
        if not storage.is_remote(work):
            shutil.rmtree(work, ignore_errors=True)
    return DedupResult(table, stats)


def find_corpus_duplicates(s: Samples | None, rows: int, cfg: AuditConfig) -> DedupResult:
    """The duplicates table: exact pairs by a Ray Data group-by of the clip hashes, the rest by
    longvid.dedup (the build filter's search); an empty one when every signal is off."""
    dc = cfg.duplicates
    if s is None:
        z = np.zeros(0, dtype=object)
        found = find_duplicates(Samples(z, z, z), dc.search, exact=False)
        found.stats["samples"] = rows
        return found
    exact = None
    if dc.exact and len(s.keys):
        exact = exact_pairs_ray(pa.array(s.keys.astype(str), pa.string()),
                                pa.array(s.content_hashes.tolist(), pa.string()))
    return find_duplicates(s, dc.search, exact=dc.exact, near_cosine=dc.near_cosine,
                           exact_found=exact)


def fingerprint_check(batches: Iterable[Samples], videos: list[str], cfg: AuditConfig
                      ) -> dict[str, Any]:
    """Samples that are copies of evaluation videos by perceptual fingerprint (every frame of
    each evaluation video hashed; longvid.dedup.leaks), the corpus compared a batch at a time
    (``batches``) against the evaluation frames, decoded once when the first fingerprinted
    batch comes."""
    search = cfg.duplicates.search
    out: dict[str, Any] = {"videos": len(videos), "checked": False,
                           "max_bits": search.fingerprint_max_bits}
    if search.fingerprint_max_bits is None:
        out["skipped"] = "duplicates.search.fingerprint_max_bits is null"
        return out
    eval_h, eval_c, eval_owner = [], [], []
    done: list[tuple[str, int]] = []
    failed: list[dict[str, str]] = []
    decoded = False
    found: dict[int, list[tuple[int, str, str]]] = {}  # eval video → (bits, key, record)
    for s in batches:
        if s.fp_valid is None or not s.fp_valid.any():
            continue
        if not decoded:
            decoded = True
            for v in videos:
                try:
                    with storage.local_copy(v) as local:
                        h, c = eval_frame_hashes(str(local))
                except LongvidError as exc:
                    failed.append({"video": v, "error": str(exc)})
                    continue
                eval_h.append(h)
                eval_c.append(c)
                eval_owner.append(np.full(len(h), len(done)))
                done.append((v, len(h)))
        if not done:
            break
        leaks = fingerprint_leaks(s.fp_hashes, s.fp_colours, s.fp_valid, np.concatenate(eval_h),
                                  np.concatenate(eval_c), np.concatenate(eval_owner), search)
        for x in leaks:
            found.setdefault(x.video, []).append((int(x.bits), str(s.keys[x.row]),
                                                  str(s.records[x.row])))
    if not decoded:
        out["skipped"] = "the corpus has no fingerprints (built before they were computed)"
        return out
    results, leaked = [], set()
    for k, (v, frames) in enumerate(done):
        hits = sorted(found.get(k, []))  # fewest bits apart, then key
        leaked.update(key for _, key, _ in hits)
        results.append({"video": v, "frames": frames, "samples": len(hits),
                        "matches": [{"key": key, "record_id": rec, "bits": bits}
                                    for bits, key, rec in hits[: cfg.report.max_rows]]})
    out.update(checked=True, results=results, failed=failed, samples=len(leaked),
               leaked_keys=sorted(leaked)[: cfg.report.max_rows])
    return out


def leak_samples(corpus: Corpus, st: ShardTotals, cfg: AuditConfig) -> Iterator[Samples]:
    """The corpus's embeddings and fingerprints a batch at a time (vectors the shard tasks
    read where the table has none), for the leakage checks: no corpus-wide array."""
    none = pa.array([], pa.string())
    return iter_samples(iter_batches(corpus.samples_uri, DEDUP_COLUMNS), none, none,
                        st.emb_keys, st.emb_vectors, hashes=False, embeddings=True,
                        fingerprints=cfg.duplicates.search.fingerprint_max_bits is not None)


def embedded_rows(batches: Iterable[Samples]
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(keys ``[b]``, record ids ``[b]``, embeddings ``[b, D]`` float32) of the rows of each
    batch that have an embedding."""
    for s in batches:
        if s.embeddings is None:
            continue
        have = np.abs(s.embeddings).sum(axis=1) > 0
        if have.any():
            yield s.keys[have], s.records[have], s.embeddings[have].astype(np.float32)


LEAK_COLUMNS = ["key", "record_id", "video_id", "duration"]


def check_leakage(corpus: Corpus, st: ShardTotals, against: str, cfg: AuditConfig
                  ) -> dict[str, Any]:
    """Id matches (always; the corpus streamed against the evaluation ids) and embedding and
    fingerprint matches (video files)."""
    lc = cfg.leakage
    videos: list[str] = []
    if is_video_input(against, lc.video_exts):
        videos = list_videos(against, lc.video_exts)
        items = [EvalItem(raw=v.rsplit("/", 1)[-1], id=normalise_id(v), where=v) for v in videos]
    else:
        items = read_eval_list(against)
    out: dict[str, Any] = {"against": against, "kind": "videos" if videos else "list"}

    def sample_batches() -> Any:
        return (b.to_pylist() for b in iter_batches(corpus.samples_uri, LEAK_COLUMNS))

    manifest = (b.to_pylist() for b in corpus.manifest_batches(["record_id", "raw"]))
    ids = id_leaks_stream(items, sample_batches, manifest, cfg.report.max_rows)
    out["ids"] = ids
    problems = [
        problem(None, k, "leak_video_id",
                f"evaluation item {m['eval']!r} ({m['where']}) is source video "
                f"{', '.join(m['records'])} of {m['samples']} sample(s), e.g. {k}")
        for m in ids["matches"] for k in m["keys"][:1]
    ]
    if videos:
        emb = embedding_leaks(videos, st.embedding_model,
                              embedded_rows(leak_samples(corpus, st, cfg)), lc.near_cosine,
                              lc.window_s, lc.frames_per_window, lc.device,
                              cfg.report.max_rows, cfg.duplicates.search)
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
        fp = fingerprint_check(leak_samples(corpus, st, cfg), videos, cfg)
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


def rows_by_key(uri: str, keys: set[str]) -> dict[str, dict[str, Any]]:
    """The rows of a few keys (the gallery's duplicate cards), found by one streaming pass."""
    if not keys:
        return {}
    want = pa.array(sorted(keys), pa.string())
    out: dict[str, dict[str, Any]] = {}
    for b in iter_batches(uri, ROW_COLUMNS):
        hit = pc.fill_null(pc.is_in(b.column("key"), value_set=want), False)
        for r in b.filter(hit).to_pylist():
            out.setdefault(r["key"], r)
    return out


def reject_examples(rejects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One reject row per reason (the first), sorted by reason."""
    examples: dict[str, dict[str, Any]] = {}
    for r in rejects:
        reason = str(r.get("reason"))
        if reason not in examples:
            examples[reason] = {"reason": reason, "stage": r.get("stage"),
                                "record_id": r.get("record_id"), "locator": r.get("locator"),
                                "detail": r.get("detail")}
    return [examples[k] for k in sorted(examples)]


def _say(progress: bool, line: str) -> None:
    if progress:
        print(line, file=sys.stderr, flush=True)


class _Parts:
    """Seconds per part of the audit, each announced on stderr when ``progress``."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, line: str | None = None) -> Iterator[None]:
        if line:
            _say(self.progress, line)
        t = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - t, 3)


def run_audit(root: str, out: str, cfg: AuditConfig | None = None, *,
              against: str | None = None, compare_with: str | None = None,
              progress: bool = False) -> AuditResult:
    """Audit the corpus at ``root`` and write ``out/report.json`` and ``out/index.html``."""
    cfg = cfg or AuditConfig()
    started = time.monotonic()
    storage.configure(cfg.s3)
    root = _absolute(root)
    part = _Parts(progress)
    with part("load"):
        corpus = load_corpus(root)
    with part("scan", f"audit: scanning {corpus.samples_uri}"):
        scan = corpus.scan  # the streaming pass for the aggregates
    with part("table_pass"):
        tp = table_pass(corpus.samples_uri, {s.url for s in corpus.index.shards},
                        cfg.gallery if cfg.gallery.enabled else None, cfg.checks.max_listed)
    _say(progress, f"audit: {scan.rows} samples in {scan.batches} batches "
                   f"({part.seconds['scan'] + part.seconds['table_pass']:.1f} s); "
                   f"{len(corpus.index.shards)} shards to check")
    started_ray = connect_ray(cfg)
    try:
        with part("shards"):
            st = check_shards(corpus, tp, cfg, progress)
        with part("duplicates", f"audit: duplicates among {scan.rows} samples"):
            dc = cfg.duplicates
            on = dc.exact or dc.near_cosine is not None \
                or dc.search.fingerprint_max_bits is not None
            if on and table_carries_signals(st):
                found = find_partitioned_duplicates(corpus, scan.rows, cfg, _absolute(out))
            else:  # older corpora: hashes / vectors the shard tasks read join the table's
                found = find_corpus_duplicates(dedup_samples(corpus, st, cfg, False),
                                               scan.rows, cfg)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    leakage = None
    if against:
        with part("leakage", f"audit: leakage against {against}"):
            leakage = check_leakage(corpus, st, against, cfg)
    compared = None
    if compare_with:
        with part("compare", f"audit: comparing with {compare_with}"):
            compared = compare_mod.compare(compare_mod.figures(corpus),
                                           compare_mod.load_baseline(_absolute(compare_with)))
    shard_seconds = part.seconds["shards"]
    audit_run = {
        "ray_address": ray_address(cfg) if corpus.index.shards else None,
        "shards_checked": st.shards,
        "bytes_read": st.bytes,
        "shard_pass_seconds": shard_seconds,
        "mb_per_second": round(st.bytes / 1e6 / shard_seconds, 2) if shard_seconds > 0 else None,
        "samples_read": st.samples_read,
        "clips_decoded": st.decoded,
        "decode_fraction": cfg.checks.decode_fraction,
        "task_seconds": round(st.task_seconds, 3),
        "duplicates_seconds": part.seconds["duplicates"],
        "leakage_seconds": part.seconds.get("leakage"),
        "samples_in_table": scan.rows,
        "scan_seconds": part.seconds["scan"],
        "scan_batches": scan.batches,
    }
    with part("report", "audit: report"):
        report = build_report(corpus, tp, st, cfg, audit_run, found, leakage, compared)
    out = _absolute(out)
    json_uri, html_uri = storage.join(out, REPORT_JSON), storage.join(out, REPORT_HTML)
    if not storage.is_remote(out):
        Path(out).mkdir(parents=True, exist_ok=True)
    if cfg.gallery.enabled:
        with part("gallery", "audit: gallery"):
            dup_list = report["duplicates"]["list"]
            report["gallery"] = build_gallery(
                corpus.root, out, tp.picks, tp.longest, tp.shortest, dup_list,
                rows_by_key(corpus.samples_uri, gallery_keys(dup_list, cfg.gallery)),
                reject_examples(corpus.rejects), cfg.gallery)
    a = report["run"]["audit"]
    a["report_seconds"] = part.seconds["report"]
    if "gallery" in part.seconds:
        a["gallery_seconds"] = part.seconds["gallery"]
    a["part_seconds"] = dict(part.seconds)
    a["wall_seconds"] = round(time.monotonic() - started, 3)
    _say(progress, f"audit: done in {a['wall_seconds']:.1f} s — {a['shards_checked']} shards, "
                   f"{a['samples_read']} samples read from shards, {a['samples_in_table']} in "
                   f"the table; " + ", ".join(f"{k} {v:.1f} s" for k, v in part.seconds.items())
         + f"; verdict {report['verdict']}")
    storage.write_bytes(json_uri, (json.dumps(report, indent=1, ensure_ascii=False,
                                              default=str) + "\n").encode("utf-8"))
    storage.write_bytes(html_uri, render_html(report).encode("utf-8"))
    buf = pa.BufferOutputStream()
    pq.write_table(found.table, buf)
    storage.write_bytes(storage.join(out, DUPLICATES_PARQUET), buf.getvalue().to_pybytes())
    return AuditResult(report, json_uri, html_uri)
