"""Corpus-wide duplicate filters: exact duplicates across units in a real build (local Ray, the
filter applied when the build finishes), near duplicates of re-encoded video by embedding."""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from longvid.dedup.filter import apply_duplicates
from longvid.media.ffmpeg import run_ffmpeg
from longvid.samples.synth import VideoSpec, plan_shots, render_video
from longvid.schema import MANIFEST_SCHEMA, TimedText, VideoRecord
from longvid.shards import read_sample, write_table
from tests.fixtures.annotate import build_config, run_all_stages

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dup_videos(tmp_path_factory) -> tuple[Path, list[dict]]:
    """``a``; ``b``, a byte copy of ``a``; ``c``, ``a`` re-encoded (other bytes, same pictures),
    each listed with one caption."""
    root = tmp_path_factory.mktemp("dup_videos")
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
    return root, records


def _build(root: Path, name: str, stages: list[str]) -> Path:
    """``longvid build`` of the three videos into ``root/name``, one unit each."""
    cfg = {
        "manifest": str(root / "ingest"),
        "output": {"root": str(root / name)},
        "ray": {"num_cpus": 2},
        "units": {"videos_per_unit": 1},  # three units: the duplicates span units
        "segment": {"default": {"short_min_s": 2.0, "short_max_s": 30.0, "long_min_s": 60.0}},
        "stages": stages,
        "progress": False,
    }
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "longvid.cli", "build",
                           str(root / f"{name}.yaml")],
                          capture_output=True, text=True, timeout=600, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / name


@pytest.fixture(scope="module")
def dup_build(dup_videos) -> Path:
    """The three videos built with the cpu annotation stages (the duplicate filter on)."""
    root, records = dup_videos
    write_table(str(root / "ingest" / "manifest.parquet"), records, MANIFEST_SCHEMA)
    return _build(root, "out", ["probe", "scan", "segment", "cut", "filter", "captions"])


@pytest.fixture(scope="module")
def unfiltered_build(dup_videos, dup_build) -> Path:
    """The same inputs built without the filter stage: every duplicate stays."""
    root, _ = dup_videos
    return _build(root, "unfiltered", ["probe", "scan", "segment", "cut", "captions"])


def test_exact_duplicates_across_units_become_one_reject_row_per_video(dup_build):
    samples = pq.read_table(dup_build / "samples.parquet").to_pylist()
    assert {s["record_id"] for s in samples} == {"generic:a", "generic:c"}  # c: other bytes
    per_video = sum(s["record_id"] == "generic:a" for s in samples)
    rejects = pq.read_table(dup_build / "rejects.parquet").to_pylist()
    assert [(r["record_id"], r["stage"], r["reason"], r["locator"]) for r in rejects] == [
        ("generic:b", "filter", "filter:exact_duplicate", "list:1")]
    assert f"all {per_video} samples are duplicates" in rejects[0]["detail"]
    assert "generic_a_" in rejects[0]["detail"]
    summary = json.loads((dup_build / "summary.json").read_text())
    assert summary["records"] == {"manifest": 3, "accepted": 2, "rejected": 1,
                                  "ingest_rejected": 0}
    assert summary["samples"] == len(samples) == 2 * per_video
    assert summary["rejects_by_reason"] == {"filter:filter:exact_duplicate": 1}
    assert summary["by_source"]["generic"]["rejected"] == 1
    for row in samples:  # what stays is whole: the members read back by offset
        got = read_sample(str(dup_build), row)
        assert json.loads(got["json"])["scores"]["clip_sha256"] == json.loads(row["extra"])[
            "scores"]["clip_sha256"]


def test_fingerprint_is_a_column_of_the_samples(dup_build):
    from longvid.dedup.fingerprint import FP_BYTES, from_bytes
    from longvid.dedup.read import read_samples

    samples = pq.read_table(dup_build / "samples.parquet").to_pylist()
    assert samples and all(len(s["fingerprint"]) == FP_BYTES for s in samples)
    assert all("fingerprint" not in json.loads(s["extra"]) for s in samples)
    got = read_samples(str(dup_build / "samples.parquet"))  # the dedup reader takes the column
    assert got.fp_valid is not None and got.fp_valid.all()
    at = list(got.keys).index(samples[0]["key"])
    assert np.array_equal(got.fp_hashes[at], from_bytes(samples[0]["fingerprint"])[0])


def test_re_encoded_video_is_a_near_duplicate_by_embedding(dup_videos, tmp_path):
    _, records = dup_videos
    cfg = build_config(["filter", "captions", "frames", "embed"],
                       filters={"near_duplicate_cosine": 0.995})
    works = run_all_stages([records[0], records[2]], cfg, tmp_path)  # a and c
    rows = [o.row for w in works for o in w.outputs]
    a_keys = sorted(r["key"] for r in rows if r["record_id"] == "generic:a")
    kept, rejects = apply_duplicates(rows, cfg.annotate.filters)
    assert sorted(r["key"] for r in kept) == a_keys
    (r,) = rejects
    assert (r["record_id"], r["reason"], r["locator"]) == ("generic:c", "filter:near_duplicate",
                                                           "list:2")
    cos = float(r["detail"].split("cosine ")[1].split(" ")[0])
    assert 0.995 <= cos <= 1.0 + 1e-6
    # each of c's clips is closest to the clip of a with the same span
    embs = {o.key: np.load(io.BytesIO(o.members["emb.npy"])) for w in works for o in w.outputs}
    for key in a_keys:
        twin = key.replace("generic_a_", "generic_c_")
        others = [k for k in a_keys if k != key]
        assert float(embs[key] @ embs[twin]) >= 0.995
        assert all(float(embs[k] @ embs[twin]) < 0.995 for k in others)


def test_build_filter_and_audit_find_the_same_duplicates(dup_build, unfiltered_build, tmp_path):
    from longvid.audit.config import AuditConfig
    from longvid.pipelines.audit import run_audit

    cfg = AuditConfig(ray={"num_cpus": 2}, duplicates={"near_cosine": None})  # as the build
    run_audit(str(unfiltered_build), str(tmp_path / "report"), cfg)
    table = pq.read_table(tmp_path / "report" / "duplicates.parquet").to_pylist()
    every = {r["key"] for r in pq.read_table(unfiltered_build / "samples.parquet").to_pylist()}
    kept = {r["key"] for r in pq.read_table(dup_build / "samples.parquet").to_pylist()}
    assert len(table) >= 2 and every - {d["key"] for d in table} == kept
    # each reject names the sample and the one kept, as the audit's table does
    kept_of = {d["key"]: d["kept_key"] for d in table}
    rejects = pq.read_table(dup_build / "rejects.parquet").to_pylist()
    named = {}
    for r in rejects:
        m = re.search(r"sample (\S+?): .*?(?:those of|with|a copy of) (\S+?)[\s(]",
                      r["detail"] + " ")
        assert m, r["detail"]
        named[m.group(1)] = m.group(2)
    assert named and all(kept_of[k] == v for k, v in named.items())
    assert {d["record_id"] for d in table} >= {"generic:b"}  # the byte copy, across units


def test_audit_partitioned_search_reports_what_the_in_memory_one_did(unfiltered_build, tmp_path,
                                                                     monkeypatch):
    # a new build carries hashes and fingerprints in its table: the audit runs the build
    # filter's partitioned search; forced onto the in-memory fallback it must report the same
    import longvid.pipelines.audit as audit_mod
    from longvid.audit.config import AuditConfig

    cfg = AuditConfig(ray={"num_cpus": 2}, gallery={"enabled": False})
    assert not (tmp_path / "new" / audit_mod.DEDUP_WORK).exists()
    new = audit_mod.run_audit(str(unfiltered_build), str(tmp_path / "new"), cfg).report
    assert not (tmp_path / "new" / audit_mod.DEDUP_WORK).exists()  # work files removed
    monkeypatch.setattr(audit_mod, "table_carries_signals", lambda st: False)
    old = audit_mod.run_audit(str(unfiltered_build), str(tmp_path / "old"), cfg).report
    a, b = new["duplicates"], old["duplicates"]
    assert a["duplicates"] >= 2 and a["by_signal"].get("exact", 0) >= 1
    for field in ("list", "groups", "duplicates", "by_signal", "notes", "signals"):
        assert a[field] == b[field], field
    for field in ("samples", "exact_pairs", "embedded", "fingerprinted", "hashed_in_table"):
        assert a["checked"][field] == b["checked"][field], field
    cols = ["key", "kept_key", "record_id", "kept_record_id", "signal", "hamming"]
    assert (pq.read_table(tmp_path / "new" / "duplicates.parquet").select(cols).to_pylist()
            == pq.read_table(tmp_path / "old" / "duplicates.parquet").select(cols).to_pylist())
