"""Typed config: YAML files + dotted command-line overrides → validated pydantic models.

Every config model derives from :class:`Section`, which forbids unknown keys, so a typo is an
error that names the key and the file before any work starts::

    cfg = load_config("conf/build/demo.yaml", BuildConfig, ["output.root=/tmp/x"])

Overrides are ``dotted.key=value``; the value is parsed as YAML (``3`` is an int, ``[a, b]`` a
list, ``null`` None).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from longvid.errors import ConfigError


class Section(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class S3Config(Section):
    """How to reach S3 (or any S3-compatible server). Credentials never live in config files:
    they come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or a profile."""

    endpoint_url: str | None = Field(None, description="S3 endpoint; None = AWS default")
    region: str | None = Field(None, description="region name; None = from environment")
    profile: str | None = Field(None, description="AWS profile name for credentials")
    max_attempts: int = Field(8, ge=1, description="retries (adaptive mode) per request")
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP connect timeout")
    read_timeout_s: float = Field(60.0, gt=0, description="socket read timeout")
    multipart_threshold_mb: int = Field(8, ge=5, description="uploads above this are multipart")
    multipart_chunk_mb: int = Field(8, ge=5, description="part size of multipart uploads")


class RayConfig(Section):
    """Where Ray runs. address None = RAY_ADDRESS from the environment, else a local Ray."""

    address: str | None = Field(None, description="ray://… or host:port of an existing cluster")
    num_cpus: int | None = Field(None, description="CPUs for a local Ray (None = all)")
    num_gpus: int | None = Field(None, description="GPUs for a local Ray (None = detect)")


M = TypeVar("M", bound=BaseModel)


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → ``{"a": {"b": 1}, "c": "x"}``."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected dotted.key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is set both as a value and a section")
        node[parts[-1]] = value
    return tree


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "<top level>"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    if kind == "missing":
        return f"{loc}: required value is missing"
    return f"{loc}: {err['msg']} (got {err.get('input')!r})"


def validate_config(data: dict[str, Any], model: type[M], origin: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{origin}: {problems}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(
    path: str | Path | None, model: type[M], overrides: list[str] | tuple[str, ...] = ()
) -> M:
    """Load ``path`` (or only defaults when None), apply overrides, validate into ``model``."""
    data = read_yaml(path) if path is not None else {}
    origin = str(path) if path is not None else "<defaults>"
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
        origin += " (with overrides)"
    return validate_config(data, model, origin)


def config_hash(cfg: BaseModel) -> str:
    """Stable short hash of a config's values (for lineage and resume checks)."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_diff(old: Any, new: Any, path: str = "") -> list[str]:
    """``a.b: 1 → 2`` lines for every difference between two JSON-like values (resume refusals
    name what changed with these)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in old:
                out.append(f"{sub}: (absent) → {new[k]!r}")
            elif k not in new:
                out.append(f"{sub}: {old[k]!r} → (absent)")
            else:
                out.extend(config_diff(old[k], new[k], sub))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in config_diff(a, b, f"{path}[{i}]")
        ]
    return [] if old == new else [f"{path}: {old!r} → {new!r}"]
