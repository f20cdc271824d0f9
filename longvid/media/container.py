"""Open a video for reading with PyAV: a local path, in-memory bytes or a binary file object.

Every way in ends in the same typed failure: ``MediaError(name, "unreadable", why)`` for a missing,
empty or non-media input and ``MediaError(name, "no_video_stream", ...)`` when there is nothing
to decode. Times everywhere in ``longvid.media`` are seconds from the first video frame
(:func:`video_start_pts`), so that ``probe``, ``decode`` and ``cut`` agree on every timestamp.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import av
import av.container
import av.error
import av.packet
import av.stream
import av.video.stream

from longvid.errors import MediaError

#: What ``probe``/``decode`` accept: a local path, the file's bytes, or a seekable binary file
#: object (read from its start).
Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

# A frame's timestamp is compared against a requested time with this slack, so that a time that
# went through float arithmetic (pts -> seconds -> pts) still selects the same frame. A microsecond
# is far below any real frame interval.
TIME_EPS = 1e-6


def source_name(src: Source) -> str:
    """Human-readable name of an input, used in every error message."""
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes in memory>"
    name = getattr(src, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else "<file object>"


def source_size(src: Source) -> int:
    """Size of the input in bytes (a file object is measured without moving its position)."""
    if isinstance(src, (str, os.PathLike)):
        return Path(src).stat().st_size
    if isinstance(src, (bytes, bytearray, memoryview)):
        return len(src)
    pos = src.tell()
    try:
        return src.seek(0, io.SEEK_END)
    finally:
        src.seek(pos)


def _ffmpeg_target(src: Source) -> str | BinaryIO:
    """What to hand to ``av.open``, after checks that give clear errors for local files."""
    name = source_name(src)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise MediaError(name, "unreadable", "no such file")
        if not path.is_file():
            raise MediaError(name, "unreadable", "not a regular file")
        if path.stat().st_size == 0:
            raise MediaError(name, "unreadable", "empty file (0 bytes)")
        # "file:" + an absolute path: libavformat never reads a name such as "-x.mp4",
        # "concat:a|b" or "http:..." as an option or another protocol.
        return "file:" + str(path.resolve())
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise MediaError(name, "unreadable", "empty input (0 bytes)")
        return io.BytesIO(bytes(src))
    if source_size(src) == 0:
        raise MediaError(name, "unreadable", "empty input (0 bytes)")
    src.seek(0)  # libavformat addresses the object from its start
    return src


def ffmpeg_reason(exc: BaseException) -> str:
    """libav's own words for a failure, without the errno noise PyAV adds."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__


def pick_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first real video stream; cover art (an attached picture) is not a video."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def describe_streams(container: av.container.InputContainer) -> str:
    """``"audio(aac), data(bin_data)"``: what a file holds, for a no_video_stream message."""
    parts = []
    for stream in container.streams:
        codec = stream.codec_context.name if stream.codec_context is not None else "?"
        parts.append(f"{stream.type}({codec})")
    return ", ".join(parts) or "no streams"


#: What :func:`open_video` yields: ``(container, video_stream, name)``. Functions named
#: ``*_open`` take it so that one opened source serves many operations (a file open costs
#: more than copying a clip's packets).
Opened = tuple[av.container.InputContainer, av.video.stream.VideoStream, str]


@contextmanager
def open_video(src: Source) -> Iterator[Opened]:
    """Open ``src`` and yield ``(container, video_stream, name)``; the container is closed after.

    Raises MediaError ``unreadable`` (missing, empty, not media, damaged header) or
    ``no_video_stream``.
    """
    name = source_name(src)
    target = _ffmpeg_target(src)
    try:
        container = av.open(target, mode="r")
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(name, "unreadable", ffmpeg_reason(exc)) from None
    try:
        stream = pick_video_stream(container)
        if stream is None:
            raise MediaError(name, "no_video_stream", f"streams: {describe_streams(container)}")
        yield container, stream, name
    finally:
        container.close()


def video_start_pts(stream: av.video.stream.VideoStream) -> int:
    """The pts (in ``stream.time_base`` ticks) that every longvid time is measured from."""
    return stream.start_time if stream.start_time is not None else 0


def seek_back(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, seconds: float
) -> None:
    """Seek to the keyframe at or before ``seconds`` (from the video start).

    A time before the start is kept as is: MPEG-TS only lands on its first frame when asked for
    a time before it; AVI refuses such a time, and then gets the start itself.
    """
    clock = Clock(stream)
    try:
        container.seek(clock.pts(seconds), stream=stream, backward=True)
    except av.error.FFmpegError:
        if seconds >= 0:
            raise
        container.seek(clock.start_pts, stream=stream, backward=True)


def demux_from_keyframe(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    key_pts: int,
    *others: av.stream.Stream,
    name: str = "",
) -> Iterator[av.packet.Packet]:
    """Packets in file order from the video keyframe whose pts is ``key_pts`` onwards, plus the
    packets of ``others`` read since the seek point (the caller picks those it wants by time).

    Indexed containers (mp4, mkv) land on the keyframe directly. Unindexed ones (MPEG-TS) seek
    by timestamp and may land inside a GOP after it: then step back in growing strides and scan
    forward, as the keyframe must be found exactly. Empty end-of-stream packets are skipped.
    """
    clock = Clock(stream)
    key_time = clock.seconds(key_pts)
    back = 0.0
    while True:
        point = key_time - back
        seek_back(container, stream, point)
        started = False
        early: list[av.packet.Packet] = []  # other streams' packets stored before the keyframe
        for packet in container.demux(stream, *others):
            if packet.size == 0:
                continue
            if not started:
                if packet.stream is not stream:
                    early.append(packet)
                    continue
                if packet.pts is None:
                    continue
                if packet.pts > key_pts:
                    break  # landed after the keyframe (nothing before it is shown later)
                if not (packet.is_keyframe and packet.pts == key_pts):
                    continue
                started = True
                yield from early
            yield packet
        if started:
            return
        if point < 0:
            raise MediaError(name, "cut_failed", f"no keyframe at {key_time:.6f}s")
        back = max(1.0, 2 * back)


class Clock:
    """Converts between a stream's pts ticks and seconds from the video start.

    Both directions use the same integer arithmetic, so a time computed from a pts maps back to
    that exact pts (which makes stored keyframe times usable as seek targets).
    """

    def __init__(self, stream: av.video.stream.VideoStream):
        tb = stream.time_base
        if tb is None or tb.numerator <= 0:
            raise ValueError(f"stream has no usable time base: {tb}")
        self.num = tb.numerator
        self.den = tb.denominator
        self.start_pts = video_start_pts(stream)

    def seconds(self, pts: int) -> float:
        return (pts - self.start_pts) * self.num / self.den

    def ticks(self, duration_pts: int) -> float:
        """A duration in ticks, as seconds."""
        return duration_pts * self.num / self.den

    def pts(self, seconds: float) -> int:
        return self.start_pts + round(seconds * self.den / self.num)
