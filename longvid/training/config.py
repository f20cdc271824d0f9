"""Config of ``longvid train``: the model, the data, the curriculum stages, checkpoints,
distribution and the runtime (device, precision, determinism).

    cfg = load_config("conf/train/demo.yaml", TrainConfig, ["data.corpus=/data/longvid"])

Every stage names its trainable parts, learning rates per part, schedule, batch, sequence
length, resolution, frame bounds and data mixture. ``conf/train/videochat_flash.yaml`` is the
published four-stage recipe; ``conf/train/demo.yaml`` a tiny CPU version of it.

Resume rule: a checkpoint records the config of every stage that has started; resuming with any
of those changed is refused (stages not yet started may change). The sections that do not
change what is computed (``data``: where the data lives and the workers; ``checkpoint``,
``distributed``, ``metrics``, ``s3``) may change across a resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from longvid.config import S3Config, Section
from longvid.training.data.config import CLIP_LEN, Component, ImageComponent, MixtureComponent
from longvid.training.model.config import ModelConfig

PARTS = ("encoder", "projector", "llm")  # the model's parameter groups (HiCoModel.parameter_groups)
Part = Literal["encoder", "projector", "llm"]


class StageDataConfig(Section):
    """What one stage reads: its mixture, how many samples, frames per video, the question."""

    mixture: list[Component] = Field(
        default_factory=lambda: [MixtureComponent(name="all", weight=1.0)],
        description="components with weights: filters on source, bucket, duration; or an "
        "image folder (images: DIR with captions.jsonl)",
    )
    num_samples: int | None = Field(
        None, ge=1, description="samples drawn per epoch; None = every eligible sample once"
    )
    fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="or: this fraction of the eligible samples per epoch (stage 4: 0.25)",
    )
    tail: Literal["drop", "pad"] = Field(
        "drop", description="epoch tail that does not fill a loader batch: drop or pad"
    )
    t_min: int = Field(4, ge=CLIP_LEN, description="fewest frames per video (multiple of 4)")
    t_max: int = Field(8, ge=CLIP_LEN, description="most frames per video (multiple of 4)")
    question: str = Field(
        "Describe the video.", description="question asked of caption-only samples"
    )
    frame_times_prompt: bool = Field(False, description="list every frame's time in the prompt")
    template: Literal["chat", "plain"] = Field(
        "chat", description="chat layout, or plain (<video> + answer; stage 1 of the recipe)"
    )
    max_substitutes: int = Field(8, ge=1, description="substitutes tried for an undecodable clip")

    @model_validator(mode="after")
    def _check(self) -> StageDataConfig:
        if self.num_samples is not None and self.fraction is not None:
            raise ValueError("give num_samples or fraction, not both")
        if self.t_min % CLIP_LEN or self.t_max % CLIP_LEN:
            raise ValueError(f"t_min and t_max must be multiples of {CLIP_LEN}")
        if self.t_min > self.t_max:
            raise ValueError(f"t_min {self.t_min} > t_max {self.t_max}")
        return self


class StageConfig(Section):
    """One curriculum stage."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="stage name")
    trainable: list[Part] = Field(
        ..., min_length=1, description="parts trained (others frozen): encoder, projector, llm"
    )
    resolution: int | None = Field(
        None, ge=16, description="frame size in pixels (the encoder runs at it); None = model's"
    )
    data: StageDataConfig = Field(default_factory=StageDataConfig, description="the stage's data")
    lr: float = Field(..., gt=0, description="peak learning rate of the trained parts")
    part_lr: dict[Part, float] = Field(
        default_factory=dict, description="peak learning rate per part, over lr (encoder: lower)"
    )
    min_lr_ratio: float = Field(
        0.0, ge=0, le=1, description="the cosine ends at this fraction of the peak"
    )
    warmup_ratio: float = Field(
        0.03, ge=0, lt=1, description="share of the stage's steps spent warming up linearly"
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    grad_clip: float | None = Field(
        1.0, gt=0, description="clip the global gradient norm to this; None = no clipping"
    )
    global_batch: int = Field(
        ..., ge=1, description="samples per optimizer step over all ranks (accumulation fills it)"
    )
    micro_batch: int = Field(1, ge=1, description="samples per forward pass per rank")
    max_seq_len: int = Field(
        ..., ge=16, description="longest LLM sequence (text + visual tokens); text beyond is cut"
    )
    steps: int | None = Field(None, ge=1, description="length in optimizer steps")
    samples: int | None = Field(
        None, ge=1, description="or: length in samples (steps = ceil(samples / global_batch))"
    )

    @field_validator("trainable")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"trainable lists a part twice: {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> StageConfig:
        if self.steps is not None and self.samples is not None:
            raise ValueError(f"stage {self.name}: give steps or samples, not both")
        frozen = [p for p in self.part_lr if p not in self.trainable]
        if frozen:
            raise ValueError(f"stage {self.name}: part_lr for frozen part(s) {frozen}")
        if self.global_batch % self.micro_batch:
            raise ValueError(
                f"stage {self.name}: global_batch {self.global_batch} is not a multiple of "
                f"micro_batch {self.micro_batch}"
            )
        if self.resolution is not None and self.resolution % 16:
            raise ValueError(f"stage {self.name}: resolution must be a multiple of 16")
        return self

    def lr_of(self, part: str) -> float:
        return self.part_lr.get(part, self.lr)  # type: ignore[call-overload]

    def fingerprint_fields(self) -> dict[str, Any]:
        """What a resume must match (all of the stage)."""
        return self.model_dump(mode="json")


class DataConfig(Section):
    """Where the data comes from and how it is loaded (runtime: may change on resume, as long
    as the corpora's manifests are the same)."""

    corpus: list[str] = Field(
        default_factory=list, description="built corpus roots: local dirs or s3://bucket/prefix"
    )
    tokenizer: str | None = Field(
        None,
        description="local tokenizer dir (e.g. Qwen2's); None = train a byte-level BPE on the "
        "corpus captions into OUT/tokenizer",
    )
    tokenizer_vocab: int = Field(
        1024, ge=300, description="vocabulary of the BPE trained when tokenizer is None"
    )
    catalog_cache: str | None = Field(
        None,
        description="local dir of the memory-mapped catalog cache (shared by the workers and "
        "ranks of a node); None = $LONGVID_CACHE_DIR/catalog or ~/.cache/longvid/catalog",
    )
    num_workers: int = Field(2, ge=0, description="DataLoader workers per rank")
    prefetch_factor: int = Field(2, ge=1, description="batches each worker prepares ahead")
    pin_memory: bool | None = Field(None, description="pin batches; None = on when on a GPU")
    decode_backend: Literal["pyav", "torchcodec", "nvdec"] = Field(
        "pyav", description="frame decoder (see the loader)"
    )
    decode_device: str = Field("cpu", description="decode device: cpu or cuda[:N]")
    decode_threads: int = Field(1, ge=0, description="decoder threads per worker (0 = auto)")
    frames_dtype: Literal["float32", "uint8"] = Field(
        "uint8", description="uint8: frames normalised on the training device (less copying)"
    )

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_root(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v  # `data.corpus=/path` on the command line


class CheckpointConfig(Section):
    """When and where checkpoints are written."""

    dir: str | None = Field(
        None, description="local dir or s3://bucket/prefix; None = OUT/checkpoints"
    )
    every_steps: int = Field(
        100, ge=0, description="write one every this many optimizer steps (0 = only stage ends)"
    )
    at_stage_end: bool = Field(True, description="write one when a stage finishes")
    keep_last: int = Field(3, ge=1, description="complete checkpoints kept (older are deleted)")
    export_model: bool = Field(
        True, description="write the final model to OUT/model (longvid infer --checkpoint)"
    )


class DistributedConfig(Section):
    """torchrun / DDP settings (a single process needs none)."""

    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="auto = nccl on GPUs, gloo on CPU"
    )
    timeout_s: int = Field(1800, ge=10, description="collective timeout")


class RuntimeConfig(Section):
    """Device, precision, determinism, memory switches."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = cuda when available (one GPU per rank: LOCAL_RANK)"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto = bf16 autocast on GPU, fp32 on CPU (weights stay fp32)"
    )
    deterministic: bool = Field(
        True, description="deterministic algorithms (bitwise-exact resume on CPU)"
    )
    threads: int | None = Field(
        None, ge=1, description="torch threads per process; None = cores / local processes"
    )
    encoder_checkpointing: bool = Field(
        False, description="recompute encoder blocks in backward (saves activation memory)"
    )
    llm_checkpointing: bool = Field(
        False, description="recompute LLM layers in backward (saves activation memory)"
    )


class MetricsConfig(Section):
    """Where the per-step numbers go."""

    log_every: int = Field(1, ge=1, description="console progress line every this many steps")
    tensorboard: bool = Field(True, description="also write TensorBoard events to OUT/tb")


class TrainConfig(Section):
    """The whole training run."""

    model: str | ModelConfig | None = Field(
        None, description="model preset path (conf/model/*.yaml) or the config inline"
    )
    init: str | None = Field(
        None,
        description="or: a model dir written by save_pretrained (OUT/model of an earlier run): "
        "config, tokenizer and weights come from it",
    )
    seed: int = Field(0, description="seed of the initial weights and of the data order")
    data: DataConfig = Field(default_factory=DataConfig, description="corpora and loading")
    stages: list[StageConfig] = Field(..., min_length=1, description="the curriculum, in order")
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig, description="checkpoints"
    )
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig, description="DDP under torchrun"
    )
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="device etc.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="metrics output")
    s3: S3Config | None = Field(
        None, description="how to reach s3:// corpora and checkpoints; None = environment"
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if (self.model is None) == (self.init is None):
            raise ValueError("give exactly one of model (a preset or inline config) and init")
        if self.init is not None and self.data.tokenizer is not None:
            raise ValueError("init brings its own tokenizer: leave data.tokenizer unset")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self

    def image_roots(self) -> list[str]:
        """Every image folder the stages' mixtures name, in first-use order."""
        roots = [
            c.images for s in self.stages for c in s.data.mixture if isinstance(c, ImageComponent)
        ]
        return list(dict.fromkeys(roots))


def resolve_path(path: str, base: Path | None = None) -> Path:
    """A config-relative path: as given (cwd), else under ``base``, else under the repository
    (so ``conf/model/tiny.yaml`` works from anywhere in a checkout)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    for root in (base, Path(__file__).resolve().parents[2]):
        if root is not None and (root / p).exists():
            return root / p
    return p
