"""Config of the annotation stages: one section per stage, all under ``annotate:`` in a build config.

Every stage is switched on by naming it in the build's ``stages`` list; these sections only say
how it behaves. Model stages (``model_captions``, ``embed``, ``qa_rewrite``) carry their own batch
size; how many GPUs an actor of the model pool gets is ``ray.model_num_gpus`` in the build config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from longvid.config import Section

QA_TASKS = (
    "long_video_description",
    "temporal_grounding",
    "event_relationship",
    "scene_relationship",
    "event_counting",
    "temporal_grounding_mc",
    "event_counting_mc",
)


class FramesConfig(Section):
    """Frames sampled per sample for the model stages: decoded once from the cut clip (a few
    seeks, at a small size) by the frames stage and shared by the captioner and the embedder."""

    short_side: int = Field(224, ge=16, description="decode frames with this short side")
    frames_short: int = Field(4, ge=1, description="frames per short sample (interval midpoints)")
    long_stride_s: float = Field(
        4.0, gt=0, description="long samples: one frame every this many seconds ..."
    )
    frames_long_min: int = Field(8, ge=1, description="... at least this many ...")
    frames_long_max: int = Field(
        64, ge=1, description="... at most this many, plus the middle frame of every shot (of "
        "this many longest shots at most)"
    )
    from_decode_pass: bool = Field(
        False, description="take the frames from the build's single decode pass (the scan "
        "stage's kept frames inside the sample, detect.keep_frames per video) instead of "
        "decoding the clip again; a sample with fewer than min_pass_frames of them is decoded"
    )
    min_pass_frames: int = Field(
        1, ge=1, description="from_decode_pass: kept frames a sample needs, else it is decoded"
    )


class ModelCaptionsConfig(Section):
    """A transformers vision-language captioner over frames of each sample (optional stage)."""

    model_path: str | None = Field(
        None,
        description="local directory of a saved captioner (save_pretrained: model, image "
        "processor, tokenizer); this or random_model is required when the stage runs",
    )
    random_model: dict[str, Any] | None = Field(
        None,
        description="instead of model_path: a random-initialised ViT+GPT-2 captioner from "
        "{encoder: ViTConfig args, decoder: GPT2Config args, words: [...], seed} (tests, demo)",
    )
    random_weights: bool | None = Field(
        None, description="whether the weights are random (their text never becomes data); null = "
        "detect: random_model set, or the model directory holds longvid_random_weights.json"
    )
    frames_short: int = Field(
        1, ge=1, description="frames captioned per short sample (of the sampled frames)"
    )
    long_segments: Literal["shots", "frames"] = Field(
        "shots",
        description="long samples: shots = one dense caption per segment (shot, or window of a "
        "long shot) from the sampled frame nearest its middle; frames = frames_long evenly "
        "spread frames, each caption spanning the time nearest its frame",
    )
    window_s: float = Field(
        10.0, gt=0, description="shots: a shot longer than this is captioned per window this long"
    )
    max_segments: int = Field(64, ge=1, description="shots: segments captioned per sample, at most")
    frames_long: int = Field(
        8, ge=1, description="frames: frames captioned per long sample (each a timed caption)"
    )
    batch_size: int = Field(16, ge=1, description="frames per forward pass")
    max_new_tokens: int = Field(24, ge=1, description="greedy decoding: at most this many tokens")
    min_new_tokens: int = Field(1, ge=0, description="greedy decoding: at least this many tokens")
    main_if_missing: bool = Field(
        True, description="a sample without a source caption gets the model caption as KEY.txt"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = cuda when the actor has a GPU"
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="weights dtype on GPU (CPU always runs float32)"
    )


class EventsConfig(Section):
    """The timeline of a long sample: timestamped events and shot-level scenes."""

    event_kinds: list[str] = Field(
        ["narration", "asr", "caption", "title"],
        description="source text kinds that give events (summaries span many events: left out)",
    )
    prefer_origins: list[str] = Field(
        ["dense_caption", "short_caption"],
        description="of several texts with exactly the same span (MiraData's caption columns), "
        "the one from the first origin listed here is the event (else the longest text)",
    )
    point_event_rule: Literal["neighbours", "fixed"] = Field(
        "neighbours",
        description="span of a point-in-time text (Ego4D narration): neighbours = from the "
        "midpoint with the previous narration of the same pass to the midpoint with the next, "
        "at most point_event_s/2 either side; fixed = point_event_s centred on its time",
    )
    point_event_s: float = Field(
        4.0, gt=0, description="a point-in-time text's event is at most this long (neighbours) "
        "or exactly this long (fixed), around its time"
    )
    asr_join_gap_s: float = Field(
        1.0, ge=0, description="ASR fragments closer than this join into one event"
    )
    asr_max_s: float = Field(20.0, gt=0, description="a joined ASR event is at most this long")
    max_event_fraction: float = Field(
        0.9,
        gt=0,
        le=1,
        description="a text spanning more than this fraction of the sample describes the whole "
        "sample, not an event in it",
    )
    dedup_iou: float = Field(
        0.5, ge=0, le=1, description="events with the same text overlapping this much are one"
    )
    clip_events: Literal["fill", "all", "none"] = Field(
        "fill",
        description="captions of short clips inside the sample as events: fill = only where "
        "source texts leave the clip mostly uncovered; all; none",
    )
    fill_coverage: float = Field(
        0.5, ge=0, le=1, description="fill: a clip covered less than this by source events adds "
        "its caption as an event"
    )
    min_scene_s: float = Field(1.0, ge=0, description="shots shorter than this are not scenes")
    long_only: bool = Field(
        False, description="timelines for long samples only (else short samples get theirs too: "
        "the texts inside them, or their main caption as one event)"
    )


class QAConfig(Section):
    """LongVid-style QA from each timeline: deterministic templates."""

    tasks: list[str] = Field(list(QA_TASKS), description=f"task types to generate, of {QA_TASKS}")
    per_task: int = Field(1, ge=1, description="questions per task type and sample, at most")
    max_description_events: int = Field(
        40, ge=1, description="long-video description: events listed, at most (evenly chosen)"
    )
    order_events: int = Field(
        3, ge=2, description="event relationship: events to put in order (2 = which first)"
    )
    short_caption_qa: bool = Field(
        True, description="short samples get one caption question answered by the main caption"
    )
    count_method: Literal["verb_object", "embedding"] = Field(
        "verb_object",
        description="event counting groups events by meaning: verb_object = normalised verb and "
        "object (model-free); embedding = open_clip text-embedding cosine (needs "
        "embed.pretrained: trained weights)",
    )
    count_similarity: float = Field(
        0.85, ge=0, le=1, description="embedding: texts with at least this cosine are one action"
    )
    count_merge_gap_s: float = Field(
        10.0, ge=0, description="events of one action this close, with no other action starting "
        "in between (or overlapping), are one occurrence"
    )
    count_once_share: float = Field(
        0.0, ge=0, le=1, description="event counting asks actions that happen at least twice; "
        "each once-only action is also asked with this probability (0 = never)"
    )

    @model_validator(mode="after")
    def _known_tasks(self) -> QAConfig:
        unknown = [t for t in self.tasks if t not in QA_TASKS]
        if unknown:
            raise ValueError(f"unknown QA task(s) {unknown}; known: {list(QA_TASKS)}")
        return self


class RewriteConfig(Section):
    """Optional LLM rewriter: rephrases template questions; answers stay as generated."""

    model_path: str | None = Field(
        None, description="local directory of a saved causal LM + tokenizer; required to run"
    )
    random_weights: bool | None = Field(
        None, description="whether the weights are random (rewrites then stay in lineage); null = "
        "detect: the model directory holds longvid_random_weights.json"
    )
    prompt: str = Field(
        "Rewrite this question in other words. Keep every quoted phrase unchanged.\n"
        "Question: {question}\nRewritten:",
        description="prompt; {question} is replaced by the template question",
    )
    batch_size: int = Field(8, ge=1, description="questions per generate call")
    max_new_tokens: int = Field(64, ge=1, description="greedy decoding: at most this many tokens")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when present")


LLM_QA_TASKS = (
    "temporal_grounding",
    "temporal_grounding_mc",
    "event_relationship",
    "event_counting",
    "event_counting_mc",
    "scene_relationship",
    "long_video_description",
)


class LLMQAConfig(Section):
    """LLM-written QA: a local causal LM writes questions from each long sample's timeline,
    decoding constrained to a JSON schema; every item is validated against the timeline."""

    model_path: str | None = Field(
        None, description="local directory of a saved causal LM + tokenizer; required to run"
    )
    random_weights: bool | None = Field(
        None, description="whether the weights are random (then its items stay out of the data, "
        "only counted in lineage); null = detect: longvid_random_weights.json in model_path"
    )
    tasks: list[str] = Field(
        list(LLM_QA_TASKS), description=f"task types the LLM writes, of {LLM_QA_TASKS}"
    )
    per_task: int = Field(1, ge=1, description="LLM outputs per task type and sample")
    preamble: str = Field(
        "You write questions and answers about a video, using only its timeline below.",
        description="first line of every prompt",
    )
    max_events: int = Field(60, ge=1, description="events and scenes listed in a prompt, at most")
    max_context_chars: int = Field(
        600, ge=0, description="video-level texts (whole-video context) in a prompt, at most"
    )
    question_max_chars: int = Field(
        160, ge=8, description="schema: longest question (plain characters: letters, digits, "
        "spaces and ,.;:?!'()-)"
    )
    time_tolerance_s: float = Field(
        1.0, ge=0, description="an LLM time is on an event when within this of its start/end"
    )
    count_merge_gap_s: float = Field(
        10.0, ge=0, description="counting: as qa.count_merge_gap_s (occurrences of one action)"
    )
    batch_size: int = Field(8, ge=1, description="prompts per generate call")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when present")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "bfloat16", description="weights dtype on GPU (CPU always runs float32)"
    )

    @model_validator(mode="after")
    def _known_tasks(self) -> LLMQAConfig:
        unknown = [t for t in self.tasks if t not in LLM_QA_TASKS]
        if unknown:
            raise ValueError(f"unknown LLM QA task(s) {unknown}; known: {list(LLM_QA_TASKS)}")
        return self


class EmbedConfig(Section):
    """open_clip embeddings of sampled frames and of the main caption."""

    model: str = Field(
        "ViT-B-32",
        description="open_clip model name, or 'custom' = built from model_config (no download)",
    )
    model_cfg: dict[str, Any] | None = Field(
        None, description="custom: an open_clip model config (embed_dim, vision_cfg, text_cfg)"
    )
    pretrained: str | None = Field(
        None, description="local open_clip checkpoint file; null = random init (tests only)"
    )
    init_seed: int = Field(0, description="seed of the random init when pretrained is null")
    batch_size: int = Field(64, ge=1, description="frames per forward pass")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when present")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="weights dtype on GPU (CPU always runs float32)"
    )


class FiltersConfig(Section):
    """Sample filters. A filtered sample becomes a reject (stage filter, reason filter:<name>,
    the value in detail); null switches a filter off. Stage ``filter`` applies the cheap ones,
    ``filter_final`` (after the model stages) the caption and video-text ones, and the build's
    finish the corpus-wide duplicate ones."""

    min_duration_s: float | None = Field(1.0, description="shorter samples are rejected")
    max_duration_s: float | None = Field(None, description="longer samples are rejected")
    min_short_side: int | None = Field(64, description="smaller frames are rejected (pixels)")
    max_black_fraction: float | None = Field(
        0.9, description="samples with more black frames than this fraction are rejected "
        "(black: mean luma below detect.black_luma)"
    )
    max_static_fraction: float | None = Field(
        None, description="samples with more static frames than this fraction are rejected "
        "(static: mean |Δluma| to the previous frame below 0.5)"
    )
    min_motion: float | None = Field(None, description="mean |Δluma| (0..255) at least this")
    require_caption: bool = Field(
        True, description="filter_final: a sample with no caption at all (source or model) is "
        "rejected"
    )
    min_video_text_cosine: float | None = Field(
        None, description="filter_final: video-text cosine at least this (needs embed)"
    )
    exact_duplicates: bool = Field(
        True, description="reject a sample whose clip bytes equal an earlier one's"
    )
    near_duplicate_cosine: float | None = Field(
        None,
        description="reject a sample whose video embedding has at least this cosine with an "
        "earlier kept sample of the same bucket and another video (needs embed)",
    )


class AnnotateConfig(Section):
    """All annotation stages. Which of them run is the build's ``stages`` list."""

    frames: FramesConfig = Field(FramesConfig(), description="frames for the model stages")
    model_captions: ModelCaptionsConfig = Field(
        ModelCaptionsConfig(), description="model captioner (stage model_captions)"
    )
    events: EventsConfig = Field(EventsConfig(), description="timelines (stage events)")
    qa: QAConfig = Field(QAConfig(), description="QA templates (stage qa)")
    llm_qa: LLMQAConfig = Field(LLMQAConfig(), description="LLM-written QA (stage llm_qa)")
    rewrite: RewriteConfig = Field(RewriteConfig(), description="LLM rewriter (stage qa_rewrite)")
    embed: EmbedConfig = Field(EmbedConfig(), description="open_clip embeddings (stage embed)")
    filters: FiltersConfig = Field(FiltersConfig(), description="scores and filters (stage filter)")
    allow_random_text: bool = Field(
        False, description="let text of random-weight models (demo, tests) into captions, events, "
        "QA and conversations; off: it is kept in the sample's lineage only"
    )

    @model_validator(mode="after")
    def _counting_needs_trained_embeddings(self) -> AnnotateConfig:
        if self.qa.count_method == "embedding" and self.embed.pretrained is None:
            raise ValueError("qa.count_method embedding needs trained open_clip weights "
                             "(embed.pretrained); random text embeddings group nothing "
                             "meaningful: use verb_object")
        return self
