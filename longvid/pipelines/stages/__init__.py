"""Per-video stages and their registry.

``BuildConfig.stages`` lists stage names in order; each name maps here to a :class:`Stage`
class. A new stage (the annotate stages: captions, events/QA, embeddings, filters) is one entry
in :data:`STAGES` and one name in the config list; ``"package.module:Class"`` also works for a
stage that lives elsewhere.
"""

from __future__ import annotations

import importlib

from longvid.errors import ConfigError
from longvid.pipelines.stages.cut import Cut
from longvid.pipelines.stages.probe import Probe
from longvid.pipelines.stages.scan import Scan
from longvid.pipelines.stages.segment import Segment
from longvid.stages.base import Stage, run_stages

STAGES: dict[str, type[Stage]] = {
    "probe": Probe,
    "scan": Scan,
    "segment": Segment,
    "cut": Cut,
}

REQUIRED_ORDER = ("probe", "scan", "segment", "cut")


def stage_class(name: str) -> type[Stage]:
    if name in STAGES:
        return STAGES[name]
    # the annotation stages, looked up lazily: they pull in the model libraries
    from longvid.annotate.stages import STAGES as ANNOTATE_STAGES

    if name in ANNOTATE_STAGES:
        return ANNOTATE_STAGES[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"stages: cannot load {name!r}: {exc}") from None
        if isinstance(cls, type) and issubclass(cls, Stage):
            return cls
        raise ConfigError(f"stages: {name!r} is not a Stage class")
    known = ", ".join([*STAGES, *ANNOTATE_STAGES])
    raise ConfigError(f"stages: unknown stage {name!r} (known: {known})")


def check_stage_list(names: list[str]) -> None:
    """The four core stages must be there, in order; model stages come after every cpu stage."""
    core = [n for n in names if n in REQUIRED_ORDER]
    if core != list(REQUIRED_ORDER):
        raise ConfigError(
            f"stages: must contain {', '.join(REQUIRED_ORDER)} in this order, got {names}"
        )
    kinds = [stage_class(n).kind for n in names]
    if "model" in kinds and "cpu" in kinds[kinds.index("model") :]:
        raise ConfigError("stages: model stages must come after all cpu stages")


__all__ = ["STAGES", "Stage", "check_stage_list", "run_stages", "stage_class"]
