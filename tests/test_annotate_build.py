"""The annotation stages inside a real build (local Ray, model stages in the actor pool), the
corpus-wide duplicate filters at its finish, and the VideoChat-Flash export of the result."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from longvid.media.ffmpeg import run_ffmpeg
from longvid.media.synth import VideoSpec, plan_shots, render_video
from longvid.schema import MANIFEST_SCHEMA, TimedText, VideoRecord
from longvid.shards import read_sample, write_table
from tests.fixtures.annotate import TINY_CLIP

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dup_build(tmp_path_factory) -> Path:
    """A build of three listed videos: ``a``; ``b``, a byte copy of ``a``; ``c``, ``a``
    re-encoded (other bytes, same pictures). Stages up to embeddings, tiny open_clip."""
    root = tmp_path_factory.mktemp("dup_build")
    fps = Fraction(25)
    shots = plan_shots(random.Random(5), int(14 * fps), fps, min_s=3.0, max_s=5.0, frame_step=1)
    render_video(VideoSpec(root / "a.mp4", fps, 160, 90, tuple(shots), audio=False))
    shutil.copy(root / "a.mp4", root / "b.mp4")
    run_ffmpeg(["-y", "-i", str(root / "a.mp4"), "-c:v", "libx264", "-crf", "30", "-g", "25",
                str(root / "c.mp4")], uri="c.mp4", reason="render_failed")
    records = [VideoRecord(source="generic", video_id=v, video_uri=str(root / f"{v}.mp4"),
                           locator=f"list:{i}", licence="test",
                           texts=[TimedText(0.0, 14.0, f"video {v} shows test patterns",
                                            "caption", "text")]).as_row()
               for i, v in enumerate("abc")]
    write_table(str(root / "ingest" / "manifest.parquet"), records, MANIFEST_SCHEMA)
    cfg = {
        "manifest": str(root / "ingest"),
        "output": {"root": str(root / "out")},
        "ray": {"num_cpus": 2},
        "units": {"videos_per_unit": 1},  # three units: duplicates span units
        "segment": {"default": {"short_min_s": 2.0, "short_max_s": 30.0, "long_min_s": 60.0}},
        "stages": ["probe", "scan", "segment", "cut", "filter", "captions", "frames", "embed",
                   "filter_final"],
        "annotate": {"frames": {"short_side": 32},
                     "embed": {"model": "custom", "model_cfg": TINY_CLIP},
                     "filters": {"near_duplicate_cosine": 0.995}},
        "progress": False,
    }
    (root / "build.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "longvid.cli", "build", str(root / "build.yaml")],
                          capture_output=True, text=True, timeout=600, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "out"


def test_duplicates_across_units_become_rejects_with_their_filter(dup_build):
    samples = pq.read_table(dup_build / "samples.parquet").to_pylist()
    assert {s["record_id"] for s in samples} == {"generic:a"}
    rejects = {r["record_id"]: r for r in pq.read_table(dup_build / "rejects.parquet").to_pylist()}
    b, c = rejects["generic:b"], rejects["generic:c"]
    assert (b["stage"], b["reason"], b["locator"]) == ("filter", "filter:exact_duplicate",
                                                       "list:1")
    assert f"all {len(samples)} samples are duplicates" in b["detail"]
    assert (c["stage"], c["reason"]) == ("filter", "filter:near_duplicate")
    cos = float(c["detail"].split("cosine ")[1].split(" ")[0])
    assert 0.995 <= cos <= 1.0 and "generic_a_" in c["detail"]
    summary = json.loads((dup_build / "summary.json").read_text())
    assert summary["records"]["accepted"] == 1 and summary["records"]["rejected"] == 2
    assert summary["samples"] == len(samples)
    assert summary["rejects_by_reason"]["filter:filter:exact_duplicate"] == 1
    assert summary["rejects_by_reason"]["filter:filter:near_duplicate"] == 1


def test_built_samples_carry_embeddings_in_shards_and_manifest(dup_build):
    samples = pq.read_table(dup_build / "samples.parquet").to_pylist()
    assert samples
    for row in samples:
        got = read_sample(str(dup_build), row)
        assert {"mp4", "json", "txt", "emb.npy", "textemb.npy"} <= set(got)
        emb = np.load(io.BytesIO(got["emb.npy"]), allow_pickle=False)
        assert emb.shape == (32,) and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5
        extra = json.loads(row["extra"])
        assert extra["embedding"] == pytest.approx(emb.tolist(), abs=1e-6)
        meta = json.loads(got["json"])
        assert meta["embedding"]["dim"] == 32 and len(meta["embedding"]["frame_times"]) == 4
        assert meta["scores"]["video_text_cosine"] == extra["scores"]["video_text_cosine"]
        # the listed text spans the whole 14 s video: re-timed and clipped to each sample
        (cap,) = meta["captions"]
        assert (cap["text"], cap["kind"], cap["origin"], cap["clipped"], cap["start"]) == (
            "video a shows test patterns", "caption", "text", True, 0.0)
        assert cap["end"] == pytest.approx(row["span_end"] - row["span_start"], abs=0.05)
