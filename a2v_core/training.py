"""The training core of both jobs, free of Ray: the optimizer and its schedule, the state a
run saves and resumes (``TrainState``), the walk through epochs of micro-batches
(``update_groups``) and one optimizer update of each job (``pretrain_step``,
``finetune_step``), plus fine-tuning's validation pass (``validate``).

``pipelines.train.train_worker`` binds these to a Ray Train worker (data shard, DDP, reporting,
checkpoint cadence); ``bench/gpu_check.py`` calls the same steps on one accelerator.

Randomness is drawn per update from ``(run.seed, rank, step)`` (``TrainState.seed_update``:
the masks' numpy generator and torch's, for dropout and mixup), so a run resumed from a
checkpoint takes the same updates as one that never stopped.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from a2v_core.checkpoint import save_checkpoint
from a2v_core.config import FinetuneJob, OptimConfig, PretrainJob
from a2v_core.finetune import FrameClassifier, focal_loss
from a2v_core.metrics import frame_metrics
from a2v_core.mixup import bc_mixup
from a2v_core.pretrain import Data2VecPretrainer, PretrainOutput

#: parameters without weight decay besides every 1-D one
NO_DECAY_NAMES = ("alibi.scale", "act.alpha", "act.beta")
#: state-dict keys of the checkpoint that ``TrainState`` itself owns
OWN_STATES = ("model", "optimizer", "scheduler")


#: the Sinc filters' edges, in Hz (``a2v_core.sinc.SincConv``)
SINC_EDGE_NAMES = ("sinc.low_hz_", "sinc.band_hz_")


def param_groups(
    named: list[tuple[str, nn.Parameter]],
    weight_decay: float,
    lr: float,
    sinc_lr_scale: float = 1.0,
) -> list[dict]:
    """No decay for 1-D params, ALiBi scales and PSwish (Sinc edges (F,1) keep decay, as the
    original). ``sinc_lr_scale`` != 1: the Sinc edges in a group of their own at ``lr`` x it,
    without decay (AdamW's decay at that rate would pull every edge towards 0 Hz)."""
    decay, no_decay, edges = [], [], []
    for name, p in named:
        if not p.requires_grad:
            continue
        if sinc_lr_scale != 1.0 and name.endswith(SINC_EDGE_NAMES):
            edges.append(p)
            continue
        (no_decay if p.ndim == 1 or any(k in name for k in NO_DECAY_NAMES) else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if edges:
        groups.append({"params": edges, "weight_decay": 0.0, "lr": lr * sinc_lr_scale})
    return groups


def warmup_cosine(cfg: OptimConfig) -> Callable[[int], float]:
    """LR multiplier: linear warmup from 0, then half-cosine down to min_lr at max_steps."""
    floor = cfg.min_lr / cfg.lr

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def update_seed(seed: int, rank: int, step: int) -> int:
    """The seed of one worker's update ``step``: distinct per rank and step, the same on a
    rerun (a resumed run draws what an uninterrupted one drew)."""
    return int(np.random.default_rng([seed, rank, step, 1]).integers(2**62))


@dataclass
class TrainState:
    """Model, optimizer, schedule and position of a run: what a checkpoint holds and a
    resume restores. ``pos``: batches consumed in ``epoch`` (a resume skips them);
    ``extras``: further tensors saved beside (fine-tuning's best weights)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: int = 0
    epoch: int = 0
    pos: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls, model: nn.Module, named: list[tuple[str, nn.Parameter]], optim: OptimConfig
    ) -> TrainState:
        """AdamW over ``named`` (decay groups by ``param_groups``), warmup + cosine."""
        opt = torch.optim.AdamW(
            param_groups(named, optim.weight_decay, optim.lr, optim.sinc_lr_scale),
            lr=optim.lr,
            betas=optim.betas,
            eps=optim.eps,
        )
        return cls(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(optim)))

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def position(self) -> dict[str, int]:
        return {"step": self.step, "epoch": self.epoch, "batches_in_epoch": self.pos}

    def states(self) -> dict[str, Any]:
        out = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        return {**out, **{k: v for k, v in self.extras.items() if v is not None}}

    def load(self, states: dict[str, Any], meta: dict[str, Any]) -> None:
        """Restore from a checkpoint's ``(states, meta)`` (``a2v_core.checkpoint``)."""
        self.model.load_state_dict(states["model"])
        self.optimizer.load_state_dict(states["optimizer"])
        self.scheduler.load_state_dict(states["scheduler"])
        self.step, self.epoch, self.pos = meta["step"], meta["epoch"], meta["batches_in_epoch"]
        self.extras = {k: v for k, v in states.items() if k not in OWN_STATES}

    def save(self, directory: str | Path, config_yaml: str, meta: dict[str, Any]) -> Path:
        return save_checkpoint(directory, self.states(), config_yaml, {**meta, **self.position()})

    def seed_update(self, seed: int, rank: int) -> np.random.Generator:
        """Seed torch for the coming update and return its numpy generator (the masks)."""
        s = update_seed(seed, rank, self.step)
        torch.manual_seed(s)
        return np.random.default_rng(s)

    def update(self, params: Iterable[nn.Parameter], clip_norm: float | None) -> float:
        """Clip, step the optimizer and the schedule, clear the gradients; -> gradient norm."""
        grad_norm = torch.nn.utils.clip_grad_norm_(list(params), clip_norm or float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(grad_norm)


class EmptyEpoch(RuntimeError):
    """An epoch from its start gave no batch: training would loop forever."""


def update_groups(
    state: TrainState, epoch_batches: Callable[[int, int], Iterable[Any]], accum: int
) -> Iterator[list[Any]]:
    """The micro-batches of each optimizer update, ``accum`` at a time, epoch after epoch.

    ``epoch_batches(epoch, skip)`` yields the batches of ``epoch`` after its first ``skip``.
    ``state.pos`` / ``state.epoch`` advance as batches are consumed, so a checkpoint taken
    after an update records where its data stopped; a group may span two epochs. The caller
    stops iterating (at ``max_steps``). Raises ``EmptyEpoch``."""
    group: list[Any] = []
    while True:
        start = state.pos
        for batch in epoch_batches(state.epoch, state.pos):
            state.pos += 1
            group.append(batch)
            if len(group) == accum:
                yield group
                group = []
        if start == state.pos == 0:
            raise EmptyEpoch(f"epoch {state.epoch} gave no batch")
        state.epoch, state.pos = state.epoch + 1, 0


def sync_last(wrapped: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """DDP all-reduces gradients on the last micro-batch of an update only (``no_sync``
    before it); a bare model (one worker) has nothing to sync."""
    no_sync = getattr(wrapped, "no_sync", None)
    return contextlib.nullcontext() if last or no_sync is None else no_sync()


def autocast(dev: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the pipelines' precision there), nothing on CPU."""
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")


def pretrain_step(
    state: TrainState,
    wrapped: nn.Module,
    group: list[torch.Tensor],
    job: PretrainJob,
    rank: int = 0,
) -> tuple[PretrainOutput, dict[str, float]]:
    """One update of the student over ``group`` (micro-batches of clips, (B, S)), then of the
    EMA teacher. ``wrapped``: ``state.model`` or its DDP wrapper. -> the last micro-batch's
    output and the update's metrics."""
    core: Data2VecPretrainer = state.model  # type: ignore[assignment]
    rng = state.seed_update(job.run.seed, rank)
    loss = 0.0
    for i, audio in enumerate(group):
        if job.mixup.enabled and torch.rand(()) < job.mixup.prob:
            audio, _ = bc_mixup(audio, job.data.sample_rate_hz)
        with sync_last(wrapped, i == len(group) - 1), autocast(audio.device):
            out = wrapped(audio, rng)
            (out.loss / len(group)).backward()
        loss += float(out.loss.detach()) / len(group)
    grad_norm = state.update(core.student_parameters(), job.optim.clip_norm)
    decay = core.ema_step(state.step)
    return out, {
        "loss": loss,
        "lr": state.lr,
        "ema_decay": decay,
        "target_std": out.target_std,
        "pred_std": out.pred_std,
        "grad_norm": grad_norm,
        "masked_fraction": out.masked_fraction,
    }


def finetune_step(
    state: TrainState,
    wrapped: nn.Module,
    group: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    job: FinetuneJob,
    rank: int = 0,
) -> dict[str, float]:
    """One update of the classifier over ``group`` (micro-batches of (audio (B, S), targets
    (B, T, C), NaN where nobody reviewed the frame; frames that hold audio (B, T))): head only
    for the first ``optim.freeze_steps`` updates, focal loss on reviewed frames with audio,
    mixup with soft targets.
    -> the update's metrics (``loss``: the last micro-batch's)."""
    core: FrameClassifier = state.model  # type: ignore[assignment]
    rng = state.seed_update(job.run.seed, rank)
    for i, (audio, y, frames) in enumerate(group):
        core.set_encoder_frozen(state.step < job.optim.freeze_steps)
        if job.mixup.enabled and torch.rand(()) < job.mixup.prob:
            perm = torch.randperm(audio.shape[0])
            audio, y = bc_mixup(audio, job.data.sample_rate_hz, targets=y, perm=perm)
            frames = frames | frames[perm]  # a mix holds audio where either clip does
        # reviewed spans: NaN targets are frames nobody reviewed (a mix with one is unknown too)
        unknown = torch.isnan(y).any(-1)
        if unknown.any():
            frames, y = frames & ~unknown, torch.nan_to_num(y, nan=0.0)
        with sync_last(wrapped, i == len(group) - 1):
            with autocast(audio.device):
                logits = wrapped(audio, rng)
            loss = focal_loss(logits, y, job.loss.focal_alpha, job.loss.focal_gamma, frames)
            (loss / len(group)).backward()
    params = [p for p in core.parameters() if p.requires_grad]
    grad_norm = state.update(params, job.optim.clip_norm)
    return {
        "loss": float(loss.detach()),
        "lr": state.lr,
        "grad_norm": grad_norm,
        "encoder_frozen": float(core.encoder_frozen),
    }


@torch.no_grad()
def validation_pass(
    model: FrameClassifier,
    batches: Iterable[dict[str, np.ndarray]],
    targets: Callable[[dict[str, np.ndarray]], np.ndarray],
    job: FinetuneJob,
    classes: list[str],
    dev: torch.device,
) -> tuple[dict[str, float], list]:
    """Frame metrics over the validation ``batches`` (numpy dicts with ``audio``, ``path``,
    ``offset_s``, ``duration_s``; ``targets(batch)``: their (B, T, C) frame targets, NaN where
    nobody reviewed the frame), counting only reviewed frames that hold audio, at
    ``job.frame_threshold``; and each clip's (file, offset, probabilities (T, C), reviewed
    frames (T,)), from which the labeller's per-class thresholds are tuned
    (``metrics.tune_thresholds``)."""
    model.eval()
    ys, ps, clips = [], [], []
    for batch in batches:
        audio = np.require(batch["audio"], requirements="W")  # Ray's batches are read-only
        probs = torch.sigmoid(model(torch.as_tensor(audio, device=dev))).cpu().numpy()
        y = targets(batch)
        for i, dur in enumerate(batch["duration_s"]):
            n = int(np.ceil(dur * job.model.frame_rate_hz))
            known = ~np.isnan(y[i, :n]).any(-1)  # reviewed spans: only reviewed frames count
            ys.append(y[i, :n][known])
            ps.append(probs[i, :n][known])
            clips.append((str(batch["path"][i]), float(batch["offset_s"][i]), probs[i, :n], known))
    model.train()
    m = frame_metrics(np.concatenate(ys), np.concatenate(ps), classes, job.frame_threshold)
    return {
        "val_micro_f1": m["micro_f1"],
        "val_macro_ap": m["macro_ap"],
        "val_micro_ap": m["micro_ap"],
        "val_precision": m["micro_precision"],
        "val_recall": m["micro_recall"],
    }, clips
