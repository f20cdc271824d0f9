"""Segment: the per-source policy turns the measured video + shot boundaries into sample spans."""

from __future__ import annotations

from bisect import bisect_left

from longvid.segment.policy import EPS, retime_texts, segment_record
from longvid.stages.base import Stage
from longvid.stages.work import SampleSpec, VideoWork


def snap_to_keyframe(
    spec: SampleSpec, keyframes: list[float], limit: float, min_len: float
) -> SampleSpec:
    """Move the start forward to the first keyframe within ``limit`` s, if the clip keeps at
    least ``min_len`` s; otherwise leave it (it will be re-encoded)."""
    if limit <= 0 or not keyframes:
        return spec
    i = bisect_left(keyframes, spec.start - 1e-3)
    if i >= len(keyframes):
        return spec
    k = keyframes[i]
    if k - spec.start <= 1e-3 or k - spec.start > limit or spec.end - k < min_len - EPS:
        return spec
    return SampleSpec(round(k, 6), spec.end, spec.bucket, spec.origin, spec.span_ids, [])


class Segment(Stage):
    name = "segment"

    def __call__(self, work: VideoWork) -> VideoWork:
        policy = self.cfg.segment.policy(work.source)
        result = segment_record(work.record, work.probe.duration, work.cuts, policy)
        for issue in result.issues:
            work.reject_sample(
                self.name, issue.reason, f"span:{issue.span_id}", f"{work.uri}: {issue.detail}"
            )
        specs = []
        for spec in result.samples:
            profile = self.cfg.encode.profile(spec.bucket)
            if not profile.normalize:
                min_len = policy.short_min_s if spec.bucket == "short" else policy.long_min_s
                snapped = snap_to_keyframe(
                    spec, work.probe.keyframes, profile.snap_keyframe_s, min_len
                )
                if snapped is not spec:
                    snapped.texts = retime_texts(
                        work.record.get("texts") or [], snapped.start, snapped.end
                    )
                    spec = snapped
            specs.append(spec)
        work.specs = specs
        if not specs:
            reasons = {i.reason for i in result.issues}
            if reasons == {"span_out_of_range"}:
                work.fail(
                    self.name,
                    "span_out_of_range",
                    f"{work.uri}: every span ends past the measured end "
                    f"({work.probe.duration:.3f} s)",
                )
            else:
                work.fail(
                    self.name,
                    "no_samples",
                    f"{work.uri}: {work.probe.duration:.3f} s video gives no sample under "
                    f"the {policy.mode} policy (short {policy.short_min_s}-"
                    f"{policy.short_max_s} s, long ≥ {policy.long_min_s} s)",
                )
        return work
