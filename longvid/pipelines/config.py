"""Build config: what ``longvid build`` reads (``conf/build/*.yaml`` + dotted overrides).

Only the *content* sections (units, detect, segment, encode, shards, stages, seed) decide what the
samples contain; :func:`content_hash` covers exactly those, so moving a build to a cluster, or
changing its parallelism, neither changes sample bytes nor blocks a resume.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import Field, model_validator

from longvid.annotate.config import AnnotateConfig
from longvid.config import RayConfig, S3Config, Section
from longvid.dedup.config import DedupConfig
from longvid.ingest.config import SourceConfig
from longvid.media.cut import EncodeProfile
from longvid.segment.config import DetectConfig, SegmentConfig


class OutputConfig(Section):
    root: str = Field("build-out", description="output root: local directory or s3://bucket/prefix")


class BuildRayConfig(RayConfig):
    """Where Ray runs and how much each stage asks for."""

    process_num_cpus: float = Field(
        1.0, gt=0, description="CPUs per unit task (probe, decode, detect, segment, cut, write)"
    )
    process_num_gpus: float | None = Field(
        None,
        ge=0,
        description="GPUs per unit task; null = 0.25 when the detector is transnetv2 and the "
        "cluster has GPUs, else 0",
    )
    concurrency: int | None = Field(
        None, ge=1, description="max unit tasks at once; null = as many as the CPUs allow"
    )
    model_num_gpus: float = Field(
        0.25,
        ge=0,
        description="GPUs per actor of the model-stage pool (what the model stages declare; "
        "asked for only when the cluster has GPUs)",
    )
    model_min_actors: int = Field(
        1, ge=1, description="actors the model-stage pool keeps, at least (each loads the models)"
    )
    model_max_actors: int = Field(
        1,
        ge=1,
        description="actors the model-stage pool grows to while units queue up, at most",
    )
    model_batch_units: int = Field(
        1,
        ge=1,
        description="units per call of a model actor: its model stages run over all their "
        "videos' samples in shared forward passes (results do not depend on it)",
    )
    model_concurrency: int | None = Field(
        None,
        ge=1,
        description="deprecated: a fixed pool of this many actors (model_min_actors = "
        "model_max_actors = this); null = use those two",
    )
    storage_retries: int = Field(
        2,
        ge=0,
        description="redo a unit this many times after a storage error (dead workers "
        "and nodes are retried by Ray Data itself, without limit)",
    )
    include_dashboard: bool = Field(False, description="start the Ray dashboard (local Ray only)")
    object_store_memory: int | None = Field(
        None,
        ge=78643200,
        description="bytes of Ray's shared-memory object store (local Ray only; null = Ray's "
        "default, 30% of RAM). Less means unit payloads between the cpu and model stages spill "
        "to disk sooner; Ray refuses less than 75 MiB",
    )

    @model_validator(mode="after")
    def _model_pool(self) -> BuildRayConfig:
        low, high = self.model_pool_bounds()
        if low > high:
            raise ValueError(f"model_min_actors ({low}) > model_max_actors ({high})")
        return self

    def model_pool_bounds(self) -> tuple[int, int]:
        """(min, max) actors of the model-stage pool; the deprecated ``model_concurrency`` wins
        when set (a fixed pool)."""
        if self.model_concurrency is not None:
            return self.model_concurrency, self.model_concurrency
        return self.model_min_actors, self.model_max_actors

    def model_pool_size(self) -> int | tuple[int, int]:
        """Ray Data's ``concurrency`` for the pool: a fixed size, or (min, max) to autoscale."""
        low, high = self.model_pool_bounds()
        return low if low == high else (low, high)


class UnitsConfig(Section):
    """How manifest records are packed into work units (one unit = one commit in the ledger).

    A unit is the unit of scheduling, retry and commit: about an hour of source video keeps a
    10M-clip WebVid at tens of thousands of units (not millions of tiny tasks) while one failed
    task redoes little work."""

    videos_per_unit: int = Field(
        1000, ge=1, description="records per unit, at most (bounds the rows a task reads)"
    )
    max_unit_seconds: float | None = Field(
        3600.0,
        gt=0,
        description="declared video seconds per unit, at most (a longer video is a unit alone); "
        "null = no limit",
    )
    unknown_seconds: float = Field(
        300.0, ge=0, description="a record without a declared duration counts as this long"
    )
    plan_part_rows: int = Field(
        1_000_000,
        ge=1,
        description="records per part file of a plan generation (plan/gen-N/part-M.parquet), "
        "so no plan file grows with the corpus",
    )


class ProbeConfig(Section):
    """Measuring each video before anything else."""

    truncated_tolerance_frames: int = Field(
        2,
        ge=0,
        description="a file whose header lists more frames than it holds, by more than this, "
        "is a truncated download (rejected)",
    )


class CutProfile(EncodeProfile):
    """How a bucket's samples are cut. normalize=false lets a span that starts on a keyframe be
    stream-copied; everything else is re-encoded with the EncodeProfile fields."""

    normalize: bool = Field(False, description="always re-encode (false: copy when possible)")
    snap_keyframe_s: float = Field(
        0.0,
        ge=0,
        description="copy mode: move a clip's start forward to a keyframe at most this far ahead "
        "so that it can be stream-copied (0 = spans stay exact)",
    )

    threads: int = Field(
        2,
        ge=1,
        description="x264 threads, fixed: the bytes depend on the count (0 = per-node auto is "
        "not allowed in a build)",
    )

    def encode_profile(self) -> EncodeProfile:
        return EncodeProfile(**{k: getattr(self, k) for k in EncodeProfile.model_fields})


# Fixed codec and encoder threads: x264's output depends on its thread count, and "auto" would
# pick NVENC on GPU nodes only, so either would make sample bytes depend on the node.
_SHORT = dict(codec="libx264", threads=2, audio=True, max_short_side=360, fps_cap=30.0, gop=15)
_LONG = dict(codec="libx264", threads=2, audio=True, max_short_side=240, fps_cap=8.0, gop=16)


class EncodeConfig(Section):
    short: CutProfile = Field(
        default_factory=lambda: CutProfile(**_SHORT), description="profile of short clips"
    )
    long: CutProfile = Field(
        default_factory=lambda: CutProfile(**_LONG),
        description="profile of long samples (lower fps and size)",
    )

    def profile(self, bucket: str) -> CutProfile:
        return self.long if bucket == "long" else self.short


class CaptionConfig(Section):
    """Which text becomes the sample's main caption (``KEY.txt``)."""

    prefer_origins: list[str] = Field(
        ["dense_caption", "short_caption", "name", "clip_text"],
        description="whole-sample captions from these fields win, in this order",
    )
    max_chars: int = Field(
        2000, ge=16, description="a caption joined from ASR/narrations is cut here"
    )


class ShardsConfig(Section):
    target_mb: float = Field(256.0, gt=0, description="a shard rolls over past this size")


class BuildConfig(Section):
    """``longvid build``: manifest (or sources to ingest first) → shards, index, tables, summary."""

    manifest: str | None = Field(
        None, description="ingest output (folder with manifest.parquet, or the file itself)"
    )
    sources: list[SourceConfig] | None = Field(
        None, description="sources to ingest into <output.root>/ingest first (instead of manifest)"
    )
    sources_root: str | None = Field(
        None, description="relative source roots are taken under this folder or s3:// prefix"
    )
    output: OutputConfig = Field(
        default_factory=OutputConfig, description="where the build is written"
    )
    ray: BuildRayConfig = Field(
        default_factory=BuildRayConfig, description="Ray cluster and resources"
    )
    s3: S3Config = Field(default_factory=S3Config, description="S3 access for inputs and outputs")
    units: UnitsConfig = Field(default_factory=UnitsConfig, description="work units")
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="probing")
    detect: DetectConfig = Field(
        default_factory=DetectConfig, description="decode pass and shot detection"
    )
    segment: SegmentConfig = Field(
        default_factory=SegmentConfig, description="segmentation policy per source"
    )
    encode: EncodeConfig = Field(
        default_factory=EncodeConfig, description="cut profiles per bucket"
    )
    caption: CaptionConfig = Field(default_factory=CaptionConfig, description="main caption")
    annotate: AnnotateConfig = Field(
        default_factory=AnnotateConfig, description="annotation stages (longvid.annotate)"
    )
    dedup: DedupConfig = Field(
        default_factory=DedupConfig,
        description="duplicate search at the build's finish (longvid.dedup; with stage filter)",
    )
    shards: ShardsConfig = Field(default_factory=ShardsConfig, description="WebDataset shards")
    stages: list[str] = Field(
        ["probe", "scan", "segment", "cut"],
        description="per-video stages in order (names from longvid.pipelines.stages.STAGES)",
    )
    seed: int = Field(0, description="seed for every random choice (frame sampling)")
    work_dir: str | None = Field(
        None, description="scratch folder for tasks (null = the system temp dir)"
    )
    progress: bool = Field(True, description="print a progress line per finished unit")

    @model_validator(mode="after")
    def _one_input(self) -> BuildConfig:
        if (self.manifest is None) == (self.sources is None):
            raise ValueError("give exactly one of manifest (an ingest output) or sources")
        return self


CONTENT_SECTIONS = (
    "units",
    "probe",
    "detect",
    "segment",
    "encode",
    "caption",
    "annotate",
    "dedup",
    "shards",
    "stages",
    "seed",
)


def content_hash(cfg: BuildConfig) -> str:
    """Hash of what decides sample contents (not where or how fast the build runs)."""
    data = cfg.model_dump(mode="json")
    blob = json.dumps({k: data[k] for k in CONTENT_SECTIONS}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def as_dict(cfg: BuildConfig) -> dict[str, Any]:
    """JSON-safe dump for shipping the config into Ray tasks."""
    return cfg.model_dump(mode="json")
