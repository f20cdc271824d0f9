"""Ray object-store pressure: a build whose object store is the smallest Ray accepts, with more
unit payloads in flight than fit in it, spills to disk and still gives the same output as a build
with a roomy store.

What travels through the object store between operators is a unit's pickled payload (its videos'
samples: clip bytes, metadata, and the frames the model stages look at) on its way from the cpu
task to the model-stage actor, which writes the unit. The frames stage with large frames and many
of them per sample makes each payload tens of MB, so a few units in flight overflow a 75 MiB
store. The model stage (``embed``, a tiny random open_clip) reads those frames, so they do cross
(frames no model stage reads are dropped before the payload is made).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from longvid.config import load_config
from longvid.pipelines.build import connect_ray, run_build
from longvid.pipelines.config import BuildConfig
from longvid.samples.synth import VideoSpec, plan_shots, render_video
from longvid.schema import MANIFEST_SCHEMA, VideoRecord
from longvid.shards import read_table, write_table
from tests.fixtures.annotate import TINY_CLIP
from tests.fixtures.build import FPS, GOP, overrides

pytestmark = pytest.mark.slow

SMALLEST_STORE = 75 * 1024 * 1024  # Ray refuses a smaller object store

WIDTH, HEIGHT = 640, 360
VIDEOS, SECONDS = 8, 12

PRESSURE = [
    "ray.num_cpus=2",
    # two model-stage actors and the cpu tasks share the 2 CPUs: payloads queue for the actors
    "ray.process_num_cpus=0.5",
    "ray.model_min_actors=2",
    "ray.model_max_actors=2",
    "units.videos_per_unit=1",  # one unit per video: more payloads than the store holds
    "segment.sources={generic: {mode: shots}}",
    "stages=[probe, scan, segment, cut, frames, embed]",
    "annotate.embed.model=custom",
    # payloads of tens of MB: 12 full-size frames per sample (they never reach the shards)
    f"annotate.frames.short_side={HEIGHT}",
    "annotate.frames.frames_short=12",
    "annotate.frames.frames_long_min=12",
    "annotate.frames.frames_long_max=12",
]


@pytest.fixture(scope="module")
def big_inputs(tmp_path_factory) -> Path:
    """VIDEOS keyframe-aligned 640x360 videos (cut by stream copy), listed in a manifest."""
    root = tmp_path_factory.mktemp("pressure_inputs")
    records = []
    for i in range(VIDEOS):
        path = root / f"v{i}.mp4"
        shots = plan_shots(random.Random(i), int(SECONDS * FPS), FPS, min_s=2.0, max_s=4.0,
                           frame_step=GOP)
        render_video(VideoSpec(path, FPS, WIDTH, HEIGHT, tuple(shots), audio=False))
        records.append(VideoRecord(source="generic", video_id=f"v{i}", video_uri=str(path),
                                   locator=f"list:{i}", licence="test-licence").as_row())
    write_table(str(root / "ingest" / "manifest.parquet"), records, MANIFEST_SCHEMA)
    return root / "ingest"


def config(manifest: Path, out: Path, *extra: str) -> BuildConfig:
    cfg = load_config(None, BuildConfig, [*overrides(), f"manifest={manifest}",
                                          f"output.root={out}", *PRESSURE, *extra])
    embed = cfg.annotate.embed.model_copy(update={"model_cfg": TINY_CLIP})  # tiny, random
    return cfg.model_copy(update={"annotate": cfg.annotate.model_copy(update={"embed": embed})})


def spilled_bytes() -> int:
    """Bytes the running local Ray has spilled from its object store so far (the raylet's
    cumulative counter, as ``ray memory --stats-only`` prints it)."""
    import ray
    from ray._private.internal_api import memory_summary

    text = memory_summary(ray.get_runtime_context().gcs_address, stats_only=True)
    print(text)
    m = re.search(r"Spilled (\d+) MiB, (\d+) objects", text)
    return 0 if m is None else int(m.group(1)) * 1024 * 1024


def build_with_store(manifest: Path, out: Path, store: int | None) -> int:
    """Build in a local Ray started from the config's ray section; the bytes it spilled."""
    import ray

    extra = [] if store is None else [f"ray.object_store_memory={store}"]
    cfg = config(manifest, out, *extra)
    assert connect_ray(cfg)  # the build's own start-up, so the knob is the one under test
    try:
        if store is not None:
            assert ray.cluster_resources()["object_store_memory"] == store
        run_build(cfg)  # joins the Ray started above, which stays up for the stats
        return spilled_bytes()
    finally:
        ray.shutdown()


def rows(root: Path) -> list[dict]:
    table = read_table(str(root / "samples.parquet")).to_pylist()
    return sorted(table, key=lambda r: r["key"])


def test_small_object_store_spills_and_gives_the_same_output(big_inputs, tmp_path):
    normal, small = tmp_path / "normal", tmp_path / "small"
    build_with_store(big_inputs, normal, None)
    spilled = build_with_store(big_inputs, small, SMALLEST_STORE)
    assert spilled > 0, "the small store never spilled: the test put no pressure on it"

    a, b = rows(normal), rows(small)
    assert len({r["record_id"] for r in a}) == VIDEOS  # every video gave samples
    assert [r["key"] for r in a] == [r["key"] for r in b]
    assert a == b  # every column of every samples row, shard names and byte offsets included
    ia = json.loads((normal / "index.json").read_text())
    ib = json.loads((small / "index.json").read_text())
    assert ia == ib  # same shards, sizes and checksums
