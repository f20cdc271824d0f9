"""Config of ``longvid eval niah`` (``conf/eval/niah.yaml`` documents every knob)."""

from __future__ import annotations

from pydantic import Field, field_validator

from longvid.config import Section


class NiahConfig(Section):
    """What to evaluate, on which haystack and needles, over which grid."""

    checkpoint: str | None = Field(None, description="model directory (save_pretrained layout)")
    haystack: str | None = Field(None, description="local haystack video file")
    needles: str | None = Field(
        None,
        description="JSON list of needles: {question, answer, image} (single-hop) or "
        "{question, answer, images} (multi-hop); image paths relative to the JSON file",
    )
    fps: float = Field(1.0, gt=0, description="haystack sampling rate (frames per second)")
    frames: list[int] = Field(
        default_factory=lambda: [1000 * k for k in range(1, 11)],
        description="haystack lengths in frames (rounded up to whole clips)",
    )
    depths: list[float] = Field(
        default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        description="needle positions as a fraction of the haystack (0 = start, 1 = end)",
    )
    max_needles: int | None = Field(None, ge=1, description="use only the first N needles")
    letters: list[str] = Field(
        default_factory=lambda: ["A", "B", "C", "D"],
        description="option letters scored by option likelihood",
    )
    dropout: bool = Field(False, description="progressive visual dropout in the prefill")
    device: str = Field("auto", description="auto (cuda when present), cpu, cuda or cuda:N")
    cache_dir: str | None = Field(
        None, description="where encoded haystacks are cached; None = OUT/cache"
    )
    chunk_frames: int = Field(
        256, ge=4, description="haystack frames decoded and encoded at once (bounds memory)"
    )

    @field_validator("frames")
    @classmethod
    def _frames(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError("frames must be a non-empty list of positive counts")
        return sorted(set(v))

    @field_validator("depths")
    @classmethod
    def _depths(cls, v: list[float]) -> list[float]:
        if not v or not all(0.0 <= d <= 1.0 for d in v):
            raise ValueError("depths must be a non-empty list of fractions in [0, 1]")
        return sorted(set(v))
