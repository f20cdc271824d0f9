"""Config of one training stage's data: which corpora, which mixture, how many frames, how big.

The trainer reads a :class:`StageData` per curriculum stage (``conf/train/loader.yaml`` shows
every key with a comment). Fields fall in two groups:

* **sequence fields** decide which samples a rank sees, in which order, and what their frames
  and tokens are. A resume is refused when any of them differs from the cursor's.
* **runtime fields** (:data:`RUNTIME_FIELDS`) only decide *how* the same samples are produced:
  worker count, prefetching, decode backend, and where the corpora live (a corpus copied from
  disk to S3 has the same manifest fingerprint, so a resume across the move is allowed).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from longvid.config import S3Config, Section

CLIP_LEN = 4  # frames per HiCo clip: every frame count is a multiple of it

# Fields that do not change what is seen; excluded from the stage fingerprint.
RUNTIME_FIELDS = frozenset(
    {
        "corpora",
        "num_workers",
        "prefetch_factor",
        "pin_memory",
        "decode_backend",
        "decode_device",
        "decode_threads",
        "frames_dtype",
        "s3",
        "catalog_cache",
    }
)


class MixtureComponent(Section):
    """One part of a stage's mixture: the samples it selects, and its weight.

    A sample belongs to the first component (in list order) whose filters all match it, so the
    components' pools never overlap. Empty filter lists match everything.
    """

    name: str = Field(..., min_length=1, description="component name (appears in counts)")
    weight: float = Field(..., gt=0, description="relative share of the stage's draws")
    sources: list[str] = Field(
        default_factory=list, description="sources to take (ego4d, webvid, ...); [] = any"
    )
    buckets: list[str] = Field(
        default_factory=list, description="duration buckets to take (short, long); [] = any"
    )
    min_duration: float | None = Field(None, ge=0, description="keep clips >= this many seconds")
    max_duration: float | None = Field(None, gt=0, description="keep clips < this many seconds")

    @model_validator(mode="after")
    def _durations_ordered(self) -> MixtureComponent:
        lo, hi = self.min_duration, self.max_duration
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"component {self.name!r}: min_duration {lo} >= max_duration {hi}")
        return self


class ImageComponent(Section):
    """A mixture component of still images: a folder (local or s3://) holding ``captions.jsonl``,
    one ``{"image": "rel/path.jpg", "caption": "..."}`` per line, paths relative to the folder
    (JPEG, PNG or WebP). Each image is one sample of T = 1 frame (the model's image path);
    the caption answers ``question``. Told apart from a video component by its ``images`` key.
    """

    name: str = Field(..., min_length=1, description="component name (appears in counts)")
    weight: float = Field(..., gt=0, description="relative share of the stage's draws")
    images: str = Field(
        ..., min_length=1, description="image folder with captions.jsonl (local dir or s3://)"
    )
    question: str = Field(
        "Describe the image.", description="question the caption answers (chat template)"
    )


def _component_kind(value: Any) -> str:
    if isinstance(value, ImageComponent) or (isinstance(value, dict) and "images" in value):
        return "images"
    return "video"


# One entry of a stage's mixture: a filter over the corpora's videos, or a folder of images.
Component = Annotated[
    Annotated[MixtureComponent, Tag("video")] | Annotated[ImageComponent, Tag("images")],
    Discriminator(_component_kind),
]


class StageData(Section):
    """The data side of one curriculum stage."""

    stage: str = Field("stage", min_length=1, description="stage name; part of every seed")
    corpora: list[str] = Field(
        default_factory=list, description="built corpus roots (local dirs or s3://bucket/prefix)"
    )
    mixture: list[Component] = Field(
        default_factory=lambda: [MixtureComponent(name="all", weight=1.0)],
        description="components with weights (video filters or image folders); draws per "
        "component are exact (largest remainder)",
    )
    num_samples: int | None = Field(
        None, ge=1, description="samples drawn per epoch over all ranks; None = all eligible"
    )
    seed: int = Field(0, description="stage seed: order, mixture and substitutes derive from it")
    batch_size: int = Field(1, ge=1, description="samples per batch per rank")
    tail: Literal["drop", "pad"] = Field(
        "drop",
        description="epoch tail that does not fill a global batch: drop it, or pad from the "
        "epoch's start (padded items are flagged)",
    )
    t_min: int = Field(64, ge=CLIP_LEN, description="fewest frames per video (multiple of 4)")
    t_max: int = Field(512, ge=CLIP_LEN, description="most frames per video (multiple of 4)")
    resolution: int = Field(224, ge=16, description="frames resized to this square size (224/448)")
    mean: tuple[float, float, float] = Field(
        (0.485, 0.456, 0.406), description="per-channel mean subtracted from frames in [0, 1]"
    )
    std: tuple[float, float, float] = Field(
        (0.229, 0.224, 0.225), description="per-channel std that frames are divided by"
    )
    frames_dtype: Literal["float32", "uint8"] = Field(
        "float32",
        description="float32: normalised in the workers; uint8: raw, normalise on the GPU "
        "with longvid.training.data.normalize_frames",
    )
    question: str = Field(
        "Describe the video.", description="question of the default conversation (caption only)"
    )
    frame_times_prompt: bool = Field(
        False, description="also list every frame's timestamp in the prompt"
    )
    template: Literal["chat", "plain"] = Field(
        "chat",
        description="chat: the Qwen chat layout with the timestamp prompt; plain: <video> then "
        "the first answer only (stage-1 alignment, as VideoChat-Flash)",
    )
    max_text_len: int = Field(2048, ge=8, description="token ids per sample are cut to this")
    max_substitutes: int = Field(
        8, ge=1, description="decode-failure substitutes tried per sample before giving up"
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes per rank")
    prefetch_factor: int = Field(2, ge=1, description="batches each worker prepares ahead")
    pin_memory: bool = Field(False, description="pin batches (when training on a GPU)")
    decode_backend: Literal["pyav", "torchcodec", "nvdec"] = Field(
        "pyav",
        description="frame decoder: pyav (CPU), torchcodec (CPU or CUDA), nvdec (PyNvVideoCodec)",
    )
    decode_device: str = Field("cpu", description="decode device: cpu or cuda[:N]")
    decode_threads: int = Field(1, ge=0, description="decoder threads per worker (0 = auto)")
    s3: S3Config | None = Field(
        None, description="how to reach s3:// corpora; None = the process's storage settings"
    )
    catalog_cache: str | None = Field(
        None,
        description="local dir of the memory-mapped catalog cache (shared by the workers and "
        "ranks of a node); None = $LONGVID_CACHE_DIR/catalog or ~/.cache/longvid/catalog",
    )

    @field_validator("t_min", "t_max")
    @classmethod
    def _multiple_of_clip(cls, v: int) -> int:
        if v % CLIP_LEN:
            raise ValueError(f"must be a multiple of the clip length {CLIP_LEN}, got {v}")
        return v

    @field_validator("resolution")
    @classmethod
    def _patch_multiple(cls, v: int) -> int:
        if v % 16:
            raise ValueError(f"must be a multiple of the patch size 16, got {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> StageData:
        if self.t_min > self.t_max:
            raise ValueError(f"t_min {self.t_min} > t_max {self.t_max}")
        if self.decode_device.startswith("cuda") and self.num_workers > 0:
            raise ValueError(
                f"decode_device {self.decode_device!r} needs num_workers: 0 "
                "(CUDA cannot run in forked DataLoader workers)"
            )
        names = [c.name for c in self.mixture]
        if not names:
            raise ValueError("mixture needs at least one component")
        if len(set(names)) != len(names):
            raise ValueError(f"mixture component names must be unique, got {names}")
        return self

    def image_components(self) -> list[tuple[int, ImageComponent]]:
        """(index in the mixture, component) of every image component."""
        return [(i, c) for i, c in enumerate(self.mixture) if isinstance(c, ImageComponent)]

    def sequence_fields(self) -> dict[str, Any]:
        """The values that decide what is seen (JSON-able); the stage fingerprint hashes them."""
        return self.model_dump(mode="json", exclude=set(RUNTIME_FIELDS))
