"""Perceptual fingerprints on real encoded video through the build's own stages: a video, a
copy of it re-encoded at another size and bitrate, and a different video. Copies pair shot
with shot; distinct shots of one video and different videos are never grouped."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from longvid.audit.eval_embed import eval_frame_hashes
from longvid.dedup import DedupConfig, find_duplicates
from longvid.dedup.fingerprint import from_hex, hamming
from longvid.dedup.leaks import fingerprint_leaks
from longvid.dedup.read import samples_from_rows
from longvid.media.ffmpeg import run_ffmpeg
from longvid.samples.synth import Shot, VideoSpec, render_video
from longvid.schema import TimedText, VideoRecord
from tests.fixtures.annotate import build_config, run_all_stages

FPS = Fraction(25)
# patterns with structure at low frequencies (grain and some phases of checkerboards and
# grids average out to a flat picture at the decode pass's 64x36 and hash to 0)
LOOKS_A = [("orange", "box", ""), ("red", "gradient", ""), ("cyan", "box", "")]
LOOKS_D = [("blue", "gradient", ""), ("yellow", "box", ""), ("pink", "gradient", "")]


def _render(path: Path, looks, seconds: float = 3.0, seed: int = 0) -> Path:
    n = int(seconds * FPS)
    shots = tuple(Shot(i * n, (i + 1) * n, c, p, d, seed + i) for i, (c, p, d) in enumerate(looks))
    render_video(VideoSpec(path, FPS, 320, 180, shots))
    return path


def _record(vid: str, path: Path, i: int) -> dict:
    return VideoRecord(source="generic", video_id=vid, video_uri=str(path), locator=f"list:{i}",
                       licence="test", texts=[TimedText(0.0, 1.0, f"video {vid}", "caption",
                                                        "text")]).as_row()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fp_videos")
    a = _render(root / "a.mp4", LOOKS_A)
    copy = root / "copy.mp4"  # other size, other bitrate, other encoder settings
    run_ffmpeg(["-y", "-i", "file:" + str(a), "-vf", "scale=426:240", "-c:v", "libx264",
                "-b:v", "200k", "-preset", "veryfast", "-g", "50", "file:" + str(copy)],
               uri=str(copy), reason="render_failed")
    d = _render(root / "d.mp4", LOOKS_D, seed=50)
    return {"a": a, "copy": copy, "d": d}


@pytest.fixture(scope="module")
def fingerprinted(videos, tmp_path_factory) -> list[dict]:
    """The samples of the three videos through the build's stages (probe to filter)."""
    records = [_record(v, p, i) for i, (v, p) in enumerate(videos.items())]
    work = tmp_path_factory.mktemp("fp_work")
    works = run_all_stages(records, build_config(["filter"]), work)
    return [o.row for w in works for o in w.outputs]


def test_every_sample_carries_a_fingerprint_of_structured_frames(fingerprinted):
    rows = fingerprinted
    by_video = {v: [r for r in rows if r["video_id"] == v] for v in ("a", "copy", "d")}
    assert len(by_video["a"]) == len(by_video["copy"]) == len(LOOKS_A)  # one sample per shot
    assert len(by_video["d"]) == len(LOOKS_D)
    for r in rows:
        fp = from_hex(r["extra"]["fingerprint"])
        assert fp is not None and (fp[0] != 0).all(), r["key"]


def test_copies_pair_shot_with_shot_and_nothing_else_is_grouped(fingerprinted):
    rows = fingerprinted
    result = find_duplicates(samples_from_rows(rows), DedupConfig(), exact=True)
    t = result.table.to_pylist()
    span = {r["key"]: (r["video_id"], round(r["span_start"], 1)) for r in rows}
    pairs = sorted((span[d["kept_key"]], span[d["key"]]) for d in t)
    starts = sorted(round(r["span_start"], 1) for r in rows if r["video_id"] == "a")
    # every shot of the copy is a duplicate of the same shot of a (a's keys sort first)
    assert pairs == [(("a", s), ("copy", s)) for s in starts]
    assert {d["signal"] for d in t} == {"fingerprint"}  # other bytes: not exact
    assert all(d["hamming"] <= DedupConfig().fingerprint_max_bits for d in t)
    assert result.stats["fingerprinted"] == len(rows)


def test_distinct_shots_and_other_videos_are_far_apart(fingerprinted):
    rows = fingerprinted
    fps = {r["key"]: from_hex(r["extra"]["fingerprint"]) for r in rows}
    span = {r["key"]: (r["video_id"], round(r["span_start"], 1)) for r in rows}
    keys = sorted(fps)
    limit = DedupConfig().fingerprint_max_bits
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            copies = {span[a][0], span[b][0]} == {"a", "copy"} and span[a][1] == span[b][1]
            bits = int(hamming(fps[a][0], fps[b][0]))
            if copies:
                assert bits <= limit, (a, b, bits)
            else:  # a margin, not just the limit: unrelated pictures differ in ~half the bits
                assert bits > 2 * limit, (a, b, bits)
    assert np.isfinite(limit)


def test_leakage_finds_the_samples_of_a_re_encoded_copy_of_an_evaluation_video(videos,
                                                                            fingerprinted):
    # the corpus holds the copy (other size and bitrate) and d; the evaluation set holds a
    rows = [r for r in fingerprinted if r["video_id"] != "a"]
    s = samples_from_rows(rows)
    h, c = eval_frame_hashes(str(videos["a"]))
    h2, c2 = eval_frame_hashes(str(videos["d"]))
    eval_h, eval_c = np.concatenate([h, h2]), np.concatenate([c, c2])
    owner = np.r_[np.zeros(len(h), np.int64), np.ones(len(h2), np.int64)]
    leaks = fingerprint_leaks(s.fp_hashes, s.fp_colours, s.fp_valid, eval_h, eval_c, owner,
                              DedupConfig())
    got = {(rows[x.row]["video_id"], x.video) for x in leaks}
    n_copy = sum(r["video_id"] == "copy" for r in rows)
    assert sorted(rows[x.row]["key"] for x in leaks if x.video == 0) == sorted(
        r["key"] for r in rows if r["video_id"] == "copy") and n_copy == len(LOOKS_A)
    assert got == {("copy", 0), ("d", 1)}  # d is in the evaluation set too: its own frames
    only_a = fingerprint_leaks(s.fp_hashes, s.fp_colours, s.fp_valid, h, c,
                               np.zeros(len(h), np.int64), DedupConfig())
    assert {rows[x.row]["video_id"] for x in only_a} == {"copy"}


def test_audit_fingerprint_leakage_a_batch_at_a_time(videos, fingerprinted):
    # the audit compares the corpus with the evaluation frames a batch of rows at a time: two
    # rows per batch must report what one batch of every row does (the re-encoded copy of a)
    from longvid.audit.config import AuditConfig
    from longvid.pipelines.audit import fingerprint_check

    rows = [r for r in fingerprinted if r["video_id"] != "a"]
    cfg = AuditConfig()
    whole = fingerprint_check([samples_from_rows(rows)], [str(videos["a"])], cfg)
    batched = fingerprint_check((samples_from_rows(rows[i:i + 2]) for i in range(0, len(rows), 2)),
                                [str(videos["a"])], cfg)
    assert batched == whole and len(rows) > 2
    copies = sorted(r["key"] for r in rows if r["video_id"] == "copy")
    assert whole["checked"] and whole["leaked_keys"] == copies
    assert sorted(m["key"] for m in whole["results"][0]["matches"]) == copies
