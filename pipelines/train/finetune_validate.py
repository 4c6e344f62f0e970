"""Fine-tuning validation (rank 0): frame metrics over the validation split, and the
per-class thresholds that maximise validation event F1 (saved in the checkpoint; what
``a2v label`` applies)."""

from __future__ import annotations

import pandas as pd
import ray.train

from a2v_core import training
from a2v_core.config import FinetuneJob
from a2v_core.finetune import FrameClassifier
from a2v_core.metrics import tune_thresholds
from pipelines.data.finetune_data import batch_targets


def validate_shard(
    model: FrameClassifier, job: FinetuneJob, classes, events_by_file, dev, reviewed=False
) -> tuple[dict, list]:
    """``a2v_core.training.validation_pass`` over this worker's ``valid`` dataset: frame metrics of
    every clip's valid frames, and the clips (file, offset, probabilities, reviewed frames)
    for tuning the labeller's per-class thresholds."""
    shard = ray.train.get_dataset_shard("valid")
    return training.validation_pass(
        model,
        shard.iter_batches(batch_size=job.optim.batch_size, batch_format="numpy"),
        lambda b: batch_targets(events_by_file, classes, b["path"], b["offset_s"], job, reviewed),
        job,
        classes,
        dev,
    )


def event_thresholds(clips: list, events: pd.DataFrame, classes, job: FinetuneJob) -> dict:
    """Per-class thresholds that maximise the validation event F1 of the events ``a2v label``
    makes (``job.events.rule()``): what ``a2v label`` applies."""
    keys = {(f, o) for f, o, _, _ in clips}
    clip_s = job.data.clip_s
    events = events[events["label"].isin(classes)]  # a reviewed negative is no event
    truth = (
        events[
            [
                (f, o) in keys
                for f, o in zip(events["file"], (events["onset_s"] // clip_s) * clip_s, strict=True)
            ]
        ]
        if len(events)
        else events
    )
    return tune_thresholds(
        clips,
        truth,
        classes,
        job.model.frame_rate_hz,
        job.events.rule(),
        iou_threshold=job.events.tune_iou,
        min_events=job.events.tune_min_events,
    )
