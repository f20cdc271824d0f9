"""The annotation stages of the build, one class each (``STAGES`` below; the build's
``stage_class`` finds them by name). They run after ``cut`` on every sample of a video and
rewrite its members: ``KEY.json`` gains ``captions``, ``events``/``scenes``, ``qa`` and
``conversations``, ``embedding`` and more ``scores``; ``KEY.txt`` may gain a model caption;
``KEY.emb.npy`` (+ ``KEY.textemb.npy``, ``KEY.shotemb.npy``) appear.

Order in ``stages``: ``filter``, ``captions`` and ``frames`` are cpu stages (next to the clips, in
the unit task); ``model_captions``, ``embed`` and ``qa_rewrite`` hold models and run in the model
pool; ``events`` and ``qa`` are cheap but need the model captions, so they run with the model
stages (after them). Models are loaded once per worker process and reused across units.

A filtered sample is removed and becomes a reject row (stage ``filter``, reason
``filter:<name>``, the value and the limit in the detail); when every sample of a video is
filtered, the video is one reject row with the first filter's reason.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from longvid.annotate import frames as fr
from longvid.annotate.captions import source_captions
from longvid.annotate.config import AnnotateConfig
from longvid.annotate.embed import ClipEmbedder, cosine, pool
from longvid.annotate.provenance import text_allowed
from longvid.annotate.qa import QAItem, conversations, make_qa, short_caption_qa
from longvid.annotate.scores import cheap_filter, final_filter, sample_scores
from longvid.annotate.timeline import SPEECH_KINDS, Event, Timeline, build_timeline
from longvid.stages.base import BatchedStage, Stage
from longvid.stages.work import SampleOutput, VideoWork

FRAMES_NOTE = "annotate_frames"  # work.notes key: {sample key: (times [T], frames [T,H,W,3])}
FRAME_USERS = ("model_captions", "embed")
FRAMES_SOURCE_NOTE = "annotate_frames_source"  # work.notes key: {sample key: decode_pass | clip}


# ---- helpers shared by the stages --------------------------------------------------------


def annotate_cfg(stage: Stage) -> AnnotateConfig:
    return stage.cfg.annotate


def read_meta(out: SampleOutput) -> dict[str, Any]:
    return json.loads(out.members["json"])


def write_meta(out: SampleOutput, meta: dict[str, Any]) -> None:
    out.members["json"] = json.dumps(meta, sort_keys=True, ensure_ascii=False,
                                     allow_nan=False).encode("utf-8")


def set_caption(out: SampleOutput, meta: dict[str, Any], text: str) -> None:
    """Make ``text`` the main caption everywhere it appears (KEY.json, KEY.txt, the row)."""
    meta["caption"] = text
    out.members["txt"] = text.encode("utf-8")
    out.row["caption"] = text


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def duration_of(meta: dict[str, Any]) -> float:
    return float(meta["clip"]["duration"])


def reject_outputs(work: VideoWork, drop: dict[str, tuple[str, str]]) -> None:
    """Remove the samples in ``drop`` (key → (reason, detail)) as ``filter`` rejects; a video
    left without samples becomes one reject row with the first reason."""
    if not drop:
        return
    kept = []
    for out in work.outputs:
        if out.key in drop:
            reason, detail = drop[out.key]
            work.reject_sample("filter", reason, out.key, detail)
            work.notes.get(FRAMES_NOTE, {}).pop(out.key, None)  # released frames stay released
        else:
            kept.append(out)
    work.outputs = kept
    if not kept:
        first = drop[min(drop)]
        work.fail("filter", first[0], f"{work.uri}: every sample was filtered; {first[1]}")


def _frames(work: VideoWork) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return work.notes.setdefault(FRAMES_NOTE, {})


def frames_of(work: VideoWork, out: SampleOutput, meta: dict[str, Any],
              cfg: AnnotateConfig) -> tuple[np.ndarray, np.ndarray]:
    """(times [T], frames [T, H, W, 3]) of a sample: from the frames stage, else from the
    build's decode pass (``frames.from_decode_pass``), else decoded now."""
    got = _frames(work).get(out.key)
    if got is None:
        got = sample_frames(work, out, meta, cfg)
        _frames(work)[out.key] = got
    return got


def sample_frames(work: VideoWork, out: SampleOutput, meta: dict[str, Any],
                  cfg: AnnotateConfig) -> tuple[np.ndarray, np.ndarray]:
    """A sample's frames from the decode pass when configured and there are enough of them,
    else decoded from its clip; which one is recorded in ``work.notes[FRAMES_SOURCE_NOTE]``."""
    got = pass_frames(work, meta, cfg) if cfg.frames.from_decode_pass else None
    source = "decode_pass"
    if got is None:
        got, source = decode_sample(out, meta, cfg), "clip"
    work.notes.setdefault(FRAMES_SOURCE_NOTE, {})[out.key] = source
    return got


def pass_frames(work: VideoWork, meta: dict[str, Any],
                cfg: AnnotateConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """The scan stage's kept frames inside the sample (times made sample-relative), resized to
    the frames' decode size; None when fewer than ``min_pass_frames``."""
    import cv2

    start, end = float(meta["span"]["start"]), float(meta["span"]["end"])
    inside = [(t - start, f) for t, f in work.kept_frames if start - 1e-6 <= t < end - 1e-6]
    if len(inside) < cfg.frames.min_pass_frames:
        return None
    clip = meta["clip"]
    w, h = fr.decode_size(int(clip["width"]), int(clip["height"]), cfg.frames.short_side)
    images = np.stack([f if f.shape[:2] == (h, w) else
                       cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
                       for _, f in inside])  # [T, H, W, 3] uint8
    return np.asarray([round(t, 6) for t, _ in inside], dtype=np.float64), images


def decode_sample(out: SampleOutput, meta: dict[str, Any],
                  cfg: AnnotateConfig) -> tuple[np.ndarray, np.ndarray]:
    clip = meta["clip"]
    dur = duration_of(meta)
    times = fr.sample_times(dur, meta["bucket"], meta.get("shots") or [], cfg.frames)
    images = fr.decode_frames(out.members["mp4"], times, int(clip["width"]), int(clip["height"]),
                              clip.get("keyframes"), cfg.frames.short_side)
    return np.asarray(times, dtype=np.float64), images


def release_frames(stage: Stage, work: VideoWork) -> None:
    """Drop the decoded frames once no later stage in the list needs them."""
    names = list(stage.cfg.stages)
    later = names[names.index(stage.name) + 1:] if stage.name in names else []
    if not any(n in FRAME_USERS for n in later):
        work.notes.pop(FRAMES_NOTE, None)


@functools.lru_cache(maxsize=8)
def _cached(kind: str, cfg_json: str, factory: Callable[[str], Any]) -> Any:
    """One model per process and config (a worker that runs many units loads it once)."""
    return factory(cfg_json)


# ---- cpu stages ---------------------------------------------------------------------------


class SampleFilter(Stage):
    """Cheap scores (duration, size, black/static frames and motion from the decode pass, the
    clip's SHA-256) and the filters that use them."""

    name: ClassVar[str] = "filter"

    def __call__(self, work: VideoWork) -> VideoWork:
        cfg = annotate_cfg(self).filters
        drop: dict[str, tuple[str, str]] = {}
        for out in work.outputs:
            meta = read_meta(out)
            scores = sample_scores(meta, out.members["mp4"])
            meta["scores"] = scores
            extra = out.row.setdefault("extra", {})
            extra["scores"] = scores
            extra["locator"] = work.record.get("locator")  # for a corpus-level reject row
            write_meta(out, meta)
            hit = cheap_filter(scores, cfg)
            if hit is not None:
                drop[out.key] = hit.reject(work.uri, out.key)
        reject_outputs(work, drop)
        return work


class SourceCaptions(Stage):
    """``captions``: the sample's source texts as caption records (kind and origin kept)."""

    name: ClassVar[str] = "captions"

    def __call__(self, work: VideoWork) -> VideoWork:
        for out in work.outputs:
            meta = read_meta(out)
            meta["captions"] = source_captions(meta.get("texts") or [], duration_of(meta))
            out.row.setdefault("extra", {})["captions"] = len(meta["captions"])
            write_meta(out, meta)
        return work


class Frames(Stage):
    """Each sample's frames for the model stages: from the build's decode pass when
    ``frames.from_decode_pass`` (no second decode), else decoded from the cut clip, small."""

    name: ClassVar[str] = "frames"

    def __call__(self, work: VideoWork) -> VideoWork:
        cfg = annotate_cfg(self)
        store = _frames(work)
        for out in work.outputs:
            if out.key not in store:
                store[out.key] = sample_frames(work, out, read_meta(out), cfg)
        return work


# ---- model stages -------------------------------------------------------------------------


def _make_captioner(cfg_json: str):
    from longvid.annotate.captioner import Captioner
    from longvid.annotate.config import ModelCaptionsConfig

    return Captioner(ModelCaptionsConfig.model_validate_json(cfg_json))


def _make_embedder(cfg_json: str):
    from longvid.annotate.config import EmbedConfig

    return ClipEmbedder(EmbedConfig.model_validate_json(cfg_json))


def _make_rewriter(cfg_json: str):
    from longvid.annotate.config import RewriteConfig
    from longvid.annotate.rewriter import Rewriter

    return Rewriter(RewriteConfig.model_validate_json(cfg_json))


def voronoi_spans(times: list[float], duration: float) -> list[tuple[float, float]]:
    """Each frame's share of the sample: from the midpoint with the previous frame to the
    midpoint with the next (the first from 0, the last to the end)."""
    cuts = [(a + b) / 2 for a, b in zip(times, times[1:], strict=False)]
    edges = [0.0] + cuts + [duration]
    return [(round(edges[i], 3), round(edges[i + 1], 3)) for i in range(len(times))]


class ModelCaptions(BatchedStage):
    """A vision-language captioner over sampled frames: a short sample gets one caption (its
    frames' captions, repeats dropped, joined); a long sample dense visual captions, one per
    segment (each shot, long shots per window), which form its visual timeline. Batched: the
    frames of every video of a model-actor call go through shared ``generate`` calls."""

    name: ClassVar[str] = "model_captions"
    kind: ClassVar[str] = "model"

    def captioner(self):
        return _cached("captioner", annotate_cfg(self).model_captions.model_dump_json(),
                       _make_captioner)

    def prepare(self, work: VideoWork) -> dict[str, Any]:
        """Per sample: its metadata, the chosen frame times, their segments and the frames."""
        cfg = annotate_cfg(self)
        mc = cfg.model_captions
        self.captioner()  # load (once) before the shared pass, as the per-video path did
        metas, chosen, spans, batch = [], [], [], []
        for out in work.outputs:
            meta = read_meta(out)
            times, images = frames_of(work, out, meta, cfg)
            dur = duration_of(meta)
            if meta["bucket"] == "long" and mc.long_segments == "shots":
                # dense captions: one per segment, from the frame nearest its middle
                segs = fr.caption_segments(dur, meta.get("shots") or [], mc.window_s,
                                           mc.max_segments)
                idx = [fr.nearest(list(times), (a + b) / 2) for a, b in segs]
            else:
                n = mc.frames_long if meta["bucket"] == "long" else mc.frames_short
                idx = fr.pick(list(times), dur, n)
                segs = voronoi_spans([float(times[i]) for i in idx], dur)
            metas.append(meta)
            chosen.append([float(times[i]) for i in idx])
            spans.append(segs)
            batch.append(images[idx])  # [k, H, W, 3]
        return {"metas": metas, "chosen": chosen, "spans": spans, "frames": batch}

    def infer(self, prepared: list[dict[str, Any]]) -> list[list[str]]:
        """Every chosen frame of every video in shared ``generate`` calls; per video its
        captions, frame by frame."""
        frames = [f for p in prepared for images in p["frames"] for f in images]
        texts = self.captioner().caption(frames) if frames else []
        out, pos = [], 0
        for p in prepared:
            n = sum(len(images) for images in p["frames"])
            out.append(texts[pos : pos + n])
            pos += n
        return out

    def finish(self, work: VideoWork, prepared: dict[str, Any], texts: list[str]) -> None:
        cfg = annotate_cfg(self)
        mc = cfg.model_captions
        captioner = self.captioner()
        pos = 0
        for out, meta, times, segs in zip(work.outputs, prepared["metas"], prepared["chosen"],
                                          prepared["spans"], strict=True):
            caps, pos = texts[pos : pos + len(times)], pos + len(times)
            dur = duration_of(meta)
            new = []
            if meta["bucket"] == "long":
                for (a, b), text in zip(segs, caps, strict=True):
                    if text:
                        new.append(_cap(a, b, text, captioner.name))
            else:
                text = ", then ".join(dict.fromkeys(t for t in caps if t))
                if text:
                    new.append(_cap(0.0, round(dur, 3), text, captioner.name))
            lineage = {**captioner.lineage(),
                       "frames_from": work.notes.get(FRAMES_SOURCE_NOTE, {}).get(out.key)}
            if not text_allowed(captioner.random, cfg.allow_random_text):
                # random words: shown in lineage (the stage ran), never data
                lineage["random_text"], new = new, []
            meta.setdefault("captions", []).extend(new)
            meta["lineage"]["model_captions"] = lineage
            if mc.main_if_missing and not meta.get("caption") and new:
                set_caption(out, meta, "; ".join(c["text"] for c in new))
            write_meta(out, meta)
        release_frames(self, work)


def _cap(a: float, b: float, text: str, origin: str) -> dict[str, Any]:
    return {"start": a, "end": b, "text": text, "kind": "caption", "origin": origin,
            "clipped": False}


class Embed(BatchedStage):
    """open_clip: frame embeddings pooled per sample (``KEY.emb.npy``) and per shot of a long
    sample (``KEY.shotemb.npy``), the main caption's text embedding (``KEY.textemb.npy``), and
    their cosine as the video–text score. Batched: the frames (and captions) of every video of a
    model-actor call go through shared forward passes."""

    name: ClassVar[str] = "embed"
    kind: ClassVar[str] = "model"

    def embedder(self) -> ClipEmbedder:
        return _cached("embedder", annotate_cfg(self).embed.model_dump_json(), _make_embedder)

    def prepare(self, work: VideoWork) -> dict[str, Any]:
        """Per sample: its metadata, frame times, frames ``[T, H, W, 3]`` and main caption."""
        cfg = annotate_cfg(self)
        self.embedder()  # load (once) before the shared pass, as the per-video path did
        metas, spans, batch = [], [], []
        for out in work.outputs:
            meta = read_meta(out)
            times, images = frames_of(work, out, meta, cfg)
            metas.append(meta)
            spans.append(times)
            batch.append(images)
        return {"metas": metas, "times": spans, "frames": batch,
                "captions": [m.get("caption") or "" for m in metas]}

    def infer(self, prepared: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Frame embeddings ``[sum T, D]`` and caption embeddings ``[M, D]`` of every video in
        shared passes; per video its rows of each."""
        embedder = self.embedder()
        groups = [images for p in prepared for images in p["frames"]]
        embs = embedder.encode_frames(groups)  # [frames of all videos, D]
        texts = [c for p in prepared for c in p["captions"] if c]
        text_embs = embedder.encode_texts(texts) if texts else None  # [M, D]
        out, pos, tpos = [], 0, 0
        for p in prepared:
            n = sum(len(images) for images in p["frames"])
            m = sum(1 for c in p["captions"] if c)
            out.append({"frames": embs[pos : pos + n],
                        "texts": None if text_embs is None else text_embs[tpos : tpos + m]})
            pos, tpos = pos + n, tpos + m
        return out

    def finish(self, work: VideoWork, prepared: dict[str, Any], result: dict[str, Any]) -> None:
        embedder = self.embedder()
        metas, spans, captions = prepared["metas"], prepared["times"], prepared["captions"]
        embs = result["frames"]
        with_text = [i for i, c in enumerate(captions) if c]
        text_of = dict(zip(with_text, [] if result["texts"] is None else result["texts"],
                           strict=True))
        pos = 0
        for i, (out, meta, times) in enumerate(zip(work.outputs, metas, spans, strict=True)):
            e, pos = embs[pos : pos + len(times)], pos + len(times)
            video = pool(e)
            out.members["emb.npy"] = npy_bytes(video)
            info: dict[str, Any] = {**embedder.lineage(), "frame_times": [round(float(t), 3)
                                                                          for t in times]}
            if meta["bucket"] == "long":
                shots = fr.shot_spans(duration_of(meta), meta.get("shots") or [])
                rows = [shot_embedding(e, times, a, b) for a, b in shots]
                out.members["shotemb.npy"] = npy_bytes(np.stack(rows))
                info["shots"] = [[round(a, 3), round(b, 3)] for a, b in shots]
            score = None
            if i in text_of:
                out.members["textemb.npy"] = npy_bytes(text_of[i])
                score = round(cosine(video, text_of[i]), 6)
            info["video_text_cosine"] = score
            meta["embedding"] = info
            meta.setdefault("scores", {})["video_text_cosine"] = score
            extra = out.row.setdefault("extra", {})
            extra["embedding"] = [round(float(x), 6) for x in video]
            extra.setdefault("scores", {})["video_text_cosine"] = score
            write_meta(out, meta)
        release_frames(self, work)


def shot_embedding(e: np.ndarray, times: np.ndarray, a: float, b: float) -> np.ndarray:
    """Pooled embedding of the frames in ``[a, b)``; a shot without a frame of its own (more
    shots than frames) takes the frame nearest to its middle."""
    inside = (times >= a - 1e-6) & (times < b - 1e-6)
    if inside.any():
        return pool(e[inside])
    return e[int(np.argmin(np.abs(times - (a + b) / 2)))]


class Events(Stage):
    """The timeline of each sample (``events`` and ``scenes`` in KEY.json) from its source
    texts, the captions of the short clips of the same video inside it, and model captions. A
    short sample with nothing finer gets its main caption as one event spanning it."""

    name: ClassVar[str] = "events"
    kind: ClassVar[str] = "model"  # needs the model captions, so it runs after them

    def __call__(self, work: VideoWork) -> VideoWork:
        cfg = annotate_cfg(self).events
        metas = [read_meta(out) for out in work.outputs]
        shorts = [m for m in metas if m["bucket"] == "short"]
        for out, meta in zip(work.outputs, metas, strict=True):
            if cfg.long_only and meta["bucket"] != "long":
                continue
            tl = timeline_of(meta, shorts, cfg)
            if not tl.events and meta["bucket"] == "short" and meta.get("caption"):
                tl.events = [Event(0.0, round(duration_of(meta), 3), meta["caption"], "caption",
                                   "main_caption")]
            meta["events"] = [e.as_dict() for e in tl.events]
            meta["scenes"] = [s.as_dict() for s in tl.scenes]
            out.row.setdefault("extra", {})["events"] = len(tl.events)
            write_meta(out, meta)
        return work


def caption_is_speech(meta: dict[str, Any]) -> bool:
    """Whether a sample's main caption is its speech (ASR joined, the cut stage's fallback when
    nothing describes the clip) rather than a description of what is shown."""
    texts = meta.get("texts") or []
    caption = meta.get("caption") or ""
    if any(t.get("text", "").strip() == caption for t in texts
           if t.get("kind") not in SPEECH_KINDS):
        return False
    return any(t.get("kind") in SPEECH_KINDS and t.get("text", "").strip()
               and " ".join(t["text"].split()) in caption for t in texts)


def timeline_of(meta: dict[str, Any], shorts: list[dict[str, Any]], cfg) -> Timeline:
    """The timeline of one sample; ``shorts`` are the short samples of the same video."""
    start, end = float(meta["span"]["start"]), float(meta["span"]["end"])
    dur = duration_of(meta)
    caps = meta.get("captions")
    if caps is None:
        caps = source_captions(meta.get("texts") or [], dur)
    source = [c for c in caps if not str(c.get("origin", "")).startswith("model:")]
    clips = [c for c in caps if str(c.get("origin", "")).startswith("model:")
             and c.get("start") is not None and c.get("end") is not None]
    for s in shorts:
        a, b = float(s["span"]["start"]), float(s["span"]["end"])
        if s["key"] == meta["key"] or a < start - 1e-3 or b > end + 1e-3 or not s.get("caption"):
            continue
        if caption_is_speech(s):  # what was said there: already an ASR event, never a scene
            continue
        clips.append({"start": round(a - start, 3), "end": round(b - start, 3),
                      "text": s["caption"], "kind": "caption", "origin": f"clip:{s['key']}"})
    return build_timeline(source, dur, meta.get("shots") or [], clips, cfg)


def count_groups(stage: Stage, tl: Timeline):
    """Events grouped by meaning for counting: None (verb-object keys, model-free) or, with
    ``qa.count_method: embedding``, by open_clip text-embedding cosine (trained weights only:
    the config refuses random ones)."""
    from longvid.annotate.counting import embedding_groups

    cfg = annotate_cfg(stage)
    if cfg.qa.count_method != "embedding":
        return None
    embedder = _cached("embedder", cfg.embed.model_dump_json(), _make_embedder)
    return embedding_groups(tl.events, embedder.encode_texts, cfg.qa.count_similarity,
                            cfg.qa.count_merge_gap_s, random_weights=cfg.embed.pretrained is None)


class QA(Stage):
    """LongVid QA of the five task types from each long sample's timeline (``qa`` and LLaVA
    ``conversations`` in KEY.json); a short sample gets one caption question."""

    name: ClassVar[str] = "qa"
    kind: ClassVar[str] = "model"  # follows events

    def __call__(self, work: VideoWork) -> VideoWork:
        cfg = annotate_cfg(self).qa
        seed = self.cfg.seed
        for out in work.outputs:
            meta = read_meta(out)
            items = []
            if meta["bucket"] == "long" and meta.get("events"):
                tl = Timeline.from_dict({"duration": duration_of(meta), "events": meta["events"],
                                         "scenes": meta.get("scenes") or []})
                items = make_qa(tl, out.key, seed, cfg, count_groups(self, tl))
            elif meta["bucket"] == "short" and cfg.short_caption_qa and meta.get("caption"):
                items = [short_caption_qa(meta["caption"], out.key, seed)]
            meta["qa"] = [it.as_dict() for it in items]
            meta["conversations"] = conversations(items)
            extra = out.row.setdefault("extra", {})
            extra["qa"] = task_counts(meta["qa"])
            write_meta(out, meta)
        return work


def _make_llm_qa(cfg_json: str):
    from longvid.annotate.config import LLMQAConfig
    from longvid.annotate.llm_qa import LLMQAWriter

    return LLMQAWriter(LLMQAConfig.model_validate_json(cfg_json))


def task_counts(items: list[dict[str, Any]]) -> dict[str, int]:
    """QA items per task, tasks in first-seen order (the build summary and the audit sum them)."""
    return {t: sum(q["task"] == t for q in items) for t in dict.fromkeys(q["task"] for q in items)}


class LLMQA(Stage):
    """LLM-written QA from each long sample's timeline, decoding constrained to a JSON schema,
    every item validated (:mod:`longvid.annotate.llm_qa`); accepted items replace the template
    items of their task. A random-weight LLM's items are only counted (lineage), never data."""

    name: ClassVar[str] = "llm_qa"
    kind: ClassVar[str] = "model"  # after events and qa

    def __call__(self, work: VideoWork) -> VideoWork:
        from longvid.annotate.llm_qa import merge_llm_items

        cfg = annotate_cfg(self)
        writer = _cached("llm_qa", cfg.llm_qa.model_dump_json(), _make_llm_qa)
        allowed = text_allowed(writer.random, cfg.allow_random_text)
        for out in work.outputs:
            meta = read_meta(out)
            if meta["bucket"] != "long" or not meta.get("events"):
                continue
            tl = Timeline.from_dict({"duration": duration_of(meta), "events": meta["events"],
                                     "scenes": meta.get("scenes") or []})
            context = [c["text"] for c in meta.get("captions") or []
                       if c.get("scope") == "video" or c.get("start") is None]
            items, stats, raw = writer.write(tl, context, out.key, self.cfg.seed)
            lineage = {**writer.lineage(), **stats.as_dict()}
            if allowed:
                qa = merge_llm_items([QAItem(**q) for q in meta.get("qa") or []], items)
                meta["qa"] = [it.as_dict() for it in qa]
                meta["conversations"] = conversations(qa)
            else:
                lineage["random_text"] = raw  # random words: lineage only
            meta["lineage"]["llm_qa"] = lineage
            extra = out.row.setdefault("extra", {})
            extra["llm_qa"] = stats.as_dict()
            extra["qa"] = task_counts(meta["qa"])
            write_meta(out, meta)
        return work


class QARewrite(Stage):
    """Optional LLM rewriter of the template questions (answers and their checks unchanged);
    a rewrite that drops a quoted phrase or a number of the original is not used."""

    name: ClassVar[str] = "qa_rewrite"
    kind: ClassVar[str] = "model"

    def __call__(self, work: VideoWork) -> VideoWork:
        cfg = annotate_cfg(self)
        rewriter = _cached("rewriter", cfg.rewrite.model_dump_json(), _make_rewriter)
        for out in work.outputs:
            meta = read_meta(out)
            if not meta.get("qa"):
                continue
            items = [QAItem(**q) for q in meta["qa"]]
            apply = text_allowed(rewriter.random, cfg.allow_random_text)
            usable = rewriter.rewrite(items, apply=apply)
            meta["qa"] = [it.as_dict() for it in items]
            meta["conversations"] = conversations(items)
            lineage = rewriter.lineage()
            if not apply:
                lineage["random_text"] = usable  # random words: lineage only
            meta["lineage"]["qa_rewrite"] = lineage
            write_meta(out, meta)
        return work


class FinalFilter(Stage):
    """The filters that need the model stages' output: no caption at all, video–text cosine."""

    name: ClassVar[str] = "filter_final"
    kind: ClassVar[str] = "model"  # after embed and the captioners

    def __call__(self, work: VideoWork) -> VideoWork:
        cfg = annotate_cfg(self).filters
        drop: dict[str, tuple[str, str]] = {}
        for out in work.outputs:
            meta = read_meta(out)
            has_caption = bool(meta.get("caption") or meta.get("captions"))
            hit = final_filter(meta.get("scores") or {}, has_caption, cfg)
            if hit is not None:
                drop[out.key] = hit.reject(work.uri, out.key)
        reject_outputs(work, drop)
        return work


STAGES: dict[str, type[Stage]] = {
    cls.name: cls
    for cls in (SampleFilter, SourceCaptions, Frames, ModelCaptions, Embed, Events, QA,
                LLMQA, QARewrite, FinalFilter)
}
