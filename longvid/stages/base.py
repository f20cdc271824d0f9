"""The stage protocol and the loop that runs stages over one video.

A stage is a class built once per task from the build config and called per video::

    class MyStage(Stage):
        name = "annotate"          # the ``stage`` of its reject rows
        kind = "cpu"               # "model" stages run in the GPU actor pool, after cpu stages
        @classmethod
        def resources(cls, cfg): return Resources(num_gpus=0.5)   # what one instance needs
        def __call__(self, work: VideoWork) -> VideoWork: ...

A typed error (``LongvidError``) escaping a stage rejects the video with the error's reason; any
other exception too (reason ``internal_error``, logged with its traceback), so one odd file never
stops a unit.

A model stage may batch across videos (and so across the units of one model-actor call): a
:class:`BatchedStage` splits its work into ``prepare`` (per video, no model), ``infer`` (one model
pass over every prepared video) and ``finish`` (per video); :func:`run_stage_over` drives it. A
video that breaks ``prepare`` or ``finish`` is rejected alone; when the shared ``infer`` fails,
it runs again once per video, so the one bad video is rejected alone there too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from longvid.errors import LongvidError, MediaError, NotFoundError
from longvid.stages.work import StageContext, VideoWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What a stage needs from a Ray worker; the executor asks for the most that any stage run in
    the same task declares. A GPU is only asked for when the cluster has one."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    holds_model: bool = False  # keeps a model loaded (runs in an actor pool)


class Stage:
    name: ClassVar[str] = "stage"
    kind: ClassVar[str] = "cpu"

    @classmethod
    def resources(cls, cfg: Any) -> Resources:
        """What one instance needs (``cfg`` is the build config). CPU stages: no GPU."""
        if cls.kind == "model":
            return Resources(num_gpus=cfg.ray.model_num_gpus, holds_model=True)
        return Resources()

    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self.cfg = ctx.cfg

    def __call__(self, work: VideoWork) -> VideoWork:  # pragma: no cover - interface
        raise NotImplementedError


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, MediaError):
        return exc.reason
    if isinstance(exc, NotFoundError):
        return "missing_file"
    if isinstance(exc, LongvidError):
        return type(exc).__name__.replace("Error", "").lower() + "_error"
    return "internal_error"


def run_stages(work: VideoWork, stages: Sequence[Stage]) -> VideoWork:
    """Run ``stages`` in order on one video; stop at the first that rejects it."""
    for stage in stages:
        if work.failed:
            break
        with guarded(work, stage):
            stage(work)  # a stage fills in ``work`` (and returns it)
    return work


class BatchedStage(Stage):
    """A model stage that runs over many videos at once. Calling it on one video is the batch of
    one, so the per-video and batched paths share every line; ``infer`` must give each video the
    result it would get alone (the embedder and captioner pad every forward pass to a fixed
    size for that)."""

    def prepare(self, work: VideoWork) -> Any:  # pragma: no cover - interface
        """What ``infer`` needs from one video (frames, texts); no model runs here."""
        raise NotImplementedError

    def infer(self, prepared: list[Any]) -> list[Any]:  # pragma: no cover - interface
        """One result per prepared video, from shared forward passes; changes no video."""
        raise NotImplementedError

    def finish(self, work: VideoWork, prepared: Any, result: Any) -> None:  # pragma: no cover
        """Write one video's result into its samples."""
        raise NotImplementedError

    def __call__(self, work: VideoWork) -> VideoWork:
        prepared = self.prepare(work)
        (result,) = self.infer([prepared])
        self.finish(work, prepared, result)
        return work


@contextmanager
def guarded(work: VideoWork, stage: Stage) -> Iterator[None]:
    """Run a block (or the whole) of ``stage`` for ``work``: an error rejects the video (and
    only it); the time is added to the stage's."""
    started = time.perf_counter()
    try:
        yield
    except LongvidError as exc:
        work.fail(stage.name, reason_of(exc), str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
        log.exception("stage %s failed on %s", stage.name, work.record_id)
        work.fail(stage.name, "internal_error", f"{work.uri}: {type(exc).__name__}: {exc}")
    finally:
        work.timings[stage.name] = work.timings.get(stage.name, 0.0) + (
            time.perf_counter() - started
        )


def run_stage_over(works: Sequence[VideoWork], stage: Stage) -> None:
    """Run one stage over every video of ``works`` not yet rejected: a :class:`BatchedStage` in
    shared model passes, any other stage video by video."""
    live = [w for w in works if not w.failed]
    if not isinstance(stage, BatchedStage) or len(live) < 2:
        for w in live:
            run_stages(w, [stage])
        return
    prepared: dict[int, Any] = {}
    for i, w in enumerate(live):
        with guarded(w, stage):
            prepared[i] = stage.prepare(w)
    ready = [i for i in range(len(live)) if not live[i].failed]
    started = time.perf_counter()
    results: dict[int, Any] = {}
    try:
        results = dict(zip(ready, stage.infer([prepared[i] for i in ready]), strict=True))
    except Exception:  # noqa: BLE001 - find the video that broke the shared pass
        log.warning("stage %s: a batched pass failed; running it per video", stage.name,
                    exc_info=True)
        for i in ready:
            with guarded(live[i], stage):
                (results[i],) = stage.infer([prepared[i]])
    share = (time.perf_counter() - started) / max(len(ready), 1)
    for i in ready:
        w = live[i]
        w.timings[stage.name] = w.timings.get(stage.name, 0.0) + share
        if i in results and not w.failed:
            with guarded(w, stage):
                stage.finish(w, prepared[i], results[i])
