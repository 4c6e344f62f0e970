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
at ``frame_threshold`` (0.175) and macro AP; the best model by ``select_metric`` is exported to
``<storage_path>/<name>/best`` (the checkpoint ``a2v label`` takes) and registered in MLflow.
"""

from __future__ import annotations

import json
import math
import tempfile
import time

import pandas as pd
import ray
import ray.train
import ray.train.torch

from a2v_core.checkpoint import encoder_state, load_checkpoint, save_checkpoint
from a2v_core.config import FinetuneJob
from a2v_core.config_loader import flatten, to_yaml
from a2v_core.errors import InputError
from a2v_core.finetune import FrameClassifier, load_pretrained_encoder
from a2v_core.redact import redact_uri
from a2v_core.selection import BestKeeper
from a2v_core.training import TrainState, finetune_step
from pipelines.data import storage
from pipelines.data.finetune_data import is_reviewed, prepare, split_dataset
from pipelines.data.shared_storage import require_shared
from pipelines.data.sound_sample import sound_check
from pipelines.data.training_data import repeated
from pipelines.runtime.job_paths import pin_paths
from pipelines.runtime.jobargs import command, job_parser, resolve
from pipelines.runtime.ray_init import init_ray
from pipelines.runtime.run_dir import BEST, CONFIG, FINAL, SPLITS, open_checkpoint, run_dir
from pipelines.runtime.run_dir import path as run_path
from pipelines.runtime.tracking import Tracker
from pipelines.train.finetune_validate import Targets
from pipelines.train.resume import check_resume
from pipelines.train.train_worker import Worker
from pipelines.train.trainer import build_torch_trainer, fit_or_fail, maybe_fail

MIN_STEPS_PER_EPOCH = 16


def load_encoder_into(model: FrameClassifier, pretrained_uri: str) -> None:
    """The pretrained encoder's weights, fetched on this worker's node."""
    opened = open_checkpoint(pretrained_uri, ("pretrain",), "--pretrained")
    load_pretrained_encoder(model, encoder_state(opened.states["model"]))


def train_loop(config: dict) -> None:
    """Ray Train worker loop: ``a2v_core.training.finetune_step`` per update; validation,
    threshold tuning and the best weights on rank 0 at their cadence; checkpoints."""
    job = FinetuneJob.model_validate(config["job"])
    classes: list[str] = config["classes"]
    targets = Targets(job, classes, pd.DataFrame(config["events"]))
    w = Worker(job, "finetune")
    model = FrameClassifier(
        job.model,
        len(classes),
        job.finetune_masking,
        job.optim.freeze_frontend,
        job.loss.prior_prob,
    )
    state = TrainState.create(model, list(model.named_parameters()), job.optim)
    meta = w.restore(state)
    if meta is None and job.pretrained:
        load_encoder_into(model, job.pretrained)
    keeper = BestKeeper.restore(job.select_metric, meta)
    wrapped = w.wrap(model, find_unused_parameters=True)
    tracker = w.tracker(config, state.step if meta else None)
    fixed_meta = {
        "classes": classes,
        "sample_rate_hz": job.data.sample_rate_hz,
        "frame_rate_hz": job.model.frame_rate_hz,
        "clip_s": job.data.clip_s,
        "pretrained": job.pretrained,
    }
    for group in w.updates(state):
        metrics = finetune_step(state, wrapped, [targets.tensors(b, w) for b in group], job, w.rank)
        step, val = state.step, {}
        w.tp.step()
        maybe_fail(job, step, w.rank, w.world_size)
        logged = metrics | w.tp.read(w.world_size) if w.due(step, job.run.log_every_steps) else {}
        if logged:
            w.log(f"step {step}/{job.optim.max_steps} loss {metrics['loss']:.4f}")
        if w.due(step, job.run.validate_every_steps) and w.rank == 0:
            val = targets.run_validation(model, state, keeper, w)
            logged.update(val)
        tracker.log_metrics(logged, step)
        if w.due(step, job.run.checkpoint_every_steps):
            reported = {
                "step": step,
                "loss": metrics["loss"],
                **{f"best_{k}": v for k, v in keeper.best.items() if k != "step"},
                **val,  # this validation's metrics (what a Tune scheduler compares)
            }
            w.report(reported, state, lambda: {**keeper.meta(), **fixed_meta})
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
    storage.write_bytes(run_path(job, SPLITS), clips.to_csv(index=False).encode())
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
    run = run_dir(job)
    with result.checkpoint.as_directory() as d:
        states, _, meta = load_checkpoint(d)
    for name, weights in (
        (BEST, states.get("best_model", states["model"])),
        (FINAL, states["model"]),
    ):
        thresholds = BestKeeper.restore(job.select_metric, meta).thresholds_of(name)
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(
                tmp,
                {"model": weights},
                to_yaml(job),
                {**meta, "exported": name, "class_thresholds": thresholds},
            )
            storage.upload_dir(tmp, storage.join(run, name))
    return storage.join(run, BEST), meta


def check_pretrained(job: FinetuneJob) -> None:
    """``--pretrained`` is a pretraining checkpoint that loads, at the rate and frame rate of
    this fine-tuning: an ``error:`` line before Ray starts, instead of a traceback (or a shape
    mismatch) inside a worker."""
    if not job.pretrained:
        return
    meta = open_checkpoint(job.pretrained, ("pretrain",), "--pretrained").meta
    rate, frames = meta.get("sample_rate_hz"), meta.get("frame_rate_hz", 200)
    if rate is not None and (int(rate), int(frames)) != (
        job.model.sample_rate_hz,
        job.model.frame_rate_hz,
    ):
        raise InputError(
            f"--pretrained {redact_uri(job.pretrained)} was pretrained at {int(rate)} Hz and "
            f"{int(frames)} frames/s; this fine-tuning is at {job.model.sample_rate_hz} Hz and "
            f"{job.model.frame_rate_hz} frames/s: fine-tune at its rate (--sample-rate-hz "
            f"{int(rate)}{'' if int(frames) == 200 else ' --set model.frame_rate_hz=' + str(int(frames))})"
        )


def run(job: FinetuneJob) -> dict:
    print(job.model.hearing("finetune", job.data.time_expansion))
    pin_paths(job)
    check_pretrained(job)
    check_resume(run_dir(job), job)  # before Ray starts: a mismatch costs nothing
    prepared = prepare(job)  # annotations, archive and splits: input errors before Ray starts
    print(
        sound_check(
            "finetune", job.data.archive, prepared[3], job.model.band_hz, job.data.time_expansion
        )
    )
    init_ray(job.cluster.address)
    require_shared(
        {
            "data.archive": job.data.archive,
            "run.storage_path": job.run.storage_path,
            "pretrained": job.pretrained,
        },
        job.tracking.uri if job.tracking.enabled else None,
        job.cluster.shared_paths,
    )
    storage.write_bytes(run_path(job, CONFIG), to_yaml(job).encode())
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
    events = prepared[0]
    kind = (
        f"reviewed spans ({int((events['label'] == job.data.negative_label).sum())} of "
        f"{len(events)} rows {job.data.negative_label!r}; frames outside them do not count)"
        if is_reviewed(events, job)
        else "exhaustive (an annotated file's frames outside its events are background)"
    )
    print(
        f"[finetune] clips: {counts} (label_fraction {job.data.label_fraction}); classes: "
        f"{classes}; annotations: {kind}"
    )
    unmatched = events.attrs.get("unmatched", {})
    tracker.set_tags({"a2v.annotation_rows_unmatched": sum(u["rows"] for u in unmatched.values())})
    tracker.log_text(json.dumps(unmatched, indent=1), "annotations_unmatched.json")
    result = fit_or_fail(trainer, tracker, run_dir(job))
    best_uri, meta = export_best(result, job, classes)
    tracker.log_text(to_yaml(job), "config.yaml")
    tracker.log_text(clips.to_csv(index=False), SPLITS)
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
        "sample_rate_hz",
    ]
    ap = job_parser("a2v finetune", __doc__, shorthands)
    ap.add_argument(
        "--pretrained", default=None, help="pretraining checkpoint URI (omit: from scratch)"
    )
    args = ap.parse_args(argv)
    run(resolve(FinetuneJob, args, shorthands, {"pretrained": args.pretrained}))


if __name__ == "__main__":
    main()
