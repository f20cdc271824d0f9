"""longvid.segment: how a video becomes sample spans.

- :mod:`~longvid.segment.config`: the decode-pass/detector knobs and the segmentation policy.
- :mod:`~longvid.segment.shots`: shot detection on the frames of the build's one decode pass.
- :mod:`~longvid.segment.policy`: (record, measured duration, shot boundaries, policy) → spans.
"""
