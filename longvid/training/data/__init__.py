"""longvid.training.data: the streaming loader (built corpora → batches for one rank).

- :mod:`~longvid.training.data.loader`: ``make_loader`` and the resumable loader around it.
- :mod:`~longvid.training.data.config`: ``StageData``, a stage's data mixture and batch shape.
- :mod:`~longvid.training.data.catalog`: every sample of the corpora, as columns, fingerprinted.
- :mod:`~longvid.training.data.catalog_cache`: those columns compiled once, memory-mapped, shared.
- :mod:`~longvid.training.data.plan`: an epoch's sample sequence, a pure function of its inputs.
- :mod:`~longvid.training.data.sample`: one sample: ranged reads, frames, tokens.
- :mod:`~longvid.training.data.decode`: frame decoders (clip bytes + times → frames).
- :mod:`~longvid.training.data.sampling`: how many frames a clip gives, and at which times.
- :mod:`~longvid.training.data.text`: a sample's conversation, prompt and token ids.
"""

from longvid.training.data.config import StageData
from longvid.training.data.loader import (
    LoaderError,
    ResumeError,
    StatefulLoader,
    make_loader,
    normalize_frames,
)

__all__ = [
    "LoaderError",
    "ResumeError",
    "StageData",
    "StatefulLoader",
    "make_loader",
    "normalize_frames",
]
