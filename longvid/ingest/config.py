"""Ingest config: one model per source (a union discriminated by ``name``) and the job model.

A source file (``conf/sources/<name>.yaml``) holds one source; a build config embeds a list of
them under ``sources:``. Paths of release files are relative to ``root`` (a local directory or an
``s3://bucket/prefix``); glob patterns are matched against the files directly under ``root``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from longvid.config import Section, validate_config
from longvid.errors import ConfigError

LICENCES = {
    "ego4d": "ego4d-licence",
    "howto100m": "youtube-content",
    "hdvila": "hdvila-research-use-agreement",
    "miradata": "miradata-research-use",
    "webvid": "webvid-non-commercial-research",
    "generic": "unspecified",
}

VIDEO_EXTENSIONS = [".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"]


class SourceBase(Section):
    root: str = Field(..., description="release root: local directory or s3://bucket/prefix")
    max_records: int | None = Field(
        None, ge=1, description="stop after this many input records (None = all); for trials"
    )


class Ego4DSource(SourceBase):
    """Ego4D v2: ego4d.json (videos) joined with narration.json (narrations, summaries)."""

    name: Literal["ego4d"] = Field("ego4d", description="source name")
    licence: str = Field(LICENCES["ego4d"], description="licence tag carried by every record")
    metadata_file: str = Field("v2/ego4d.json", description="ego4d.json under root")
    narration_file: str | None = Field(
        "v2/annotations/narration.json", description="narration.json under root; null = none"
    )
    video_dir: str = Field("v2/full_scale", description="folder of <video_uid>.mp4 under root")
    video_ext: str = Field(".mp4", description="video file extension")
    narration_passes: list[str] = Field(
        ["narration_pass_1", "narration_pass_2"],
        description="narration passes to read, in order of preference",
    )
    all_passes: bool = Field(
        False, description="keep every listed pass (true) or only the first one present (false)"
    )
    default_fps: float = Field(
        30.0, gt=0, description="fps for timestamp_frame when the video gives none"
    )


class HowTo100MSource(SourceBase):
    """HowTo100M: HowTo100M_v1.csv (videos, categories) joined with caption.json (ASR)."""

    name: Literal["howto100m"] = Field("howto100m", description="source name")
    licence: str = Field(LICENCES["howto100m"], description="licence tag carried by every record")
    videos_csv: str = Field("HowTo100M_v1.csv", description="video list with categories")
    caption_file: str | None = Field(
        "caption.json", description="caption.json or raw_caption.json under root; null = none"
    )
    task_ids_file: str | None = Field(
        "task_ids.csv", description="task_id → task name table; skipped when absent"
    )
    video_dir: str = Field("videos", description="folder of <video_id>.mp4 under root")
    video_ext: str = Field(".mp4", description="video file extension")
    dedup_asr: bool = Field(
        True, description="turn rolling ASR into clean non-overlapping segments"
    )


class HDVilaSource(SourceBase):
    """HD-VILA-100M: hdvila_part*.jsonl (videos, clip spans) + hdvila_clip_text_100m.jsonl."""

    name: Literal["hdvila"] = Field("hdvila", description="source name")
    licence: str = Field(LICENCES["hdvila"], description="licence tag carried by every record")
    metadata_files: list[str] = Field(
        ["hdvila_part*.jsonl"], description="metadata JSONL files or glob patterns under root"
    )
    text_file: str | None = Field(
        "hdvila_clip_text_100m.jsonl", description="clip_id → ASR text JSONL; null = none"
    )
    video_dir: str = Field("download_videos", description="folder of <video_id>.mp4 under root")
    clips_dir: str = Field(
        "video_clips", description="folder of <video_id>/<clip_id> pre-cut clips under root"
    )
    use_clip_files: bool = Field(
        False, description="one record per pre-cut clip file instead of one per raw video"
    )
    video_ext: str = Field(".mp4", description="raw video file extension")


class MiraDataSource(SourceBase):
    """MiraData v1 CSV (one row per clip)."""

    name: Literal["miradata"] = Field("miradata", description="source name")
    licence: str = Field(LICENCES["miradata"], description="licence tag carried by every record")
    metadata_file: str = Field("miradata_v1_9k.csv", description="the v1 CSV under root")
    layout: Literal["source", "clips"] = Field(
        "source",
        description="source: one record per raw source video with its clips as spans; "
        "clips: one record per clip file (file_path column)",
    )
    source_dir: str = Field(
        "", description="folder holding <id//1000:09d>/<id:012d>.mp4 raw videos ('' = root)"
    )
    video_ext: str = Field(".mp4", description="raw source video extension")


class WebVidSource(SourceBase):
    """WebVid-2M/10M results CSVs."""

    name: Literal["webvid"] = Field("webvid", description="source name")
    licence: str = Field(LICENCES["webvid"], description="licence tag carried by every record")
    metadata_files: list[str] = Field(
        ["results_*.csv"], description="results CSV files or glob patterns under root"
    )
    video_dir: str = Field("videos", description="folder of <page_dir>/<videoid>.mp4 under root")
    video_ext: str = Field(".mp4", description="video file extension")


class GenericSource(SourceBase):
    """A folder of videos, or a JSONL/CSV list with ``path`` (+ ``id``, ``text``, ``spans``)."""

    name: Literal["generic"] = Field("generic", description="source name")
    licence: str = Field(LICENCES["generic"], description="licence tag carried by every record")
    manifest: str | None = Field(
        None, description="JSONL or CSV list under root (.jsonl/.csv); null = list the folder"
    )
    extensions: list[str] = Field(
        VIDEO_EXTENSIONS, description="video extensions picked up when listing the folder"
    )
    text_kind: Literal["narration", "asr", "caption", "summary", "title"] = Field(
        "caption", description="kind given to texts from the list"
    )


SourceConfig = Annotated[
    Ego4DSource | HowTo100MSource | HDVilaSource | MiraDataSource | WebVidSource | GenericSource,
    Field(discriminator="name"),
]

SOURCE_MODELS: dict[str, type[SourceBase]] = {
    "ego4d": Ego4DSource,
    "howto100m": HowTo100MSource,
    "hdvila": HDVilaSource,
    "miradata": MiraDataSource,
    "webvid": WebVidSource,
    "generic": GenericSource,
}


class IngestConfig(Section):
    """An ingest job: sources in, ``manifest.parquet`` + ``rejects.parquet`` out."""

    sources: list[SourceConfig] = Field(..., min_length=1, description="sources to ingest")
    out: str = Field("ingest-out", description="output directory or s3:// prefix")
    row_group_size: int = Field(
        1024, ge=1, description="manifest rows per Parquet row group (bounds writer memory)"
    )
    progress: bool = Field(True, description="show a progress bar on stderr when it is a tty")


def source_from_dict(data: dict[str, Any], origin: str) -> SourceBase:
    """Validate one source mapping (as in ``conf/sources/<name>.yaml``); ``name`` picks the model."""
    name = data.get("name")
    if name not in SOURCE_MODELS:
        raise ConfigError(
            f"{origin}: name: expected one of {', '.join(SOURCE_MODELS)}, got {name!r}"
        )
    return validate_config(data, SOURCE_MODELS[name], origin)
