"""Evaluate a fine-tuned model on an annotated archive (spec section 7).

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


def run(job: EvaluateJob) -> dict:
    pin_paths(job)
    if not job.data.annotations:
        raise InputError(
            "--annotations is required (a CSV, Raven or Audacity table, or a folder of them)"
        )
    # before any labelling: the annotations read and name recordings of this archive
    listed = inputs.archive_files(job.data.archive, job.data.extensions, versions=True)
    truth_all = inputs.match_annotations(
        inputs.read_annotations(job.data.annotations),
        [f for f, _, _ in listed],
        job.data.annotations,
        job.data.archive,
    )
    label_out = storage.join(job.out, "labels")
    fields = set(LabelJob.model_fields)
    ljob = LabelJob.model_validate(
        # exclude_unset: a key left unset stays unset (events.pool_s then follows the frame rate)
        {k: v for k, v in job.model_dump(mode="json", exclude_unset=True).items() if k in fields}
        | {"out": label_out, "frame_probs": True}
    )
    summary = label.run(ljob, listed)  # the archive is listed once
    version, meta, run_id = summary["model_version"], summary["model_meta"], summary["run_id"]
    classes = list(meta["classes"])
    sr, fr = int(meta["sample_rate_hz"]), float(meta["frame_rate_hz"])
    hop = int(round(sr / fr))

    errors = label.read_errors(label_out, run_id)
    frames = label.read_parts(label_out, "frames", run_id)
    labelled = set(frames["file"]) if len(frames) else set()
    unknown = sorted(set(truth_all["label"]) - set(classes))
    truth = truth_all[truth_all["file"].isin(labelled) & truth_all["label"].isin(classes)]
    y, p = frame_arrays(frames, truth, classes, sr, hop)
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
        "labels_not_in_model": unknown,
        "frame": fm,
        "events": {f"iou_{iou:g}": em for iou, em in ems.items()},
        "events_any_overlap": overlap,
        "event_threshold": job.events.threshold,
        "thresholds": summary["thresholds"],
        "x_real_time": summary["x_real_time"],
    }
    table = per_class_table(fm, ems, truth, classes)
    metrics = redact_tree(metrics)
    storage.write_bytes(
        storage.join(job.out, "metrics.json"), json.dumps(metrics, indent=2, default=float).encode()
    )
    storage.write_bytes(storage.join(job.out, "per_class.csv"), table.to_csv(index=False).encode())
    md = table.to_markdown(index=False, floatfmt=".3f")
    storage.write_bytes(storage.join(job.out, "per_class.md"), (md + "\n").encode())
    png = pr_curves_png(y, p, classes, title=f"{version}: frame-level precision-recall")
    storage.write_bytes(storage.join(job.out, "pr_curves.png"), png)

    tracker = Tracker(job.tracking.uri, job.tracking.experiment, active=job.tracking.enabled)
    tracker.start(job.run.name, flatten(job), {"a2v.job": "evaluate", "model_version": version})
    flat = {
        "frame_macro_ap": fm["macro_ap"],
        "frame_micro_ap": fm["micro_ap"],
        "frame_micro_f1": fm["micro_f1"],
        "frame_micro_precision": fm["micro_precision"],
        "frame_micro_recall": fm["micro_recall"],
    }
    for iou, em in ems.items():
        for k in ("precision", "recall", "f1", "macro_ap"):
            flat[f"event_{k}_iou{iou:g}"] = em[k]
    for k in ("precision", "recall", "f1"):
        flat[f"event_overlap_{k}"] = overlap[k]
    flat.update({f"frame_ap_{c}": v for c, v in fm["per_class_ap"].items()})
    tracker.log_metrics(flat, 0)
    tracker.log_text(json.dumps(metrics, indent=2, default=float), "metrics.json")
    tracker.log_text(md, "per_class.md")
    tracker.log_text(table.to_csv(index=False), "per_class.csv")
    if tracker.active:
        tracker.log_png(png, "pr_curves.png")
    tracker.end()
    e0 = ems[job.iou_thresholds[0]]
    print(
        f"[evaluate] {len(labelled)} files, {len(y)} frames: frame macro-AP {fm['macro_ap']:.3f}, "
        f"micro-F1 {fm['micro_f1']:.3f} @ {job.frame_threshold}; event F1 {e0['f1']:.3f} "
        f"(P {e0['precision']:.3f}, R {e0['recall']:.3f}) one-to-one at IoU>{job.iou_thresholds[0]:g}; "
        f"{overlap['f1']:.3f} any-overlap (paper-style) -> {job.out}"
    )
    return metrics


@command
def main(argv: list[str] | None = None) -> None:
    shorthands = ["archive", "annotations", "name", "address"]
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
