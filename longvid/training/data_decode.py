"""Pluggable frame decoders for the loader: bytes of a clip + timestamps → frames.

Every backend returns ``uint8 Tensor [T, 3, S, S]`` (the frames shown at the given times,
resized to the stage's square resolution) or raises :class:`~longvid.errors.MediaError`.

- ``pyav``: :func:`longvid.media.decode.decode_at` — exact seeking from the keyframe times
  stored at build time, in-process, CPU.
- ``torchcodec``: ``torchcodec.decoders.VideoDecoder`` (exact seek mode) on ``cpu`` or
  ``cuda`` (NVDEC), resized on the same device. Optional: imported only when chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from longvid.errors import ConfigError, MediaError


class FrameDecoder(Protocol):
    name: str

    def __call__(
        self,
        data: bytes,
        times: np.ndarray,
        size: int,
        *,
        keyframes: Sequence[float] | None,
        uri: str,
    ) -> torch.Tensor:
        """``uint8 [T, 3, size, size]`` frames shown at ``times`` (seconds)."""
        ...


class PyAVDecoder:
    """CPU decode through :func:`longvid.media.decode.decode_at`."""

    name = "pyav"

    def __init__(self, threads: int = 1):
        self.threads = threads

    def __call__(self, data, times, size, *, keyframes, uri):
        import av.error

        from longvid.media.decode import decode_at

        try:
            frames = decode_at(
                data,
                [float(t) for t in times],
                size=(size, size),
                keyframes=list(keyframes) if keyframes else None,
                threads=self.threads,
            )
        except MediaError as exc:  # it names "<N bytes in memory>"; name the sample instead
            raise MediaError(uri, exc.reason, exc.detail) from None
        except av.error.FFmpegError as exc:
            raise MediaError(uri, "decode_failed", str(exc)) from None
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()


class TorchCodecDecoder:
    """torchcodec decode (``device`` ``cpu`` or ``cuda[:N]`` for NVDEC), resized on-device."""

    name = "torchcodec"

    def __init__(self, device: str = "cpu", threads: int = 1):
        try:
            from torchcodec.decoders import VideoDecoder
        except ImportError as exc:  # optional backend
            raise ConfigError(
                f"decode_backend 'torchcodec' needs the torchcodec package ({exc})"
            ) from None
        self._cls = VideoDecoder
        self.device = device
        self.threads = threads

    def __call__(self, data, times, size, *, keyframes, uri):
        import torch.nn.functional as F

        try:
            dec = self._cls(
                data,
                device=self.device,
                seek_mode="exact",
                num_ffmpeg_threads=self.threads,
            )
            batch = dec.get_frames_played_at(seconds=[float(t) for t in times])
        except Exception as exc:  # torchcodec raises RuntimeError/ValueError for bad input
            raise MediaError(uri, "decode_failed", f"torchcodec: {exc}") from None
        frames = batch.data  # uint8 [T, 3, H, W] on self.device
        if frames.shape[-2:] != (size, size):
            frames = (
                F.interpolate(
                    frames.float(),
                    size=(size, size),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
                .round_()
                .clamp_(0, 255)
                .to(torch.uint8)
            )
        return frames


def make_decoder(backend: str, device: str = "cpu", threads: int = 1) -> FrameDecoder:
    """The decoder named by a stage's ``decode_backend`` / ``decode_device``."""
    if backend == "pyav":
        if device != "cpu":
            raise ConfigError(f"decode_backend 'pyav' decodes on the CPU; got device {device!r}")
        return PyAVDecoder(threads)
    if backend == "torchcodec":
        return TorchCodecDecoder(device, threads)
    raise ConfigError(f"unknown decode_backend {backend!r} (use pyav or torchcodec)")
