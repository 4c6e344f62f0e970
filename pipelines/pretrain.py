"""Self-supervised pretraining (data2vec 2.0 student / EMA teacher) on Ray Train.

    python -m pipelines.pretrain --config configs/pretrain/tiny.yaml --archive demo_out/archive
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m pipelines.pretrain --config configs/pretrain/large.yaml

The archive streams through the chunk datasource (split across workers); each worker runs
DDP with gradient accumulation, AdamW groups, warmup + cosine, clipping, the EMA update
after every optimizer step and periodic checkpoints from rank 0. Rerunning with the same
``run.name`` and ``run.storage_path`` resumes from the latest checkpoint. The final
checkpoint is exported to ``<storage_path>/<name>/final``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch

from a2v_core.config import PretrainJob
from a2v_core.config_loader import flatten, to_yaml
from a2v_core.encoder import flush_denormals
from a2v_core.mixup import bc_mixup
from a2v_core.pretrain import Data2VecPretrainer, collapse_message
from pipelines import inputs, storage
from pipelines.datasource import good_chunks, read_chunks
from pipelines.jobargs import command, job_parser, resolve
from pipelines.resume import check_resume
from pipelines.shared_storage import require_shared
from pipelines.tracking import Tracker
from pipelines.trainer import (
    Throughput,
    build_torch_trainer,
    device,
    export_checkpoint,
    fit_or_fail,
    init_ray,
    maybe_fail,
    param_groups,
    report,
    restore,
    stop_training,
    warmup_cosine,
    world,
)
from pipelines.training_data import full_chunks, shuffled_files


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


def any_rank(message: str | None, world_size: int, step: int) -> str | None:
    """``message`` if this or any other rank has one (an all-reduce, so that every rank takes
    the same branch and none waits alone in a collective)."""
    if world_size == 1:
        return message
    flag = torch.tensor([1.0 if message else 0.0])
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    if flag.item() and not message:
        return f"representation collapse on another worker at step {step}"
    return message


def train_loop(config: dict) -> None:
    """Ray Train worker loop (runs on every worker)."""
    job = PretrainJob.model_validate(config["job"])
    rank, world_size = world()
    dev = device()
    if job.cluster.torch_threads:
        torch.set_num_threads(job.cluster.torch_threads)
    flush_denormals()
    torch.manual_seed(job.run.seed + rank)
    model = Data2VecPretrainer(job.model, job.masking, job.ema)
    opt = torch.optim.AdamW(
        param_groups(
            [(n, p) for n, p in model.named_parameters() if not n.startswith("teacher.")],
            job.optim.weight_decay,
        ),
        lr=job.optim.lr,
        betas=job.optim.betas,
        eps=job.optim.eps,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(job.optim))
    states, meta = restore(ray.train.get_checkpoint())
    step, epoch, pos = 0, 0, 0
    if states is not None:
        model.load_state_dict(states["model"])
        opt.load_state_dict(states["optimizer"])
        sched.load_state_dict(states["scheduler"])
        step, epoch, pos = meta["step"], meta["epoch"], meta["batches_in_epoch"]
        if rank == 0:
            print(
                f"[pretrain] resumed from checkpoint at step {step} (epoch {epoch}, batch {pos})",
                flush=True,
            )
    rng = np.random.default_rng([job.run.seed, rank, step])
    print(
        f"[pretrain] rank {rank}/{world_size} on node {ray.get_runtime_context().get_node_id()[:12]}",
        flush=True,
    )
    ddp = ray.train.torch.prepare_model(model)
    core: Data2VecPretrainer = getattr(ddp, "module", ddp)
    use_amp = dev.type == "cuda"
    tracker = Tracker(
        job.tracking.uri, job.tracking.experiment, active=rank == 0 and job.tracking.enabled
    )
    tracker.start(job.run.name, run_id=config.get("mlflow_run_id"))
    if states is not None:
        tracker.resume_from(step)
    shard = ray.train.get_dataset_shard("train")
    tp = Throughput()
    hours_seen = meta.get("audio_hours_seen", 0.0) if meta else 0.0
    sr = job.data.sample_rate_hz
    accum, micro, loss_acc = job.optim.grad_accum, 0, 0.0

    def checkpoint_states() -> dict:
        return {
            "model": core.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
        }

    def meta_now() -> dict:
        return {
            "kind": "pretrain",
            "step": step,
            "epoch": epoch,
            "batches_in_epoch": pos,
            "audio_hours_seen": hours_seen,
            "sample_rate_hz": sr,
            "frame_rate_hz": job.model.frame_rate_hz,
        }

    ddp.train()
    stopped = False
    while step < job.optim.max_steps:
        seed = epoch_seed(job.run.seed, rank, epoch)
        shuffle = job.data.shuffle_buffer_chunks
        start = pos
        for batch in batches(shard, job.optim.batch_size, pos, tp, shuffle, seed):
            pos += 1
            audio = torch.as_tensor(batch["audio"], dtype=torch.float32, device=dev)
            if job.mixup.enabled and torch.rand(()) < job.mixup.prob:
                audio, _ = bc_mixup(audio, sr)
            sync = (
                contextlib.nullcontext() if micro + 1 == accum or world_size == 1 else ddp.no_sync()
            )
            with sync, torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
                out = ddp(audio, rng)  # ddp is the bare model when there is one worker
                (out.loss / accum).backward()
            loss_acc += float(out.loss.detach()) / accum
            tp.add(float(batch["duration_s"].sum()))
            micro += 1
            if micro < accum:
                continue
            grad_norm = torch.nn.utils.clip_grad_norm_(
                core.student_parameters(), job.optim.clip_norm or float("inf")
            )
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            micro = 0
            decay = core.ema_step(step)
            collapse = any_rank(collapse_message(step, out, job.ema), world_size, step)
            hours_seen += float(batch["duration_s"].sum()) * accum * world_size / 3600
            tp.step()
            last_loss = loss_acc
            loss_acc = 0.0
            maybe_fail(job, step, rank, world_size)
            if step % job.run.log_every_steps == 0 or step == job.optim.max_steps:
                metrics = {
                    "loss": last_loss,
                    "lr": sched.get_last_lr()[0],
                    "ema_decay": decay,
                    "target_std": out.target_std,
                    "pred_std": out.pred_std,
                    "grad_norm": float(grad_norm),
                    "masked_fraction": out.masked_fraction,
                    "collapsed": float(collapse is not None),
                    "audio_hours_seen": hours_seen,
                    **tp.read(world_size),
                }
                tracker.log_metrics(metrics, step)
                if rank == 0:
                    print(
                        f"[pretrain] step {step}/{job.optim.max_steps} loss {last_loss:.4f} "
                        f"audio_h {hours_seen:.3f} audio_h/s {metrics['audio_hours_per_s']:.4f} "
                        f"wait {metrics['data_wait_frac']:.0%}",
                        flush=True,
                    )
            if collapse and job.ema.stop_on_collapse:
                # every rank stops at this step (the flag is all-reduced): a clean stop that
                # the driver turns into one error line, not a worker error Ray would retry
                stop_training(job, rank, collapse)
                report({"step": step, "loss": last_loss}, rank, None, job, {})
                stopped = True
                break
            if step % job.run.checkpoint_every_steps == 0 or step == job.optim.max_steps:
                report({"step": step, "loss": last_loss}, rank, checkpoint_states, job, meta_now())
            if step >= job.optim.max_steps:
                break
        else:
            if pos == start == 0:  # a whole epoch without one full batch would loop forever
                raise RuntimeError(
                    f"worker {rank}: an epoch of the archive gave no batch of "
                    f"{job.optim.batch_size} chunks: the archive holds fewer than "
                    f"optim.batch_size x cluster.num_workers {job.data.clip_s:g} s chunks; add "
                    "audio or lower optim.batch_size"
                )
            epoch, pos = epoch + 1, 0
            continue
        if stopped:
            break
    tracker.end("FAILED" if stopped else "FINISHED")
    if rank == 0:
        print(f"[pretrain] done: {step} steps, {hours_seen:.3f} audio hours seen", flush=True)


def build_trainer(
    job: PretrainJob,
    mlflow_run_id: str | None = None,
    files: list[tuple[str, int]] | None = None,
) -> ray.train.torch.TorchTrainer:
    """The TorchTrainer for a pretraining job (checks resources before any worker starts);
    ``files``: the archive's listing when the caller made it (else it is listed here)."""
    if files is None:
        files = inputs.archive_files(job.data.archive, job.data.extensions)
    files = job.dry_run_slice(files)
    if job.data.shuffle_files:
        files = shuffled_files(files, job.run.seed)
    ds = full_chunks(good_chunks(read_chunks(job.data, files)), job.data.clip_s)
    ds = ds.select_columns(["audio", "duration_s"])
    return build_torch_trainer(
        job,
        train_loop,
        {"job": job.model_dump(mode="json"), "mlflow_run_id": mlflow_run_id},
        {"train": ds},
    )


def run(job: PretrainJob) -> dict:
    """Driver: MLflow run, resolved config beside the outputs, fit, export the final checkpoint."""
    storage.absolutize(job)
    run_dir = storage.join(job.run.storage_path, job.run.name)
    check_resume(run_dir, job)  # before Ray starts: a mismatch costs nothing
    files = inputs.archive_files(job.data.archive, job.data.extensions)
    init_ray(job.cluster.address)
    require_shared(
        {"data.archive": job.data.archive, "run.storage_path": job.run.storage_path},
        job.tracking.uri if job.tracking.enabled else None,
    )
    storage.write_bytes(storage.join(run_dir, "config.yaml"), to_yaml(job).encode())
    tracker = Tracker(job.tracking.uri, job.tracking.experiment, active=job.tracking.enabled)
    run_id = tracker.find_run(job.run.name)
    run_id = tracker.start(
        job.run.name,
        flatten(job),
        {"a2v.run_name": job.run.name, "a2v.job": "pretrain"},
        run_id=run_id,
    )
    t0 = time.time()
    trainer = build_trainer(job, run_id, files)
    result = fit_or_fail(trainer, tracker, run_dir)
    final_uri = export_checkpoint(result.checkpoint, storage.join(run_dir, "final"))
    wall = time.time() - t0
    tracker.log_text(to_yaml(job), "config.yaml")
    tracker.log_metrics({"wall_s": wall}, job.optim.max_steps)
    tracker.set_tags({"checkpoint_uri": final_uri})
    if not storage.is_remote(final_uri):
        tracker.log_artifact(final_uri, "checkpoint")
    tracker.end()
    print(f"[pretrain] final checkpoint: {final_uri} ({wall:.0f} s); MLflow run {run_id}")
    return {"checkpoint": final_uri, "mlflow_run_id": run_id, "wall_s": wall}


@command
def main(argv: list[str] | None = None) -> None:
    shorthands = ["archive", "name", "storage_path", "max_steps", "address", "num_workers"]
    args = job_parser("a2v pretrain", __doc__, shorthands).parse_args(argv)
    run(resolve(PretrainJob, args, shorthands))


if __name__ == "__main__":
    main()
