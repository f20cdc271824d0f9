"""``longvid build``: manifest → WebDataset shards with a Ray Data job, exactly once, resumable,
extendable. The driver plans and commits; the workers carry the data.

1. ``prepare``: check ``build.json`` (refuse a different config unless ``restart``), stream the
   manifest (ingesting the configured sources first) and plan units (plan.py): the units of
   earlier generations again, plus new units for records no earlier run planned.
2. ``resume``: one LIST of the commit markers; the planned units without one are pending.
3. Stream the pending units through Ray Data: a unit travels as (unit id, row ranges); its task
   reads its manifest rows, runs the stages, writes shards and Parquet parts, then its marker.
   Tasks are retried after system failures (a dead worker or node); a retry rewrites the same
   bytes under the same names.
4. Sweep (one LIST per folder: leftovers of interrupted attempts go, a committed unit whose shard
   is gone runs again), then ``finalize``: index.json, parts.json, summary.json.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longvid import storage
from longvid.dedup.filter import corpus_filter
from longvid.errors import ConfigError, LongvidError
from longvid.pipelines.config import BuildConfig, content_hash
from longvid.pipelines.finalize import finalize
from longvid.pipelines.inputs import BuildInput, load_input
from longvid.pipelines.model_pool import ModelStageRunner, pool_args, run_unit_cpu
from longvid.pipelines.plan import (
    Plan,
    Unit,
    make_plan,
    scan_manifest,
    worker_manifest,
    write_new_generation,
)
from longvid.pipelines.stages import check_stage_list, stage_class
from longvid.pipelines.unit_task import run_unit, storage_retrying
from longvid.pipelines.uploads import sweep_stale_uploads
from longvid.shards import ledger
from longvid.stages.base import Resources

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
            object_store_memory=cfg.ray.object_store_memory,
        )
    ray.init(address=address, **kwargs)
    return True


def stage_resources(cfg: BuildConfig, kind: str) -> Resources:
    """The most any ``kind`` stage of the config declares: what one task of that kind asks for."""
    declared = [stage_class(n).resources(cfg) for n in cfg.stages if stage_class(n).kind == kind]
    return Resources(
        num_cpus=max([r.num_cpus for r in declared], default=1.0),
        num_gpus=max([r.num_gpus for r in declared], default=0.0),
        holds_model=any(r.holds_model for r in declared),
    )


def _unit_gpus(cfg: BuildConfig) -> float:
    """GPUs per unit task: what its (cpu-kind) stages declare, and only on a cluster with GPUs;
    ``ray.process_num_gpus`` overrides."""
    if cfg.ray.process_num_gpus is not None:
        return cfg.ray.process_num_gpus
    wanted = stage_resources(cfg, "cpu").num_gpus
    if wanted > 0:
        import ray

        if ray.cluster_resources().get("GPU", 0) > 0:
            return wanted
    return 0.0


def _retrying(fn, unit_id: str, cfg: BuildConfig) -> dict[str, Any]:
    return storage_retrying(fn, unit_id, cfg.ray.storage_retries)


def _unit_of_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "runs": [tuple(r) for r in json.loads(row["runs"])]}


def _task(row: dict[str, Any], cfg_json: str, chash: str, root: str, manifest: str
          ) -> dict[str, Any]:
    cfg = BuildConfig.model_validate_json(cfg_json)
    unit = _unit_of_row(row)
    return _retrying(lambda: run_unit(unit, manifest, cfg, chash, root), row["unit_id"], cfg)


def _cpu_task(row: dict[str, Any], cfg_json: str, chash: str, root: str, manifest: str
              ) -> dict[str, Any]:
    cfg = BuildConfig.model_validate_json(cfg_json)
    unit = _unit_of_row(row)
    return _retrying(lambda: run_unit_cpu(unit, manifest, cfg, chash, root), row["unit_id"], cfg)


def has_model_stages(cfg: BuildConfig) -> bool:
    return any(stage_class(n).kind == "model" for n in cfg.stages)


def run_units(cfg: BuildConfig, pending: list[Unit], chash: str, root: str, manifest: str,
              on_done) -> str:
    """Stream ``pending`` through Ray Data; ``on_done(row)`` per finished unit. Returns Ray
    Data's execution stats (operators, blocks and bytes between them).

    A unit travels as (unit id, generation, manifest row ranges): the task reads its own rows.
    Without model stages a unit is one task. With them: cpu task → the model-stage actor pool,
    which autoscales between ``ray.model_min_actors`` and ``ray.model_max_actors`` actors (the
    model stages' GPUs each when the cluster has GPUs), runs ``ray.model_batch_units`` units per
    call and writes them (model_pool.py says why there). Ray Data retries a task or an actor
    call after a system failure (dead worker or node) by itself; every step is idempotent, and
    the commit marker is written last.
    """
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.max_errored_blocks = -1  # a unit that keeps failing is reported; the others go on
    ctx.verbose_stats_logs = False
    items = [{"unit_id": u.unit_id, "generation": u.generation, "runs": json.dumps(u.runs)}
             for u in pending]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    cfg_json = cfg.model_dump_json()
    cpu = {
        "num_cpus": cfg.ray.process_num_cpus,
        "num_gpus": _unit_gpus(cfg) or None,
        "concurrency": cfg.ray.concurrency,
    }
    common = {"cfg_json": cfg_json, "chash": chash, "root": root, "manifest": manifest}
    if not has_model_stages(cfg):
        ds = ds.map(functools.partial(_task, **common), **cpu)
    else:
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        ds = ds.map(functools.partial(_cpu_task, **common), **cpu)
        with warnings.catch_warnings():
            # max_restarts is passed on purpose (pool_args says why); Ray 2.60 calls such
            # remote args deprecated without a named replacement
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
            ds = ds.map_batches(
                ModelStageRunner,
                fn_constructor_kwargs={"cfg_json": cfg_json, "content_hash": chash, "root": root},
                **pool_args(cfg, has_gpu),
            )
    for row in ds.iter_rows():
        on_done(row)
    return ds.stats()


class Progress:
    """Units committed so far (earlier runs included), samples, throughput and an ETA from the
    units this run has committed."""

    def __init__(self, total: int, enabled: bool, already: int = 0):
        self.total, self.enabled = total, enabled
        self.already = already
        self.done = self.samples = self.rejects = 0
        self.source_seconds = 0.0
        self.started = time.monotonic()

    def eta_seconds(self) -> float | None:
        if not self.done:
            return None
        wall = time.monotonic() - self.started
        return (self.total - self.already - self.done) * wall / self.done

    def __call__(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.samples += int(row["samples"])
        self.rejects += int(row["rejects"])
        self.source_seconds += float(row["source_seconds"])
        if self.enabled:
            wall = max(time.monotonic() - self.started, 1e-9)
            eta = self.eta_seconds()
            print(
                f"build: units {self.already + self.done}/{self.total}  samples {self.samples}  "
                f"rejects {self.rejects}  source {self.source_seconds / 3600:.2f} h  "
                f"({self.source_seconds / wall:.1f} source-h/h)  "
                f"eta {0.0 if eta is None else eta / 60:.1f} min",
                file=sys.stderr,
                flush=True,
            )


@dataclass
class Prepared:
    """A planned build: what ``run_build`` and ``dry_run`` share."""

    cfg: BuildConfig
    root: str
    inp: BuildInput
    plan: Plan
    chash: str
    timings: dict[str, float]
    resumed: bool = False  # the output root held this build already
    rows_uri: str = ""  # where workers read their manifest rows (the manifest, or a copy)


def prepare(cfg: BuildConfig, restart: bool = False, *, dry_run: bool = False) -> Prepared:
    """Resolve paths, read the input (ingesting first unless a dry run) and plan the units.
    Writes nothing when ``dry_run``."""
    check_stage_list(cfg.stages)
    cfg = cfg.model_copy(
        update={"output": cfg.output.model_copy(update={"root": _absolute(cfg.output.root)})}
    )
    if cfg.manifest is not None:
        cfg = cfg.model_copy(update={"manifest": _absolute(cfg.manifest)})
    storage.configure(cfg.s3)
    root = cfg.output.root
    timings: dict[str, float] = {}
    t = time.monotonic()
    inp = load_input(cfg, restart, ingest=not dry_run)
    chash = content_hash(cfg)
    resumed = False
    if not dry_run:
        resumed = ledger.check_or_start(root, {"content_hash": chash}, restart)
    if dry_run:
        rows_uri, scan = inp.manifest_uri, scan_manifest(inp.manifest_uri)
    else:
        rows_uri, scan = worker_manifest(root, inp.manifest_uri, cfg.work_dir)
    plan = make_plan(None if (restart and dry_run) else root, scan, cfg.units)
    timings["plan"] = time.monotonic() - t
    return Prepared(cfg, root, inp, plan, chash, timings, resumed, rows_uri)


def resume(prep: Prepared) -> tuple[set[str], list[Unit]]:
    """The committed units (one LIST of the markers) and the planned units still to run."""
    committed = ledger.committed_ids(prep.root)
    return committed, [u for u in prep.plan.units if u.unit_id not in committed]


def _run(prep: Prepared, pending: list[Unit], progress: Progress) -> bool:
    """Run ``pending`` on Ray (started here unless one is up); True when Ray was started."""
    if not pending:
        return False
    t = time.monotonic()
    started_ray = connect_ray(prep.cfg)
    _add_time(prep.timings, "ray_start", t)  # start (or attach to) Ray: a fixed cost per run
    try:
        run_units(prep.cfg, pending, prep.chash, prep.root, prep.rows_uri, progress)
    finally:
        if started_ray:
            import ray

            t = time.monotonic()
            ray.shutdown()
            _add_time(prep.timings, "ray_stop", t)
    return started_ray


def _add_time(timings: dict[str, float], step: str, since: float) -> None:
    timings[step] = timings.get(step, 0.0) + time.monotonic() - since


# a guess for expected shard counts before anything is committed: ~60 KB per source second
# (short clips at 360p plus long samples at 240p/8 fps, as the default encode profiles write)
DEFAULT_BYTES_PER_SOURCE_SECOND = 60_000.0


def dry_run(cfg: BuildConfig, *, restart: bool = False) -> dict[str, Any]:
    """Plan the build and read the commit log (if the output root has one); write nothing,
    start no Ray. Returns what ``longvid build --dry-run`` prints."""
    started = time.monotonic()
    prep = prepare(cfg, restart, dry_run=True)
    plan, root = prep.plan, prep.root
    build = None if restart else ledger.read_build_file(root)
    if build is not None and build.get("content_hash") != prep.chash:
        raise ConfigError(
            f"{root}: holds a build with a different content_hash ({build.get('content_hash')!r} "
            f"→ {prep.chash!r}); a real run would refuse it"
        )
    committed = set() if restart else ledger.committed_ids(root)
    pending = [u for u in plan.units if u.unit_id not in committed]
    rate = DEFAULT_BYTES_PER_SOURCE_SECOND
    sample = sorted(u.unit_id for u in plan.units if u.unit_id in committed)[:20]
    markers = ledger.read_markers(root, sample) if sample else {}
    secs = sum(sum(c.get("source_seconds", 0.0) for c in m.stats.get("by_source", {}).values())
               for m in markers.values())
    if secs > 0:
        rate = sum(s["filesize"] for m in markers.values() for s in m.shards) / secs
    target = cfg.shards.target_mb * 1024 * 1024
    expected = sum(max(1, math.ceil(u.seconds * rate / target)) for u in pending)
    return {
        "manifest": prep.inp.manifest_uri,
        "manifest_fingerprint": plan.manifest.fingerprint,
        "records": plan.records,
        "new_records": plan.new_records,
        "generations": plan.generations,
        "units": len(plan.units),
        "committed_units": len(plan.units) - len(pending),
        "pending_units": len(pending),
        "pending_declared_hours": round(sum(u.seconds for u in pending) / 3600, 3),
        "expected_new_shards": expected,
        "bytes_per_source_second": round(rate),
        "wall_seconds": round(time.monotonic() - started, 3),
    }


def run_build(cfg: BuildConfig, *, restart: bool = False) -> BuildResult:
    """Run (or resume, or extend) the build described by ``cfg``; see the module docstring."""
    started = time.monotonic()
    prep = prepare(cfg, restart)
    cfg, root, plan, timings = prep.cfg, prep.root, prep.plan, prep.timings
    write_new_generation(root, plan, cfg.units.plan_part_rows)

    t = time.monotonic()
    committed, pending = resume(prep)
    stale_uploads = sweep_stale_uploads(root)  # no unit runs yet: open uploads are dead writers'
    timings["resume_scan"] = time.monotonic() - t
    progress = Progress(len(plan.units), cfg.progress, already=len(plan.units) - len(pending))
    t = time.monotonic()
    _run(prep, pending, progress)
    # the Ray job itself: Ray's start and shutdown are steps of their own
    timings["units"] = (time.monotonic() - t - timings.get("ray_start", 0.0)
                        - timings.get("ray_stop", 0.0))

    # check the files against the markers; a unit whose shard went missing runs again
    t = time.monotonic()
    planned = {u.unit_id for u in plan.units}
    markers = ledger.read_markers(root, ledger.committed_ids(root))
    removed, damaged = ledger.sweep(root, markers, planned)
    if damaged:
        log.warning("%d committed unit(s) lost a shard; running them again", len(damaged))
        redo = [u for u in plan.units if u.unit_id in set(damaged)]
        _run(prep, redo, progress)
        for uid in damaged:
            markers.pop(uid, None)
        markers.update(ledger.read_markers(root, damaged))
    timings["sweep"] = time.monotonic() - t
    if removed:
        log.info("removed %d orphan file(s) of an interrupted run", len(removed))

    t = time.monotonic()
    ran = {u.unit_id for u in pending} | set(damaged)
    failed = sorted(uid for uid in ran if uid not in markers)
    run = {
        "resumed": prep.resumed,
        "skipped": len(plan.units) - len(pending) - len(damaged),
        "processed": len(ran) - len(failed),
        "failed": failed,
        "orphans_removed": len(removed),
        "generations": plan.generations,
        "new_records": plan.new_records,
        "stale_uploads_aborted": stale_uploads,
        "ray_address": ray_address(cfg) if ran else None,
        "source_seconds_this_run": round(progress.source_seconds, 3),
    }
    summary = finalize(root, plan.units, markers, prep.inp.rejects_uri, run, corpus_filter(cfg))
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
            f"{root}: {len(failed)} of {len(plan.units)} units failed after retries "
            f"({', '.join(failed[:5])}{'...' if len(failed) > 5 else ''}); "
            "the rest is committed — run the same command again to retry them"
        )
    return BuildResult(root, summary)
