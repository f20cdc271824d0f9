"""A unit with model stages: a cpu task, then the model-stage actor pool, which also writes it.

1. The cpu task (``run_unit_cpu``) reads the unit's manifest rows and runs the cpu stages (probe,
   the single decode pass, segment, cut, cheap annotation), then pickles the unit as one
   :class:`UnitPayload`: its videos' samples (clip bytes, metadata) and the frames the model
   stages will look at. Frames that no model stage reads (the decode pass's kept frames once the
   ``frames`` stage has picked from them, or every frame when no model stage takes frames) are
   dropped here, so they never enter the object store.
2. A :class:`ModelStageRunner` actor of the pool (Ray Data ``map_batches`` with an autoscaling
   ``ActorPoolStrategy(min_size=ray.model_min_actors, max_size=ray.model_max_actors)``) keeps
   the models loaded, takes ``ray.model_batch_units`` units per call and runs each model stage
   over all their videos at once (:func:`longvid.stages.base.run_stage_over`: open_clip and the
   captioner in shared forward passes of a fixed size, so batching changes no bit of the
   output), then writes each unit: shards, Parquet parts and, last, its commit marker.

Why the actor writes rather than a third (write) task: the clip bytes are most of a payload, and
they then cross the object store once (cpu task → actor). With a write task they crossed twice,
and the second copy came back from the actor with the model outputs added. The other way out,
sending the actor only frames and metadata, would need the clips parked somewhere until the
model outputs come back (a second round trip, or the cpu task holding its CPU while it waits).
Writing in the actor keeps every property of the one-task path: the writes are idempotent and
the marker is written last, so an actor that dies mid-batch is simply retried by Ray Data: the
units of the batch already committed are skipped (their marker is read first), the others are
rewritten with the same bytes under the same names. A unit whose write fails after its storage
retries is left uncommitted (the driver reports it; a rerun retries it) without failing the
other units of its batch.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from longvid import storage
from longvid.pipelines.config import BuildConfig
from longvid.pipelines.stages import stage_class
from longvid.pipelines.unit_task import (
    build_stages,
    committed_row,
    make_context,
    process_records,
    progress_row,
    storage_retrying,
    unit_records,
    write_unit,
)
from longvid.stages.base import Resources, run_stage_over
from longvid.stages.work import VideoWork

log = logging.getLogger(__name__)

# what the pool hands back per unit: a progress row (never the unit's data)
PROGRESS_SCHEMA = pa.schema([
    ("unit_id", pa.string()),
    ("samples", pa.int64()),
    ("rejects", pa.int64()),
    ("source_seconds", pa.float64()),
    ("skipped", pa.bool_()),
])


@dataclass
class UnitPayload:
    """One unit on its way from its cpu task to the model-stage pool."""

    unit_id: str
    generation: int
    works: list[VideoWork]
    seconds: float  # task time so far (for the unit's wall time)
    cpu_task: dict[str, Any] = field(default_factory=dict)  # where the cpu stages ran (lineage)


def _ray_lineage() -> dict[str, Any]:
    """The Ray actor id and GPU ids of the calling process (empty outside Ray)."""
    try:
        import ray

        if not ray.is_initialized():
            return {"actor_id": None, "gpu_ids": []}
        return {"actor_id": ray.get_runtime_context().get_actor_id(),
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}
    except Exception:  # noqa: BLE001 - lineage only; never fail a unit over it
        return {"actor_id": None, "gpu_ids": []}


def drop_unused_frames(works: list[VideoWork], cfg: BuildConfig) -> None:
    """Keep only the frames a model stage will read: the sample frames of the ``frames`` stage
    when a frame-using model stage follows, and the decode pass's kept frames only for samples
    that still have to take theirs from it (``annotate.frames.from_decode_pass``)."""
    from longvid.annotate.stages import FRAME_USERS, FRAMES_NOTE

    users = any(stage_class(n).kind == "model" and n in FRAME_USERS for n in cfg.stages)
    from_pass = users and cfg.annotate.frames.from_decode_pass
    for w in works:
        if not users:
            w.notes.pop(FRAMES_NOTE, None)
        have = w.notes.get(FRAMES_NOTE, {})
        if not (from_pass and any(o.key not in have for o in w.outputs)):
            w.kept_frames = []


def run_unit_cpu(
    unit: dict[str, Any], manifest: str, cfg: BuildConfig, content_hash: str, root: str
) -> dict[str, Any]:
    """The unit's cpu stages; a row with its pickled payload (or, for a unit committed already,
    its progress row as ``done``)."""
    storage.configure(cfg.s3)
    unit_id = unit["unit_id"]
    done = committed_row(root, unit_id)
    if done is not None:
        return {"unit_id": unit_id, "payload": b"", "done": json.dumps(done)}
    started = time.perf_counter()
    work_dir = Path(tempfile.mkdtemp(prefix=f"longvid-{unit_id}-", dir=cfg.work_dir))
    try:
        records = unit_records(manifest, unit["runs"])
        works = process_records(records, make_context(cfg, content_hash, work_dir))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    drop_unused_frames(works, cfg)
    for w in works:
        w.ctx = None  # type: ignore[assignment]  # rebuilt by the actor
    payload = UnitPayload(unit_id, unit["generation"], works, time.perf_counter() - started,
                          _ray_lineage())
    return {"unit_id": unit_id, "payload": pickle.dumps(payload, protocol=5), "done": ""}


def model_resources(cfg: BuildConfig) -> Resources:
    """The most any model stage of the config declares: what one actor of the pool asks for."""
    declared = [stage_class(n).resources(cfg) for n in cfg.stages
                if stage_class(n).kind == "model"]
    return Resources(num_cpus=cfg.ray.process_num_cpus,
                     num_gpus=max([r.num_gpus for r in declared], default=0.0),
                     holds_model=any(r.holds_model for r in declared))


def pool_args(cfg: BuildConfig, cluster_has_gpus: bool) -> dict[str, Any]:
    """Ray Data ``map_batches`` arguments of the model-stage pool."""
    from ray.data import ActorPoolStrategy

    low, high = cfg.ray.model_pool_bounds()
    res = model_resources(cfg)
    return {
        "compute": ActorPoolStrategy(min_size=low, max_size=high),
        "batch_size": cfg.ray.model_batch_units,
        "batch_format": "pyarrow",
        "num_cpus": res.num_cpus,
        # the stages' GPUs only where there are GPUs: on a CPU cluster the pool still runs
        "num_gpus": (res.num_gpus or None) if cluster_has_gpus else None,
        # a dead actor comes back and its batch runs again (Ray Data's default, stated here:
        # it also keeps Ray Data from fusing the cpu task into the actor, which it does for
        # task → actor maps with the same arguments, and which would run every decode in the
        # pool's few actors)
        "max_restarts": -1,
    }


class ModelStageRunner:
    """A Ray Data actor of the model-stage pool: builds the model stages once (models stay
    loaded across calls), and per call runs them over every accepted video of its units, then
    writes each unit."""

    def __init__(self, cfg_json: str, content_hash: str, root: str):
        self.cfg = BuildConfig.model_validate_json(cfg_json)
        storage.configure(self.cfg.s3)
        self.root = root
        self.work_dir = Path(tempfile.mkdtemp(prefix="longvid-model-", dir=self.cfg.work_dir))
        self.ctx = make_context(self.cfg, content_hash, self.work_dir)
        self.stages = build_stages(self.ctx, "model")

    def __call__(self, batch: pa.Table) -> pa.Table:
        out, payloads = [], []
        for row in batch.to_pylist():
            if row["done"]:
                out.append(json.loads(row["done"]))
                continue
            again = committed_row(self.root, row["unit_id"])  # a batch rerun after a dead actor
            if again is not None:
                out.append(again)
                continue
            payloads.append(pickle.loads(row["payload"]))
        out += self.run_and_write(payloads)
        return pa.Table.from_pylist(out, schema=PROGRESS_SCHEMA)

    def run_and_write(self, payloads: list[UnitPayload]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        works = [w for p in payloads for w in p.works]
        for w in works:
            w.ctx = self.ctx
        for stage in self.stages:  # stage by stage, each over every video of the batch
            run_stage_over(works, stage)
        seconds = time.perf_counter() - started
        rows = []
        for p in payloads:
            share = seconds * len(p.works) / max(len(works), 1)
            try:
                rows.append(self.write(p, share, len(payloads)))
            except Exception:  # noqa: BLE001 - the unit stays uncommitted; the others go on
                log.exception("unit %s: not written (a rerun retries it)", p.unit_id)
        return rows

    def write(self, p: UnitPayload, model_seconds: float, batch_units: int) -> dict[str, Any]:
        started = time.perf_counter()
        where = _ray_lineage()
        # lineage: the pool actor that wrote the unit, how many units shared its call, and
        # where the cpu stages ran (a task: no actor id; no GPU unless a cpu stage asked)
        extra = {"actor_id": where["actor_id"], "batch_units": batch_units,
                 "cpu_task": p.cpu_task}
        marker = storage_retrying(
            lambda: write_unit(self.root, p.unit_id, p.generation, p.works, self.cfg,
                               p.seconds + model_seconds + time.perf_counter() - started,
                               extra_stats=extra),
            p.unit_id, self.cfg.ray.storage_retries)
        return progress_row(marker)
