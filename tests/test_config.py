"""Config loading: typed models, dotted overrides, and errors that name the key and the file."""

from __future__ import annotations

import pytest
from pydantic import Field

from longvid.config import Section, config_hash, load_config, parse_overrides
from longvid.errors import ConfigError


class Output(Section):
    root: str = Field(..., description="where results go")
    shard_mb: int = Field(256, description="target shard size")


class Job(Section):
    name: str = Field("demo", description="job name")
    output: Output
    sources: list[str] = Field(default_factory=list, description="sources to read")


def write(tmp_path, text: str):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_loads_yaml_and_applies_dotted_overrides(tmp_path):
    path = write(tmp_path, "name: a\noutput:\n  root: /data\n")
    cfg = load_config(path, Job, ["output.shard_mb=64", "sources=[ego4d, webvid]"])
    assert cfg.name == "a"
    assert cfg.output.root == "/data"
    assert cfg.output.shard_mb == 64
    assert cfg.sources == ["ego4d", "webvid"]


def test_override_values_are_parsed_as_yaml():
    assert parse_overrides(["a.b=3", "a.c=null", "d=x=y", "e=[1, 2]"]) == {
        "a": {"b": 3, "c": None},
        "d": "x=y",
        "e": [1, 2],
    }


def test_typo_in_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "output:\n  root: /data\n  shard_mbb: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, Job)
    assert str(exc.value) == f"{path}: output.shard_mbb: unknown key"


def test_wrong_type_names_key_file_and_value(tmp_path):
    path = write(tmp_path, "output:\n  root: /data\n  shard_mb: lots\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, Job)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: output.shard_mb: ")
    assert "'lots'" in msg


def test_missing_required_value(tmp_path):
    path = write(tmp_path, "name: x\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, Job)
    assert str(exc.value) == f"{path}: output: required value is missing"


def test_override_typo_is_reported_as_override(tmp_path):
    path = write(tmp_path, "output:\n  root: /data\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, Job, ["output.rooot=/x"])
    assert str(exc.value) == f"{path} (with overrides): output.rooot: unknown key"


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_overrides(["output.root"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", Job)
    bad = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad, Job)


def test_config_hash_is_stable_and_sensitive(tmp_path):
    path = write(tmp_path, "output:\n  root: /data\n")
    a = load_config(path, Job)
    b = load_config(path, Job)
    c = load_config(path, Job, ["output.shard_mb=1"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)
