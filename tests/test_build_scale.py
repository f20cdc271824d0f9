"""Build at scale, on real local Ray: an append build (a grown manifest runs only its new units and
leaves the old shards byte for byte), a changed or removed record refused by id, and CPU stages
asking for no GPU on a Ray that declares one."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvid.errors import ConfigError
from longvid.pipelines.build import dry_run, run_build, stage_resources
from longvid.schema import MANIFEST_SCHEMA
from longvid.shards import ledger, read_table
from tests.test_build_e2e import config, samples_by_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpu_ray():
    """A local Ray that declares one GPU (a CPU box can): CPU stages must not take it."""
    import ray

    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
             logging_level="WARNING")
    yield
    ray.shutdown()


def _manifest(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA),
                   folder / "manifest.parquet")
    return folder


def _files(root: Path, sub: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / sub).iterdir())}


def test_append_build_runs_only_new_units_and_keeps_old_shards(gpu_ray, build_inputs,
                                                               reference_build, tmp_path):
    import ray

    assert ray.cluster_resources().get("GPU") == 1
    records = build_inputs.records
    first = _manifest(tmp_path / "first", records[:5])  # three good videos and a bad one or two
    root = tmp_path / "out"
    res = run_build(config(first, root))
    assert res.summary["complete"] and res.summary["run"]["generations"] == 1
    shards_before = _files(root, "shards")
    parts_before = _files(root, "samples.parquet")
    markers_before = sorted(p.name for p in (root / "ledger").iterdir())
    assert shards_before

    full = build_inputs.manifest_dir
    plan = dry_run(config(full, root))
    assert plan["new_records"] == len(records) - 5 and plan["committed_units"] == len(
        markers_before)
    res = run_build(config(full, root))
    run = res.summary["run"]
    assert run["generations"] == 2 and run["new_records"] == len(records) - 5
    assert run["skipped"] == len(markers_before)  # the old units did not run again
    assert run["processed"] == res.summary["units"]["total"] - len(markers_before)
    after = _files(root, "shards")
    assert {k: after[k] for k in shards_before} == shards_before  # byte for byte
    parts_after = _files(root, "samples.parquet")
    assert {k: parts_after[k] for k in parts_before} == parts_before
    # the corpus holds what a clean build of the grown manifest holds, sample for sample
    got, ref = samples_by_key(root), samples_by_key(reference_build)
    assert sorted(got) == sorted(ref)
    for key in ref:
        assert got[key] == ref[key], key
    ref_rows = read_table(str(reference_build / "samples.parquet")).num_rows
    assert read_table(str(root / "samples.parquet")).num_rows == ref_rows
    assert res.summary["records"] == json.loads(
        (reference_build / "summary.json").read_text())["records"]
    # CPU stages asked for no GPU although the cluster has one: no task was given one
    markers = ledger.read_markers(str(root), ledger.committed_ids(str(root)))
    assert markers and all(m.stats["gpu_ids"] == [] for m in markers.values())
    assert stage_resources(res_cfg := config(full, root), "cpu").num_gpus == 0
    transnet = res_cfg.model_copy(update={"detect": res_cfg.detect.model_copy(
        update={"detector": "transnetv2"})})
    assert stage_resources(transnet, "cpu").num_gpus == 0.25  # the scan stage declares it

    # a record the first run built, changed: refused, naming it; nothing is run or written
    rows = pq.read_table(full / "manifest.parquet").to_pylist()
    victim = next(r for r in rows[:5] if r["texts"])
    victim["texts"][0]["text"] = "an edited line"
    changed = _manifest(tmp_path / "changed", rows)
    with pytest.raises(ConfigError, match=f"record '{victim['record_id']}'"):
        run_build(config(changed, root))
    rows = pq.read_table(full / "manifest.parquet").to_pylist()
    gone = rows.pop(1)["record_id"]
    removed = _manifest(tmp_path / "removed", rows)
    with pytest.raises(ConfigError, match=f"record '{gone}'.*no longer in the manifest"):
        run_build(config(removed, root))
    assert _files(root, "shards") == after
