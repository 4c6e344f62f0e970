"""Fine-tuning validation (rank 0): frame metrics over the validation split, and the
per-class thresholds that maximise validation event F1 (saved in the checkpoint; what
``a2v label`` applies)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import ray.train
import torch

from a2v_core.config import FinetuneJob
from a2v_core.events import moving_average
from a2v_core.finetune import FrameClassifier
from a2v_core.metrics import best_event_f1_thresholds, frame_metrics
from pipelines.finetune_data import batch_targets


@torch.no_grad()
def validate(
    model: FrameClassifier, job: FinetuneJob, classes, events_by_file, dev
) -> tuple[dict, list]:
    """Frame metrics over the whole validation set (valid frames of every clip), and the clips'
    (file, offset, pooled probabilities) for tuning the labeller's per-class thresholds."""
    shard = ray.train.get_dataset_shard("valid")
    model.eval()
    ys, ps, pooled = [], [], []
    window = int(round(job.events.pool_s * job.model.frame_rate_hz))
    for batch in shard.iter_batches(batch_size=job.optim.batch_size, batch_format="numpy"):
        probs = torch.sigmoid(model(torch.as_tensor(batch["audio"], device=dev))).cpu().numpy()
        y = batch_targets(events_by_file, classes, batch["path"], batch["offset_s"], job)
        for i, dur in enumerate(batch["duration_s"]):
            n = int(np.ceil(dur * job.model.frame_rate_hz))
            ys.append(y[i, :n])
            ps.append(probs[i, :n])
            pooled.append(
                (
                    str(batch["path"][i]),
                    float(batch["offset_s"][i]),
                    moving_average(probs[i, :n], window),
                )
            )
    model.train()
    y_all = np.concatenate(ys)
    m = frame_metrics(y_all, np.concatenate(ps), classes, job.events.threshold)
    return {
        "val_micro_f1": m["micro_f1"],
        "val_macro_ap": m["macro_ap"],
        "val_micro_ap": m["micro_ap"],
        "val_precision": m["micro_precision"],
        "val_recall": m["micro_recall"],
    }, pooled


def event_thresholds(pooled_clips: list, events: pd.DataFrame, classes, job: FinetuneJob) -> dict:
    """Per-class thresholds that maximise validation event F1 (what ``a2v label`` applies)."""
    keys = {(f, o) for f, o, _ in pooled_clips}
    clip_s = job.data.clip_s
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
    return best_event_f1_thresholds(
        pooled_clips,
        truth,
        classes,
        job.model.frame_rate_hz,
        job.events.threshold,
        job.events.min_event_s,
        iou_threshold=job.events.tune_iou,
        min_events=job.events.tune_min_events,
    )
