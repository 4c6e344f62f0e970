"""Evaluate a fine-tuned model on an annotated archive (docs/recipe.md §7).

    a2v evaluate --model demo_out/runs/finetune-tiny/best --archive demo_out/archive_test \\
        --annotations demo_out/archive_test/annotations.csv --out demo_out/eval

The model runs through the labelling job itself (``pipelines.label.run`` with frame
probabilities switched on), so what is evaluated is exactly what ``a2v label`` produces.
Every file of the archive counts as exhaustively annotated (a file without rows has no
calls). Outputs under ``--out``:

    labels/              the labelling outputs (events, Raven tables, frame probabilities)
    metrics.json         frame AP (micro, macro, per class), P/R/F1 at the frame threshold,
                         event P/R/F1/AP per IoU threshold, counts, model version
    per_class.md / .csv  one row per class
    pr_curves.png        frame-level precision-recall curve per class
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from a2v_core import annotations as ann
from a2v_core.config import EvaluateJob, LabelJob
from a2v_core.config_loader import flatten
from a2v_core.errors import InputError
from a2v_core.metrics import event_metrics, frame_metrics, overlap_event_metrics
from a2v_core.plots import pr_curves_png
from a2v_core.redact import redact_tree
from pipelines import label
from pipelines.data import inputs, storage
from pipelines.runtime.job_paths import pin_paths
from pipelines.runtime.jobargs import (
    add_threshold,
    command,
    job_parser,
    resolve,
    threshold_overrides,
)
from pipelines.runtime.tracking import Tracker


def frame_arrays(
    frames: pd.DataFrame, truth: pd.DataFrame, classes: list[str], sr: int, hop: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stack (targets, probabilities) over the valid frames of every labelled chunk."""
    by_file = {f: g for f, g in truth.groupby("file")}
    empty = ann.empty_table()
    ys, ps = [], []
    for row in frames.itertuples(index=False):
        p = np.frombuffer(row.probs_f16, dtype=np.float16).reshape(-1, len(classes))
        ys.append(
            ann.frame_targets(
                by_file.get(row.file, empty), classes, float(row.offset_s), len(p), sr, hop
            )
        )
        ps.append(p.astype(np.float32))
    if not ps:
        raise InputError(
            "no frames were labelled: every annotated file of the archive failed to decode "
            "(the label run's errors table says why for each)"
        )
    return np.concatenate(ys), np.concatenate(ps)


def per_class_table(fm: dict, ems: dict[float, dict], truth: pd.DataFrame, classes: list[str]):
    rows = []
    counts = truth["label"].value_counts()
    for c in classes:
        row = {"class": c, "true_events": int(counts.get(c, 0)), "frame_ap": fm["per_class_ap"][c]}
        for iou, em in ems.items():
            pc = em["per_class"][c]
            tag = f"iou{iou:g}"
            row.update(
                {
                    f"event_precision_{tag}": pc["precision"],
                    f"event_recall_{tag}": pc["recall"],
                    f"event_f1_{tag}": pc["f1"],
                    f"event_ap_{tag}": pc["ap"],
                    f"pred_events_{tag}": pc["n_pred"],
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def read_truth(job: EvaluateJob) -> tuple[list, pd.DataFrame]:
    """Inputs, before any labelling: the archive's files and the annotations, which must read
    and name recordings of this archive."""
    if not job.data.annotations:
        raise InputError(
            "--annotations is required (a CSV, Raven or Audacity table, or a folder of them)"
        )
    listed = inputs.archive_files(job.data.archive, job.data.extensions, versions=True)
    truth = inputs.match_annotations(
        inputs.read_annotations(job.data.annotations),
        [f for f, _, _ in listed],
        job.data.annotations,
        job.data.archive,
    )
    return listed, truth


def label_job(job: EvaluateJob) -> LabelJob:
    """The label run an evaluation scores: this job's label keys as set (a key left unset
    stays unset: events.pool_s then follows the frame rate), with frame probabilities."""
    fields = set(LabelJob.model_fields)
    return LabelJob.model_validate(
        {k: v for k, v in job.model_dump(mode="json", exclude_unset=True).items() if k in fields}
        | {"out": storage.join(job.out, "labels"), "frame_probs": True}
    )


def score(job: EvaluateJob, summary: dict, truth_all: pd.DataFrame, label_out: str) -> dict:
    """Frame and event metrics of a finished label run against the annotations, and the
    arrays and tables they came from (for the publishing stage)."""
    version, meta, run_id = summary["model_version"], summary["model_meta"], summary["run_id"]
    classes = list(meta["classes"])
    sr, fr = int(meta["sample_rate_hz"]), float(meta["frame_rate_hz"])
    errors = label.read_errors(label_out, run_id)
    frames = label.read_parts(label_out, "frames", run_id)
    labelled = set(frames["file"]) if len(frames) else set()
    truth = truth_all[truth_all["file"].isin(labelled) & truth_all["label"].isin(classes)]
    y, p = frame_arrays(frames, truth, classes, sr, int(round(sr / fr)))
    fm = frame_metrics(y, p, classes, job.frame_threshold)
    events = label.read_events(label_out, run_id)
    ems = {iou: event_metrics(events, truth, classes, iou) for iou in job.iou_thresholds}
    overlap = overlap_event_metrics(events, truth, classes)  # the paper's, splits not penalised
    metrics = {
        "model": job.model,
        "model_version": version,
        "label_run": run_id,
        "archive": job.data.archive,
        "annotations": job.data.annotations,
        "files_evaluated": len(labelled),
        "files_failed": sorted(set(errors["file"])) if len(errors) else [],
        "frames": int(len(y)),
        "positive_frame_rate": float(y.mean()),
        "classes": classes,
        "labels_not_in_model": sorted(set(truth_all["label"]) - set(classes)),
        "frame": fm,
        "events": {f"iou_{iou:g}": em for iou, em in ems.items()},
        "events_any_overlap": overlap,
        "event_threshold": job.events.threshold,
        "thresholds": summary["thresholds"],
        "x_real_time": summary["x_real_time"],
    }
    table = per_class_table(fm, ems, truth, classes)
    return {"metrics": redact_tree(metrics), "table": table, "y": y, "p": p, "ems": ems}


def flat_metrics(metrics: dict) -> dict[str, float]:
    """The MLflow metrics of an evaluation: frame AP/F1, event P/R/F1/AP per IoU, per class."""
    fm, overlap = metrics["frame"], metrics["events_any_overlap"]
    flat = {
        "frame_macro_ap": fm["macro_ap"],
        "frame_micro_ap": fm["micro_ap"],
        "frame_micro_f1": fm["micro_f1"],
        "frame_micro_precision": fm["micro_precision"],
        "frame_micro_recall": fm["micro_recall"],
    }
    for key, em in metrics["events"].items():
        for k in ("precision", "recall", "f1", "macro_ap"):
            flat[f"event_{k}_{key.replace('_', '')}"] = em[k]
    for k in ("precision", "recall", "f1"):
        flat[f"event_overlap_{k}"] = overlap[k]
    flat.update({f"frame_ap_{c}": v for c, v in fm["per_class_ap"].items()})
    return flat


def publish(job: EvaluateJob, scored: dict) -> None:
    """metrics.json, per_class.csv/.md and pr_curves.png under ``job.out``; the same in an
    MLflow run; the closing line."""
    metrics, table = scored["metrics"], scored["table"]
    version, classes = metrics["model_version"], metrics["classes"]
    text = json.dumps(metrics, indent=2, default=float)
    md = table.to_markdown(index=False, floatfmt=".3f")
    title = f"{version}: frame-level precision-recall"
    png = pr_curves_png(scored["y"], scored["p"], classes, title=title)
    for name, data in (
        ("metrics.json", text.encode()),
        ("per_class.csv", table.to_csv(index=False).encode()),
        ("per_class.md", (md + "\n").encode()),
        ("pr_curves.png", png),
    ):
        storage.write_bytes(storage.join(job.out, name), data)
    tracker = Tracker(job.tracking.uri, job.tracking.experiment, active=job.tracking.enabled)
    tracker.start(job.run.name, flatten(job), {"a2v.job": "evaluate", "model_version": version})
    tracker.log_metrics(flat_metrics(metrics), 0)
    tracker.log_text(text, "metrics.json")
    tracker.log_text(md, "per_class.md")
    tracker.log_text(table.to_csv(index=False), "per_class.csv")
    if tracker.active:
        tracker.log_png(png, "pr_curves.png")
    tracker.end()
    fm, overlap = metrics["frame"], metrics["events_any_overlap"]
    iou = job.iou_thresholds[0]
    e0 = scored["ems"][iou]
    print(
        f"[evaluate] {metrics['files_evaluated']} files, {metrics['frames']} frames: frame "
        f"macro-AP {fm['macro_ap']:.3f}, micro-F1 {fm['micro_f1']:.3f} @ {job.frame_threshold}; "
        f"event F1 {e0['f1']:.3f} (P {e0['precision']:.3f}, R {e0['recall']:.3f}) one-to-one at "
        f"IoU>{iou:g}; {overlap['f1']:.3f} any-overlap (paper-style) -> {job.out}"
    )


def run(job: EvaluateJob) -> dict:
    """inputs -> label (``a2v label`` with frame probabilities) -> score -> publish."""
    pin_paths(job)
    listed, truth = read_truth(job)
    ljob = label_job(job)
    summary = label.run(ljob, listed)  # the archive is listed once
    scored = score(job, summary, truth, ljob.out)
    publish(job, scored)
    return scored["metrics"]


@command
def main(argv: list[str] | None = None) -> None:
    shorthands = ["archive", "annotations", "name", "address", "num_actors", "gpus_per_actor"]
    ap = job_parser("a2v evaluate", __doc__, shorthands)
    ap.add_argument("--model", help="fine-tuned checkpoint URI (e.g. <storage>/<run>/best)")
    ap.add_argument("--out", help="output directory / URI")
    add_threshold(ap)
    args = ap.parse_args(argv)
    extra = {
        "model": args.model,
        "out": args.out,
    } | threshold_overrides(args)
    run(resolve(EvaluateJob, args, shorthands, extra))


if __name__ == "__main__":
    main()
