"""open_clip embedder (tiny random model from a config), frame times, captioner and rewriter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longvid.annotate.captioner import Captioner
from longvid.annotate.config import EmbedConfig, FramesConfig, ModelCaptionsConfig, RewriteConfig
from longvid.annotate.embed import ClipEmbedder, cosine, pool
from longvid.annotate.frames import midpoints, pick, sample_times, shot_spans
from longvid.annotate.qa import QAItem
from longvid.annotate.rewriter import Rewriter, keeps_facts
from longvid.errors import ConfigError, NotFoundError
from tests.fixtures.annotate import TINY_CAPTIONER, TINY_CLIP


def frames(n: int, h: int = 40, w: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def embedder() -> ClipEmbedder:
    return ClipEmbedder(EmbedConfig(model="custom", model_cfg=TINY_CLIP, batch_size=4,
                                    device="cpu"))


# ---- embedder ----------------------------------------------------------------------------------


def test_frame_and_text_embeddings_are_unit_rows_of_the_model_width(embedder):
    f = frames(6)
    e = embedder.encode_frames(f)
    assert e.shape == (6, 32) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    t = embedder.encode_texts(["a red screen", "a blue grid", "a red screen"])
    assert t.shape == (3, 32) and np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert np.allclose(t[0], t[2]) and not np.allclose(t[0], t[1])
    assert embedder.lineage()["dim"] == 32 and embedder.lineage()["model"] == "custom"


def test_batches_do_not_change_the_result_and_match_the_bare_model(embedder):
    f = frames(7)
    batched = embedder.encode_frames(f)  # batch_size 4: two forward passes
    x = embedder.preprocess(f)
    with torch.inference_mode():
        bare = embedder.model.encode_image(x, normalize=True).numpy()
    assert np.allclose(batched, bare, atol=1e-5)
    # preprocessing: short side to 32 (40x60 → 32x48), centre crop 32x32, CLIP normalisation
    assert tuple(x.shape) == (7, 3, 32, 32)
    img = torch.from_numpy(f).permute(0, 3, 1, 2).float() / 255
    ref = torch.nn.functional.interpolate(img, size=(32, 48), mode="bilinear", antialias=True,
                                          align_corners=False)[:, :, :, 8:40]
    ref = (ref - embedder.mean) / embedder.std
    assert torch.allclose(x, ref, atol=1e-5)


def test_random_init_follows_the_seed_and_a_checkpoint_loads(embedder, tmp_path):
    f = frames(3, seed=1)
    torch.manual_seed(123)  # the caller's generator state must not matter
    same = ClipEmbedder(EmbedConfig(model="custom", model_cfg=TINY_CLIP, device="cpu"))
    assert np.array_equal(same.encode_frames(f), embedder.encode_frames(f))
    other = ClipEmbedder(EmbedConfig(model="custom", model_cfg=TINY_CLIP, init_seed=1,
                                     device="cpu"))
    assert not np.allclose(other.encode_frames(f), embedder.encode_frames(f))
    ckpt = tmp_path / "tiny.pt"
    torch.save({"state_dict": other.model.state_dict()}, ckpt)
    loaded = ClipEmbedder(EmbedConfig(model="custom", model_cfg=TINY_CLIP, pretrained=str(ckpt),
                                      device="cpu"))
    assert np.allclose(loaded.encode_frames(f), other.encode_frames(f), atol=1e-6)
    assert loaded.lineage()["pretrained"] == str(ckpt)


def test_missing_checkpoint_and_bad_model_settings_are_clear_errors(tmp_path):
    with pytest.raises(NotFoundError, match="checkpoint not found"):
        ClipEmbedder(EmbedConfig(model="custom", model_cfg=TINY_CLIP,
                                 pretrained=str(tmp_path / "nope.pt")))
    with pytest.raises(ConfigError, match="needs model_cfg"):
        ClipEmbedder(EmbedConfig(model="custom"))
    with pytest.raises(ConfigError, match="not an open_clip model name"):
        ClipEmbedder(EmbedConfig(model="ViT-Nope-99"))
    with pytest.raises(ConfigError, match="model_cfg"):
        ClipEmbedder(EmbedConfig(model="custom", model_cfg={"embed_dim": 8, "bogus": 1}))


def test_pool_and_cosine():
    e = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    p = pool(e)
    assert np.allclose(p, [2 ** -0.5, 2 ** -0.5])
    assert pool(np.zeros((0, 2), np.float32)).tolist() == [0.0, 0.0]
    assert cosine(p, np.array([1.0, 0.0])) == pytest.approx(2 ** -0.5)
    assert cosine(np.zeros(2), p) == 0.0


# ---- frame times -------------------------------------------------------------------------------


def test_short_samples_take_midpoints_long_ones_a_stride_plus_every_shot():
    cfg = FramesConfig(frames_short=4, long_stride_s=10, frames_long_min=3, frames_long_max=5)
    assert sample_times(8.0, "short", [3.0], cfg) == [1.0, 3.0, 5.0, 7.0]
    times = sample_times(100.0, "long", [42.0, 43.0], cfg)
    # 5 stride midpoints (capped) + shot middles 21, 42.5, 71.5
    assert times == [10.0, 21.0, 30.0, 42.5, 50.0, 70.0, 71.5, 90.0]
    for a, b in shot_spans(100.0, [42.0, 43.0]):
        assert any(a <= t < b for t in times)  # every shot has a frame
    assert sample_times(20.0, "long", [], cfg) == pytest.approx(midpoints(20.0, 3), abs=1e-6)
    # more shots than frames_long_max: only the five longest get a frame of their own
    cuts = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 20.0, 40.0, 60.0, 80.0]  # 6 one-second shots first
    times = sample_times(100.0, "long", cuts, cfg)
    shot_middles = [13.0, 30.0, 50.0, 70.0, 90.0]  # the five 14-20 s shots
    assert times == sorted(set(midpoints(100.0, 5)) | set(shot_middles))


def test_pick_spreads_the_chosen_frames():
    times = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]
    assert pick(times, 8.0, 2) == [1, 5]  # nearest to 2.0 and 6.0 (ties: the earlier)
    assert pick(times, 8.0, 1) == [3]
    assert pick(times, 8.0, 20) == list(range(8))


# ---- captioner ---------------------------------------------------------------------------------


def test_random_captioner_from_config_gives_one_text_per_frame_in_batches():
    cfg = ModelCaptionsConfig(random_model=TINY_CAPTIONER, batch_size=2, max_new_tokens=5,
                              min_new_tokens=3, device="cpu")
    cap = Captioner(cfg)
    f = frames(5)
    texts = cap.caption(f)
    assert len(texts) == 5 and cap.calls == 3  # 5 frames, 2 per generate call
    words = set(TINY_CAPTIONER["words"])
    for t in texts:
        assert 3 <= len(t.split()) <= 5 and set(t.split()) <= words
    # greedy decoding: the same frames give the same texts, batch by batch or all at once
    one = Captioner(cfg.model_copy(update={"batch_size": 8}))
    assert one.caption(f) == texts and one.calls == 1
    lin = cap.lineage()
    assert lin["decoding"] == {"do_sample": False, "num_beams": 1, "max_new_tokens": 5,
                               "min_new_tokens": 3}
    assert lin["model"].startswith("model:random-") and lin["random_model"] == TINY_CAPTIONER
    assert cap.random and lin["random_weights"] is True  # built from a config: random


def test_captioner_loads_a_saved_model_from_a_local_directory(saved_captioner):
    cap = Captioner(ModelCaptionsConfig(model_path=str(saved_captioner), max_new_tokens=4,
                                        min_new_tokens=2, device="cpu"))
    texts = cap.caption(frames(3))
    assert len(texts) == 3 and all(2 <= len(t.split()) <= 4 for t in texts)
    assert cap.name == f"model:{saved_captioner.name}"
    assert cap.lineage()["model_path"] == str(saved_captioner)
    # saved straight after a random init: the marker file says so; the config can overrule it
    assert cap.random and cap.lineage()["random_weights"] is True
    trusted = Captioner(ModelCaptionsConfig(model_path=str(saved_captioner), device="cpu",
                                            random_weights=False))
    assert not trusted.random


def test_a_model_directory_without_the_marker_is_trusted(tmp_path):
    from longvid.annotate.provenance import RANDOM_MARKER, mark_random, weights_random

    assert not weights_random(str(tmp_path), False, None)
    assert weights_random(None, True, None)  # built from a config
    mark_random(tmp_path, {"seed": 0})
    assert (tmp_path / RANDOM_MARKER).is_file() and weights_random(str(tmp_path), False, None)
    assert not weights_random(str(tmp_path), False, False)


def test_captioner_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        Captioner(ModelCaptionsConfig())
    with pytest.raises(NotFoundError, match="no captioner here"):
        Captioner(ModelCaptionsConfig(model_path=str(tmp_path)))


# ---- rewriter ----------------------------------------------------------------------------------


def test_rewrites_must_keep_quoted_phrases_and_numbers():
    q = 'When does "C opens a door" happen? Answer in seconds after 12.5.'
    assert keeps_facts(q, 'At what time does "C opens a door" happen, after 12.5?')
    assert not keeps_facts(q, 'When does "C opens the door" happen after 12.5?')
    assert not keeps_facts(q, 'When does "C opens a door" happen?')
    assert not keeps_facts(q, "")
    assert not keeps_facts(q, q)


def test_rewriter_runs_a_saved_lm_and_keeps_templates_it_cannot_improve(saved_lm):
    rw = Rewriter(RewriteConfig(model_path=str(saved_lm), max_new_tokens=8, device="cpu",
                                batch_size=2))
    items = [QAItem("temporal_grounding", 'When does "a red screen" happen?',
                    "From 1.0 to 2.0 seconds.", {"event": 0, "span": [1.0, 2.0]}),
             QAItem("event_counting", 'How many times does "a blue grid" happen?',
                    "It happens 2 times.", {"label": "a blue grid", "count": 2}),
             QAItem("long_video_description", "Describe the video.", "From 0.0 ...",
                    {"events": [0]})]
    before = [(it.question, it.answer, it.check) for it in items]
    generated = rw.generate([rw.cfg.prompt.format(question=it.question) for it in items])
    assert len(generated) == 3 and all(isinstance(g, str) for g in generated)
    assert rw.generate([rw.cfg.prompt.format(question=items[0].question)]) == generated[:1]
    rw.rewrite(items)
    assert rw.tried == 3
    for it, (q, a, check), g in zip(items, before, generated, strict=True):
        assert (it.answer, it.check) == (a, check)  # answers and their facts never change
        assert it.rewritten == keeps_facts(q, g)
        assert it.question == (g if it.rewritten else q)
    # a random word-level LM cannot reproduce a quoted phrase: those templates stay
    assert not items[0].rewritten and not items[1].rewritten
    assert rw.used == sum(it.rewritten for it in items)
    assert rw.lineage()["decoding"]["do_sample"] is False
    assert rw.random  # the fixture marked its random weights
    # apply=False (a random model): usable rewrites come back, the questions stay
    again = [QAItem(it.task, q, a, c) for it, (q, a, c) in zip(items, before, strict=True)]
    usable = rw.rewrite(again, apply=False)
    assert [it.question for it in again] == [q for q, _, _ in before]
    assert not any(it.rewritten for it in again)
    assert usable == [g for (q, _, _), g in zip(before, generated, strict=True)
                      if keeps_facts(q, g)]


def test_a_shot_without_its_own_frame_takes_the_nearest_one():
    from longvid.annotate.stages import shot_embedding

    e = np.eye(3, dtype=np.float32)
    times = np.array([1.0, 5.0, 9.0])
    assert np.allclose(shot_embedding(e, times, 0.0, 6.0), pool(e[:2]))  # frames 0 and 1
    assert np.allclose(shot_embedding(e, times, 6.0, 7.0), e[1])  # none inside: 5 s is nearest


def test_rewriter_prompt_must_hold_the_question_and_nothing_else_in_braces(saved_lm):
    with pytest.raises(ConfigError, match="must contain"):
        Rewriter(RewriteConfig(model_path=str(saved_lm), prompt="Rephrase:"))
    with pytest.raises(ConfigError, match="only {question}"):
        Rewriter(RewriteConfig(model_path=str(saved_lm), prompt="{question} in {style}"))


# ---- batching across videos (the model pool batches the videos of several units) ----------------


def test_frames_of_many_videos_in_shared_passes_embed_as_each_video_alone():
    embedder = ClipEmbedder(EmbedConfig(model="custom", model_cfg=TINY_CLIP, batch_size=16,
                                        device="cpu"))
    # a one-frame video alone is a pass of one frame unless padded; the kernels for one row
    # and for 16 rows round differently, so only fixed-size passes give the same bits
    videos = [frames(1, seed=1), frames(2, 48, 64, seed=2), frames(23, 36, 36, seed=3)]
    alone = [embedder.encode_frames(v) for v in videos]
    together = embedder.encode_frames(videos)  # 26 frames of three sizes: passes of 16 and 10
    assert together.shape == (26, 32)
    assert np.array_equal(together, np.concatenate(alone))  # bit for bit
    texts = ["a red screen", "a blue grid", "stripes", "a green square moving"]
    assert np.array_equal(embedder.encode_texts(texts),
                          np.concatenate([embedder.encode_texts([t]) for t in texts]))


def test_frames_of_many_videos_in_shared_calls_caption_as_each_video_alone():
    cap = Captioner(ModelCaptionsConfig(random_model=TINY_CAPTIONER, batch_size=4,
                                        max_new_tokens=5, min_new_tokens=3, device="cpu"))
    videos = [frames(3, seed=4), frames(6, 48, 64, seed=5)]
    alone = [t for v in videos for t in cap.caption(v)]
    calls = cap.calls
    assert cap.caption([f for v in videos for f in v]) == alone
    assert cap.calls - calls == 3  # 9 frames, 4 per generate call
