"""What a batch holds: the right frames at the right times, the timestamp prompt, tokens and
labels, the mixture, substitutes for clips that do not decode, and S3 corpora."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longvid.media.decode import decode_at
from longvid.shards.manifest import SAMPLES_NAME, read_table
from longvid.training.data import LoaderError, make_loader, normalize_frames
from longvid.training.data.catalog import load_catalog
from longvid.training.data.config import MixtureComponent, StageData
from longvid.training.data.plan import largest_remainder, plan_epoch
from longvid.training.data.sampling import frame_count, midpoint_times
from longvid.training.tokenizer import IGNORE_INDEX, build_tokenizer
from tests.fixtures.loader_corpus import ClipSpec

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [
        f"A test pattern from {s} lasting {d} s." for s in ("webvid", "ego4d") for d in range(9)
    ]
    return build_tokenizer(texts * 4, tmp_path_factory.mktemp("tok"), vocab_size=400)


def expected_frames(clip_path, keyframes, times, size) -> np.ndarray:
    """float32 [T, 3, S, S]: decode_at on the original clip file, normalised like the loader."""
    raw = decode_at(str(clip_path), list(times), size=(size, size), keyframes=keyframes)
    x = raw.astype(np.float32) / 255.0
    x = (x - MEAN) / STD
    return x.transpose(0, 3, 1, 2)


def all_batches(loader) -> list[dict]:
    return list(loader)


def test_frames_times_and_prompt(loader_corpus, tokenizer):
    cfg = StageData(
        corpora=[loader_corpus.root],
        t_min=4,
        t_max=12,
        resolution=224,
        batch_size=3,
        num_workers=1,
        seed=3,
    )
    loader = make_loader(cfg, 0, 1, tokenizer)
    batches = all_batches(loader)
    assert len(batches) == 6  # 18 samples, batch 3
    keys = [k for b in batches for k in b["keys"]]
    assert sorted(keys) == sorted(loader_corpus.keys)  # one pass: every sample once
    spec_of = {s.key: s for s in loader_corpus.specs}
    checked = 0
    for b in batches:
        assert b["input_ids"].shape == b["labels"].shape == b["attention_mask"].shape
        for i, key in enumerate(b["keys"]):
            spec = spec_of[key]
            t = frame_count(spec.duration, 4, 12)
            assert b["n_frames"][i].item() == t
            assert b["durations"][i].item() == spec.duration
            np.testing.assert_allclose(
                b["frame_times"][i].numpy(), midpoint_times(spec.duration, t)
            )
            frames = b["frames"][i]
            assert frames.dtype == torch.float32 and frames.shape == (t, 3, 224, 224)
            if checked < 4:  # decoding at 224 px is the slow part: compare four clips
                want = expected_frames(
                    loader_corpus.clip_paths[key],
                    loader_corpus.keyframes[key],
                    midpoint_times(spec.duration, t),
                    224,
                )
                np.testing.assert_allclose(frames.numpy(), want, atol=1e-5)
                checked += 1
            # the text: exact timestamp prompt, then the default question; labels = answer
            n = int(b["attention_mask"][i].sum())
            text = tokenizer.decode(b["input_ids"][i, :n])
            prompt = (
                f"<video>\nThe video lasts for {spec.duration:.2f} seconds, and {t} frames are "
                "uniformly sampled from it.\nDescribe the video."
            )
            assert prompt in text
            labels = b["labels"][i, :n]
            answer = tokenizer.decode(labels[labels != IGNORE_INDEX])
            assert (
                answer == f"A test pattern from {spec.source} lasting {spec.duration} s.<|im_end|>"
            )
            assert (b["labels"][i, n:] == IGNORE_INDEX).all()
            assert (b["input_ids"][i, n:] == tokenizer.pad_token_id).all()
    assert checked == 4


def test_frame_times_prompt_and_own_conversation(loader_corpus_factory, tokenizer):
    conv = [
        {"from": "human", "value": "<image>\nWhat is shown?"},
        {"from": "gpt", "value": "Colour bars."},
        {"from": "human", "value": "How long?"},
        {"from": "gpt", "value": "Six seconds."},
    ]
    corpus = loader_corpus_factory(
        "conv", [ClipSpec("webvid", "qa0", duration=6.0, conversations=conv)]
    )
    cfg = StageData(
        corpora=[corpus.root],
        t_min=4,
        t_max=4,
        resolution=16,
        num_workers=0,
        frame_times_prompt=True,
    )
    (batch,) = all_batches(make_loader(cfg, 0, 1, tokenizer))
    text = tokenizer.decode(batch["input_ids"][0])
    assert (
        "<video>\nThe video lasts for 6.00 seconds, and 4 frames are uniformly sampled from it. "
        "These frames are located at 0.75s,2.25s,3.75s,5.25s.\nWhat is shown?"
    ) in text
    assert text.count("<video>") == 1 and "<image>" not in text
    labels = batch["labels"][0]
    learned = tokenizer.decode(labels[labels != IGNORE_INDEX])
    assert learned == "Colour bars.<|im_end|>Six seconds.<|im_end|>"


def test_mixture_proportions_are_exact(loader_corpus):
    weights = {"long": 1.0, "webvid": 2.0, "howto": 3.0}
    cfg = StageData(
        corpora=[loader_corpus.root],
        mixture=[
            MixtureComponent(name="long", weight=weights["long"], buckets=["long"]),
            MixtureComponent(name="webvid", weight=weights["webvid"], sources=["webvid"]),
            MixtureComponent(name="howto", weight=weights["howto"], sources=["howto100m"]),
        ],
        num_samples=61,
        batch_size=2,
        tail="drop",
        t_min=4,
        t_max=4,
        resolution=16,
        num_workers=2,
        seed=11,
    )
    loader = make_loader(cfg, 0, 1)
    batches = all_batches(loader)
    assert len(batches) == 30  # 61 // 2, the tail of one sample dropped
    source_of = {s.key: s.source for s in loader_corpus.specs}
    observed = {"long": 0, "webvid": 0, "howto": 0}
    for b in batches:
        for key, comp in zip(b["keys"], b["components"], strict=True):
            observed[comp] += 1
            assert (
                source_of[key] == {"long": "ego4d", "webvid": "webvid", "howto": "howto100m"}[comp]
            )
    # Tolerance: the 61 draws are split by the largest-remainder rule (each count within 1 of
    # 61·w/Σw), then one draw is dropped as the tail; so each count is within 2 of its share.
    exact = largest_remainder(list(weights.values()), 61)
    assert exact == [10, 20, 31]
    shares = {k: 60 * w / sum(weights.values()) for k, w in weights.items()}
    for name in weights:
        assert abs(observed[name] - shares[name]) < 2, (observed, shares)
    assert sum(observed.values()) == 60
    assert sum(abs(observed[n] - e) for n, e in zip(weights, exact, strict=True)) == 1
    assert loader.state_dict()["consumed_per_component"] == {"long": 0, "webvid": 0, "howto": 0}
    state_counts = plan_epoch(loader.catalog, cfg, 0, 1).consumed_per_component(30, list(weights))
    assert state_counts == observed


def test_corrupt_sample_is_substituted_and_counted(loader_corpus_factory):
    specs = [ClipSpec("webvid", f"ok{i}", duration=3.0 + i) for i in range(5)]
    specs.append(ClipSpec("webvid", "broken", duration=4.5, corrupt=True))
    corpus = loader_corpus_factory("corrupt", specs)
    cfg = StageData(
        corpora=[corpus.root],
        num_samples=24,
        batch_size=4,
        t_min=4,
        t_max=4,
        resolution=16,
        seed=5,
    )
    broken = specs[-1].key
    runs = {}
    for workers in (0, 2):
        loader = make_loader(cfg.model_copy(update={"num_workers": workers}), 0, 1)
        batches = all_batches(loader)
        planned = [k for b in batches for k in b["planned_keys"]]
        delivered = [k for b in batches for k in b["keys"]]
        assert len(delivered) == len(planned) == 24  # nothing skipped
        assert broken in planned and broken not in delivered
        replaced = [k for b in batches for k in b["replaced"]]
        assert replaced == [broken] * planned.count(broken)
        assert sum(b["substituted"] for b in batches) == planned.count(broken)
        assert loader.state_dict()["substituted"] == planned.count(broken)
        for p, d in zip(planned, delivered, strict=True):
            assert d == p or (p == broken and d != broken)
        runs[workers] = delivered
    assert runs[0] == runs[2]  # the substitute is the same whatever the worker count


def test_all_substitutes_failing_is_an_error(loader_corpus_factory):
    specs = [ClipSpec("webvid", f"bad{i}", duration=3.0, corrupt=True) for i in range(3)]
    corpus = loader_corpus_factory("allbad", specs)
    cfg = StageData(corpora=[corpus.root], t_min=4, t_max=4, resolution=16, num_workers=2)
    with pytest.raises(LoaderError, match=r"failed to load and none of its 2 substitutes"):
        all_batches(make_loader(cfg, 0, 1))


def test_truncated_shard_fails_loudly(loader_corpus_factory):
    corpus = loader_corpus_factory(
        "trunc", [ClipSpec("webvid", f"t{i}", duration=3.0) for i in range(3)]
    )
    table = read_table(f"{corpus.root}/{SAMPLES_NAME}")
    shard = table.column("shard")[0].as_py()
    path = f"{corpus.root}/{shard}"
    with open(path, "r+b") as f:
        f.truncate(2048)
    for workers in (0, 2):
        cfg = StageData(corpora=[corpus.root], t_min=4, t_max=4, resolution=16, num_workers=workers)
        with pytest.raises(LoaderError, match=r"ShardError: .*shard-00000\.tar: truncated"):
            all_batches(make_loader(cfg, 0, 1))


def test_s3_corpus_matches_local(s3_server, loader_corpus_factory, tmp_path):
    specs = [ClipSpec("webvid", f"s3v{i}", duration=2.0 + i) for i in range(5)]
    local = loader_corpus_factory("s3-local", specs)
    remote = loader_corpus_factory(s3_server.uri("corpora/s3-remote"), specs)
    assert remote.root.startswith("s3://")
    assert load_catalog([remote.root]).fingerprint == load_catalog([local.root]).fingerprint
    cfg = StageData(
        corpora=[local.root],
        num_samples=6,
        batch_size=2,
        t_min=4,
        t_max=8,
        resolution=32,
        num_workers=2,
        seed=2,
    )
    got = {}
    for name, root in (("local", local.root), ("s3", remote.root)):
        batches = all_batches(make_loader(cfg.model_copy(update={"corpora": [root]}), 0, 1))
        got[name] = batches
    assert [b["keys"] for b in got["s3"]] == [b["keys"] for b in got["local"]]
    for a, b in zip(got["s3"], got["local"], strict=True):
        for fa, fb in zip(a["frames"], b["frames"], strict=True):
            assert torch.equal(fa, fb)


def test_uint8_frames_normalise_to_the_float_frames(loader_corpus):
    cfg = StageData(
        corpora=[loader_corpus.root],
        num_samples=4,
        batch_size=2,
        t_min=4,
        t_max=8,
        resolution=32,
        num_workers=0,
        seed=9,
    )
    floats = all_batches(make_loader(cfg, 0, 1))
    raw = all_batches(make_loader(cfg.model_copy(update={"frames_dtype": "uint8"}), 0, 1))
    assert [b["keys"] for b in raw] == [b["keys"] for b in floats]
    for a, b in zip(raw, floats, strict=True):
        for fa, fb in zip(a["frames"], b["frames"], strict=True):
            assert fa.dtype == torch.uint8 and fb.dtype == torch.float32
            assert fa.float().std() > 10  # real picture content, not a constant
            torch.testing.assert_close(normalize_frames(fa, cfg.mean, cfg.std), fb)
