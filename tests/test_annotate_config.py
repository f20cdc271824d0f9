"""Annotation config: documented defaults, clear errors, stage registration and order."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from longvid.annotate.config import AnnotateConfig
from longvid.config import load_config
from longvid.errors import ConfigError
from longvid.pipelines.config import BuildConfig, content_hash
from longvid.pipelines.stages import check_stage_list, stage_class

REPO = Path(__file__).resolve().parents[1]
CORE = ["probe", "scan", "segment", "cut"]


def test_default_yaml_lists_exactly_the_annotate_defaults():
    data = yaml.safe_load((REPO / "conf" / "build" / "default.yaml").read_text())["annotate"]
    assert AnnotateConfig.model_validate(data) == AnnotateConfig()
    # every key of every section is listed (so every key has its comment there)
    for section, value in AnnotateConfig().model_dump().items():
        if isinstance(value, dict):
            assert set(data[section]) == set(value), section
        else:
            assert data[section] == value, section


def test_demo_config_runs_every_annotation_stage_but_the_rewriter():
    cfg = load_config(REPO / "conf" / "build" / "demo.yaml", BuildConfig)
    assert cfg.stages[:4] == CORE
    assert set(cfg.stages[4:]) == {"filter", "captions", "frames", "model_captions", "embed",
                                   "events", "qa", "filter_final"}
    check_stage_list(cfg.stages)


def test_unknown_keys_and_tasks_are_config_errors_naming_them(tmp_path):
    bad = tmp_path / "b.yaml"
    bad.write_text("manifest: m\nannotate:\n  qa:\n    tasks: [temporal_grounding, dance]\n")
    with pytest.raises(ConfigError, match=r"annotate\.qa.*unknown QA task\(s\) \['dance'\]"):
        load_config(bad, BuildConfig)
    with pytest.raises(ConfigError, match=r"annotate\.embed\.modle: unknown key"):
        load_config(None, BuildConfig, ["manifest=m", "annotate.embed.modle=x"])


def test_stage_kinds_and_order():
    kinds = {n: stage_class(n).kind for n in ["filter", "captions", "frames", "model_captions",
                                              "embed", "events", "qa", "llm_qa", "qa_rewrite",
                                              "filter_final"]}
    assert kinds == {"filter": "cpu", "captions": "cpu", "frames": "cpu",
                     "model_captions": "model", "embed": "model", "events": "model",
                     "qa": "model", "llm_qa": "model", "qa_rewrite": "model",
                     "filter_final": "model"}
    with pytest.raises(ConfigError, match="model stages must come after all cpu stages"):
        check_stage_list([*CORE, "embed", "captions"])
    with pytest.raises(ConfigError, match="unknown stage 'caption'.*captions"):
        stage_class("caption")


def test_annotate_settings_are_part_of_the_content_hash():
    a = BuildConfig(manifest="m")
    b = BuildConfig(manifest="m", annotate={"qa": {"per_task": 2}})
    c = BuildConfig(manifest="m", ray={"model_concurrency": 3})
    assert content_hash(a) != content_hash(b)
    assert content_hash(a) == content_hash(c)  # where models run does not change the samples


def test_embedding_counting_needs_trained_open_clip_weights():
    with pytest.raises(ConfigError, match="annotate.*needs trained open_clip weights"):
        load_config(None, BuildConfig, ["manifest=m", "annotate.qa.count_method=embedding"])
    ok = BuildConfig(manifest="m", annotate={"qa": {"count_method": "embedding"},
                                             "embed": {"pretrained": "/models/clip.bin"}})
    assert ok.annotate.qa.count_method == "embedding"
