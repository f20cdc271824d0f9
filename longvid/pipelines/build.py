"""``longvid build``: manifest → WebDataset shards with a Ray Data job, exactly once, resumable.

1. Read the manifest (or ingest the configured sources first), pack records into work units.
2. Check ``build.json`` (refuse a different config or manifest unless ``restart``), drop ledger
   entries whose shards are gone, delete orphan shards and temp files of an interrupted run.
3. Stream the pending units through Ray Data: one task per unit runs the stages and writes the
   unit's shards then its ledger entry. Tasks are retried after system failures (a dead worker
   or node); a retry rewrites the same bytes under the same names.
4. Finish from the ledger: index.json, samples.parquet, rejects.parquet, summary.json.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longvid import storage
from longvid.dedup.filter import corpus_filter
from longvid.errors import LongvidError, StorageError
from longvid.pipelines.config import BuildConfig, content_hash
from longvid.pipelines.finalize import finalize
from longvid.pipelines.inputs import load_input
from longvid.pipelines.stages import check_stage_list, stage_class
from longvid.pipelines.unit_task import ModelStageRunner, run_unit, run_unit_cpu, write_payload
from longvid.pipelines.units import WorkUnit, pack_units
from longvid.pipelines.uploads import sweep_stale_uploads
from longvid.shards import ledger

log = logging.getLogger(__name__)


class BuildIncomplete(LongvidError):
    """Some units failed even after retries; a rerun resumes with them."""


@dataclass
class BuildResult:
    root: str
    summary: dict[str, Any]


def _absolute(uri: str) -> str:
    return uri if storage.is_remote(uri) else str(Path(uri).resolve())


def ray_address(cfg: BuildConfig) -> str:
    """Config, then RAY_ADDRESS, then a new local Ray ("local": never attach by accident to a
    cluster someone else started on this machine)."""
    return cfg.ray.address or os.environ.get("RAY_ADDRESS") or "local"


def connect_ray(cfg: BuildConfig) -> bool:
    """Start or join Ray; True when this call started it (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = ray_address(cfg)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address == "local":
        kwargs.update(
            num_cpus=cfg.ray.num_cpus,
            num_gpus=cfg.ray.num_gpus,
            include_dashboard=cfg.ray.include_dashboard,
        )
    ray.init(address=address, **kwargs)
    return True


def _unit_gpus(cfg: BuildConfig) -> float:
    if cfg.ray.process_num_gpus is not None:
        return cfg.ray.process_num_gpus
    if cfg.detect.detector == "transnetv2":
        import ray

        if ray.cluster_resources().get("GPU", 0) > 0:
            return 0.25
    return 0.0


def _retrying(fn, row: dict[str, Any], cfg: BuildConfig) -> dict[str, Any]:
    for attempt in range(cfg.ray.storage_retries + 1):
        try:
            return fn()
        except StorageError:
            # a storage hiccup that outlived boto's own retries: the unit is idempotent, redo it
            if attempt == cfg.ray.storage_retries:
                raise
            log.warning("unit %s: storage error, retrying", row["unit_id"], exc_info=True)
            time.sleep(min(30.0, 2.0**attempt))
    raise AssertionError("unreachable")


def _task(row: dict[str, Any], cfg_json: str, chash: str, root: str) -> dict[str, Any]:
    cfg = BuildConfig.model_validate_json(cfg_json)
    records = json.loads(row["records"])
    return _retrying(lambda: run_unit(row["unit_id"], records, cfg, chash, root), row, cfg)


def _cpu_task(row: dict[str, Any], cfg_json: str, chash: str, root: str) -> dict[str, Any]:
    cfg = BuildConfig.model_validate_json(cfg_json)
    records = json.loads(row["records"])
    return _retrying(lambda: run_unit_cpu(row["unit_id"], records, cfg, chash, root), row, cfg)


def _write_task(row: dict[str, Any], cfg_json: str, root: str) -> dict[str, Any]:
    cfg = BuildConfig.model_validate_json(cfg_json)
    return _retrying(lambda: write_payload(row, cfg, root), row, cfg)


def has_model_stages(cfg: BuildConfig) -> bool:
    return any(stage_class(n).kind == "model" for n in cfg.stages)


def run_units(cfg: BuildConfig, pending: list[WorkUnit], chash: str, root: str, on_done) -> None:
    """Stream ``pending`` through Ray Data; ``on_done(row)`` per finished unit.

    Without model stages a unit is one task. With them: cpu task → an actor pool that keeps the
    models loaded (``ray.model_concurrency`` actors with ``ray.model_num_gpus`` each when the
    cluster has GPUs) → write task. Ray Data retries a task after a system failure (dead worker
    or node) by itself; every step is idempotent, and the ledger entry is written last.
    """
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.max_errored_blocks = -1  # a unit that keeps failing is reported; the others go on
    ctx.verbose_stats_logs = False
    items = [{"unit_id": u.unit_id, "records": json.dumps(u.records, default=str)} for u in pending]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    cfg_json = cfg.model_dump_json()
    cpu = {
        "num_cpus": cfg.ray.process_num_cpus,
        "num_gpus": _unit_gpus(cfg) or None,
        "concurrency": cfg.ray.concurrency,
    }
    if not has_model_stages(cfg):
        ds = ds.map(functools.partial(_task, cfg_json=cfg_json, chash=chash, root=root), **cpu)
    else:
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        ds = ds.map(functools.partial(_cpu_task, cfg_json=cfg_json, chash=chash, root=root), **cpu)
        ds = ds.map(
            ModelStageRunner,
            fn_constructor_kwargs={"cfg_json": cfg_json, "content_hash": chash},
            concurrency=cfg.ray.model_concurrency,
            num_gpus=(cfg.ray.model_num_gpus or None) if has_gpu else None,
            num_cpus=cfg.ray.process_num_cpus,
        )
        ds = ds.map(
            functools.partial(_write_task, cfg_json=cfg_json, root=root),
            num_cpus=cfg.ray.process_num_cpus,
        )
    for row in ds.iter_rows():
        on_done(row)


class Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.done = self.samples = self.rejects = 0
        self.source_seconds = 0.0
        self.started = time.monotonic()

    def __call__(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.samples += int(row["samples"])
        self.rejects += int(row["rejects"])
        self.source_seconds += float(row["source_seconds"])
        if self.enabled:
            wall = max(time.monotonic() - self.started, 1e-9)
            print(
                f"build: units {self.done}/{self.total}  samples {self.samples}  "
                f"rejects {self.rejects}  source {self.source_seconds / 3600:.2f} h  "
                f"({self.source_seconds / wall:.1f} source-h/h)",
                file=sys.stderr,
                flush=True,
            )


def run_build(cfg: BuildConfig, *, restart: bool = False) -> BuildResult:
    """Run (or resume) the build described by ``cfg``; see the module docstring."""
    started = time.monotonic()
    check_stage_list(cfg.stages)
    cfg = cfg.model_copy(
        update={"output": cfg.output.model_copy(update={"root": _absolute(cfg.output.root)})}
    )
    if cfg.manifest is not None:
        cfg = cfg.model_copy(update={"manifest": _absolute(cfg.manifest)})
    root = cfg.output.root
    storage.configure(cfg.s3)
    timings: dict[str, float] = {}

    t = time.monotonic()
    inp = load_input(cfg, restart)
    units = pack_units(inp.records, cfg.units)
    chash = content_hash(cfg)
    timings["read_manifest"] = time.monotonic() - t

    t = time.monotonic()
    identity = {"content_hash": chash, "manifest_fingerprint": inp.fingerprint}
    resumed = ledger.check_or_start(root, identity, restart)
    unit_ids = {u.unit_id for u in units}
    entries = ledger.committed_units(root)
    intact = {
        uid: e for uid, e in entries.items() if uid in unit_ids and ledger.entry_intact(root, e)
    }
    for uid in set(entries) - set(intact):
        if uid in unit_ids:  # its shards are gone or damaged: redo the unit
            storage.delete(ledger.ledger_uri(root, uid))
    removed = ledger.remove_orphans(root, list(intact.values()), unit_ids)
    stale_uploads = sweep_stale_uploads(root)  # no unit runs yet: open uploads are dead writers'
    pending = [u for u in units if u.unit_id not in intact]
    timings["resume_check"] = time.monotonic() - t
    if removed:
        log.info("removed %d orphan file(s) of an interrupted run", len(removed))

    progress = Progress(len(units), cfg.progress)
    progress.done = len(units) - len(pending)
    t = time.monotonic()
    started_ray = False
    if pending:
        started_ray = connect_ray(cfg)
        timings["ray_start"] = time.monotonic() - t
        t = time.monotonic()
        try:
            run_units(cfg, pending, chash, root, progress)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
    timings["units"] = time.monotonic() - t

    t = time.monotonic()
    entries = ledger.committed_units(root)
    failed = [u.unit_id for u in pending if u.unit_id not in entries]
    run = {
        "resumed": resumed,
        "skipped": len(units) - len(pending),
        "processed": len(pending) - len(failed),
        "failed": failed,
        "orphans_removed": len(removed),
        "stale_uploads_aborted": stale_uploads,
        "ray_address": ray_address(cfg) if pending else None,
        "source_seconds_this_run": round(progress.source_seconds, 3),
    }
    summary = finalize(root, units, entries, inp.rejects_uri, run, corpus_filter(cfg))
    timings["finalize"] = time.monotonic() - t
    summary["run"]["driver_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    summary["run"]["wall_seconds"] = round(time.monotonic() - started, 3)
    wall = summary["run"]["wall_seconds"]
    summary["run"]["source_hours_per_hour"] = (
        round(progress.source_seconds / wall, 2) if wall else None
    )
    storage.write_bytes(
        storage.join(root, "summary.json"),
        (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode(),
    )
    if failed:
        raise BuildIncomplete(
            f"{root}: {len(failed)} of {len(units)} units failed after retries "
            f"({', '.join(failed[:5])}{'...' if len(failed) > 5 else ''}); "
            "the rest is committed — run the same command again to retry them"
        )
    return BuildResult(root, summary)
