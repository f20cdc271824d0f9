"""Probe: measure the video (duration, fps, frames, keyframes) and note where the release's
declared metadata disagrees (WebVid durations are often wrong: the measured value wins)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from longvid.errors import MediaError
from longvid.media.probe import probe
from longvid.stages.base import Stage
from longvid.stages.work import VideoWork

CHECKSUM_SPAN = 1 << 20  # lineage hashes the first and last MiB (+ size): cheap for big files


def head_tail_sha256(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(CHECKSUM_SPAN))
        if size > 2 * CHECKSUM_SPAN:
            f.seek(size - CHECKSUM_SPAN)
        h.update(f.read(CHECKSUM_SPAN))
    h.update(str(size).encode())
    return {"sha256_head_tail": h.hexdigest(), "size": size}


def compare_declared(record: dict[str, Any], measured: Any) -> dict[str, Any]:
    """Declared vs measured duration/fps/size; ``mismatch`` lists the fields that disagree."""
    out: dict[str, Any] = {"mismatch": []}
    checks = (
        (
            "duration",
            record.get("declared_duration"),
            measured.duration,
            max(1.0, 0.05 * measured.duration),
        ),
        ("fps", record.get("declared_fps"), measured.fps, max(0.5, 0.02 * measured.fps)),
        ("width", record.get("declared_width"), measured.width, 0),
        ("height", record.get("declared_height"), measured.height, 0),
    )
    for name, declared, value, tol in checks:
        if declared is None:
            continue
        out[f"declared_{name}"] = declared
        if abs(float(declared) - float(value)) > tol:
            out["mismatch"].append(name)
    return out


class Probe(Stage):
    name = "probe"

    def __call__(self, work: VideoWork) -> VideoWork:
        assert work.path is not None, "the unit runner fetches the file before the stages"
        work.probe = p = probe(work.path)
        listed = p.container_frames
        if listed is not None and listed - p.num_frames > self.cfg.probe.truncated_tolerance_frames:
            raise MediaError(
                work.uri,
                "truncated",
                f"the header lists {listed} frames ({p.container_duration or 0:.3f} s) but the "
                f"file holds {p.num_frames} ({p.duration:.3f} s): an incomplete download",
            )
        work.input_checksum = head_tail_sha256(work.path)
        work.notes["declared"] = compare_declared(work.record, work.probe)
        work.notes["probe_notes"] = list(work.probe.notes)
        return work
