"""The model-stage actor pool of the build, on real local Ray with tiny random models: units
batched across a model-actor call give the same shards and parts, byte for byte, as one unit per
call; the pool's size and batch come from the config; model actors get a GPU only on a Ray that
declares one, while the cpu tasks never do; the pool writes the units (every input accounted
for, a committed unit skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longvid.annotate.config import AnnotateConfig
from longvid.config import load_config
from longvid.pipelines.build import run_build
from longvid.pipelines.config import BuildConfig
from longvid.pipelines.model_pool import drop_unused_frames, pool_args
from longvid.pipelines.unit_task import make_context, process_records
from longvid.shards import ledger
from tests.fixtures.annotate import annotate_settings
from tests.fixtures.build import overrides
from tests.test_build_e2e import metas, samples_by_key

pytestmark = pytest.mark.slow

MODEL_STAGES = ["frames", "model_captions", "embed"]


def model_config(manifest: Path, out: Path, *extra: str) -> BuildConfig:
    cfg = load_config(None, BuildConfig, [
        *overrides(), f"manifest={manifest}", f"output.root={out}", "ray.num_cpus=2",
        "stages=[probe, scan, segment, cut, " + ", ".join(MODEL_STAGES) + "]", *extra])
    return cfg.model_copy(update={"annotate": AnnotateConfig.model_validate(annotate_settings())})


def files(root: Path, sub: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / sub).iterdir())}


def markers(root: Path) -> dict[str, ledger.CommitMarker]:
    return ledger.read_markers(str(root), ledger.committed_ids(str(root)))


@pytest.fixture(scope="module")
def batch_of_one(build_inputs, tmp_path_factory) -> Path:
    """One unit per model-actor call, on a local Ray without GPUs (the build starts it)."""
    root = tmp_path_factory.mktemp("pool_one") / "out"
    res = run_build(model_config(build_inputs.manifest_dir, root, "ray.model_batch_units=1",
                                 "ray.num_gpus=0"))
    assert res.summary["complete"]
    return root


@pytest.fixture(scope="module")
def batch_of_three(build_inputs, tmp_path_factory) -> Path:
    """Three units per call, a pool of 1 to 2 actors, on a local Ray that declares one GPU (a
    CPU box can): the model actors take a slice of it, the cpu tasks none."""
    import ray

    root = tmp_path_factory.mktemp("pool_three") / "out"
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
             logging_level="WARNING")
    try:
        res = run_build(model_config(build_inputs.manifest_dir, root, "ray.model_batch_units=3",
                                     "ray.model_min_actors=1", "ray.model_max_actors=2"))
    finally:
        ray.shutdown()
    assert res.summary["complete"]
    return root


def test_batching_units_gives_the_same_bytes_as_one_unit_per_call(batch_of_one, batch_of_three,
                                                                  build_inputs):
    one, three = batch_of_one, batch_of_three
    assert files(one, "shards") == files(three, "shards")
    assert files(one, "samples.parquet") == files(three, "samples.parquet")
    assert files(one, "rejects.parquet") == files(three, "rejects.parquet")
    summary = json.loads((three / "summary.json").read_text())
    records = summary["records"]
    assert records["accepted"] + records["rejected"] == records["manifest"] == len(
        build_inputs.records)
    assert records["accepted"] == len(build_inputs.good)
    # the model stages ran: every sample has its embedding members and a model-caption lineage
    by_key = samples_by_key(three)
    assert by_key and all("emb.npy" in m for m in by_key.values())
    assert all("model_captions" in m["lineage"] for m in metas(three).values())


def test_units_shared_model_actor_calls_as_configured(batch_of_one, batch_of_three):
    one, three = markers(batch_of_one), markers(batch_of_three)
    assert {m.stats["batch_units"] for m in one.values()} == {1}
    # six units (two records each) through calls of three: units really shared a call
    assert len(three) == 6 and max(m.stats["batch_units"] for m in three.values()) == 3
    actors = {m.stats["actor_id"] for m in three.values()}
    assert None not in actors and 1 <= len(actors) <= 2  # written by the pool, at most max actors
    for m in [*one.values(), *three.values()]:
        assert m.stats["cpu_task"]["actor_id"] is None  # cpu stages ran in tasks, not the pool


def test_model_actors_get_a_gpu_only_where_ray_declares_one(batch_of_one, batch_of_three):
    assert all(m.stats["gpu_ids"] == [] for m in markers(batch_of_one).values())
    three = markers(batch_of_three).values()
    assert all(m.stats["gpu_ids"] for m in three)  # the actor that wrote it had the GPU
    assert all(m.stats["cpu_task"]["gpu_ids"] == [] for m in three)  # cpu stages: no GPU


def test_pool_arguments_follow_the_config(tmp_path):
    cfg = model_config(tmp_path, tmp_path / "out", "ray.model_min_actors=2",
                       "ray.model_max_actors=5", "ray.model_batch_units=4",
                       "ray.model_num_gpus=0.5")
    args = pool_args(cfg, cluster_has_gpus=True)
    assert (args["compute"].min_size, args["compute"].max_size) == (2, 5)
    assert args["batch_size"] == 4 and args["num_gpus"] == 0.5
    assert pool_args(cfg, cluster_has_gpus=False)["num_gpus"] is None
    old = model_config(tmp_path, tmp_path / "out", "ray.model_concurrency=3")  # deprecated knob
    assert (pool_args(old, False)["compute"].min_size,
            pool_args(old, False)["compute"].max_size) == (3, 3)
    with pytest.raises(Exception, match="model_min_actors"):
        model_config(tmp_path, tmp_path / "out", "ray.model_min_actors=3")


def test_a_rerun_skips_committed_units_in_the_pool(batch_of_one, build_inputs):
    before = files(batch_of_one, "shards")
    res = run_build(model_config(build_inputs.manifest_dir, batch_of_one,
                                 "ray.model_batch_units=2", "ray.num_gpus=0"))
    assert res.summary["run"]["processed"] == 0 and res.summary["run"]["skipped"] == 6
    assert files(batch_of_one, "shards") == before


def cpu_stage_works(build_inputs, cfg: BuildConfig, work_dir: Path):
    """The cpu stages of ``cfg`` over one good record, as a unit's cpu task runs them."""
    from tests.fixtures.annotate import one_torch_thread

    good = [r for r in build_inputs.records if r["record_id"] == "generic:aligned"]
    with one_torch_thread():
        return process_records(good, make_context(cfg, "test", work_dir))


def test_only_frames_a_model_stage_reads_leave_the_cpu_task(build_inputs, tmp_path):
    from longvid.annotate.stages import FRAMES_NOTE

    def stages(*names: str) -> str:
        return "stages=[probe, scan, segment, cut, " + ", ".join(names) + "]"

    # frames picked, but the only model stage (events) reads none: nothing is carried
    cfg = model_config(tmp_path, tmp_path / "o", stages("frames", "events"))
    works = cpu_stage_works(build_inputs, cfg, tmp_path)
    assert works[0].notes[FRAMES_NOTE] and works[0].kept_frames  # the cpu stages made both
    drop_unused_frames(works, cfg)
    assert FRAMES_NOTE not in works[0].notes and works[0].kept_frames == []
    # embed reads the picked frames; the decode pass's kept frames are done with
    cfg = model_config(tmp_path, tmp_path / "o", stages("frames", "embed"))
    works = cpu_stage_works(build_inputs, cfg, tmp_path)
    picked = dict(works[0].notes[FRAMES_NOTE])
    drop_unused_frames(works, cfg)
    assert works[0].notes[FRAMES_NOTE] == picked and works[0].kept_frames == []
    # no frames stage, frames from the decode pass: the model stage picks from the kept frames
    cfg = model_config(tmp_path, tmp_path / "o", stages("embed"))
    cfg = cfg.model_copy(update={"annotate": cfg.annotate.model_copy(update={
        "frames": cfg.annotate.frames.model_copy(update={"from_decode_pass": True})})})
    works = cpu_stage_works(build_inputs, cfg, tmp_path)
    kept = len(works[0].kept_frames)
    drop_unused_frames(works, cfg)
    assert kept and len(works[0].kept_frames) == kept


def test_a_batch_rerun_after_a_dead_actor_skips_what_it_committed(build_inputs, batch_of_one,
                                                                  tmp_path):
    """The pool actor in this process (no Ray): a batch of two units whose first was committed
    before the actor died is run again; the first is skipped, the second written as a clean
    build writes it."""
    import pyarrow as pa

    from longvid.pipelines.build import prepare
    from longvid.pipelines.model_pool import ModelStageRunner, run_unit_cpu
    from tests.fixtures.annotate import one_torch_thread

    cfg = model_config(build_inputs.manifest_dir, tmp_path / "out")
    prep = prepare(cfg)
    units = prep.plan.units[:2]
    with one_torch_thread():
        rows = [run_unit_cpu({"unit_id": u.unit_id, "generation": u.generation, "runs": u.runs},
                             prep.rows_uri, prep.cfg, prep.chash, prep.root) for u in units]
        runner = ModelStageRunner(prep.cfg.model_dump_json(), prep.chash, prep.root)
        first = runner(pa.Table.from_pylist(rows[:1])).to_pylist()  # then the actor "dies"
        again = runner(pa.Table.from_pylist(rows)).to_pylist()  # Ray Data reruns the batch
    assert [r["skipped"] for r in first] == [False]
    assert {r["unit_id"]: r["skipped"] for r in again} == {units[0].unit_id: True,
                                                           units[1].unit_id: False}
    written = markers(tmp_path / "out")
    assert sorted(written) == sorted(u.unit_id for u in units)
    assert written[units[1].unit_id].stats["batch_units"] == 1  # the committed one was not run
    clean = files(batch_of_one, "shards")
    for name, data in files(tmp_path / "out", "shards").items():
        assert clean[name] == data, name
