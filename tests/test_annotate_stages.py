"""The annotation stages on real videos: sample-corpus videos (read from their official formats)
through probe, scan, segment, cut and every annotation stage, with tiny random models."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from longvid.annotate import stages as ast
from longvid.annotate.embed import cosine, pool
from longvid.annotate.frames import caption_segments, decode_frames, shot_spans
from longvid.annotate.qa import verify
from longvid.annotate.timeline import Event, Timeline, covered_fraction
from longvid.media.ffmpeg import run_ffmpeg
from longvid.schema import VideoRecord
from tests.fixtures.annotate import build_config, run_all_stages

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TASKS = {"long_video_description", "temporal_grounding", "event_relationship",
         "scene_relationship", "event_counting", "temporal_grounding_mc", "event_counting_mc"}


def meta(out) -> dict:
    return json.loads(out.members["json"])


def npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def test_every_sample_gets_captions_scores_embeddings_and_qa(annotated_works):
    outs = annotated_works.outputs()
    # the videos listed without any text: only the random captioner describes them, and random
    # words are not captions, so nothing does: they are rejected at the end
    textless = {r["record_id"] for r in annotated_works.records if not r["texts"]}
    assert "generic:no-text" in textless
    failed = {w.record_id: w for w in annotated_works.works if w.failed}
    assert set(failed) == textless
    for w in failed.values():
        assert {(r.stage, r.reason) for r in w.rejects} == {("filter", "filter:no_caption")}
    assert {o.row["bucket"] for o in outs} == {"short", "long"}
    for out in outs:
        m = meta(out)
        assert m["captions"], out.key
        assert all({"start", "end", "text", "kind", "origin"} <= set(c) for c in m["captions"])
        assert m["caption"] and out.members["txt"].decode() == m["caption"] == out.row["caption"]
        assert m["conversations"][0]["from"] == "human"
        assert m["conversations"][0]["value"].startswith("<image>\n")
        assert len(m["conversations"]) == 2 * len(m["qa"]) > 0
        s = m["scores"]
        assert s["duration"] == m["clip"]["duration"] and s["short_side"] == min(
            m["clip"]["width"], m["clip"]["height"])
        assert len(s["clip_sha256"]) == 64 and 0.0 <= s["black_fraction"] <= 1.0
        assert out.row["extra"]["scores"]["clip_sha256"] == s["clip_sha256"]
        assert set(out.members) >= {"mp4", "json", "txt", "emb.npy", "textemb.npy"}
        assert m["events"], out.key  # every sample has a timeline
        if m["bucket"] == "short":
            assert [q["task"] for q in m["qa"]] == ["short_caption"]
            assert m["qa"][0]["answer"] == m["caption"]
            if len(m["events"]) == 1 and m["events"][0]["origin"] == "main_caption":
                # nothing finer inside the clip: its main caption is its one event
                assert m["events"][0] == {"start": 0.0, "end": round(m["clip"]["duration"], 3),
                                          "text": m["caption"], "kind": "caption",
                                          "origin": "main_caption"}


def test_long_samples_have_timelines_and_answers_that_check_out(annotated_works):
    longs = [o for o in annotated_works.outputs() if o.row["bucket"] == "long"]
    assert len(longs) == 4  # ego4d, howto100m, hdvila (joined clips), miradata
    for out in longs:
        m = meta(out)
        tl = Timeline.from_dict({"duration": m["clip"]["duration"], "events": m["events"],
                                 "scenes": m["scenes"]})
        assert tl.events, out.key
        assert all(0 <= e.start < e.end <= tl.duration + 1e-6 for e in tl.events)
        assert [(e.start, e.end) for e in tl.events] == sorted((e.start, e.end)
                                                               for e in tl.events)
        got = {q["task"] for q in m["qa"]}
        assert "temporal_grounding" in got and got <= TASKS
        visual = [e for e in m["events"] if e["kind"] != "asr"]
        assert ("long_video_description" in got) == bool(visual)  # speech describes nothing
        speech = {e["text"] for e in m["events"] if e["kind"] == "asr"}
        assert not speech & {s["text"] for s in m["scenes"]}
        for q in m["qa"]:
            assert verify(q, tl) is None, (out.key, q)
        assert out.row["extra"]["qa"] == {t: sum(q["task"] == t for q in m["qa"])
                                          for t in dict.fromkeys(q["task"] for q in m["qa"])}


def test_events_come_from_source_texts_and_fill_from_clips_where_there_are_none(annotated_works):
    by_source = {}
    for w in annotated_works.works:
        for o in w.outputs:
            if o.row["bucket"] == "long":
                by_source.setdefault(w.source, meta(o))  # generic: only the 70 s one is long
    ego = by_source["ego4d"]
    source = [Event(**e) for e in ego["events"] if not e["origin"].startswith(("clip:", "model:"))]
    assert source and {e.kind for e in source} == {"narration"}  # summaries are not events
    fill = annotated_works.cfg.annotate.events.fill_coverage
    for e in ego["events"]:
        if e["origin"].startswith(("clip:", "model:")):  # only where narrations leave a gap
            assert covered_fraction(e["start"], e["end"], source) < fill
    hd = by_source["hdvila"]
    # the joined HD-VILA sample: one event per release clip, at the clip's span
    spans = {(round(t["start"], 3), round(t["end"], 3)) for t in hd["texts"]}
    assert {(e["start"], e["end"]) for e in hd["events"]} == spans
    assert "generic" not in by_source  # the text-less 70 s video is rejected (no caption)


RANDOM_TEXT_FIELDS = ("caption", "captions", "events", "scenes", "qa", "conversations")


def test_no_random_model_text_outside_lineage(annotated_works):
    """The tests' captioner has random weights: its captions are in lineage, nowhere else."""
    seen = 0
    for out in annotated_works.outputs():
        m = meta(out)
        lin = m["lineage"]["model_captions"]
        assert lin["random_weights"] is True
        randoms = [c["text"] for c in lin["random_text"]]
        assert randoms and all(c["origin"].startswith("model:random-") for c in lin["random_text"])
        seen += len(randoms)
        data = json.dumps({k: m.get(k) for k in RANDOM_TEXT_FIELDS}) + out.members["txt"].decode()
        assert "model:random-" not in data, out.key
        for text in randoms:
            assert text not in data, (out.key, text)


def test_allow_random_text_lets_model_captions_fill_samples_without_text(annotated_works,
                                                                         tmp_path):
    rec = next(r for r in annotated_works.records if r["record_id"] == "generic:no-text")
    cfg = build_config(allow_random_text=True)
    (work,) = run_all_stages([rec], cfg, tmp_path)
    assert not work.failed
    gen = work.outputs
    long = [meta(o) for o in gen if o.row["bucket"] == "long"]
    assert len(long) == 1 and long[0]["events"] and all(
        e["origin"].startswith(("clip:", "model:")) for e in long[0]["events"])
    assert any(e["origin"].startswith("clip:") for e in long[0]["events"])
    mc = cfg.annotate.model_captions
    words = set(mc.random_model["words"])
    for out in gen:
        m = meta(out)
        model_caps = [c for c in m["captions"] if c["origin"].startswith("model:random-")]
        assert "random_text" not in m["lineage"]["model_captions"]
        if m["bucket"] == "long":  # dense captions: one per shot, long shots per window
            segs = caption_segments(m["clip"]["duration"], m["shots"], mc.window_s,
                                    mc.max_segments)
            assert [(c["start"], c["end"]) for c in model_caps] == segs
            assert len(segs) >= len(m["shots"]) + 1
            assert all(b - a <= mc.window_s + 1e-3 for a, b in segs)
        else:
            assert len(model_caps) == 1
        for c in model_caps:
            assert set(c["text"].replace(",", " ").split()) - {"then"} <= words
        if m["bucket"] == "long":  # the segments tile the sample
            assert model_caps[0]["start"] == 0.0
            assert model_caps[-1]["end"] == pytest.approx(m["clip"]["duration"], abs=1e-3)
            assert all(a["end"] == b["start"] for a, b in zip(model_caps, model_caps[1:],
                                                               strict=False))
        assert m["caption"] == "; ".join(c["text"] for c in model_caps)
        assert m["lineage"]["model_captions"]["decoding"]["do_sample"] is False


def test_embeddings_are_the_pooled_frames_of_the_clip(annotated_works):
    cfg = annotated_works.cfg.annotate
    embedder = ast._cached("embedder", cfg.embed.model_dump_json(), ast._make_embedder)
    checked = 0
    for out in annotated_works.outputs():
        m = meta(out)
        video, text = npy(out.members["emb.npy"]), npy(out.members["textemb.npy"])
        assert video.shape == (32,) and abs(np.linalg.norm(video) - 1) < 1e-5
        times = m["embedding"]["frame_times"]
        frames = decode_frames(out.members["mp4"], times, m["clip"]["width"],
                               m["clip"]["height"], m["clip"]["keyframes"],
                               cfg.frames.short_side)
        e = embedder.encode_frames(frames)
        assert np.allclose(pool(e), video, atol=1e-5)
        assert np.allclose(embedder.encode_texts([m["caption"]])[0], text, atol=1e-5)
        assert m["scores"]["video_text_cosine"] == pytest.approx(cosine(video, text), abs=1e-5)
        assert out.row["extra"]["embedding"] == pytest.approx(video.tolist(), abs=1e-6)
        if m["bucket"] == "long":
            shots = shot_spans(m["clip"]["duration"], m["shots"])
            shot_embs = npy(out.members["shotemb.npy"])
            assert shot_embs.shape == (len(shots), 32)
            t = np.asarray(times)
            for (a, b), row in zip(shots, shot_embs, strict=True):
                assert np.allclose(pool(e[(t >= a - 1e-6) & (t < b - 1e-6)]), row, atol=1e-5)
        checked += 1
        if checked >= 6:
            break


def test_frames_are_released_after_the_last_model_stage(annotated_works):
    assert all(ast.FRAMES_NOTE not in w.notes for w in annotated_works.works)


# ---- filters ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def black_then_pattern(tmp_path_factory) -> Path:
    """6 s of black, then 6 s of a moving test pattern (a hard cut at 6 s)."""
    path = tmp_path_factory.mktemp("filters") / "black_then_pattern.mp4"
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "color=c=black:s=160x90:r=25:d=6",
                "-f", "lavfi", "-i", "testsrc=s=160x90:r=25:d=6",
                "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]",
                "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", str(path)],
               uri=str(path), reason="render_failed")
    return path


def record_for(path: Path, vid: str) -> dict:
    return VideoRecord(source="generic", video_id=vid, video_uri=str(path), locator=f"list:{vid}",
                       licence="test").as_row()


def test_black_samples_are_rejected_with_the_filter_and_its_value(black_then_pattern, tmp_path):
    cfg = build_config(["filter", "captions"])
    (work,) = run_all_stages([record_for(black_then_pattern, "bp")], cfg, tmp_path)
    assert not work.failed
    keys = [o.key for o in work.outputs]
    rejects = [r for r in work.rejects if r.stage == "filter"]
    assert len(rejects) == 1 and len(keys) == 1
    r = rejects[0]
    assert r.reason == "filter:black" and r.record_id == "generic:bp"
    assert "black = 1.0" in r.detail and "at most 0.9" in r.detail
    assert r.locator.endswith("#generic_bp_000000000_000006000")
    kept = meta(work.outputs[0])
    assert kept["span"]["start"] == pytest.approx(6.0, abs=0.05)
    assert kept["scores"]["black_fraction"] == 0.0


def test_a_video_whose_samples_all_fail_is_one_reject(black_then_pattern, tmp_path):
    cfg = build_config(["filter"], filters={"min_duration_s": 100.0})
    (work,) = run_all_stages([record_for(black_then_pattern, "bp")], cfg, tmp_path)
    assert work.failed and not work.outputs
    assert [(r.stage, r.reason) for r in work.rejects] == [("filter", "filter:min_duration")]
    assert "must be at least 100.0" in work.rejects[0].detail


def test_samples_without_any_caption_are_rejected_at_the_end(black_then_pattern, tmp_path):
    cfg = build_config(["captions", "filter_final"])  # no captioner: nothing describes it
    (work,) = run_all_stages([record_for(black_then_pattern, "bp")], cfg, tmp_path)
    assert work.failed
    assert [(r.stage, r.reason) for r in work.rejects] == [("filter", "filter:no_caption")]


def test_video_text_filter_uses_the_embedding_cosine(annotated_works, tmp_path):
    rec = next(r for r in annotated_works.records if r["source"] == "hdvila")
    cfg = build_config(["captions", "frames", "embed", "filter_final"],
                       filters={"min_video_text_cosine": 0.0})
    (work,) = run_all_stages([rec], cfg, tmp_path)
    kept = {o.key: meta(o)["scores"]["video_text_cosine"] for o in work.outputs}
    dropped = [r for r in work.rejects if r.reason == "filter:video_text"]
    assert all(v >= 0.0 for v in kept.values())
    for r in dropped:
        value = float(r.detail.split("video_text = ")[1].split(" ")[0])
        assert value < 0.0
    assert len(kept) + len(dropped) == len(
        [o for w in annotated_works.works if w.record_id == rec["record_id"] for o in w.outputs])


def test_frames_can_come_from_the_builds_single_decode_pass(annotated_works, tmp_path):
    """frames.from_decode_pass: the model stages see the scan stage's kept frames inside each
    sample (no second decode of the clip)."""
    rec = next(r for r in annotated_works.records if r["source"] == "ego4d")
    cfg = build_config(["filter", "captions", "frames", "model_captions", "embed"],
                       frames={"from_decode_pass": True, "min_pass_frames": 2})
    cfg = cfg.model_copy(update={"detect": cfg.detect.model_copy(update={"keep_frames": 40})})
    (work,) = run_all_stages([rec], cfg, tmp_path)
    assert not work.failed and len(work.kept_frames) == 40
    embedder = ast._cached("embedder", cfg.annotate.embed.model_dump_json(), ast._make_embedder)
    sources = set()
    for out in work.outputs:
        m = meta(out)
        a, b = m["span"]["start"], m["span"]["end"]
        kept = [(t - a, f) for t, f in work.kept_frames if a - 1e-6 <= t < b - 1e-6]
        source = m["lineage"]["model_captions"]["frames_from"]
        sources.add(source)
        assert source == ("decode_pass" if len(kept) >= 2 else "clip"), out.key
        if source == "decode_pass":
            assert m["embedding"]["frame_times"] == [round(t, 3) for t, _ in kept]
            w, h = m["clip"]["width"], m["clip"]["height"]
            s = 32 / min(w, h)
            frames = np.stack([cv2.resize(f, (round(w * s), round(h * s)),
                                          interpolation=cv2.INTER_AREA) for _, f in kept])
            video = npy(out.members["emb.npy"])
            assert np.allclose(pool(embedder.encode_frames(frames)), video, atol=1e-5)
    assert "decode_pass" in sources
