"""The curriculum from config: stage plans (accumulation, lengths, fractions, refusals), freezing
and resolution per stage, parameter groups with their learning rates, the cosine schedule with
warm-up, sequence-length cuts, --stop-after, and the shipped train configs."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from longvid.config import load_config
from longvid.errors import ConfigError
from longvid.training.config import TrainConfig
from longvid.training.curriculum import (
    apply_stage,
    cosine_with_warmup,
    make_optimizer,
    plan_stages,
    warmup_steps,
)
from longvid.training.data.catalog import load_catalog
from longvid.training.trainer import answer_tokens, fit_to_length, parse_stop_after

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "conf" / "train" / "demo.yaml"
FLASH = REPO / "conf" / "train" / "videochat_flash.yaml"


def stage(name: str, **kw) -> dict:
    base = {"name": name, "trainable": ["projector"], "lr": 1e-3, "global_batch": 4,
            "max_seq_len": 512}
    return {**base, **kw}


def train_cfg(corpus: str, *stages: dict, **top) -> TrainConfig:
    return TrainConfig.model_validate(
        {"model": "conf/model/tiny.yaml", "data": {"corpus": [corpus]}, "stages": list(stages),
         **top}
    )


# ------------------------------------------------------------------------------- schedule
def test_cosine_with_warmup_matches_the_hf_formula() -> None:
    f = cosine_with_warmup(steps=100, warmup=3, min_ratio=0.0)
    assert [f(k) for k in range(4)] == [0.0, 1 / 3, 2 / 3, 1.0]
    assert f(3 + 97 // 2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 48 / 97)))
    values = [f(k) for k in range(3, 100)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))  # strictly decaying
    assert f(99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 96 / 97)))
    g = cosine_with_warmup(steps=10, warmup=0, min_ratio=0.1)
    assert g(0) == 1.0 and g(10) == pytest.approx(0.1)


def test_warmup_is_ceil_of_ratio() -> None:
    from longvid.training.config import StageConfig

    s = StageConfig.model_validate(stage("s", warmup_ratio=0.03))
    assert warmup_steps(s, 100) == 3
    assert warmup_steps(s, 101) == 4
    assert warmup_steps(s, 10) == 1


# ---------------------------------------------------------------------------------- plans
def test_plan_accumulation_and_lengths(loader_corpus, tiny_model_config) -> None:
    catalog = load_catalog([loader_corpus.root])  # 18 samples: 14 short, 4 long
    cfg = train_cfg(
        loader_corpus.root,
        stage("by_steps", steps=5, global_batch=8, micro_batch=2),
        stage("by_samples", samples=10, global_batch=4),
        stage("one_epoch", global_batch=4),
        stage("quarter", global_batch=2, data={"fraction": 0.25}),
        stage("long_only", global_batch=2, data={"mixture": [
            {"name": "long", "weight": 1.0, "buckets": ["long"]}]}),
    )
    plans = plan_stages(cfg, tiny_model_config(), catalog, world_size=2)
    assert [p.steps for p in plans] == [5, 3, 4, 2, 2]  # 5; ceil(10/4); 18//4; 5//2; 4//2
    assert [p.accum for p in plans] == [2, 2, 2, 1, 1]  # global / (micro x 2 ranks)
    assert plans[3].data.num_samples == round(0.25 * 18)
    assert plans[0].data.batch_size == 2 and plans[0].data.stage == "by_steps"
    assert plans[0].data.max_text_len == 512
    one = plan_stages(cfg, tiny_model_config(), catalog, world_size=1)
    assert [p.accum for p in one] == [4, 4, 4, 2, 2]


def test_plan_refusals(loader_corpus, tiny_model_config) -> None:
    catalog = load_catalog([loader_corpus.root])
    model = tiny_model_config()
    with pytest.raises(ConfigError, match="not a multiple of micro_batch 1 x world size 4"):
        plan_stages(train_cfg(loader_corpus.root, stage("a", global_batch=6)), model, catalog, 4)
    # 64 frames = 16 clips x 16 tokens = 256 visual tokens: no room for text in 260
    too_long = stage("b", max_seq_len=260, data={"t_min": 4, "t_max": 64})
    with pytest.raises(ConfigError, match="stage b: 64 frames give 256 visual tokens"):
        plan_stages(train_cfg(loader_corpus.root, too_long), model, catalog, 1)
    with pytest.raises(ConfigError, match="does not fill one global batch of 32"):
        plan_stages(train_cfg(loader_corpus.root, stage("c", global_batch=32)), model, catalog, 1)
    none = stage("d", data={"mixture": [{"name": "x", "weight": 1, "sources": ["nowhere"]}]})
    with pytest.raises(ConfigError, match="component 'x' selects no sample"):
        plan_stages(train_cfg(loader_corpus.root, none), model, catalog, 1)


def test_config_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="steps or samples, not both"):
        train_cfg("x", stage("a", steps=1, samples=2))
    with pytest.raises(ValueError, match="part_lr for frozen part"):
        train_cfg("x", stage("a", part_lr={"encoder": 1e-5}))
    with pytest.raises(ValueError, match="exactly one of model"):
        train_cfg("x", stage("a"), init="some/dir")
    with pytest.raises(ValueError, match="stage names must be unique"):
        train_cfg("x", stage("a"), stage("a"))
    with pytest.raises(ValueError, match="global_batch 6 is not a multiple of micro_batch 4"):
        train_cfg("x", stage("a", global_batch=6, micro_batch=4))
    with pytest.raises(ConfigError, match=r"stages\.0\.trainabl: unknown key"):
        load_config(DEMO, TrainConfig, ["stages=[{name: a, trainabl: [llm]}]"])


# ------------------------------------------------------------------- freezing and groups
def test_apply_stage_freezes_and_sets_resolution(loader_corpus, make_tiny_model) -> None:
    model = make_tiny_model().train()
    catalog = load_catalog([loader_corpus.root])
    cfg = train_cfg(
        loader_corpus.root,
        stage("s1", steps=1),
        stage("s4", steps=1, trainable=["encoder", "projector"], resolution=128,
              part_lr={"encoder": 2e-6}, lr=1e-5, weight_decay=0.1),
    )
    plans = plan_stages(cfg, model.cfg, catalog, 1)
    trained = apply_stage(model, plans[0])
    assert list(trained) == ["projector"]
    groups = model.parameter_groups()
    assert all(p.requires_grad for p in groups["projector"])
    assert not any(p.requires_grad for p in groups["encoder"] + groups["llm"])

    trained = apply_stage(model, plans[1])
    assert list(trained) == ["encoder", "projector"]
    assert not any(p.requires_grad for p in groups["llm"])
    assert model.cfg.encoder.img_size == 128
    assert model.encoder.pos_embed.shape == (4 * 8 * 8, model.cfg.encoder.width)
    frames = torch.randn(4, 3, 128, 128)
    assert model.encode_video(frames).shape[0] == 16  # still 4 tokens per frame after merging

    opt, sched = make_optimizer(trained, plans[1])
    by_name = {g["name"]: g for g in opt.param_groups}
    assert set(by_name) == {"encoder", "encoder.no_decay", "projector", "projector.no_decay"}
    assert by_name["encoder"]["lr"] == 0.0  # first warm-up step of the HF schedule
    assert by_name["encoder"]["initial_lr"] == 2e-6 and by_name["projector"]["initial_lr"] == 1e-5
    assert by_name["encoder"]["weight_decay"] == 0.1
    assert by_name["encoder.no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in by_name["projector"]["params"])
    assert all(p.ndim < 2 for p in by_name["projector.no_decay"]["params"])
    n_trained = sum(p.numel() for ps in trained.values() for p in ps)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == n_trained


def test_fit_to_length_cuts_text_not_video() -> None:
    ids = torch.arange(1, 21).reshape(2, 10)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 4:] = 0
    labels = ids.clone()
    labels[:, :3] = -100
    labels[1, 4:] = -100  # padding
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    # sample 0: 10 text + 8 visual - 1 placeholder = 17 > 12 → cut to 12 - 8 + 1 = 5 text tokens;
    # sample 1: 4 + 8 - 1 = 11 fits
    out_ids, out_mask, out_labels, cut = fit_to_length(batch, [8, 8], 12)
    assert cut == 1
    assert out_mask[0].tolist() == [1] * 5 + [0] * 5
    assert out_labels[0].tolist() == [-100] * 3 + [4, 5] + [-100] * 5
    assert torch.equal(out_mask[1], mask[1]) and torch.equal(out_labels[1], labels[1])
    assert batch["attention_mask"][0].sum() == 10  # the loader's batch is left alone
    assert answer_tokens(out_labels) == 2 + 1  # shifted: labels[:, 1:]


def test_parse_stop_after() -> None:
    assert parse_stop_after(None, 40) is None
    assert parse_stop_after("half", 41) == 20
    assert parse_stop_after("0.25", 40) == 10
    assert parse_stop_after("0.001", 40) == 1
    assert parse_stop_after("12", 40) == 12
    assert parse_stop_after("400", 40) == 40
    for bad in ("0", "-3", "1.5", "soon"):
        with pytest.raises(ConfigError, match="--stop-after"):
            parse_stop_after(bad, 40)


# ---------------------------------------------------------------------- shipped configs
@pytest.mark.parametrize("path", [DEMO, FLASH])
def test_train_configs_load_and_comment_every_key(path: Path) -> None:
    cfg = load_config(path, TrainConfig, ["data.corpus=/data/corpus"])
    assert [s.name for s in cfg.stages][:1] and len(cfg.stages) == 4
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"^\s*(- )?[A-Za-z_][\w]*:", line):
            assert "#" in line, f"{path.name}:{n}: key without a comment: {line.strip()}"


def test_videochat_flash_recipe_mirrors_hico_md() -> None:
    cfg = load_config(FLASH, TrainConfig)
    s1, s2, s3, s4 = cfg.stages
    assert [s.trainable for s in cfg.stages] == [
        ["projector"], ["encoder", "projector", "llm"], ["encoder", "projector", "llm"],
        ["encoder", "projector"],
    ]
    assert (s1.lr, s1.global_batch, s1.max_seq_len) == (1e-3, 512, 8192)
    assert (s1.data.t_min, s1.data.t_max) == (4, 4)
    assert (s2.data.t_min, s2.data.t_max) == (4, 8)
    for s in (s2, s3, s4):
        assert (s.lr, s.part_lr, s.global_batch, s.max_seq_len) == (
            1e-5, {"encoder": 2e-6}, 256, 32768)
    for s in (s3, s4):
        assert (s.data.t_min, s.data.t_max) == (64, 512)
    assert [s.resolution for s in cfg.stages] == [224, 224, 224, 448]
    assert s4.data.fraction == 0.25
    assert {c.name: c.weight for c in s3.data.mixture} == {
        "image_like": 1.1, "short": 1.7, "long": 0.7}
    for s in cfg.stages:
        assert (s.warmup_ratio, s.weight_decay, s.min_lr_ratio) == (0.03, 0.0, 0.0)
        assert s.steps is None and s.samples is None  # one epoch
    model = yaml.safe_load((REPO / cfg.model).read_text())  # the model preset it names
    assert model["encoder"]["img_size"] == 448 and model["merge"]["tokens_per_frame"] == 16
