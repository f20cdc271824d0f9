"""longvid.samples: the generated sample corpus (``longvid sample-corpus DIR``).

- :mod:`~longvid.samples.corpus`: plans and writes the corpus, its ground truth and README.
- :mod:`~longvid.samples.formats`: the metadata of each official dataset format.
- :mod:`~longvid.samples.synth`: synthetic videos with known shots (rendered with ffmpeg).
"""

from longvid.samples.corpus import write_sample_corpus

__all__ = ["write_sample_corpus"]
