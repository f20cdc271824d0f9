"""Corrupt bytes in the middle of a video (valid header and index, a range of garbage packets):
the build rejects it with a reason, or keeps it within ``detect.max_decode_errors``, never hangs
or loses a unit; the loader substitutes such a clip deterministically and counts it."""

from __future__ import annotations

import json

import pytest

from longvid.config import load_config
from longvid.media.decode import FrameSampler
from longvid.media.probe import probe
from longvid.pipelines.build import run_build
from longvid.pipelines.config import BuildConfig
from longvid.schema import MANIFEST_SCHEMA
from longvid.shards import read_table, write_table
from longvid.training.data import make_loader
from longvid.training.data.config import StageData
from tests.fixtures.build import overrides
from tests.fixtures.loader_corpus import ClipSpec, damage_packets


def all_batches(loader) -> list[dict]:
    return list(iter(loader))


def test_a_clip_damaged_mid_file_is_substituted_the_same_way_with_any_worker_count(
    loader_corpus_factory, tmp_path
):
    specs = [ClipSpec("webvid", f"fine{i}", duration=4.0 + i) for i in range(5)]
    specs.append(ClipSpec("webvid", "damaged", duration=8.0, damage=(0.4, 0.6)))
    corpus = loader_corpus_factory("damaged_mid_file", specs)
    damaged = specs[-1].key
    # the damage is real: the clip opens and most frames decode, some packets do not
    blob = damage_packets(corpus.clip_paths[damaged].read_bytes(), 0.4, 0.6)
    with FrameSampler(blob, size=(16, 16), keyframes=corpus.keyframes[damaged]) as s:
        s.decode_at([i * 0.5 for i in range(16)])
        assert s.decode_errors > 0 and s.frames_decoded > 0

    cfg = StageData(corpora=[corpus.root], num_samples=24, batch_size=4, t_min=8, t_max=8,
                    resolution=16, seed=7)
    runs = {}
    for workers in (0, 2):
        loader = make_loader(cfg.model_copy(update={"num_workers": workers}), 0, 1)
        batches = all_batches(loader)
        planned = [k for b in batches for k in b["planned_keys"]]
        delivered = [k for b in batches for k in b["keys"]]
        assert len(delivered) == len(planned) == 24  # nothing skipped
        assert damaged in planned and damaged not in delivered
        assert [k for b in batches for k in b["replaced"]] == [damaged] * planned.count(damaged)
        assert loader.state_dict()["substituted"] == planned.count(damaged)
        runs[workers] = delivered
    assert runs[0] == runs[2]


@pytest.mark.slow
def test_the_build_rejects_mid_file_damage_or_keeps_it_within_the_tolerance(
    build_inputs, tmp_path
):
    """Only the damaged video and a clean one, so each build is short."""
    import ray

    rows = [r for r in build_inputs.records if r["record_id"] in ("generic:corrupt",
                                                                   "generic:aligned")]
    manifest = tmp_path / "manifest"
    write_table(str(manifest / "manifest.parquet"), rows, MANIFEST_SCHEMA)
    corrupt_path = next(r["video_uri"] for r in rows if r["record_id"] == "generic:corrupt")
    assert probe(corrupt_path).num_frames > 0  # its header and index are intact

    def build(out, *extra):
        cfg = load_config(None, BuildConfig, [*overrides(), f"manifest={manifest}",
                                              f"output.root={out}", *extra])
        return run_build(cfg).summary

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        strict = build(tmp_path / "strict")
        tolerant = build(tmp_path / "tolerant", "detect.max_decode_errors=1000",
                         "detect.max_missing_frames=1000")
    finally:
        ray.shutdown()

    # default tolerance 0: one reject row with the stage, the reason and what failed
    assert strict["complete"] and strict["records"] == {
        "manifest": 2, "accepted": 1, "rejected": 1, "ingest_rejected": 0}
    (reject,) = read_table(str(tmp_path / "strict" / "rejects.parquet")).to_pylist()
    assert (reject["record_id"], reject["stage"], reject["reason"]) == (
        "generic:corrupt", "scan", "decode_failed")
    assert "packet(s) failed to decode" in reject["detail"]

    # within the tolerance: the video is kept, its samples cut, no unit lost, nothing internal
    assert tolerant["complete"] and tolerant["records"]["accepted"] == 2
    assert not any("internal_error" in r for r in tolerant["rejects_by_reason"])
    samples = read_table(str(tmp_path / "tolerant" / "samples.parquet")).to_pylist()
    from_corrupt = [s for s in samples if s["record_id"] == "generic:corrupt"]
    assert from_corrupt, samples
    decode_errors = json.loads((tmp_path / "tolerant" / "summary.json").read_text())
    assert decode_errors["units"]["committed"] == decode_errors["units"]["total"]
