"""longvid.stages: the vocabulary every per-video stage shares, below the stages themselves.

- :mod:`~longvid.stages.base`: the :class:`Stage` protocol and the loop that runs stages on one
  video.
- :mod:`~longvid.stages.work`: the per-video work record (:class:`VideoWork`), the per-task
  context, and the sample spans and outputs it carries.

The stages live with what they do (``longvid.pipelines.stages``: probe, scan, segment, cut;
``longvid.annotate.stages``: the annotation stages); the build's registry is
``longvid.pipelines.stages.STAGES``.
"""
