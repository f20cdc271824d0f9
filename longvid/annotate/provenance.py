"""Whether a model's weights are random, and what that means for its text.

A model with random weights (the demo's and the tests' tiny models) writes random words. Its
text never becomes data: it is kept in the sample's lineage only (to show the plumbing ran),
never in captions, events, scenes, QA or conversations, unless ``annotate.allow_random_text``
says otherwise (a test of the plumbing that wants to see the text flow through).

A model is known to be random when

* its config builds it from a config instead of loading weights (``random_model`` of the
  captioner), or
* its config says so (``random_weights: true``), or
* its ``save_pretrained`` directory carries the marker file :data:`RANDOM_MARKER`, which
  :func:`mark_random` writes next to weights saved straight after a random initialisation
  (``random_weights: false`` overrides the marker).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RANDOM_MARKER = "longvid_random_weights.json"


def mark_random(directory: str | Path, how: dict[str, Any] | None = None) -> Path:
    """Write the marker that says the weights in ``directory`` are a random initialisation."""
    path = Path(directory) / RANDOM_MARKER
    path.write_text(json.dumps({"random_weights": True, **(how or {})}, sort_keys=True))
    return path


def weights_random(model_path: str | None, built_from_config: bool,
                   declared: bool | None) -> bool:
    """Whether a model's weights are random (see the module docstring for the rules)."""
    if declared is not None:
        return declared
    if built_from_config:
        return True
    return bool(model_path) and (Path(str(model_path)) / RANDOM_MARKER).is_file()


def text_allowed(random: bool, allow_random_text: bool) -> bool:
    """Whether a model's text may enter the data."""
    return not random or allow_random_text
