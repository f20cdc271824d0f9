"""Pluggable frame decoders for the loader: bytes of a clip + timestamps → frames.

Every backend returns ``uint8 Tensor [T, 3, S, S]`` (the frames shown at the given times,
resized to the stage's square resolution) or raises :class:`~longvid.errors.MediaError`.

- ``pyav``: :func:`longvid.media.decode.decode_at` — exact seeking from the keyframe times
  stored at build time, in-process, CPU.
- ``torchcodec``: ``torchcodec.decoders.VideoDecoder`` (exact seek mode) on ``cpu`` or
  ``cuda`` (NVDEC; needs torchcodec's CUDA build and an FFmpeg with NVDEC), resized on the same
  device. Optional: imported only when chosen.
- ``nvdec``: NVDEC through NVIDIA's PyNvVideoCodec wheel (which brings its own demuxer), on
  ``cuda``. Optional: imported only when chosen.

GPU backends return CUDA tensors; they run in the training process (``num_workers: 0``), since
CUDA cannot be used in forked DataLoader workers.
"""

from __future__ import annotations

import math
import os
import tempfile
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

        from longvid.media.decode import FrameSampler

        try:
            with FrameSampler(
                data,
                size=(size, size),
                keyframes=list(keyframes) if keyframes else None,
                threads=self.threads,
            ) as sampler:
                frames = sampler.decode_at([float(t) for t in times])
                if sampler.decode_errors:
                    # the build decoded this clip cleanly, so its bytes were damaged since: the
                    # frames around the damage would be stale or concealed, never train on them
                    raise MediaError(
                        uri,
                        "decode_failed",
                        f"{sampler.decode_errors} packet(s) failed to decode (damaged bytes)",
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
        return resize_square(batch.data, size)  # uint8 [T, 3, H, W] on self.device


class NvDecDecoder:
    """NVIDIA's NVDEC through PyNvVideoCodec (``pip install pynvvideocodec``; needs a driver
    that exposes the video decoder, ``libnvcuvid``). Frames stay on the GPU and are resized
    there. The clip bytes go through a file in ``/dev/shm`` because the decoder opens paths; one
    decoder is reconfigured for every clip (cheaper than a new NVDEC session).

    The frame shown at ``t`` is index ``floor(t · fps)`` (display order) — exact for the
    constant-rate clips the build writes. PyNvVideoCodec's own time → index lookup rounds to
    the nearest frame instead, which is not the frame shown at ``t``.
    """

    name = "nvdec"

    def __init__(self, device: str = "cuda"):
        try:
            import PyNvVideoCodec as nvc
        except ImportError as exc:  # optional backend
            raise ConfigError(
                f"decode_backend 'nvdec' needs the pynvvideocodec package ({exc})"
            ) from None
        if not device.startswith("cuda"):
            raise ConfigError(f"decode_backend 'nvdec' decodes on a GPU; got device {device!r}")
        self._nvc = nvc
        self.gpu_id = int(device.split(":", 1)[1]) if ":" in device else 0
        self.tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self._dec = None

    def _open(self, path: str):
        if self._dec is None:
            nvc = self._nvc
            self._dec = nvc.SimpleDecoder(
                path,
                gpu_id=self.gpu_id,
                use_device_memory=True,
                output_color_type=nvc.OutputColorType.RGB,
                max_width=4096,
                max_height=4096,
            )
        else:
            self._dec.reconfigure_decoder(path)
        return self._dec

    def __call__(self, data, times, size, *, keyframes, uri):
        with tempfile.NamedTemporaryFile(suffix=".mp4", dir=self.tmpdir) as f:
            f.write(data)
            f.flush()
            try:
                dec = self._open(f.name)
                meta = dec.get_stream_metadata()
                fps, count = float(meta.average_fps), int(meta.num_frames)
                idx = [min(int(math.floor(float(t) * fps + 1e-6)), count - 1) for t in times]
                decoded = dec.get_batch_frames_by_index(idx)
                frames = torch.stack([torch.from_dlpack(fr) for fr in decoded])  # [T, H, W, 3]
            except Exception as exc:  # the bindings raise plain RuntimeErrors
                self._dec = None  # start a fresh session for the next clip
                raise MediaError(uri, "decode_failed", f"nvdec: {exc}") from None
        return resize_square(frames.permute(0, 3, 1, 2), size)


def resize_square(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [T, 3, H, W] → uint8 [T, 3, size, size] (antialiased bilinear, on its device)."""
    import torch.nn.functional as F

    if frames.shape[-2:] == (size, size):
        return frames.contiguous()
    out = F.interpolate(
        frames.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)


def make_decoder(backend: str, device: str = "cpu", threads: int = 1) -> FrameDecoder:
    """The decoder named by a stage's ``decode_backend`` / ``decode_device``."""
    if backend == "pyav":
        if device != "cpu":
            raise ConfigError(f"decode_backend 'pyav' decodes on the CPU; got device {device!r}")
        return PyAVDecoder(threads)
    if backend == "torchcodec":
        return TorchCodecDecoder(device, threads)
    if backend == "nvdec":
        return NvDecDecoder(device)
    raise ConfigError(f"unknown decode_backend {backend!r} (use pyav, torchcodec or nvdec)")
