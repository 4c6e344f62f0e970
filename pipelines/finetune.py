"""Frame-level multi-label fine-tuning with focal loss on Ray Train.

    python -m pipelines.finetune --config configs/finetune/tiny.yaml \\
        --pretrained demo_out/runs/pretrain-tiny/final --annotations demo_out/archive/annotations.csv \\
        --label-fraction 0.1

Clips of the annotated files are split (stratified on per-clip class presence, fixed seed)
into train / valid and a ``label_fraction`` of the train clips; the split is written to
``<storage_path>/<name>/splits.csv``. Training uses focal loss, head-only for the first
``optim.freeze_steps`` updates with the Sinc + CNN front end frozen throughout (the
projection into the encoder width trains after the head-only phase, as the original)
(``optim.freeze_frontend``, the paper's; the tiny preset trains it), time/channel masks and
mixup with soft targets. Validation every ``run.validate_every_steps`` reports frame micro-F1
at 0.175 and macro AP; the best model by ``select_metric`` is exported to
``<storage_path>/<name>/best`` (the checkpoint ``a2v label`` takes) and registered in MLflow.
"""

from __future__ import annotations

import contextlib
import copy
import math
import tempfile
import time

import numpy as np
import pandas as pd
import ray
import ray.train
import ray.train.torch
import torch

from a2v_core.checkpoint import load_checkpoint, save_checkpoint
from a2v_core.config import FinetuneJob
from a2v_core.config_loader import flatten, to_yaml
from a2v_core.encoder import flush_denormals
from a2v_core.finetune import FrameClassifier, focal_loss, load_pretrained_encoder, valid_frames
from a2v_core.mixup import bc_mixup
from pipelines import storage
from pipelines.finetune_data import batch_targets, prepare, split_dataset
from pipelines.finetune_validate import event_thresholds, validate
from pipelines.jobargs import command, job_parser, resolve
from pipelines.pretrain import batches, epoch_seed
from pipelines.resume import check_resume
from pipelines.shared_storage import require_shared
from pipelines.tracking import Tracker
from pipelines.trainer import (
    Throughput,
    build_torch_trainer,
    device,
    fit_or_fail,
    init_ray,
    maybe_fail,
    param_groups,
    report,
    restore,
    warmup_cosine,
    world,
)
from pipelines.training_data import repeated

MIN_STEPS_PER_EPOCH = 16


def load_encoder_into(model: FrameClassifier, pretrained_uri: str) -> None:
    with storage.fetched(pretrained_uri) as local:  # on this worker's node
        states, _, meta = load_checkpoint(local)
    if meta.get("kind") != "pretrain":
        raise ValueError(
            f"--pretrained {pretrained_uri} is a '{meta.get('kind')}' checkpoint, not a pretraining one"
        )
    encoder_state = {
        k[len("encoder.") :]: v for k, v in states["model"].items() if k.startswith("encoder.")
    }
    load_pretrained_encoder(model, encoder_state)


def train_loop(config: dict) -> None:
    job = FinetuneJob.model_validate(config["job"])
    classes: list[str] = config["classes"]
    events = pd.DataFrame(config["events"])
    events_by_file = {f: g for f, g in events.groupby("file")} if len(events) else {}
    rank, world_size = world()
    dev = device()
    if job.cluster.torch_threads:
        torch.set_num_threads(job.cluster.torch_threads)
    flush_denormals()
    torch.manual_seed(job.run.seed + rank)
    model = FrameClassifier(
        job.model,
        len(classes),
        job.finetune_masking,
        job.optim.freeze_frontend,
        job.loss.prior_prob,
    )
    states, meta = restore(ray.train.get_checkpoint())
    if states is None and job.pretrained:
        load_encoder_into(model, job.pretrained)
    opt = torch.optim.AdamW(
        param_groups(list(model.named_parameters()), job.optim.weight_decay),
        lr=job.optim.lr,
        betas=job.optim.betas,
        eps=job.optim.eps,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(job.optim))
    step, epoch, pos, best = 0, 0, 0, {"val_micro_f1": -1.0, "val_macro_ap": -1.0}
    order = [job.select_metric, *({"val_micro_f1", "val_macro_ap"} - {job.select_metric})]
    best_state = None
    best_thresholds: dict[str, float] = {}
    last_thresholds: dict[str, float] = {}
    if states is not None:
        model.load_state_dict(states["model"])
        opt.load_state_dict(states["optimizer"])
        sched.load_state_dict(states["scheduler"])
        best_state = states.get("best_model")
        step, epoch, pos = meta["step"], meta["epoch"], meta["batches_in_epoch"]
        best = {"val_micro_f1": -1.0, "val_macro_ap": -1.0, **meta["best"]}
        best_thresholds = meta.get("class_thresholds_best", {})
        last_thresholds = meta.get("class_thresholds_last", {})
    rng = np.random.default_rng([job.run.seed, rank, step])
    ddp = ray.train.torch.prepare_model(
        model, parallel_strategy_kwargs={"find_unused_parameters": True}
    )
    core: FrameClassifier = getattr(ddp, "module", ddp)
    tracker = Tracker(
        job.tracking.uri, job.tracking.experiment, active=rank == 0 and job.tracking.enabled
    )
    tracker.start(job.run.name, run_id=config.get("mlflow_run_id"))
    if states is not None:
        tracker.resume_from(step)
    shard = ray.train.get_dataset_shard("train")
    tp = Throughput()
    sr = job.data.sample_rate_hz
    accum, micro = job.optim.grad_accum, 0

    def checkpoint_states() -> dict:
        out = {
            "model": core.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
        }
        if best_state is not None:
            out["best_model"] = best_state
        return out

    def meta_now() -> dict:
        return {
            "kind": "finetune",
            "step": step,
            "epoch": epoch,
            "batches_in_epoch": pos,
            "best": best,
            "classes": classes,
            "sample_rate_hz": sr,
            "frame_rate_hz": job.model.frame_rate_hz,
            "clip_s": job.data.clip_s,
            "pretrained": job.pretrained,
            "class_thresholds_best": best_thresholds,
            "class_thresholds_last": last_thresholds,
        }

    ddp.train()
    while step < job.optim.max_steps:
        seed = epoch_seed(job.run.seed, rank, epoch)
        shuffle = job.data.shuffle_buffer_chunks
        for batch in batches(shard, job.optim.batch_size, pos, tp, shuffle, seed):
            pos += 1
            core.set_encoder_frozen(step < job.optim.freeze_steps)
            audio = torch.as_tensor(batch["audio"], dtype=torch.float32, device=dev)
            y = torch.as_tensor(
                batch_targets(events_by_file, classes, batch["path"], batch["offset_s"], job),
                device=dev,
            )
            frames = valid_frames(batch["duration_s"], y.shape[1], job.model.frame_rate_hz)
            if job.mixup.enabled and torch.rand(()) < job.mixup.prob:
                perm = torch.randperm(audio.shape[0])
                audio, y = bc_mixup(audio, sr, targets=y, perm=perm)
                frames = frames | frames[perm]  # a mix holds audio where either clip does
            sync = (
                contextlib.nullcontext() if micro + 1 == accum or world_size == 1 else ddp.no_sync()
            )
            with sync:
                with torch.autocast(
                    device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"
                ):
                    logits = ddp(audio, rng)
                loss = focal_loss(
                    logits, y, job.loss.focal_alpha, job.loss.focal_gamma, frames.to(dev)
                )
                (loss / accum).backward()
            tp.add(float(batch["duration_s"].sum()))
            micro += 1
            if micro < accum:
                continue
            micro = 0
            params = [p for p in core.parameters() if p.requires_grad]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, job.optim.clip_norm or float("inf"))
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tp.step()
            maybe_fail(job, step, rank, world_size)
            metrics, val = {}, {}
            if step % job.run.log_every_steps == 0 or step == job.optim.max_steps:
                metrics = {
                    "loss": float(loss),
                    "lr": sched.get_last_lr()[0],
                    "grad_norm": float(grad_norm),
                    "encoder_frozen": float(core.encoder_frozen),
                    **tp.read(world_size),
                }
                if rank == 0:
                    print(
                        f"[finetune] step {step}/{job.optim.max_steps} loss {float(loss):.4f}",
                        flush=True,
                    )
            if step % job.run.validate_every_steps == 0 or step == job.optim.max_steps:
                if rank == 0:
                    val, pooled_clips = validate(core, job, classes, events_by_file, dev)
                    is_best = tuple(val[k] for k in order) > tuple(best[k] for k in order)
                    if is_best or step == job.optim.max_steps:
                        thresholds = event_thresholds(pooled_clips, events, classes, job)
                        last_thresholds = thresholds
                    metrics.update(val)
                    # best by job.select_metric; ties (e.g. F1 all 0 early on) by the other
                    if is_best:
                        best = {**val, "step": step}
                        best_state = copy.deepcopy(core.state_dict())
                        best_thresholds = thresholds
                    print(
                        f"[finetune] step {step} valid micro-F1 {val['val_micro_f1']:.3f} "
                        f"macro-AP {val['val_macro_ap']:.3f} (best {job.select_metric} "
                        f"{best[job.select_metric]:.3f} @ {best['step']})",
                        flush=True,
                    )
            tracker.log_metrics(metrics, step)
            if step % job.run.checkpoint_every_steps == 0 or step == job.optim.max_steps:
                report(
                    {
                        "step": step,
                        "loss": float(loss),
                        **{f"best_{k}": v for k, v in best.items() if k != "step"},
                        **val,  # this validation's metrics (what a Tune scheduler compares)
                    },
                    rank,
                    checkpoint_states,
                    job,
                    meta_now(),
                )
            if step >= job.optim.max_steps:
                break
        else:
            epoch, pos = epoch + 1, 0
    tracker.end()


# ----------------------------------------------------------------------------- driver


def build_trainer(
    job: FinetuneJob,
    mlflow_run_id: str | None = None,
    callbacks: list | None = None,
    prepared: tuple | None = None,
):
    """TorchTrainer for a fine-tuning job; also returns the splits table written beside it.
    ``prepared``: what ``prepare(job)`` returned, when the caller checked the inputs first."""
    events, classes, clips, files = prepared or prepare(job)
    run_dir = storage.join(job.run.storage_path, job.run.name)
    storage.write_bytes(storage.join(run_dir, "splits.csv"), clips.to_csv(index=False).encode())
    train = split_dataset(job, clips, files, "train")
    valid = split_dataset(job, clips, files, "valid")
    need = job.optim.batch_size * job.cluster.num_workers * MIN_STEPS_PER_EPOCH
    n_train = int((clips["split"] == "train").sum())
    if 0 < n_train < need:
        # few-shot: fewer clips than a batch per worker would give epochs without a single
        # (drop_last) batch, and very short epochs pay Ray Data's start-up every few steps;
        # repeat the clips so that every epoch has at least MIN_STEPS_PER_EPOCH steps
        train = repeated(train, math.ceil(need / n_train))
    loop_config = {
        "job": job.model_dump(mode="json"),
        "classes": classes,
        "mlflow_run_id": mlflow_run_id,
        "events": events[["file", "onset_s", "offset_s", "label"]].to_dict(orient="list"),
    }
    trainer = build_torch_trainer(
        job,
        train_loop,
        loop_config,
        {"train": train, "valid": valid},
        callbacks,
        ray.train.DataConfig(datasets_to_split=["train"]),
    )
    return trainer, clips, classes


def export_best(result, job: FinetuneJob, classes: list[str]) -> tuple[str, dict]:
    """Write ``<run>/best`` (best-by-F1 weights) and ``<run>/final`` as fine-tuned checkpoints."""
    run_dir = storage.join(job.run.storage_path, job.run.name)
    with result.checkpoint.as_directory() as d:
        states, _, meta = load_checkpoint(d)
    for name, weights in (
        ("best", states.get("best_model", states["model"])),
        ("final", states["model"]),
    ):
        thresholds = meta.get(f"class_thresholds_{'best' if name == 'best' else 'last'}", {})
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(
                tmp,
                {"model": weights},
                to_yaml(job),
                {**meta, "exported": name, "class_thresholds": thresholds},
            )
            storage.upload_dir(tmp, storage.join(run_dir, name))
    return storage.join(run_dir, "best"), meta


def run(job: FinetuneJob) -> dict:
    storage.absolutize(job)
    run_dir = storage.join(job.run.storage_path, job.run.name)
    check_resume(run_dir, job)  # before Ray starts: a mismatch costs nothing
    prepared = prepare(job)  # annotations, archive and splits: input errors before Ray starts
    init_ray(job.cluster.address)
    require_shared(
        {
            "data.archive": job.data.archive,
            "run.storage_path": job.run.storage_path,
            "pretrained": job.pretrained,
        },
        job.tracking.uri if job.tracking.enabled else None,
    )
    storage.write_bytes(storage.join(run_dir, "config.yaml"), to_yaml(job).encode())
    tracker = Tracker(job.tracking.uri, job.tracking.experiment, active=job.tracking.enabled)
    run_id = tracker.start(
        job.run.name,
        flatten(job),
        {"a2v.run_name": job.run.name, "a2v.job": "finetune"},
        run_id=tracker.find_run(job.run.name),
    )
    t0 = time.time()
    trainer, clips, classes = build_trainer(job, run_id, prepared=prepared)
    counts = clips["split"].value_counts().to_dict()
    print(
        f"[finetune] clips: {counts} (label_fraction {job.data.label_fraction}); classes: {classes}"
    )
    result = fit_or_fail(trainer, tracker, run_dir)
    best_uri, meta = export_best(result, job, classes)
    tracker.log_text(to_yaml(job), "config.yaml")
    tracker.log_text(clips.to_csv(index=False), "splits.csv")
    version = None
    if job.tracking.enabled:
        model, _ = _load_best(best_uri)
        version = tracker.register_model(model, job.tracking.registered_model, alias="best")
        tracker.set_tags({"checkpoint_uri": best_uri, "model_version": str(version)})
    tracker.end()
    best = meta["best"]
    print(
        f"[finetune] best valid micro-F1 {best['val_micro_f1']:.3f} macro-AP {best.get('val_macro_ap', float('nan')):.3f} "
        f"at step {best.get('step')}; checkpoint {best_uri}; registered {job.tracking.registered_model} v{version} "
        f"({time.time() - t0:.0f} s)"
    )
    return {"checkpoint": best_uri, "best": best, "mlflow_run_id": run_id, "model_version": version}


def _load_best(uri: str):
    from a2v_core.checkpoint import load_classifier

    with storage.fetched(uri) as local:
        return load_classifier(local)


@command
def main(argv: list[str] | None = None) -> None:
    shorthands = [
        "archive",
        "annotations",
        "name",
        "storage_path",
        "max_steps",
        "label_fraction",
        "address",
        "num_workers",
    ]
    ap = job_parser("a2v finetune", __doc__, shorthands)
    ap.add_argument(
        "--pretrained", default=None, help="pretraining checkpoint URI (omit: from scratch)"
    )
    args = ap.parse_args(argv)
    run(resolve(FinetuneJob, args, shorthands, {"pretrained": args.pretrained}))


if __name__ == "__main__":
    main()
