"""Long context: ``llm.rope_scaling`` (YaRN, linear) reaches the Qwen2 config; positions past the
original window run (the layer runner agrees with transformers there); factor 1 changes nothing."""

from __future__ import annotations

import math

import pytest
import torch

from longvid.errors import ConfigError
from longvid.training.model.convert import _rope_scaling
from longvid.training.model.dropout import LayerRunner

WINDOW = ("llm.max_position_embeddings=256",)
YARN = (
    "llm.max_position_embeddings=1024",
    "llm.rope_scaling={type: yarn, factor: 4.0, original_max_position_embeddings: 256}",
)


def long_embeds(n: int = 700, width: int = 64) -> torch.Tensor:
    return torch.randn(1, n, width, generator=torch.Generator().manual_seed(11))


def last_logits(model, embeds):
    with torch.no_grad():
        return model.llm(inputs_embeds=embeds).logits[:, -1]


@pytest.mark.parametrize("kind", ["linear", "yarn"])
def test_factor_one_changes_nothing(make_tiny_model, kind):
    plain = make_tiny_model(*WINDOW, seed=2)
    scaled = make_tiny_model(
        *WINDOW,
        f"llm.rope_scaling={{type: {kind}, factor: 1.0, original_max_position_embeddings: 256}}",
        seed=2,
    )
    assert scaled.llm.config.rope_parameters["rope_type"] == kind
    embeds = long_embeds(300)
    torch.testing.assert_close(
        last_logits(scaled, embeds), last_logits(plain, embeds), rtol=1e-6, atol=1e-6
    )


def test_yarn_reaches_transformers_and_runs_past_the_window(make_tiny_model):
    model = make_tiny_model(*YARN, seed=3)
    params = model.llm.config.rope_parameters
    assert params["rope_type"] == "yarn" and params["factor"] == 4.0
    assert params["original_max_position_embeddings"] == 256
    assert model.llm.config.max_position_embeddings == 1024
    # YaRN's attention temperature: 0.1 ln(factor) + 1
    rotary = model.llm.model.rotary_emb
    assert rotary.attention_scaling == pytest.approx(0.1 * math.log(4.0) + 1.0)
    plain = make_tiny_model(*WINDOW, seed=3)
    assert not torch.allclose(rotary.inv_freq, plain.llm.model.rotary_emb.inv_freq)

    embeds = long_embeds(700)  # 700 positions, past the original 256
    dense = last_logits(model, embeds)
    assert torch.isfinite(dense).all()
    # a random tiny model moves little, but well beyond float noise (1e-6 above)
    assert (dense - last_logits(plain, embeds)).abs().max() > 1e-5
    # the layer-by-layer prefill (used with dropout) places the same scaled positions
    with torch.no_grad():
        pre = LayerRunner(model.llm).prefill(embeds, 10, 600, [])
    torch.testing.assert_close(pre.logits, dense, rtol=1e-5, atol=1e-5)


def test_linear_scaling_stretches_positions(make_tiny_model):
    model = make_tiny_model("llm.rope_scaling={type: linear, factor: 2.0}", seed=4)
    plain = make_tiny_model(seed=4)
    # linear interpolation: inverse frequencies divided by the factor
    torch.testing.assert_close(
        model.llm.model.rotary_emb.inv_freq, plain.llm.model.rotary_emb.inv_freq / 2.0
    )


def test_local_llm_dir_takes_the_scaling(tmp_path, make_tiny_model, tiny_model_config):
    from longvid.training.model.hico import build_llm

    make_tiny_model(seed=5).llm.save_pretrained(tmp_path / "qwen")
    cfg = tiny_model_config(f"llm.path={tmp_path / 'qwen'}", *YARN).llm
    llm = build_llm(cfg, make_tiny_model(seed=5).tokenizer)
    assert llm.config.rope_parameters["rope_type"] == "yarn"
    assert llm.config.max_position_embeddings == 1024


def test_config_checks_and_release_fields(tiny_model_config):
    with pytest.raises(ConfigError, match="factor"):
        tiny_model_config("llm.rope_scaling={type: yarn, factor: 0.5}")
    with pytest.raises(ConfigError, match="type"):
        tiny_model_config("llm.rope_scaling={type: dynamic, factor: 2.0}")
    # the released NIAH setting, in transformers 4 spelling
    released = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert _rope_scaling(released) == {
        "type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 32768,
    }
    assert _rope_scaling(None) is None and _rope_scaling({"rope_type": "default"}) is None
