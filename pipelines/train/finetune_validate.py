"""Fine-tuning validation (rank 0): frame metrics over the validation split, and the
per-class thresholds that maximise validation event F1 (saved in the checkpoint; what
``a2v label`` applies); the annotations as a worker uses them (``Targets``). Kept out of
``pipelines/finetune.py``, which runs as ``__main__`` under ``python -m``: a class defined
there would be pickled by value into every Train worker (and ``torch``'s globals with it)."""

from __future__ import annotations

import copy

import pandas as pd
import ray.train
import torch

from a2v_core import training
from a2v_core.config import FinetuneJob
from a2v_core.finetune import FrameClassifier, valid_frames
from a2v_core.metrics import tune_thresholds
from a2v_core.selection import BestKeeper
from a2v_core.training import TrainState
from pipelines.data.finetune_data import batch_targets, is_reviewed
from pipelines.train.train_worker import Worker


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


class Targets:
    """The annotations as a worker uses them: frame targets of a batch (NaN where nobody
    reviewed), the validation truth."""

    def __init__(self, job: FinetuneJob, classes: list[str], events: pd.DataFrame) -> None:
        self.job, self.classes, self.events = job, classes, events
        self.by_file = {f: g for f, g in events.groupby("file")} if len(events) else {}
        self.reviewed = is_reviewed(events, job)

    def tensors(self, batch: dict, w: Worker) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(audio, targets, valid frames) of a training batch on the worker's device."""
        job = self.job
        y = batch_targets(
            self.by_file, self.classes, batch["path"], batch["offset_s"], job, self.reviewed
        )
        frames = valid_frames(batch["duration_s"], y.shape[1], job.model.frame_rate_hz)
        w.tp.add(float(batch["duration_s"].sum()))
        return (
            torch.as_tensor(batch["audio"], dtype=torch.float32, device=w.dev),
            torch.as_tensor(y, device=w.dev),
            frames.to(w.dev),
        )

    def run_validation(self, model, state: TrainState, keeper: BestKeeper, w: Worker) -> dict:
        """Rank 0: one validation; the keeper decides on the best weights and thresholds."""
        job, step = self.job, state.step
        val, clips = validate_shard(model, job, self.classes, self.by_file, w.dev, self.reviewed)
        keeper.update(
            val,
            step,
            final=step == job.optim.max_steps,
            tune=lambda: event_thresholds(clips, self.events, self.classes, job),
            keep_weights=lambda: state.extras.update(best_model=copy.deepcopy(model.state_dict())),
        )
        w.log(
            f"step {step} valid micro-F1 {val['val_micro_f1']:.3f} "
            f"macro-AP {val['val_macro_ap']:.3f} ({keeper.progress()})"
        )
        return val
