"""Shot detectors fed our own frames, the copy-or-encode decision, the main caption, and the
ledger's orphan sweep — the build's pieces that need no Ray."""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from longvid.errors import ConfigError
from longvid.media.decode import iter_frames
from longvid.pipelines.captions import main_caption
from longvid.pipelines.config import CutProfile
from longvid.pipelines.stages.cut import cut_mode, starts_on_keyframe
from longvid.samples.synth import VideoSpec, plan_shots, render_video
from longvid.segment.config import DetectConfig
from longvid.segment.shots import detection_size, make_detector, transitions_to_cuts
from longvid.shards import ledger
from longvid.stages.work import SampleSpec

FPS = Fraction(25)


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory) -> tuple[Path, list[int]]:
    """12 s, 160×90, shots of 1-3 s cut at known frames (not on keyframes)."""
    path = tmp_path_factory.mktemp("shots") / "cuts.mp4"
    shots = plan_shots(random.Random(11), 300, FPS, min_s=1.0, max_s=3.0)
    render_video(VideoSpec(path, FPS, 160, 90, tuple(shots)))
    return path, [s.start_frame for s in shots[1:]]


def detect(path: Path, cfg: DetectConfig) -> list[int]:
    det = make_detector(cfg, float(FPS))
    for frame in iter_frames(path, size=detection_size(cfg), threads=1):
        det.push(frame.image)
    return det.finish()


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_scenedetect_detectors_find_every_cut_exactly(cut_video, detector):
    path, truth = cut_video
    assert len(truth) >= 4
    assert detect(path, DetectConfig(detector=detector)) == truth


@pytest.mark.parametrize("detector,extra", [
    ("content", {}), ("content", {"threshold": 2.0}), ("adaptive", {}),
])
def test_batched_scores_give_exactly_the_stock_detectors_cuts(cut_video, detector, extra):
    """Frame by frame into the stock detector vs batches (odd sizes) with vectorised scores:
    the same score for every frame and the same cuts, also at a threshold low enough to fire
    off the true cuts."""
    path, _ = cut_video
    cfg = DetectConfig(detector=detector, **extra)
    frames = np.stack([f.image for f in iter_frames(path, size=detection_size(cfg), threads=1)])
    stock = make_detector(cfg, float(FPS), batched=False)
    for image in frames:
        stock.push(image)
    batched = make_detector(cfg, float(FPS))
    for lo, hi in [(0, 1), (1, 38), (38, 102), (102, len(frames))]:
        batched.push_batch(frames[lo:hi])
    want = stock.finish()
    assert batched.finish() == want
    from scenedetect.common import FrameTimecode
    from scenedetect.detectors import ContentDetector

    reference = ContentDetector()
    scores = [reference._calculate_frame_score(FrameTimecode(i, fps=25.0),
                                               np.ascontiguousarray(f[:, :, ::-1]))
              for i, f in enumerate(frames)]
    assert batched.scores == scores  # bit for bit


def test_transnetv2_with_its_released_weights_finds_the_cut(tmp_path):
    # a 2 s clip, one window of the network: it runs ~15-50 frames/s on 2 CPU cores
    path = tmp_path / "two_shots.mp4"
    shots = plan_shots(random.Random(5), 50, FPS, min_s=1.0, max_s=1.0)
    render_video(VideoSpec(path, FPS, 160, 90, tuple(shots)))
    assert [s.start_frame for s in shots] == [0, 25]
    got = detect(path, DetectConfig(detector="transnetv2", device="cpu"))
    assert len(got) == 1 and abs(got[0] - 25) <= 2, got


def test_transition_runs_become_one_cut_each():
    t = np.array([0, 0, 1, 0, 0, 1, 1, 1, 0, 1], dtype=bool)
    # a run touching the last frame still counts; a run at frame 0 would not
    assert transitions_to_cuts(t) == [2, 6, 9]
    assert transitions_to_cuts(np.array([1, 1, 0, 0], dtype=bool)) == []


def test_copy_only_when_the_span_starts_on_a_keyframe_and_no_normalisation():
    keys = [0.0, 2.0, 4.0]
    spec = SampleSpec(2.0, 3.5, "short", "shot")
    assert starts_on_keyframe(2.01, keys, 25.0)  # within half a frame
    assert not starts_on_keyframe(2.03, keys, 25.0)
    assert cut_mode(spec, keys, 25.0, CutProfile()) == "copy"
    assert cut_mode(spec, keys, 25.0, CutProfile(normalize=True)) == "encode"
    assert cut_mode(SampleSpec(2.5, 3.5, "short", "shot"), keys, 25.0, CutProfile()) == "encode"


def test_main_caption_prefers_whole_sample_captions_then_summaries_then_speech():
    prefer = ["dense_caption", "short_caption"]
    cap = {"kind": "caption", "clipped": False}
    texts = [
        {**cap, "text": "short one", "origin": "short_caption"},
        {**cap, "text": "dense one", "origin": "dense_caption"},
        {"kind": "asr", "text": "hello", "origin": "asr", "start": 0.0, "end": 1.0},
    ]
    assert main_caption(texts, prefer, 100) == "dense one"
    assert main_caption(texts[:1] + texts[2:], prefer, 100) == "short one"
    speech = [{"kind": "asr", "text": w, "origin": "asr"} for w in ["a b", "a b", "c  d", "e"]]
    assert main_caption(speech, prefer, 100) == "a b c d e"  # repeats dropped, spaces folded
    assert main_caption(speech, prefer, 6) == "a b c"  # cut on a word boundary
    summary = [{"kind": "summary", "text": "the gist", "origin": "summary", "clipped": False}]
    assert main_caption(summary + speech, prefer, 100) == "the gist"
    assert main_caption([{**cap, "text": "partly", "origin": "x", "clipped": True}], prefer,
                        100) == "partly"
    assert main_caption([], prefer, 100) == ""


def _marker(uid: str, shards: list[dict]) -> ledger.CommitMarker:
    parts = {"samples.parquet": f"samples.parquet/{uid}.parquet"}
    return ledger.CommitMarker(uid, shards, parts, {"records": 1, "samples": 1, "rejects": 0})


def test_sweep_keeps_listed_files_removes_the_rest_and_reports_damaged_units(tmp_path):
    root = str(tmp_path)
    shards = tmp_path / "shards"
    shards.mkdir()
    (tmp_path / "samples.parquet").mkdir()
    (shards / "ua-00000.tar").write_bytes(b"x" * 10)
    (shards / "ub-00000.tar").write_bytes(b"y" * 3)  # no marker lists it
    (shards / ".ua-00001.tar.tmp").write_bytes(b"partial")
    (tmp_path / "samples.parquet" / "ua.parquet").write_bytes(b"part")
    (tmp_path / "samples.parquet" / "ub.parquet").write_bytes(b"orphan part")
    entry = _marker("ua", [{"url": "shards/ua-00000.tar", "filesize": 10, "nsamples": 1,
                            "sha256": ""}])
    ledger.commit(root, entry)
    stale = _marker("uc", [])
    ledger.commit(root, stale)
    assert ledger.committed_ids(root) == {"ua", "uc"}
    markers = ledger.read_markers(root, ledger.committed_ids(root))
    assert markers["ua"] == entry
    removed, damaged = ledger.sweep(root, markers, {"ua"})
    assert damaged == []
    assert sorted(Path(p).name for p in removed) == [".ua-00001.tar.tmp", "ub-00000.tar",
                                                       "ub.parquet", "uc.json"]
    assert sorted(p.name for p in shards.iterdir()) == ["ua-00000.tar"]
    assert ledger.committed_ids(root) == {"ua"}
    (shards / "ua-00000.tar").write_bytes(b"x" * 9)  # damaged: the unit must be redone
    removed, damaged = ledger.sweep(root, ledger.read_markers(root, {"ua"}), {"ua"})
    assert damaged == ["ua"] and ledger.committed_ids(root) == set()


def test_a_different_build_at_the_same_root_is_refused_unless_restart(tmp_path):
    root = str(tmp_path)
    assert ledger.check_or_start(root, {"content_hash": "a"}, restart=False) is False
    assert ledger.check_or_start(root, {"content_hash": "a"}, restart=False) is True
    with pytest.raises(ConfigError, match="content_hash"):
        ledger.check_or_start(root, {"content_hash": "b"}, restart=False)
    ledger.commit(root, _marker("ux", []))
    assert ledger.check_or_start(root, {"content_hash": "b"}, restart=True) is False
    assert ledger.committed_ids(root) == set()


def test_input_is_an_ingest_folder_or_the_manifest_file(tmp_path):
    from longvid.pipelines.config import BuildConfig
    from longvid.pipelines.inputs import load_input
    from longvid.pipelines.plan import scan_manifest
    from longvid.schema import MANIFEST_SCHEMA, REJECTS_SCHEMA, Reject, VideoRecord
    from longvid.shards import write_table

    rows = [VideoRecord("generic", f"v{i}", f"/x/v{i}.mp4", f"l:{i}", "t").as_row()
            for i in range(3)]
    write_table(str(tmp_path / "manifest.parquet"), rows[::-1], MANIFEST_SCHEMA)
    a = load_input(BuildConfig(manifest=str(tmp_path)))
    b = load_input(BuildConfig(manifest=str(tmp_path / "manifest.parquet")))
    assert a.manifest_uri == b.manifest_uri == str(tmp_path / "manifest.parquet")
    assert a.rejects_uri is None and b.rejects_uri is None

    def fingerprint() -> str:
        return scan_manifest(load_input(BuildConfig(manifest=str(tmp_path))).manifest_uri
                             ).fingerprint

    first = fingerprint()
    assert scan_manifest(a.manifest_uri).num_rows == 3
    write_table(str(tmp_path / "manifest.parquet"), rows, MANIFEST_SCHEMA)  # row order only
    assert fingerprint() == first
    write_table(str(tmp_path / "rejects.parquet"),
                [Reject("generic", None, "l:9", "ingest", "bad_id", "l:9: bad").as_row()],
                REJECTS_SCHEMA)
    assert load_input(BuildConfig(manifest=str(tmp_path / "manifest.parquet"))).rejects_uri == \
        str(tmp_path / "rejects.parquet")
    write_table(str(tmp_path / "manifest.parquet"), rows[:2], MANIFEST_SCHEMA)
    assert fingerprint() != first
    with pytest.raises(ConfigError, match="no manifest"):
        load_input(BuildConfig(manifest=str(tmp_path / "nowhere")))


def test_progress_eta_comes_from_the_units_this_run_committed():
    from longvid.pipelines.build import Progress

    p = Progress(total=10, enabled=False, already=4)
    assert p.eta_seconds() is None
    p.started -= 30.0  # 30 s into the run
    for _ in range(3):
        p({"samples": 5, "rejects": 1, "source_seconds": 60.0})
    assert p.done == 3 and p.samples == 15 and p.source_seconds == 180.0
    assert abs(p.eta_seconds() - 30.0) < 1.0  # 3 units left at 10 s a unit
