"""``longvid audit`` settings (conf/audit/default.yaml lists every key with a comment)."""

from __future__ import annotations

from pydantic import Field

from longvid.config import RayConfig, S3Config, Section
from longvid.dedup.config import DedupConfig


class ChecksConfig(Section):
    """What the integrity pass over the shards looks at."""

    decode_fraction: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="fraction of samples whose clip is decoded frame by frame (--deep = 1.0); "
        "the pick is a hash of (seed, key), so the same samples are decoded every run",
    )
    seed: int = Field(0, description="seed of the decode pick")
    decode_max_side: int = Field(
        64, ge=16, description="decode at this longer side: every frame is still decoded"
    )
    required_members: list[str] = Field(
        ["json", "mp4"], description="members every sample must have"
    )
    frame_tolerance: int = Field(
        0, ge=0, description="decoded frames may differ from num_frames by this many"
    )
    max_listed: int = Field(
        200, ge=1, description="problems listed per check in the report (all are counted)"
    )


class ReportConfig(Section):
    """How the figures are drawn and how much is listed."""

    bins: int = Field(20, ge=2, le=200, description="bars per histogram")
    examples: int = Field(5, ge=1, description="example ids per reject reason")
    percentiles: list[float] = Field(
        [0, 5, 25, 50, 75, 95, 100], description="percentiles shown under each histogram"
    )
    max_rows: int = Field(100, ge=1, description="rows listed in long tables (mismatches, ...)")


class DuplicatesConfig(Section):
    """Duplicates among the accepted samples."""

    exact: bool = Field(True, description="group samples whose clip bytes are equal (SHA-256)")
    near_cosine: float | None = Field(
        0.95,
        ge=-1.0,
        le=1.0,
        description="samples of the same bucket from different videos whose embeddings have at "
        "least this cosine form a near-duplicate cluster (null = off); needs embeddings",
    )
    max_clusters: int = Field(50, ge=1, description="duplicate groups listed in the report")
    search: DedupConfig = Field(
        default_factory=DedupConfig,
        description="the duplicate search (longvid.dedup): fingerprints, k-means clusters; the "
        "same settings as the build's dedup section give the same duplicates",
    )


class LeakageConfig(Section):
    """Corpus samples that overlap a list of evaluation videos (``--against``)."""

    near_cosine: float = Field(
        0.9,
        ge=-1.0,
        le=1.0,
        description="an evaluation clip and a sample whose embeddings have at least this cosine "
        "are a leak (video files only, and only when the corpus has embeddings)",
    )
    window_s: float = Field(
        10.0, gt=0, description="evaluation videos are embedded in windows of this length"
    )
    frames_per_window: int = Field(4, ge=1, description="frames pooled per window")
    video_exts: list[str] = Field(
        ["mp4", "mkv", "webm", "mov", "avi", "m4v"],
        description="file extensions taken as evaluation videos in a folder",
    )
    device: str = Field("cpu", description="torch device for the embedding model (cpu, cuda)")


class GalleryConfig(Section):
    """The report's sample gallery (frames as small JPEG files under OUT/gallery/)."""

    enabled: bool = Field(True, description="draw the gallery (reads and decodes a few clips)")
    per_group: int = Field(
        3, ge=1, description="samples shown per source and duration bucket (a seeded pick)"
    )
    seed: int = Field(0, description="seed of the pick: the same samples every run")
    frames: int = Field(4, ge=1, le=16, description="frames per strip, across the clip")
    height: int = Field(72, ge=16, le=480, description="frame height in pixels")
    jpeg_quality: int = Field(75, ge=10, le=95, description="JPEG quality of the frames")
    max_items: int = Field(5, ge=0, description="events and QA pairs shown per sample")
    duplicate_groups: int = Field(
        4, ge=0, description="duplicate groups shown side by side (largest first)"
    )
    extremes: int = Field(2, ge=0, description="longest and shortest samples shown")


class AuditConfig(Section):
    """The whole audit job."""

    ray: RayConfig = Field(default_factory=RayConfig, description="where the Ray job runs")
    s3: S3Config = Field(default_factory=S3Config, description="how to reach s3:// roots")
    concurrency: int | None = Field(
        None, ge=1, description="shards checked at once (null = as many as the CPUs allow)"
    )
    checks: ChecksConfig = Field(default_factory=ChecksConfig, description="integrity checks")
    report: ReportConfig = Field(default_factory=ReportConfig, description="figures and tables")
    duplicates: DuplicatesConfig = Field(
        default_factory=DuplicatesConfig, description="exact and near duplicates"
    )
    leakage: LeakageConfig = Field(
        default_factory=LeakageConfig, description="overlap with evaluation videos"
    )
    gallery: GalleryConfig = Field(
        default_factory=GalleryConfig, description="sample gallery in the report"
    )
