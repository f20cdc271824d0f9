"""Cut: each planned span becomes a clip (stream copy when it starts on a keyframe and the
bucket's profile does not ask for normalisation, else a re-encode with that profile), plus its
``KEY.json`` (everything about the sample) and ``KEY.txt`` (the main caption)."""

from __future__ import annotations

import bisect
import json
from contextlib import ExitStack
from typing import Any

import numpy as np

from longvid.dedup.fingerprint import clip_fingerprint, to_hex
from longvid.errors import LongvidError
from longvid.media.container import Opened, open_video
from longvid.media.cut import CutResult, cut_copy, transcode
from longvid.pipelines.captions import main_caption, mark_video_level
from longvid.pipelines.config import CutProfile
from longvid.schema import sample_key
from longvid.segment.policy import retime_texts
from longvid.stages.base import Stage, reason_of
from longvid.stages.work import SampleOutput, SampleSpec, VideoWork

SAMPLE_FORMAT = "longvid-sample-v1"
WHOLE_VIDEO_TOL_S = 0.5  # a sample this close to both ends is the whole video (its texts fit)


def starts_on_keyframe(start: float, keyframes: list[float], fps: float) -> bool:
    """Whether a keyframe is at ``start`` (within half a frame, at least 1 ms)."""
    tol = max(1e-3, 0.5 / fps) if fps > 0 else 1e-3
    i = bisect.bisect_left(keyframes, start - tol)
    return i < len(keyframes) and abs(keyframes[i] - start) <= tol


def cut_mode(spec: SampleSpec, keyframes: list[float], fps: float, profile: CutProfile) -> str:
    """``copy`` when the span starts on a keyframe and no normalisation is asked; else
    ``encode``."""
    if not profile.normalize and starts_on_keyframe(spec.start, keyframes, fps):
        return "copy"
    return "encode"


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def span_scores(work: VideoWork, start: float, end: float, black: float) -> dict[str, Any]:
    """Cheap scores of the frames in ``[start, end)`` from the decode pass."""
    if work.frame_times is None or not len(work.frame_times):
        return {}
    lo, hi = np.searchsorted(work.frame_times, [start - 1e-6, end - 1e-6])
    if hi <= lo:
        return {}
    luma = work.luma[lo:hi]
    motion = work.motion[lo + 1 : hi] if hi - lo > 1 else work.motion[lo:hi]
    return {
        "motion_mean": _r(float(motion.mean())),
        "luma_mean": _r(float(luma.mean())),
        "black_fraction": _r(float((luma < black).mean())),
        "static_fraction": _r(float((motion < 0.5).mean())),
        "frames_scored": int(hi - lo),
    }


def span_fingerprint(work: VideoWork, start: float, end: float) -> dict[str, str] | None:
    """The perceptual fingerprint of ``[start, end)`` from the decode pass's frame hashes."""
    if work.frame_hashes is None or work.frame_times is None:
        return None
    fp = clip_fingerprint(work.frame_times, work.frame_hashes, work.frame_colours, start, end)
    return None if fp is None else to_hex(fp)


class Cut(Stage):
    name = "cut"

    def __call__(self, work: VideoWork) -> VideoWork:
        with ExitStack() as stack:
            self.cut_all(work, stack)
        if work.specs and not work.outputs:
            first = next((r for r in work.rejects if r.stage == self.name), None)
            work.fail(
                self.name,
                first.reason if first else "cut_failed",
                f"{work.uri}: none of {len(work.specs)} samples could be cut",
            )
        return work

    def cut_all(self, work: VideoWork, stack: ExitStack) -> None:
        """Cut every planned sample. The source is opened once, at the first copy, and shared
        by all the copies (``stack`` closes it): opening it per clip was half the cut's CPU."""
        p = work.probe
        source: list[Opened] = []  # the open source, once a copy needed it
        for spec in work.specs:
            key = sample_key(work.source, str(work.record["video_id"]), spec.start, spec.end)
            profile = self.cfg.encode.profile(spec.bucket)
            mode = cut_mode(spec, p.keyframes, p.fps, profile)
            out = self.ctx.work_dir / f"{key}.mp4"
            try:
                if mode == "copy":
                    if not source:
                        source.append(stack.enter_context(open_video(work.path)))
                    res = cut_copy(work.path, out, spec.start, spec.end, p.keyframes,
                                   audio=profile.audio, opened=source[0])
                else:
                    res = transcode(work.path, out, spec.start, spec.end, profile.encode_profile())
                clip = out.read_bytes()
            except LongvidError as exc:
                work.reject_sample(self.name, reason_of(exc), key, str(exc))
                continue
            finally:
                out.unlink(missing_ok=True)
            work.outputs.append(self.sample(work, spec, key, res, profile, clip))

    def sample(
        self,
        work: VideoWork,
        spec: SampleSpec,
        key: str,
        res: CutResult,
        profile: CutProfile,
        clip: bytes,
    ) -> SampleOutput:
        rec, out, src = work.record, res.info, work.probe
        texts = spec.texts
        if abs(res.start - spec.start) > 1e-6 or abs(res.end - spec.end) > 1e-6:
            # a copy starts on its keyframe and ends where the GOP lets it: re-time to the truth
            texts = retime_texts(rec.get("texts") or [], res.start, res.end)
        texts = mark_video_level(texts, rec.get("texts") or [], src.duration)
        whole = res.start <= WHOLE_VIDEO_TOL_S and res.end >= src.duration - WHOLE_VIDEO_TOL_S
        caption = main_caption(texts, self.cfg.caption.prefer_origins, self.cfg.caption.max_chars,
                               whole_video=whole)
        cuts = [_r(c - res.start) for c in work.cuts if res.start + 1e-6 < c < res.end - 1e-6]
        meta: dict[str, Any] = {
            "format": SAMPLE_FORMAT,
            "key": key,
            "source": work.source,
            "video_id": rec["video_id"],
            "record_id": work.record_id,
            "source_uri": work.uri,
            "locator": rec.get("locator"),
            "licence": rec.get("licence"),
            "categories": list(rec.get("categories") or []),
            "bucket": spec.bucket,
            "span": {
                "start": _r(res.start),
                "end": _r(res.end),
                "planned_start": _r(spec.start),
                "planned_end": _r(spec.end),
                "origin": spec.origin,
                "source_span_ids": list(spec.span_ids),
            },
            "clip": {
                "duration": _r(out.duration),
                "fps": _r(out.fps),
                "num_frames": out.num_frames,
                "width": out.width,
                "height": out.height,
                "codec": out.codec,
                "pix_fmt": out.pix_fmt,
                "has_audio": out.has_audio,
                "keyframes": [_r(k) for k in out.keyframes],
                "cut_mode": res.mode,
                "profile": None if res.mode == "copy" else profile.encode_profile().model_dump(),
            },
            "source_video": {
                "duration": _r(src.duration),
                "fps": _r(src.fps),
                "num_frames": src.num_frames,
                "width": src.width,
                "height": src.height,
                "codec": src.codec,
                **work.notes.get("declared", {}),
            },
            "caption": caption,
            "texts": texts,
            "shots": cuts,
            "events": [],  # timestamped events (annotate stages)
            "qa": [],  # LLaVA-style conversations (annotate stages)
            "scores": span_scores(work, res.start, res.end, self.cfg.detect.black_luma),
            "lineage": {
                "input": dict(work.input_checksum),
                "config_hash": self.ctx.content_hash,
                "detector": self.cfg.detect.detector,
                "tools": dict(self.ctx.tools),
            },
        }
        row = {
            "key": key,
            "source": work.source,
            "video_id": rec["video_id"],
            "record_id": work.record_id,
            "bucket": spec.bucket,
            "span_start": _r(res.start),
            "span_end": _r(res.end),
            "duration": _r(out.duration),
            "fps": _r(out.fps),
            "width": out.width,
            "height": out.height,
            "num_frames": out.num_frames,
            "caption": caption,
            "extra": {
                "origin": spec.origin,
                "cut_mode": res.mode,
                "licence": rec.get("licence"),
                "planned_start": _r(spec.start),
                "planned_end": _r(spec.end),
            },
        }
        fingerprint = span_fingerprint(work, res.start, res.end)
        if fingerprint is not None:  # copies across videos (longvid.dedup), KEY.json and row
            meta["fingerprint"] = row["extra"]["fingerprint"] = fingerprint
        members = {"mp4": clip, "json": encode_json(meta), "txt": caption.encode("utf-8")}
        return SampleOutput(key=key, members=members, row=row)


def encode_json(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")
