"""The Ray Train side of both training jobs: what binds ``a2v_core.training`` to a worker.

``Worker`` sets the process up (threads, denormals, seed), restores the latest checkpoint,
wraps the model for DDP, starts the MLflow run, walks the worker's shard of the ``train``
dataset as optimizer updates (shuffled per epoch, skipping what a resumed epoch consumed) and
reports metrics and checkpoints. ``pipelines.pretrain`` and ``pipelines.finetune`` add only
their step and what they log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch

from a2v_core.config import TrainJob
from a2v_core.encoder import flush_denormals
from a2v_core.errors import InputError
from a2v_core.training import EmptyEpoch, TrainState, update_groups
from pipelines.runtime.tracking import Tracker
from pipelines.train.trainer import Throughput, device, load_reported, report_step, world


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The local shuffle seed of one worker in one epoch: another order every epoch, the same
    order for the same (run.seed, rank, epoch), so a resumed epoch skips what it consumed."""
    return int(np.random.default_rng([seed, rank, epoch]).integers(2**31))


def batches(
    shard: Any,
    batch_size: int,
    skip: int,
    tp: Throughput,
    shuffle_buffer: int = 0,
    seed: int | None = None,
):
    """Numpy batches of the worker's shard, skipping ``skip`` (data position on resume);
    ``shuffle_buffer``: chunks in Ray Data's local shuffle buffer (0: in read order), drawn
    with ``seed``."""
    shuffle = {}
    if shuffle_buffer:
        # the buffer must hold more than a batch to mix anything
        shuffle = {"local_shuffle_buffer_size": max(shuffle_buffer, batch_size + 1)}
        shuffle["local_shuffle_seed"] = seed
    it = iter(
        shard.iter_batches(
            batch_size=batch_size,
            batch_format="numpy",
            drop_last=True,
            prefetch_batches=2,
            **shuffle,
        )
    )
    i = 0
    while True:
        t = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        tp.wait_s += time.perf_counter() - t
        i += 1
        if i > skip:
            yield batch


def is_due(step: int, every: int, max_steps: int) -> bool:
    """A cadence (log, validate, checkpoint) falls on ``step``; the last step always."""
    return step % every == 0 or step == max_steps


class Worker:
    """One Ray Train worker of a training job (every rank runs one)."""

    def __init__(self, job: TrainJob, kind: str) -> None:
        self.job, self.kind = job, kind
        self.rank, self.world_size = world()
        self.dev = device()
        if job.cluster.torch_threads:
            torch.set_num_threads(job.cluster.torch_threads)
        flush_denormals()
        torch.manual_seed(job.run.seed + self.rank)  # model init (DDP broadcasts rank 0's)
        self.tp = Throughput()

    def log(self, line: str) -> None:
        if self.rank == 0:
            print(f"[{self.kind}] {line}", flush=True)

    def restore(self, state: TrainState) -> dict | None:
        """Load the latest checkpoint into ``state``; -> its meta (None on a fresh start)."""
        states, meta = load_reported(ray.train.get_checkpoint())
        if states is not None:
            state.load(states, meta)
            self.log(
                f"resumed from checkpoint at step {state.step} (epoch {state.epoch}, "
                f"batch {state.pos})"
            )
        node = ray.get_runtime_context().get_node_id()[:12]
        # the step it starts from tells a restarted group's lines from the first group's: lines
        # of different nodes reach the driver in no fixed order
        print(
            f"[{self.kind}] rank {self.rank}/{self.world_size} on node {node} from step {state.step}",
            flush=True,
        )
        return meta

    def wrap(self, model: torch.nn.Module, **ddp_kwargs: Any) -> torch.nn.Module:
        """DDP across the workers (the bare model on one worker), in training mode."""
        kwargs = {"parallel_strategy_kwargs": ddp_kwargs} if ddp_kwargs else {}
        wrapped = ray.train.torch.prepare_model(model, **kwargs)
        wrapped.train()
        return wrapped

    def tracker(self, config: dict, resumed_at: int | None) -> Tracker:
        job = self.job
        tracker = Tracker(
            job.tracking.uri,
            job.tracking.experiment,
            active=self.rank == 0 and job.tracking.enabled,
        )
        tracker.start(job.run.name, run_id=config.get("mlflow_run_id"))
        if resumed_at is not None:
            tracker.resume_from(resumed_at)
        return tracker

    def updates(self, state: TrainState) -> Iterator[list[dict]]:
        """The micro-batch groups of the remaining updates from this worker's ``train``
        shard, until ``optim.max_steps``."""
        job, shard = self.job, ray.train.get_dataset_shard("train")
        if state.step >= job.optim.max_steps:
            return

        def epoch_batches(epoch: int, skip: int):
            seed = epoch_seed(job.run.seed, self.rank, epoch)
            return batches(
                shard, job.optim.batch_size, skip, self.tp, job.data.shuffle_buffer_chunks, seed
            )

        try:
            for group in update_groups(state, epoch_batches, job.optim.grad_accum):
                yield group
                if state.step >= job.optim.max_steps:
                    return
        except EmptyEpoch:  # a whole epoch without one full batch would loop forever
            raise InputError(
                f"worker {self.rank}: an epoch of the archive gave no batch of "
                f"{job.optim.batch_size} chunks: the archive holds fewer than "
                f"optim.batch_size x cluster.num_workers {job.data.clip_s:g} s chunks; add "
                "audio or lower optim.batch_size"
            ) from None

    def due(self, step: int, every: int) -> bool:
        return is_due(step, every, self.job.optim.max_steps)

    def report(
        self, metrics: dict, state: TrainState | None = None, meta: Callable[[], dict] | None = None
    ) -> None:
        """Report ``metrics`` (every rank, the same number of times: a barrier); with
        ``state``, rank 0 attaches its checkpoint with ``meta()``."""
        if state is None:
            report_step(metrics, self.rank, None, self.job, {})
            return
        extra = meta() if meta is not None else {}
        report_step(
            metrics,
            self.rank,
            state.states,
            self.job,
            {"kind": self.kind, **extra, **state.position()},
        )
