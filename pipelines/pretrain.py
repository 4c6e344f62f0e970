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

import time

import ray
import ray.train
import ray.train.torch
import torch

from a2v_core.config import PretrainJob
from a2v_core.config_loader import flatten, to_yaml
from a2v_core.pretrain import (
    Data2VecPretrainer,
    collapse_message,
    stops_run,
    teacher_init_share,
    teacher_warning,
)
from a2v_core.training import TrainState, pretrain_step
from pipelines.data import inputs, storage
from pipelines.data.datasource import good_chunks, read_chunks
from pipelines.data.shared_storage import require_shared
from pipelines.data.sound_sample import sound_check
from pipelines.data.training_data import full_chunks, shuffled_files
from pipelines.runtime.job_paths import pin_paths
from pipelines.runtime.jobargs import command, job_parser, resolve
from pipelines.runtime.ray_init import init_ray
from pipelines.runtime.run_dir import CONFIG, FINAL, run_dir
from pipelines.runtime.tracking import Tracker
from pipelines.train.resume import check_resume
from pipelines.train.train_worker import Worker
from pipelines.train.trainer import (
    build_torch_trainer,
    export_checkpoint,
    fit_or_fail,
    maybe_fail,
    stop_training,
)


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
    """Ray Train worker loop (runs on every worker): ``a2v_core.training.pretrain_step`` per
    update, the collapse guard, metrics and checkpoints at their cadence."""
    job = PretrainJob.model_validate(config["job"])
    w = Worker(job, "pretrain")
    model = Data2VecPretrainer(job.model, job.masking, job.ema)
    student = [(n, p) for n, p in model.named_parameters() if not n.startswith("teacher.")]
    state = TrainState.create(model, student, job.optim)
    meta = w.restore(state)
    wrapped = w.wrap(model)
    tracker = w.tracker(config, state.step if meta else None)
    hours_seen = meta.get("audio_hours_seen", 0.0) if meta else 0.0
    sr, stopped = job.data.sample_rate_hz, False

    def meta_now() -> dict:
        return {
            "audio_hours_seen": hours_seen,
            "sample_rate_hz": sr,
            "frame_rate_hz": job.model.frame_rate_hz,
        }

    for group in w.updates(state):
        audio = [torch.as_tensor(b["audio"], dtype=torch.float32, device=w.dev) for b in group]
        out, metrics = pretrain_step(state, wrapped, audio, job, w.rank)
        step = state.step
        for b in group:
            w.tp.add(float(b["duration_s"].sum()))
        w.tp.step()
        collapse = any_rank(collapse_message(step, out, job.ema), w.world_size, step)
        hours_seen += sum(float(b["duration_s"].sum()) for b in group) * w.world_size / 3600
        maybe_fail(job, step, w.rank, w.world_size)
        if w.due(step, job.run.log_every_steps):
            metrics |= {
                "collapsed": float(collapse is not None),
                "audio_hours_seen": hours_seen,
                **w.tp.read(w.world_size),
            }
            tracker.log_metrics(metrics, step)
            w.log(
                f"step {step}/{job.optim.max_steps} loss {metrics['loss']:.4f} "
                f"audio_h {hours_seen:.3f} audio_h/s {metrics['audio_hours_per_s']:.4f} "
                f"wait {metrics['data_wait_frac']:.0%}"
            )
        if stops_run(collapse, job.ema):
            # every rank stops at this step (the flag is all-reduced): a clean stop that
            # the driver turns into one error line, not a worker error Ray would retry
            stop_training(job, w.rank, collapse)
            w.report({"step": step, "loss": metrics["loss"]})
            stopped = True
            break
        if w.due(step, job.run.checkpoint_every_steps):
            w.report({"step": step, "loss": metrics["loss"]}, state, meta_now)
    tracker.end("FAILED" if stopped else "FINISHED")
    w.log(f"done: {state.step} steps, {hours_seen:.3f} audio hours seen")


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
    print(job.model.hearing("pretrain", job.data.time_expansion))
    if not job.run.dry_run and (warning := teacher_warning(job.ema, job.optim.max_steps)):
        print(warning)  # a dry run's one step is about the mechanics, not the teacher
    pin_paths(job)
    run = run_dir(job)
    check_resume(run, job)  # before Ray starts: a mismatch costs nothing
    files = inputs.archive_files(job.data.archive, job.data.extensions)
    print(
        sound_check("pretrain", job.data.archive, files, job.model.band_hz, job.data.time_expansion)
    )
    init_ray(job.cluster.address)
    require_shared(
        {"data.archive": job.data.archive, "run.storage_path": job.run.storage_path},
        job.tracking.uri if job.tracking.enabled else None,
        job.cluster.shared_paths,
    )
    storage.write_bytes(storage.join(run, CONFIG), to_yaml(job).encode())
    tracker = Tracker(job.tracking.uri, job.tracking.experiment, active=job.tracking.enabled)
    run_id = tracker.find_run(job.run.name)
    run_id = tracker.start(
        job.run.name,
        flatten(job),
        {
            "a2v.run_name": job.run.name,
            "a2v.job": "pretrain",
            "a2v.teacher_init_at_end": f"{teacher_init_share(job.ema, job.optim.max_steps):.3g}",
        },
        run_id=run_id,
    )
    t0 = time.time()
    trainer = build_trainer(job, run_id, files)
    result = fit_or_fail(trainer, tracker, run)
    final_uri = export_checkpoint(result.checkpoint, storage.join(run, FINAL))
    wall = time.time() - t0
    tracker.log_text(to_yaml(job), CONFIG)
    tracker.log_metrics({"wall_s": wall}, job.optim.max_steps)
    tracker.set_tags({"checkpoint_uri": final_uri})
    if not storage.is_remote(final_uri):
        tracker.log_artifact(final_uri, "checkpoint")
    tracker.end()
    print(f"[pretrain] final checkpoint: {final_uri} ({wall:.0f} s); MLflow run {run_id}")
    return {"checkpoint": final_uri, "mlflow_run_id": run_id, "wall_s": wall}


@command
def main(argv: list[str] | None = None) -> None:
    shorthands = [
        "archive",
        "name",
        "storage_path",
        "max_steps",
        "address",
        "num_workers",
        "sample_rate_hz",
    ]
    args = job_parser("a2v pretrain", __doc__, shorthands).parse_args(argv)
    run(resolve(PretrainJob, args, shorthands))


if __name__ == "__main__":
    main()
