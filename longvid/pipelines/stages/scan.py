"""Scan: the one decode pass. Every frame is decoded once and shrunk at decode time; the small
frame feeds the shot detector and the cheap per-frame scores (luma, motion), and a few frames
spread over the video are also kept at a larger size for later model stages — from the same
decoded picture, so no stage decodes the video again."""

from __future__ import annotations

from typing import Any

import av.error
import numpy as np

from longvid.dedup.fingerprint import frame_hashes
from longvid.errors import MediaError
from longvid.media.container import Clock, ffmpeg_reason, open_video
from longvid.media.decode import RGBConverter, output_size
from longvid.segment.shots import detection_size, make_detector
from longvid.stages.base import Resources, Stage
from longvid.stages.work import VideoWork

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def decoded_frames(container, stream, name: str, threads: int, errors: list[int]):
    """Yield ``(time, av.VideoFrame)`` of every frame; a packet that fails to decode is counted
    in ``errors[0]`` and skipped, a demuxer failure ends the pass (also counted)."""
    clock = Clock(stream)
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    codec = stream.codec_context
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError:
            errors[0] += 1
            break
        try:
            frames = codec.decode(packet)
        except av.error.FFmpegError:
            errors[0] += 1
            continue
        for frame in frames:
            if frame.pts is None:
                raise MediaError(name, "decode_failed", "a decoded frame has no timestamp")
            yield clock.seconds(frame.pts), frame


def keep_targets(duration: float, k: int) -> list[float]:
    """Times of the frames kept for model stages: the centres of ``k`` equal parts."""
    return [(i + 0.5) * duration / k for i in range(k)]


class FrameScores:
    """Per-frame mean luma and motion (mean |Δluma| to the previous frame), 0..255, and the
    perceptual hash and mean colour of each frame (longvid.dedup.fingerprint), computed a batch
    of frames at a time."""

    def __init__(self) -> None:
        self.luma: list[np.ndarray] = []
        self.motion: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []
        self.colours: list[np.ndarray] = []
        self._prev: np.ndarray | None = None

    def add(self, frames: np.ndarray) -> None:
        """``frames``: (B, H, W, 3) uint8 RGB."""
        gray = frames.astype(np.float32) @ LUMA  # (B, H, W)
        prev = gray[:1] if self._prev is None else self._prev
        both = np.concatenate([prev, gray])
        self.luma.append(gray.mean(axis=(1, 2)))
        self.motion.append(np.abs(both[1:] - both[:-1]).mean(axis=(1, 2)))
        self._prev = gray[-1:]
        hashes, colours = frame_hashes(frames)  # [B] uint64, [B, 3] uint8
        self.hashes.append(hashes)
        self.colours.append(colours)

    def fingerprints(self) -> tuple[np.ndarray, np.ndarray]:
        """(hashes ``[N]`` uint64, colours ``[N, 3]`` uint8) of every frame added."""
        if not self.hashes:
            return np.zeros(0, np.uint64), np.zeros((0, 3), np.uint8)
        return np.concatenate(self.hashes), np.concatenate(self.colours)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.luma:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return np.concatenate(self.luma), np.concatenate(self.motion)


class Scan(Stage):
    name = "scan"

    @classmethod
    def resources(cls, cfg: Any) -> Resources:
        """The neural shot detector (transnetv2) wants a slice of a GPU; the other detectors are
        CPU work."""
        if cfg.detect.detector == "transnetv2" and cfg.detect.device != "cpu":
            return Resources(num_gpus=0.25)
        return Resources()
    batch = 64  # frames per batch of vectorised scoring and detection

    def __call__(self, work: VideoWork) -> VideoWork:
        cfg = self.cfg.detect
        p = work.probe
        detector = make_detector(cfg, p.fps)
        small = RGBConverter(size=detection_size(cfg))
        kw, kh = _keep_size(p.width, p.height, cfg.keep_side)
        big = RGBConverter(size=(kw, kh))
        targets = keep_targets(p.duration, cfg.keep_frames)
        threads = cfg.decode_threads or max(1, round(self.cfg.ray.process_num_cpus))
        times: list[float] = []
        scores = FrameScores()
        buf: list[np.ndarray] = []

        def flush() -> None:
            if buf:
                frames = np.stack(buf)
                scores.add(frames)
                if detector is not None:
                    detector.push_batch(frames)
                buf.clear()

        errors = [0]
        with open_video(work.path) as (container, stream, name):
            try:
                for t, frame in decoded_frames(container, stream, name, threads, errors):
                    times.append(t)
                    buf.append(small(frame))
                    if len(buf) == self.batch:
                        flush()
                    if targets and t >= targets[0] - 1e-6:
                        work.kept_frames.append((t, big(frame)))
                        while targets and t >= targets[0] - 1e-6:
                            targets.pop(0)
                flush()
            except av.error.FFmpegError as exc:
                raise MediaError(name, "decode_failed", ffmpeg_reason(exc)) from None
        missing = p.num_frames - len(times)
        if errors[0] > cfg.max_decode_errors or missing > cfg.max_missing_frames:
            raise MediaError(
                work.uri,
                "decode_failed",
                f"{errors[0]} packet(s) failed to decode, {len(times)} of {p.num_frames} "
                "frames decoded (corrupt data in the stream)",
            )
        # decoders deliver frames in presentation order, so index i is the i-th frame shown
        work.frame_times = np.asarray(times, dtype=np.float64)
        work.luma, work.motion = scores.arrays()
        work.frame_hashes, work.frame_colours = scores.fingerprints()
        if detector is not None:
            work.cuts = [float(work.frame_times[i]) for i in detector.finish()]
        work.notes["decode_errors"] = errors[0]
        return work


def _keep_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Scale so the short side is ``short_side`` (never enlarge); even sizes."""
    scale = min(1.0, short_side / max(1, min(width, height)))
    w, h = output_size(width, height, (max(2, round(width * scale)), max(2, round(height * scale))))
    return w - w % 2 or 2, h - h % 2 or 2
