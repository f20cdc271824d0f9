"""Decode frames to RGB arrays, downscaled inside the decode loop.

Two ways in:

* :func:`iter_frames` decodes every frame of a video (or of a span) once, in order; this is the
  pass that feeds shot detection and scoring.
* :func:`decode_at` / :class:`FrameSampler` return the exact frame shown at given times, seeking
  to the keyframe before each target and decoding forward only as far as needed; this is what the
  training loader calls on a clip it range-read out of a shard (in-memory bytes).

Sizes are ``(width, height)`` like ffmpeg's; arrays are ``[H, W, 3]`` uint8 RGB. Downscaling
uses one reused libswscale context with area averaging, which is both the fastest and an
anti-aliased way to shrink a frame (``bench/bench_decode.py`` measures the alternatives).
Times are seconds from the first video frame, as in :func:`longvid.media.probe.probe`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from longvid.errors import MediaError
from longvid.media.container import (
    TIME_EPS,
    Clock,
    Source,
    ffmpeg_reason,
    open_video,
    seek_back,
)


@dataclass
class Frame:
    """One decoded frame. ``index`` counts frames yielded by the iterator (0 = first one)."""

    index: int
    time: float  # seconds from the first frame of the video (not of the span)
    image: np.ndarray  # [H, W, 3] uint8 RGB


def output_size(
    width: int, height: int, size: tuple[int, int] | None = None, max_side: int | None = None
) -> tuple[int, int]:
    """``(width, height)`` of the decoded images.

    ``size`` forces a size; ``max_side`` shrinks (never enlarges) so that the longer side is at
    most ``max_side``, keeping the aspect ratio; neither keeps the source size.
    """
    if size is not None:
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"size must be positive (width, height), got {size}")
        return w, h
    if max_side is not None:
        if max_side <= 0:
            raise ValueError(f"max_side must be positive, got {max_side}")
        longest = max(width, height)
        if longest > max_side:
            scale = max_side / longest
            return max(1, round(width * scale)), max(1, round(height * scale))
    return width, height


def channel_sums(images: np.ndarray) -> np.ndarray:
    """``[B, H, W, C]`` uint8 → ``[B, C]`` int64: each image's exact per-channel pixel sum.

    Why not ``images.sum(axis=(1, 2))``: a reduction over the middle axes of an interleaved
    image walks memory with a stride of C and runs ~10× slower than summing contiguous rows;
    moving the channels in front first (one small copy) makes every sum a contiguous one.
    """
    b, c = images.shape[0], images.shape[-1]
    planes = np.ascontiguousarray(images.reshape(b, -1, c).transpose(0, 2, 1))  # [B, C, H*W]
    return planes.sum(axis=-1, dtype=np.int64)


class RGBConverter:
    """Frame → ``[H, W, 3]`` uint8 RGB at the requested size, reusing one swscale context."""

    def __init__(self, size: tuple[int, int] | None = None, max_side: int | None = None):
        self.size = size
        self.max_side = max_side
        # One reformatter for the whole video: a fresh one per frame (what frame.reformat does)
        # rebuilds the scaler every time and costs about a third of the throughput.
        self._reformatter = VideoReformatter()

    def __call__(self, frame: Any) -> np.ndarray:
        w, h = output_size(frame.width, frame.height, self.size, self.max_side)
        # AREA: anti-aliased when shrinking; threads=1: the decoder already uses the cores.
        rgb = self._reformatter.reformat(frame, w, h, "rgb24", interpolation="AREA", threads=1)
        return np.ascontiguousarray(rgb.to_ndarray())


@dataclass
class _Decoded:
    time: float
    frame: Any  # av.VideoFrame
    duration: float  # seconds this frame is shown (nominal when the stream does not say)


class _StreamDecoder:
    """Decodes one video stream forward from the current position; counts packets it skipped."""

    def __init__(self, container: Any, stream: Any, name: str, threads: int):
        self.container = container
        self.stream = stream
        self.name = name
        self.clock = Clock(stream)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        rate = stream.average_rate or stream.guessed_rate
        self.nominal_frame = 1.0 / float(rate) if rate else 0.0
        self.errors = 0  # packets that failed to decode (skipped), plus a demux failure if any
        self.seeks = 0
        self.decoded = 0  # frames that came out of the decoder
        self._frames: Iterator[_Decoded] | None = None
        self._pending: _Decoded | None = None

    def _frames_from_packets(self) -> Iterator[Any]:
        codec = self.stream.codec_context
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError:
                # The demuxer cannot go on (damaged or cut-short file): drain what was decoded.
                self.errors += 1
                try:
                    yield from codec.decode(None)
                except av.error.FFmpegError:
                    pass
                return
            try:
                frames = codec.decode(packet)
            except av.error.FFmpegError:
                self.errors += 1  # a corrupt frame: skip it, keep going
                continue
            yield from frames

    def _timed(self, after_seek: bool) -> Iterator[_Decoded]:
        last_time: float | None = None
        for frame in self._frames_from_packets():
            self.decoded += 1
            if after_seek:
                # An unindexed container (MPEG-TS) can land inside a GOP; frames before the
                # next keyframe would miss their references.
                if not frame.key_frame:
                    continue
                after_seek = False
            if frame.pts is not None:
                time = self.clock.seconds(frame.pts)
            else:  # no timestamp: the next slot after the previous frame
                time = 0.0 if last_time is None else last_time + self.nominal_frame
            duration = self.clock.ticks(frame.duration) if frame.duration else self.nominal_frame
            last_time = time
            yield _Decoded(time, frame, duration)

    def seek(self, seconds: float) -> None:
        """Go to the keyframe at or before ``seconds``; the decoder restarts from there."""
        self.seeks += 1
        try:
            seek_back(self.container, self.stream, seconds)
        except av.error.FFmpegError as exc:
            raise MediaError(
                self.name, "decode_failed", f"seek to {seconds:.3f}s failed: {ffmpeg_reason(exc)}"
            ) from None
        self._frames = self._timed(after_seek=True)
        self._pending = None

    def seek_covering(self, target: float, from_time: float | None = None) -> None:
        """Seek so that the next frame is at or before ``target``.

        ``from_time`` is the keyframe (from the probe) to seek to. A container whose index is
        keyed on decode time can land one GOP late on a plain seek to ``target``; then step
        back in growing strides until the first frame is early enough.
        """
        at = target if from_time is None else min(from_time, target)
        back = 0.0
        while True:
            point = at - back
            self.seek(point)
            first = self.peek()
            # No frame at all also means "too late": the landing point skipped the last keyframe.
            if (first is not None and first.time <= target + TIME_EPS) or point < 0:
                return
            back = max(1.0, 2 * back)

    def start(self) -> None:
        """Decode from the current demuxer position (the start of a freshly opened file)."""
        self._frames = self._timed(after_seek=False)
        self._pending = None

    def peek(self) -> _Decoded | None:
        if self._pending is None and self._frames is not None:
            self._pending = next(self._frames, None)
        return self._pending

    def pop(self) -> _Decoded | None:
        item = self.peek()
        self._pending = None
        return item


class FrameIterator:
    """Iterator of :class:`Frame` over a video or a span of it; also a context manager.

    ``decode_errors`` counts packets that failed to decode and were skipped (a corrupt frame in
    the middle does not stop the pass). If nothing at all could be decoded, iteration raises
    ``MediaError(..., "decode_failed", ...)``.
    """

    def __init__(
        self,
        src: Source,
        *,
        size: tuple[int, int] | None = None,
        max_side: int | None = None,
        start: float | None = None,
        end: float | None = None,
        threads: int = 0,
    ):
        self._stack = ExitStack()
        container, stream, name = self._stack.enter_context(open_video(src))
        self.name = name
        if start is not None and (math.isnan(start) or start < 0):
            self.close()
            raise MediaError(name, "span_out_of_range", f"start {start} is before the video")
        if end is not None and (math.isnan(end) or end <= (start or 0.0)):
            self.close()
            raise MediaError(name, "span_out_of_range", f"empty span [{start}, {end})")
        self.start = start
        self.end = end
        self.frames = 0  # frames yielded so far
        self._decoder = _StreamDecoder(container, stream, name, threads)
        self._convert = RGBConverter(size, max_side)
        self._gen = self._run()

    @property
    def decode_errors(self) -> int:
        return self._decoder.errors

    def _run(self) -> Iterator[Frame]:
        try:
            decoder = self._decoder
            if self.start:
                decoder.seek_covering(self.start)
            else:
                decoder.start()
            lower = (self.start or 0.0) - TIME_EPS
            upper = math.inf if self.end is None else self.end - TIME_EPS
            while (item := decoder.pop()) is not None:
                if item.time < lower:
                    continue  # between the keyframe we sought to and the span start
                if item.time >= upper:
                    break
                yield Frame(self.frames, item.time, self._convert(item.frame))
                self.frames += 1
            if self.frames == 0 and decoder.errors:
                raise MediaError(
                    self.name,
                    "decode_failed",
                    f"no frame could be decoded ({decoder.errors} packets failed)",
                )
        finally:
            self._stack.close()

    def __iter__(self) -> FrameIterator:
        return self

    def __next__(self) -> Frame:
        return next(self._gen)

    def close(self) -> None:
        """Release the file (also done automatically at the end of the iteration)."""
        if hasattr(self, "_gen"):
            self._gen.close()
        self._stack.close()

    def __enter__(self) -> FrameIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_frames(
    src: Source,
    *,
    size: tuple[int, int] | None = None,
    max_side: int | None = None,
    start: float | None = None,
    end: float | None = None,
    threads: int = 0,
) -> FrameIterator:
    """Decode every frame of ``src`` (or those with ``start <= time < end``) once, in order.

    Args:
        src: path, bytes or binary file object.
        size: ``(width, height)`` of the output images; the scaling happens at decode time.
        max_side: alternatively, shrink so the longer side is at most this (aspect kept).
        start, end: optional span in seconds from the video start; a start seeks to the
            keyframe before it.
        threads: decoder threads, 0 = as many as the machine has.

    Yields:
        :class:`Frame` with ``image`` of shape ``[H, W, 3]`` uint8 RGB.
    """
    return FrameIterator(src, size=size, max_side=max_side, start=start, end=end, threads=threads)


def scan_keyframes(src: Source) -> list[float]:
    """Keyframe times (seconds from start) by demuxing packets; what probe() stores."""
    from longvid.media.probe import probe

    return probe(src).keyframes


class FrameSampler:
    """Random access to exact frames of one video, kept open across calls.

    Each result is the frame whose display interval contains the requested time (the last frame
    with pts <= t). Targets are visited in time order; a seek happens only when a target lies
    in a later GOP than the decoder's position (or before it), so targets sharing a GOP share
    one seek. ``seeks`` and ``frames_decoded`` count the work done.
    """

    def __init__(
        self,
        src: Source,
        *,
        size: tuple[int, int] | None = None,
        max_side: int | None = None,
        keyframes: Sequence[float] | None = None,
        threads: int = 0,
    ):
        if keyframes is None:
            keyframes = scan_keyframes(src)
        self._stack = ExitStack()
        container, stream, name = self._stack.enter_context(open_video(src))
        self.name = name
        self.keyframes = sorted(float(k) for k in keyframes) or [0.0]
        self._decoder = _StreamDecoder(container, stream, name, threads)
        ctx = stream.codec_context
        self.width, self.height = output_size(ctx.width, ctx.height, size, max_side)
        # A fixed output size, so that frames of a stream that changes size still stack.
        self._convert = RGBConverter((self.width, self.height))
        self._prev: _Decoded | None = None
        self._prev_image: np.ndarray | None = None

    @property
    def seeks(self) -> int:
        return self._decoder.seeks

    @property
    def frames_decoded(self) -> int:
        return self._decoder.decoded

    @property
    def decode_errors(self) -> int:
        return self._decoder.errors

    def _keyframe_before(self, t: float) -> float:
        i = bisect.bisect_right(self.keyframes, t + TIME_EPS) - 1
        return self.keyframes[max(i, 0)]

    def _frame_at(self, t: float) -> np.ndarray:
        dec = self._decoder
        prev = self._prev
        key = self._keyframe_before(t)
        nxt = dec.peek() if prev is not None else None
        position = nxt.time if nxt is not None else (prev.time if prev is not None else None)
        if prev is None or t < prev.time - TIME_EPS or key > position + TIME_EPS:
            dec.seek_covering(t, from_time=key)
            prev = self._prev = None
        while (nxt := dec.peek()) is not None and nxt.time <= t + TIME_EPS:
            prev = self._prev = dec.pop()
            self._prev_image = None
        if prev is None and nxt is None and dec.decoded == 0 and dec.errors:
            raise MediaError(self.name, "decode_failed", "no frame could be decoded")
        if prev is None:
            first = "no frame" if nxt is None else f"the first frame is at {nxt.time:.6f}s"
            raise MediaError(self.name, "span_out_of_range", f"time {t}s: {first}")
        if nxt is None and t >= prev.time + max(prev.duration, TIME_EPS) + TIME_EPS:
            end = prev.time + prev.duration
            raise MediaError(
                self.name, "span_out_of_range", f"time {t}s is after the video end ({end:.6f}s)"
            )
        if self._prev_image is None:
            self._prev_image = self._convert(prev.frame)
        return self._prev_image

    def decode_at(self, times: Sequence[float]) -> np.ndarray:
        """Frames shown at ``times`` (seconds, any order, repeats allowed) → ``[T, H, W, 3]``."""
        out = np.empty((len(times), self.height, self.width, 3), dtype=np.uint8)
        values = [float(t) for t in times]
        for t in values:
            if not math.isfinite(t) or t < -TIME_EPS:
                raise MediaError(self.name, "span_out_of_range", f"time {t} is before the video")
        for i in sorted(range(len(values)), key=values.__getitem__):
            out[i] = self._frame_at(max(values[i], 0.0))
        if len(values) and self._decoder.decoded == 0 and self._decoder.errors:
            raise MediaError(self.name, "decode_failed", "no frame could be decoded")
        return out

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> FrameSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_at(
    src: Source,
    times: Sequence[float],
    *,
    size: tuple[int, int] | None = None,
    max_side: int | None = None,
    keyframes: Sequence[float] | None = None,
    threads: int = 0,
) -> np.ndarray:
    """The exact frames shown at ``times`` (seconds from the video start).

    Args:
        src: path, bytes (e.g. ``KEY.mp4`` range-read from a shard) or binary file object.
        times: any order, repeats allowed; each must lie within the video.
        size / max_side: as in :func:`iter_frames`.
        keyframes: keyframe times stored at build time (``ProbeResult.keyframes``); without
            them one extra demux pass finds them.

    Returns:
        ``[T, H, W, 3]`` uint8 RGB, in the order of ``times``.
    """
    with FrameSampler(
        src, size=size, max_side=max_side, keyframes=keyframes, threads=threads
    ) as sampler:
        return sampler.decode_at(times)
