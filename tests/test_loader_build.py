"""The loader over a corpus written by the real build job (``built_corpus`` fixture)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from longvid.media.decode import decode_at
from longvid.shards.reader import read_sample
from longvid.training.data import make_loader, normalize_frames
from longvid.training.data.catalog import load_catalog
from longvid.training.data.config import StageData
from longvid.training.data.sample import keyframes_of
from longvid.training.data.sampling import frame_count, midpoint_times
from longvid.training.tokenizer import build_tokenizer

pytestmark = pytest.mark.slow  # needs the session's build of the sample corpus


def test_loader_reads_a_real_build(built_corpus, tmp_path):
    root = str(built_corpus)
    catalog = load_catalog([root])
    assert len(catalog) > 0
    metas = {}
    for i in range(len(catalog)):
        row = catalog.row(i)
        got = read_sample(root, row)
        metas[row["key"]] = (json.loads(got["json"]), got["mp4"], row)
        # the build stores the clip's keyframes; the loader must find them (no extra demux)
        assert keyframes_of(metas[row["key"]][0]), row["key"]
    texts = [r["caption"] or "" for _, _, r in metas.values()]
    tok = build_tokenizer(texts * 3 + ["Describe the video."], tmp_path / "tok", vocab_size=500)
    cfg = StageData(
        corpora=[root],
        t_min=4,
        t_max=8,
        resolution=32,
        batch_size=2,
        tail="pad",
        num_workers=2,
        frames_dtype="uint8",
        seed=1,
    )
    batches = list(make_loader(cfg, 0, 1, tok))
    keys = [k for b in batches for k, pad in zip(b["keys"], b["padded"], strict=True) if not pad]
    assert sorted(keys) == sorted(metas)  # one pass, every sample once
    assert sum(b["substituted"] for b in batches) == 0  # every clip of the build decodes
    checked = 0
    for b in batches:
        for i, key in enumerate(b["keys"]):
            meta, mp4, row = metas[key]
            t = frame_count(row["duration"], 4, 8)
            times = midpoint_times(row["duration"], t)
            np.testing.assert_allclose(b["frame_times"][i].numpy(), times)
            if checked < 3:
                want = decode_at(mp4, list(times), size=(32, 32), keyframes=keyframes_of(meta))
                assert torch.equal(b["frames"][i], torch.from_numpy(want).permute(0, 3, 1, 2))
                checked += 1
            n = int(b["attention_mask"][i].sum())
            text = tok.decode(b["input_ids"][i, :n])
            assert f"The video lasts for {row['duration']:.2f} seconds, and {t} frames" in text
            conv = meta.get("conversations")
            if conv:  # annotated: the sample's own first question follows the prompt
                first = conv[0]["value"].replace("<image>", "").replace("<video>", "").strip()
                assert first in text
    assert checked == 3
    # the float path of the same frames is their normalisation
    f = normalize_frames(batches[0]["frames"][0], cfg.mean, cfg.std)
    assert f.dtype == torch.float32 and f.shape == batches[0]["frames"][0].shape
