"""longvid: build a long-video training corpus from public video datasets and train on it."""

__version__ = "0.1.0"
