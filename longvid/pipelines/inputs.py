"""The build's input: an ingest output (manifest + rejects), or sources ingested first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from longvid import storage
from longvid.errors import ConfigError
from longvid.ingest.runner import MANIFEST_NAME, REJECTS_NAME, SUMMARY_NAME, run_ingest
from longvid.pipelines.config import BuildConfig


@dataclass
class BuildInput:
    """Where the build's records are; the driver never loads them (see plan.py)."""

    manifest_uri: str
    rejects_uri: str | None


def _resolve_sources(cfg: BuildConfig) -> list[Any]:
    out = []
    for src in cfg.sources or []:
        root = src.root
        if cfg.sources_root and not storage.is_remote(root) and not root.startswith("/"):
            root = storage.join(cfg.sources_root, root)
        out.append(src.model_copy(update={"root": root}))
    return out


def ingest_first(cfg: BuildConfig, restart: bool) -> str:
    """Ingest ``cfg.sources`` into ``<output.root>/ingest`` (kept for a resume: an ingest that
    finished — its summary is written last — is not redone unless ``restart``)."""
    from longvid.ingest.config import IngestConfig

    out = storage.join(cfg.output.root, "ingest")
    if not restart and storage.exists(storage.join(out, SUMMARY_NAME)):
        return out
    run_ingest(IngestConfig(sources=_resolve_sources(cfg), out=out, progress=cfg.progress))
    return out


def load_input(cfg: BuildConfig, restart: bool = False, *, ingest: bool = True) -> BuildInput:
    """The manifest (and its rejects) to build; ``ingest=False`` (a dry run) never ingests and
    uses the build's own ingest output as it is."""
    if cfg.manifest is not None:
        src = cfg.manifest
    elif ingest:
        src = ingest_first(cfg, restart)
    else:
        src = storage.join(cfg.output.root, "ingest")
    if src.endswith(".parquet"):  # the manifest file itself; its rejects sit next to it
        manifest = src
        folder = src.rsplit("/", 1)[0] if "/" in src else ""
        rejects: str | None = storage.join(folder, REJECTS_NAME) if folder else REJECTS_NAME
    else:  # an ingest output folder
        manifest = storage.join(src, MANIFEST_NAME)
        rejects = storage.join(src, REJECTS_NAME)
    if not storage.exists(manifest):
        raise ConfigError(
            f"{manifest}: no manifest there (run `longvid ingest` first, or give "
            "sources in the build config)"
        )
    if rejects is not None and not storage.exists(rejects):
        rejects = None
    return BuildInput(manifest, rejects)
