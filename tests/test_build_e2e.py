"""The build end to end on generated videos and bad inputs: shards read with stock webdataset and
wids, every input accounted for, stream copy vs re-encode, re-timed texts, determinism, resume,
an s3:// output root."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import webdataset as wds
import wids

from longvid import storage
from longvid.config import load_config
from longvid.errors import ConfigError
from longvid.media.probe import probe
from longvid.pipelines.build import run_build
from longvid.pipelines.config import BuildConfig
from longvid.shards import ledger, read_index, read_member, read_table
from tests.fixtures.build import overrides

pytestmark = pytest.mark.slow


def config(manifest, out, *extra: str) -> BuildConfig:
    return load_config(None, BuildConfig, [*overrides(), f"manifest={manifest}",
                                           f"output.root={out}", *extra])


def shard_paths(root: Path) -> list[str]:
    index = json.loads((root / "index.json").read_text())
    return [str(root / e["url"]) for e in index["shardlist"]]


def samples_by_key(root: Path) -> dict[str, dict[str, bytes]]:
    """Every sample's members, read with the stock webdataset reader."""
    out = {}
    for s in wds.WebDataset(shard_paths(root), shardshuffle=False):
        key = s["__key__"]
        assert key not in out, f"duplicate key {key}"
        out[key] = {k: v for k, v in s.items() if not k.startswith("__")}
    return out


def metas(root: Path) -> dict[str, dict]:
    return {k: json.loads(m["json"]) for k, m in samples_by_key(root).items()}


def test_shards_read_with_webdataset_and_wids_and_match_samples_parquet(reference_build):
    root = reference_build
    by_key = samples_by_key(root)
    table = read_table(str(root / "samples.parquet")).to_pylist()
    assert sorted(by_key) == sorted(r["key"] for r in table)
    assert len(by_key) >= 15
    ds = wids.ShardListDataset(str(root / "index.json"))
    assert len(ds) == len(by_key)
    wids_keys = [ds[i]["__key__"] for i in range(len(ds))]
    assert sorted(wids_keys) == sorted(by_key)
    i = wids_keys.index(table[0]["key"])
    assert ds[i][".mp4"].read() == by_key[table[0]["key"]]["mp4"]
    for row in table:
        members = by_key[row["key"]]
        assert set(members) == {"mp4", "json", "txt"}
        meta = json.loads(members["json"])
        assert meta["key"] == row["key"] and meta["caption"] == members["txt"].decode()
        assert row["caption"] == meta["caption"]
        # the byte offsets in samples.parquet point at the very bytes in the shard
        for ext in ("mp4", "json"):
            got = read_member(str(root), row, ext)
            assert got == members[ext]
        clip = probe(members["mp4"])
        assert clip.num_frames == meta["clip"]["num_frames"] == row["num_frames"]
        assert clip.duration == pytest.approx(meta["span"]["end"] - meta["span"]["start"],
                                              abs=0.08)
        assert clip.keyframes[0] == 0.0
    # inside a unit's shards, samples are in key order
    for path in shard_paths(root):
        keys = [s["__key__"] for s in wds.WebDataset([path], shardshuffle=False)]
        assert keys == sorted(keys)


def test_every_input_is_a_sample_source_or_one_reject(reference_build, build_inputs):
    root = reference_build
    rejects = read_table(str(root / "rejects.parquet")).to_pylist()
    record_rejects = [r for r in rejects if "#" not in r["locator"]]
    got = {r["record_id"]: (r["stage"], r["reason"]) for r in record_rejects}
    assert got == build_inputs.bad
    assert len(record_rejects) == len(build_inputs.bad)  # one row per rejected record
    for r in record_rejects:
        assert r["record_id"].split(":", 1)[1] in r["detail"] or "missing" in r["detail"]
    samples = read_table(str(root / "samples.parquet")).to_pylist()
    with_samples = {r["record_id"] for r in samples}
    assert with_samples == set(build_inputs.good)
    summary = json.loads((root / "summary.json").read_text())
    rec = summary["records"]
    assert rec["accepted"] == len(build_inputs.good)
    assert rec["rejected"] == len(build_inputs.bad)
    assert rec["accepted"] + rec["rejected"] == rec["manifest"] == len(build_inputs.records)
    assert summary["complete"] is True
    assert summary["samples"] == len(samples)
    assert sum(summary["rejects_by_reason"].values()) == len(rejects)
    assert set(summary["stage_seconds"]) >= {"probe", "scan", "segment", "cut"}
    assert summary["run"]["source_hours_per_hour"] > 0
    steps = summary["run"]["driver_seconds"]  # Ray's start and stop timed apart from the job
    assert set(steps) == {"plan", "resume_scan", "ray_start", "units", "ray_stop", "sweep",
                          "finalize"}
    assert steps["ray_start"] > 0 and steps["units"] > 0
    # each unit task records its process's CPU seconds; the summary adds them up
    markers = [json.loads(p.read_text()) for p in (root / "ledger").glob("*.json")]
    assert all(m["stats"]["cpu_seconds"] > 0 for m in markers)
    assert summary["unit_task_cpu_seconds"] == pytest.approx(
        sum(m["stats"]["cpu_seconds"] for m in markers), abs=1e-3)
    assert summary["by_source"]["webvid"]["declared_duration_mismatch"] == 1


def test_copy_when_the_span_starts_on_a_keyframe_else_encode(reference_build):
    m = metas(reference_build)
    aligned = [v for v in m.values() if v["video_id"] == "aligned"]
    dash = [v for v in m.values() if v["video_id"] == "-dash"]
    assert aligned and dash
    for v in aligned + dash:
        start = v["span"]["planned_start"]
        on_key = any(abs(k - start) < 1e-3 for k in [2.0 * i for i in range(10)])
        assert v["clip"]["cut_mode"] == ("copy" if on_key else "encode"), v["key"]
        if v["clip"]["cut_mode"] == "encode":
            assert v["span"]["start"] == v["span"]["planned_start"]
            assert v["clip"]["profile"]["codec"] == "libx264"
        else:
            assert v["clip"]["profile"] is None
            assert v["clip"]["has_audio"] == (v["video_id"] == "aligned")
    assert {v["clip"]["cut_mode"] for v in dash} == {"copy", "encode"}
    assert all(v["clip"]["cut_mode"] == "copy" for v in aligned)
    long = [v for v in aligned if v["bucket"] == "long"]
    assert len(long) == 1 and long[0]["span"]["start"] == 0.0 and long[0]["span"]["end"] == 14.0


def test_spans_join_and_texts_are_retimed(reference_build, build_inputs):
    m = metas(reference_build)
    spans = sorted((v for v in m.values() if v["video_id"] == "spans"),
                   key=lambda v: (v["bucket"], v["span"]["planned_start"]))
    long = [v for v in spans if v["bucket"] == "long"]
    short = [v for v in spans if v["bucket"] == "short"]
    assert [(v["span"]["planned_start"], v["span"]["planned_end"]) for v in short] == [
        (4.0 * k, 4.0 * k + 4.0) for k in range(5)]
    for k, v in enumerate(short):
        assert v["span"]["source_span_ids"] == [f"spans.{k}"]
        assert v["caption"] == f"clip {k} text"
        assert [(t["start"], t["end"], t["text"]) for t in v["texts"]] == [
            (0.0, 4.0, f"clip {k} text")]
    assert len(long) == 1
    assert long[0]["span"]["origin"] == "joined_spans"
    assert (long[0]["span"]["planned_start"], long[0]["span"]["planned_end"]) == (0.0, 20.0)
    assert [(t["start"], t["text"]) for t in long[0]["texts"]] == [
        (4.0 * k, f"clip {k} text") for k in range(5)]
    stock = [v for v in m.values() if v["video_id"] == "stock"]
    assert len(stock) == 1 and stock[0]["caption"] == "a stock clip"
    assert stock[0]["source_video"]["declared_duration"] == 17.0
    assert stock[0]["source_video"]["duration"] == 6.0
    assert stock[0]["source_video"]["mismatch"] == ["duration"]
    aligned = [v for v in m.values() if v["video_id"] == "aligned" and v["texts"]]
    # the ASR line at 2.5-5.0 s lands in the clip starting at 2 s, re-timed to 0.5-3.0
    assert any(t["start"] == 0.5 and t["end"] == 3.0 for v in aligned for t in v["texts"]
               if v["span"]["start"] == 2.0)


def test_detected_cuts_match_the_generated_ones(reference_build, build_inputs):
    rows = read_table(str(reference_build / ledger.VIDEOS_PARTS)).to_pylist()
    videos = {v["record_id"]: v for v in rows}
    for rid, truth in build_inputs.cuts.items():
        got = videos[rid]["cuts"]
        assert len(got) == len(truth), (rid, got, truth)
        assert all(abs(a - b) <= 2 / 25 for a, b in zip(got, truth, strict=True))


@pytest.fixture(scope="module")
def local_ray(s3_server):
    """One local Ray for the in-process builds of this module (after the S3 variables are set,
    so its workers reach the test server)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def test_same_inputs_give_the_same_keys_and_bytes(local_ray, reference_build, build_inputs,
                                                   tmp_path):
    run_build(config(build_inputs.manifest_dir, tmp_path / "again"))
    a, b = samples_by_key(reference_build), samples_by_key(tmp_path / "again")
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key] == b[key], key
    ia = json.loads((reference_build / "index.json").read_text())
    ib = json.loads((tmp_path / "again" / "index.json").read_text())
    assert ia == ib  # same shards, same sizes and checksums


def test_rerun_skips_committed_units_and_changes_nothing(reference_build, build_inputs, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(reference_build, root)
    before = {p.relative_to(root): p.read_bytes() for p in (root / "shards").iterdir()}
    orphan = root / "shards" / "uorphan000000000-00000.tar"
    orphan.write_bytes(b"left by an interrupted run")
    temp = root / "shards" / ".u1.tar.tmp123"
    temp.write_bytes(b"half a shard")
    res = run_build(config(build_inputs.manifest_dir, root))
    assert res.summary["run"]["skipped"] == res.summary["units"]["total"]
    assert res.summary["run"]["orphans_removed"] == 2
    assert "ray_start" not in res.summary["run"]["driver_seconds"]  # nothing ran: no Ray
    assert not orphan.exists() and not temp.exists()
    after = {p.relative_to(root): p.read_bytes() for p in (root / "shards").iterdir()}
    assert after == before
    # a different config is refused, naming what changed
    with pytest.raises(ConfigError, match="content_hash"):
        run_build(config(build_inputs.manifest_dir, root, "segment.default.short_max_s=9"))


def test_a_unit_whose_shard_vanished_is_redone(local_ray, reference_build, build_inputs,
                                               tmp_path):
    root = tmp_path / "damaged"
    shutil.copytree(reference_build, root)
    markers = ledger.read_markers(str(root), ledger.committed_ids(str(root)))
    victim = next(e for e in sorted(markers.values(), key=lambda e: e.unit_id) if e.shards)
    shard = root / victim.shards[0]["url"]
    original = shard.read_bytes()
    shard.unlink()
    res = run_build(config(build_inputs.manifest_dir, root))
    assert res.summary["run"]["processed"] == 1
    assert shard.read_bytes() == original
    assert samples_by_key(root) == samples_by_key(reference_build)


def test_s3_output_root(local_ray, s3_server, reference_build, build_inputs):
    root = s3_server.uri("builds/e2e")
    res = run_build(config(build_inputs.manifest_dir, root))
    assert res.summary["complete"]
    index = read_index(root)
    ref = read_index(str(reference_build))
    assert [(s.url, s.sha256) for s in index.shards] == [(s.url, s.sha256) for s in ref.shards]
    for s in index.shards:
        assert storage.read_bytes(index.shard_uri(s)) == (reference_build / s.url).read_bytes()
    rows = read_table(storage.join(root, "samples.parquet")).to_pylist()
    ref_rows = read_table(str(reference_build / "samples.parquet")).to_pylist()
    assert rows == ref_rows
    # the commit log on S3: one marker and one samples part per unit that has samples
    markers = ledger.read_markers(root, ledger.committed_ids(root))
    assert len(markers) == res.summary["units"]["total"]
    parts = storage.list_files(storage.join(root, ledger.SAMPLES_PARTS), ".parquet")
    assert sorted(parts) == sorted(storage.join(root, m.parts[ledger.SAMPLES_PARTS])
                                   for m in markers.values() if m.counts["samples"])
    again = run_build(config(build_inputs.manifest_dir, root))
    assert again.summary["run"]["skipped"] == again.summary["units"]["total"]


def test_a_unit_that_keeps_failing_is_reported_and_redone_by_the_rerun(
    local_ray, reference_build, build_inputs, tmp_path
):
    from longvid.pipelines.build import BuildIncomplete, prepare

    root = tmp_path / "blocked"
    cfg = config(build_inputs.manifest_dir, root, "ray.storage_retries=0")
    units = prepare(cfg, dry_run=True).plan.units
    victim = units[0].unit_id  # manifest rows 0-1: two good videos, so it writes a shard
    blocker = root / "shards" / f"{victim}-00000.tar"
    blocker.mkdir(parents=True)  # a folder where the unit's shard must go: its write fails
    with pytest.raises(BuildIncomplete, match=victim):
        run_build(cfg)
    summary = json.loads((root / "summary.json").read_text())
    assert summary["complete"] is False
    assert summary["units"]["failed_this_run"] == [victim]
    assert summary["units"]["committed"] == len(units) - 1
    blocker.rmdir()
    res = run_build(cfg)
    assert res.summary["complete"] and res.summary["run"]["skipped"] == len(units) - 1
    assert samples_by_key(root) == samples_by_key(reference_build)
