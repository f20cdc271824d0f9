"""Settings of the duplicate search shared by the build's filter, the audit and the leakage
check (``annotate.filters.dedup`` in a build config, ``duplicates.search`` in the audit's)."""

from __future__ import annotations

from pydantic import Field

from longvid.config import Section


class DedupConfig(Section):
    """How near duplicates are searched: k-means clusters over the embeddings (pairs are only
    compared inside a cluster) and the perceptual fingerprint's limits."""

    fingerprint_max_bits: int | None = Field(
        32, ge=0, le=128,
        description="two clips whose perceptual fingerprints (4 frames x 64-bit DCT hash) "
        "differ in at most this many of 256 bits, with matching frame colours, are copies "
        "(null = off)",
    )
    colour_tolerance: float = Field(
        24.0, ge=0, le=255,
        description="copies' frames differ by at most this much in mean R, G or B (0..255)",
    )
    clusters: int | None = Field(
        None, ge=1,
        description="k-means clusters of the embeddings (null = samples / cluster_size)",
    )
    cluster_size: int = Field(
        1000, ge=2, description="mean samples per cluster when clusters is null"
    )
    spill_margin: float = Field(
        0.05, ge=0, le=2,
        description="a sample is also compared inside its second-nearest cluster when that "
        "centroid is at most this much less similar (catches pairs across a cluster border)",
    )
    train_points_per_cluster: int = Field(
        40, ge=1, description="k-means trains on this many samples per cluster (a seeded pick)"
    )
    max_train_points: int = Field(
        200_000, ge=1, description="at most this many samples train the k-means"
    )
    kmeans_iters: int = Field(12, ge=1, description="k-means iterations")
    batch: int = Field(
        65536, ge=1, description="samples per batch when assigning clusters and comparing pairs"
    )
    task_rows: int = Field(
        1_000_000, ge=1,
        description="partitioned search: sample rows read by one assignment task (whole parts)",
    )
    bucket_rows: int = Field(
        500_000, ge=1,
        description="partitioned search: about this many cluster members per pair task "
        "(its memory: bucket_rows x D x 2 bytes for the float16 vectors)",
    )
    seed: int = Field(0, description="seed of the k-means training pick and initialisation")
    device: str = Field(
        "auto", description="auto (CUDA when present), cpu or cuda: where clusters and pairs "
        "are computed"
    )
