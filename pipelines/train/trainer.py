"""Ray Train plumbing shared by pretraining and fine-tuning (and reused by tune/).

``build_torch_trainer`` checks the cluster config against the running Ray cluster *before*
any worker starts, then builds a TorchTrainer with ScalingConfig / RunConfig /
FailureConfig / CheckpointConfig from the job config. The worker-side helpers cover
checkpoint save/restore, a guard's stop and the test hook that makes one worker fail once;
the training itself is ``a2v_core.training``, bound to a worker by ``pipelines.train.train_worker``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import ray
import ray.data
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from a2v_core.checkpoint import load_checkpoint, save_checkpoint
from a2v_core.config import TrainJob
from a2v_core.config_loader import ConfigError, to_yaml
from a2v_core.errors import RunStopped, job_error_in
from pipelines.data import storage
from pipelines.runtime import quiet_logs
from pipelines.runtime.run_dir import STOP_MARKER
from pipelines.runtime.run_dir import path as run_path


def check_resources(job: TrainJob) -> None:
    """Reject a cluster config the running cluster cannot satisfy (names the key)."""
    res = ray.cluster_resources()
    c = job.cluster
    if c.use_gpu and c.num_workers > res.get("GPU", 0):
        raise ConfigError(
            f"cluster.num_workers={c.num_workers} with cluster.use_gpu=true needs {c.num_workers} GPUs; "
            f"the cluster has {res.get('GPU', 0):g}"
        )
    need_cpu = c.num_workers * c.cpus_per_worker
    total_cpu = res.get("CPU", 0)
    if need_cpu > total_cpu - 0.5:
        raise ConfigError(
            f"cluster.num_workers x cluster.cpus_per_worker = {need_cpu:g} CPUs leaves less than 0.5 of "
            f"the cluster's {total_cpu:g} CPUs for Ray Data reading (it would hang); lower cluster.cpus_per_worker"
        )
    node_cpus = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    free = free_cpus_after_placing(
        node_cpus, c.num_workers, c.cpus_per_worker, "SPREAD" in c.placement_strategy
    )
    if not c.use_gpu and free is not None and max(free, default=0) < 1:
        raise ConfigError(
            f"cluster.num_workers={c.num_workers} x cluster.cpus_per_worker={c.cpus_per_worker:g} "
            f"({c.placement_strategy}) on nodes of {node_cpus} CPUs leaves no node a whole CPU for "
            "a Ray Data read task (each takes 1): it would hang; lower cluster.cpus_per_worker"
        )


def free_cpus_after_placing(
    node_cpus: list[float], n: int, per_worker: float, spread: bool
) -> list[float] | None:
    """CPUs left on each node once ``n`` workers of ``per_worker`` CPUs are placed the way
    Ray's placement group would (SPREAD: the node with the most free CPUs first; PACK: fill a
    node before the next), or None when they do not fit the nodes there now (an autoscaler
    may add some)."""
    free = sorted(node_cpus, reverse=True)
    for _ in range(n):
        fits = [i for i, f in enumerate(free) if f >= per_worker - 1e-9]
        if not fits:
            return None
        i = max(fits, key=lambda j: free[j]) if spread else fits[0]
        free[i] -= per_worker
    return free


def build_torch_trainer(
    job: TrainJob,
    loop: Callable[[dict], None],
    loop_config: dict,
    datasets: dict[str, Any],
    callbacks: list | None = None,
    dataset_config: ray.train.DataConfig | None = None,
) -> TorchTrainer:
    check_resources(job)
    c, r = job.cluster, job.run
    resources = {"CPU": c.cpus_per_worker}
    if c.use_gpu:
        resources["GPU"] = 1
    storage_path, storage_fs = storage.train_storage(r.storage_path)
    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if c.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=c.num_workers,
            use_gpu=c.use_gpu,
            resources_per_worker=resources,
            placement_strategy=c.placement_strategy,
        ),
        run_config=RunConfig(
            name=r.name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=FailureConfig(max_failures=r.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=r.keep_checkpoints),
            callbacks=callbacks,
            logging_config=ray.train.LoggingConfig(log_level=quiet_logs.train_log_level()),
        ),
        datasets=datasets,
        dataset_config=dataset_config,
    )


# ----------------------------------------------------------------------------- worker side


def world() -> tuple[int, int]:
    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size()


def device() -> torch.device:
    return ray.train.torch.get_device()


#: written by rank 0 beside the checkpoints when a guard stops training (read by the driver)


def stop_training(job: TrainJob, rank: int, message: str) -> None:
    """Worker side: record why training stops; the driver raises it as ``RunStopped``."""
    if rank == 0:
        storage.write_bytes(run_path(job, STOP_MARKER), message.encode())


def fit_or_fail(trainer: TorchTrainer, tracker, run_dir: str) -> ray.train.Result:
    """``trainer.fit()``; a failure marks the MLflow run FAILED with the error as a tag and
    is raised again; a guard's stop (``stop_training``: a collapse, every rank at one step) is
    raised as ``RunStopped``, one line for the user."""
    marker = storage.join(run_dir, STOP_MARKER)
    storage.remove(marker)  # left by an earlier submission
    try:
        result = trainer.fit()
        error = result.error
    except Exception as err:  # Train V2 raises what a worker raised (WorkerGroupError)
        error = err
    stopped = storage.read_bytes(marker).decode() if storage.exists(marker) else None
    if not error and not stopped:
        return result
    tracker.fail(stopped or error)
    if stopped:
        raise RunStopped(
            f"{stopped}; the run is stopped (ema.stop_on_collapse=false logs it and goes on). "
            "Check the learning rate, the EMA decay and the masking"
        ) from None
    raise job_error_in(error) or error


def load_reported(ckpt: Checkpoint | None) -> tuple[dict, dict] | tuple[None, None]:
    """(states, meta) of the latest reported checkpoint, or (None, None)."""
    if ckpt is None:
        return None, None
    with ckpt.as_directory() as d:
        states, _, meta = load_checkpoint(d)
    return states, meta


def report_step(
    metrics: dict, rank: int, states: Callable[[], dict] | None, job: TrainJob, meta: dict
) -> None:
    """Every rank calls this the same number of times (it is a barrier); rank 0 attaches the
    checkpoint when ``states`` is given."""
    if rank == 0 and states is not None:
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint(d, states(), to_yaml(job), meta)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)


def maybe_fail(job: TrainJob, step: int, rank: int, world_size: int) -> None:
    """Test hook: at ``run.fail_at_step`` the last rank raises once (a marker in storage)."""
    if job.run.fail_at_step is None or step != job.run.fail_at_step or rank != world_size - 1:
        return
    marker = run_path(job, "_failed_once")
    if storage.exists(marker):
        return
    storage.write_bytes(marker, b"1")
    raise RuntimeError(f"test hook: worker {rank} fails once at step {step}")


class Throughput:
    """Audio hours/s and step time over the last log interval."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.audio_s = 0.0
        self.steps = 0
        self.wait_s = 0.0

    def add(self, audio_s: float) -> None:
        self.audio_s += audio_s

    def step(self) -> None:
        self.steps += 1

    def read(self, world_size: int) -> dict[str, float]:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        out = {
            "audio_hours_per_s": self.audio_s * world_size / 3600 / dt,
            "step_time_s": dt / max(self.steps, 1),
            "data_wait_frac": self.wait_s / dt,
        }
        self.__init__()
        return out


def export_checkpoint(result_checkpoint: Checkpoint, dest_uri: str) -> str:
    """Copy a Ray checkpoint directory to ``dest_uri`` (a stable, documented location)."""
    with result_checkpoint.as_directory() as d:
        storage.upload_dir(d, dest_uri)
    return dest_uri
