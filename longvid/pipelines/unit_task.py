"""What one Ray task does with one work unit: read its manifest rows, run the stages over its
videos, then write its shards, its Parquet parts and, last, its commit marker. Retrying it is
safe: the same unit gives the same files under the same names, and a unit already committed is
not written again. (With model stages a unit is split over a cpu task and the model-stage actor
pool: :mod:`longvid.pipelines.model_pool`.)"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from longvid import storage
from longvid.dedup.fingerprint import from_hex, to_bytes
from longvid.errors import LongvidError, StorageError
from longvid.pipelines.config import BuildConfig
from longvid.pipelines.lineage import tool_versions
from longvid.pipelines.plan import read_rows
from longvid.pipelines.stages import run_stages, stage_class
from longvid.schema import REJECTS_SCHEMA
from longvid.shards import SAMPLES_SCHEMA, ShardSequenceWriter, ledger
from longvid.shards.manifest import check_samples, to_table
from longvid.stages.base import Stage, reason_of
from longvid.stages.work import StageContext, VideoWork

log = logging.getLogger(__name__)


def make_context(cfg: BuildConfig, content_hash: str, work_dir: Path) -> StageContext:
    return StageContext(
        cfg=cfg, content_hash=content_hash, work_dir=work_dir, tools=tool_versions()
    )


def build_stages(ctx: StageContext, kind: str) -> list[Stage]:
    return [stage_class(n)(ctx) for n in ctx.cfg.stages if stage_class(n).kind == kind]


def process_records(records: list[dict[str, Any]], ctx: StageContext) -> list[VideoWork]:
    """Run the cpu stages over every record of a unit (each record on its own: a failure is a
    reject of that record only)."""
    stages = build_stages(ctx, "cpu")
    works = []
    for rec in records:
        work = VideoWork(record=rec, ctx=ctx)
        started = time.perf_counter()
        try:
            with storage.local_copy(work.uri) as path:
                work.path = path
                work.timings["fetch"] = time.perf_counter() - started
                run_stages(work, stages)
        except LongvidError as exc:  # the file could not be fetched at all
            work.fail("probe", reason_of(exc), str(exc))
        work.path = None
        if not work.failed and not work.outputs:
            work.fail("cut", "no_samples", f"{work.uri}: no sample was produced")
        works.append(work)
    return works


def _input_records(rec: dict[str, Any]) -> int:
    try:
        return int(json.loads(rec.get("raw") or "{}").get("input_records", 1))
    except (ValueError, TypeError, AttributeError):
        return 1


def unit_stats(works: list[VideoWork], wall: float, cpu: float | None = None) -> dict[str, Any]:
    """Counts and timings of a unit for its marker; ``cpu``: the task process's CPU seconds
    (all its threads), a measure of the work that other load on the node does not inflate."""
    by_source: dict[str, Counter] = defaultdict(Counter)
    stage_seconds: Counter = Counter()
    reasons: Counter = Counter()
    for w in works:
        c = by_source[w.source]
        c["records"] += 1
        c["input_records"] += _input_records(w.record)
        c["accepted" if not w.failed else "rejected"] += 1
        c["samples"] += len(w.outputs)
        c["sample_rejects"] += sum(1 for r in w.rejects if "#" in r.locator)
        for o in w.outputs:
            c[f"samples_{o.row['bucket']}"] += 1
            c[f"cut_{o.row['extra']['cut_mode']}"] += 1
            c["sample_seconds"] += float(o.row["duration"] or 0.0)
            for task, n in (o.row["extra"].get("qa") or {}).items():
                c[f"qa_{task}"] += n  # QA items per task (the annotate qa/llm_qa stages)
        if w.probe is not None:
            c["source_seconds"] += float(w.probe.duration)
            mismatch = w.notes.get("declared", {}).get("mismatch", [])
            for field in mismatch:
                c[f"declared_{field}_mismatch"] += 1
        for r in w.rejects:
            reasons[f"{r.stage}:{r.reason}"] += 1
        stage_seconds.update(w.timings)
    videos = [
        {
            "record_id": w.record_id,
            "accepted": not w.failed,
            "samples": len(w.outputs),
            "duration": None if w.probe is None else round(float(w.probe.duration), 6),
            "fps": None if w.probe is None else round(float(w.probe.fps), 6),
            "num_frames": None if w.probe is None else w.probe.num_frames,
            "cuts": [round(c, 6) for c in w.cuts],
            "declared_mismatch": w.notes.get("declared", {}).get("mismatch", []),
        }
        for w in works
    ]
    stats = {
        "videos": videos,
        "by_source": {s: dict(sorted(c.items())) for s, c in sorted(by_source.items())},
        "stage_seconds": {k: round(v, 4) for k, v in sorted(stage_seconds.items())},
        "reject_reasons": dict(sorted(reasons.items())),
        "wall_seconds": round(wall, 4),
    }
    if cpu is not None:
        stats["cpu_seconds"] = round(cpu, 4)
    return stats


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_part(root: str, dataset: str, unit_id: str, table: pa.Table) -> str | None:
    """Publish the unit's part of a dataset (atomically); None when it has no rows."""
    if table.num_rows == 0:
        return None
    url = ledger.part_url(dataset, unit_id)
    storage.write_bytes(storage.join(root, url), _parquet_bytes(table))
    return url


def _embedding_to_column(row: dict[str, Any]) -> dict[str, Any]:
    """The video embedding leaves the JSON ``extra`` for its own float16 list column (a
    fraction of the bytes, and readable without parsing JSON); the fingerprint for its own
    binary column."""
    extra = row.get("extra")
    if isinstance(extra, dict) and extra.get("embedding") is not None:
        extra = dict(extra)
        row = {**row, "extra": extra, "embedding": np.asarray(extra.pop("embedding"), np.float16)}
    # the perceptual fingerprint likewise: 44 bytes in a binary column instead of 88 hex digits
    if isinstance(extra, dict) and extra.get("fingerprint") is not None:
        extra = dict(extra)
        fp = from_hex(extra.pop("fingerprint"))
        row = {**row, "extra": extra, "fingerprint": None if fp is None else to_bytes(fp)}
    return row


def write_unit(
    root: str,
    unit_id: str,
    generation: int,
    works: list[VideoWork],
    cfg: BuildConfig,
    wall: float,
    extra_stats: dict[str, Any] | None = None,
    cpu: float | None = None,
) -> ledger.CommitMarker:
    """Publish the unit's shards (samples sorted by key) and parts, then its commit marker
    (``extra_stats`` join its stats: lineage of where it ran)."""
    outputs = sorted((o for w in works for o in w.outputs), key=lambda o: o.key)
    rows = []
    target = int(cfg.shards.target_mb * 1024 * 1024)
    with ShardSequenceWriter(
        root, prefix=unit_id, subdir=ledger.SHARDS_DIR, target_bytes=target
    ) as writer:
        for out in outputs:
            placed = writer.add(out.key, out.members)
            rows.append(
                _embedding_to_column(
                    {**out.row, "shard": placed.shard,
                     "members": [m.as_dict() for m in placed.members]}
                )
            )
    shards = [s.index_entry() for s in writer.shards]
    samples = to_table(rows, SAMPLES_SCHEMA)
    check_samples(samples)
    rejects = pa.Table.from_pylist([r.as_row() for w in works for r in w.rejects],
                                   schema=REJECTS_SCHEMA)
    stats = unit_stats(works, wall, cpu)
    videos = pa.Table.from_pylist(stats.pop("videos"), schema=ledger.VIDEOS_SCHEMA)
    parts = {}
    for name, table in ((ledger.SAMPLES_PARTS, samples), (ledger.REJECTS_PARTS, rejects),
                        (ledger.VIDEOS_PARTS, videos)):
        url = write_part(root, name, unit_id, table)
        if url is not None:
            parts[name] = url
    stats.update(node_id=_node_id(), gpu_ids=_gpu_ids(), **(extra_stats or {}))
    marker = ledger.CommitMarker(
        unit_id=unit_id,
        shards=shards,
        parts=parts,
        counts={"records": len(works), "samples": samples.num_rows, "rejects": rejects.num_rows},
        stats=stats,
        generation=generation,
    )
    ledger.commit(root, marker)
    return marker


def _node_id() -> str | None:
    """The Ray node that wrote the unit (for the audit and the fault tests)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - lineage only; never fail a unit over it
        return None


def _gpu_ids() -> list[str]:
    """The GPUs Ray gave the task that wrote the unit (empty for CPU-only stages)."""
    try:
        import ray

        return [str(g) for g in ray.get_gpu_ids()] if ray.is_initialized() else []
    except Exception:  # noqa: BLE001 - lineage only
        return []


def storage_retrying(fn: Callable[[], Any], unit_id: str, retries: int) -> Any:
    """``fn()``, redone up to ``retries`` times after a storage error that outlived boto's own
    retries (a unit is idempotent, so redoing it is safe)."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except StorageError:
            if attempt == retries:
                raise
            log.warning("unit %s: storage error, retrying", unit_id, exc_info=True)
            time.sleep(min(30.0, 2.0**attempt))
    raise AssertionError("unreachable")


def progress_row(marker: ledger.CommitMarker, skipped: bool = False) -> dict[str, Any]:
    secs = sum(c.get("source_seconds", 0.0) for c in marker.stats.get("by_source", {}).values())
    return {
        "unit_id": marker.unit_id,
        "samples": int(marker.counts["samples"]),
        "rejects": int(marker.counts["rejects"]),
        "source_seconds": float(secs),
        "skipped": skipped,
    }


def committed_row(root: str, unit_id: str) -> dict[str, Any] | None:
    """The progress row of a unit that is already committed (a retried task), else None."""
    existing = ledger.read_marker(root, unit_id)
    return None if existing is None else progress_row(existing, skipped=True)


def unit_records(manifest: str, runs: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The unit's manifest rows, read by the worker itself, in record-id order."""
    return sorted(read_rows(manifest, runs), key=lambda r: r["record_id"])


def run_unit(
    unit: dict[str, Any], manifest: str, cfg: BuildConfig, content_hash: str, root: str
) -> dict[str, Any]:
    """The whole unit in one task (no model stages): read rows, stages, shards, parts, marker."""
    storage.configure(cfg.s3)
    unit_id = unit["unit_id"]
    done = committed_row(root, unit_id)
    if done is not None:
        return done
    started, cpu_started = time.perf_counter(), time.process_time()
    work_dir = Path(tempfile.mkdtemp(prefix=f"longvid-{unit_id}-", dir=cfg.work_dir))
    try:
        ctx = make_context(cfg, content_hash, work_dir)
        works = process_records(unit_records(manifest, unit["runs"]), ctx)
        marker = write_unit(root, unit_id, unit["generation"], works, cfg,
                            time.perf_counter() - started, cpu=time.process_time() - cpu_started)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return progress_row(marker)
