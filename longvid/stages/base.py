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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
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
        started = time.perf_counter()
        try:
            work = stage(work)
        except LongvidError as exc:
            work.fail(stage.name, reason_of(exc), str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the unit
            log.exception("stage %s failed on %s", stage.name, work.record_id)
            work.fail(stage.name, "internal_error", f"{work.uri}: {type(exc).__name__}: {exc}")
        finally:
            work.timings[stage.name] = work.timings.get(stage.name, 0.0) + (
                time.perf_counter() - started
            )
    return work
