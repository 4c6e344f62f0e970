"""``a2v demo``: the whole chain on an embedded default, on a laptop, in minutes.

synthetic archive (0.25 h, and 0.25 h held out) -> tiny pretraining -> fine-tuning (from that
checkpoint) -> labelling the held-out archive -> event F1 of the labels against its synthetic
ground truth, overall and per class. Everything
lands under ``--out`` (default ``demo_out/``); MLflow logs to ``demo_out/mlflow.db``.
"""

from __future__ import annotations

import io
import time

from a2v_core import annotations as ann
from a2v_core.config import FinetuneJob, LabelJob, PretrainJob
from a2v_core.config_loader import load_config
from a2v_core.metrics import event_metrics, overlap_event_metrics
from pipelines import finetune, label, pretrain
from pipelines.data import storage
from pipelines.runtime.jobargs import add_verbose, command, parser
from pipelines.synth import write_archive
from pipelines.train.resume import ResumeMismatch


def run_or_restart(run, job) -> tuple[dict, bool]:
    """Run a training stage; a run directory left by an earlier demo with another config (the
    package was updated, say) is the demo's own output: start that stage over instead of
    stopping. (``a2v pretrain`` / ``a2v finetune`` stop and name the keys.)"""
    try:
        return run(job), False
    except ResumeMismatch as exc:
        print(f"[demo] {exc.run_dir}: left by an earlier demo with another config; starting over")
        storage.remove(exc.run_dir)
        return run(job), True


def train(args, out: str, archive: str, common: list[str]) -> tuple[dict, dict]:
    """Stages 2 and 3: pretrain, then fine-tune from the pretrained encoder."""
    print("== 2/4 pretrain (tiny, self-supervised, no labels)")
    steps = [f"optim.max_steps={args.pretrain_steps}"] if args.pretrain_steps else []
    pre = load_config(
        PretrainJob, "configs/pretrain/tiny.yaml", common + [f"data.archive={archive}", *steps]
    )
    pre_res, restarted = run_or_restart(pretrain.run, pre)

    print("== 3/4 finetune (tiny, focal loss, from the pretrained encoder)")
    steps = [f"optim.max_steps={args.finetune_steps}"] if args.finetune_steps else []
    ft = load_config(
        FinetuneJob,
        "configs/finetune/tiny.yaml",
        common
        + [
            f"data.archive={archive}",
            f"data.annotations={storage.join(archive, 'annotations.csv')}",
            f"pretrained={pre_res['checkpoint']}",
            *steps,
        ],
    )
    if restarted:  # fine-tuning checkpoints of the old encoder must not be resumed either
        storage.remove(storage.join(ft.run.storage_path, ft.run.name))
    ft_res, _ = run_or_restart(finetune.run, ft)
    return pre_res, ft_res


def label_held_out(out: str, test_archive: str, model: str, uri: str) -> tuple[LabelJob, dict]:
    """Stage 4: label the held-out archive in every format."""
    print("== 4/4 label the held-out archive")
    lab = load_config(
        LabelJob,
        "configs/label/default.yaml",
        [
            f"tracking.uri={uri}",
            f"data.archive={test_archive}",
            f"model={model}",
            f"out={storage.join(out, 'labels')}",
            "overwrite=true",
            "formats=[parquet,raven,audacity,csv]",
        ],
    )
    return lab, label.run(lab)


def print_summary(pre_res, ft_res, lab: LabelJob, summary: dict, test_archive: str, uri: str):
    """The closing table: where everything is, and the labels scored against the truth."""
    events = label.read_events(lab.out, summary["run_id"])
    truth = ann.read_csv(
        io.BytesIO(storage.read_bytes(storage.join(test_archive, "annotations.csv")))
    )
    classes = sorted(truth["label"].unique())
    m0 = event_metrics(events, truth, classes, iou_threshold=0.0)
    m5 = event_metrics(events, truth, classes, iou_threshold=0.5)
    paper = overlap_event_metrics(events, truth, classes)
    valid_f1 = ft_res["best"]["val_micro_f1"]
    print("\n== demo summary")
    print(f"  pretrain checkpoint : {pre_res['checkpoint']}")
    print(f"  finetune checkpoint : {ft_res['checkpoint']} (valid micro-F1 {valid_f1:.3f})")
    print(
        f"  labels              : {lab.out}  ({summary['events_written']} events, "
        f"{summary['x_real_time']:.0f}x real time)"
    )
    print(
        f"  Raven tables        : {storage.join(lab.out, 'raven')}  (open in Raven Pro: "
        "File > Open Selection Table)"
    )
    print(
        f"  event F1 vs ground truth (held-out): {m0['f1']:.3f} any overlap "
        f"(P {m0['precision']:.3f} R {m0['recall']:.3f}); {m5['f1']:.3f} at IoU 0.5"
    )
    print(
        f"  (one-to-one matches; paper-style, every overlapping prediction right and splits "
        f"not penalised: F1 {paper['f1']:.3f}, P {paper['precision']:.3f} R {paper['recall']:.3f})"
    )
    per_class = m0["per_class"]
    print(
        "  per class (any overlap): "
        + "  ".join(
            f"{c} {per_class[c]['f1']:.2f} ({per_class[c]['tp']}/{per_class[c]['n_true']})"
            for c in classes
        )
    )
    print(f"  MLflow              : mlflow ui --backend-store-uri {uri}")


@command
def main(argv: list[str] | None = None) -> None:
    ap = parser("a2v demo", __doc__)
    ap.add_argument(
        "--out", default="demo_out", help="folder for the archives, runs, labels and MLflow"
    )
    ap.add_argument("--hours", type=float, default=0.25, help="hours of synthetic training audio")
    ap.add_argument(
        "--test-hours", type=float, default=0.25, help="held-out audio the labels are scored on"
    )
    ap.add_argument("--pretrain-steps", type=int, default=100, help="pretraining updates")
    ap.add_argument("--finetune-steps", type=int, default=640, help="fine-tuning updates")
    ap.add_argument(
        "--seed", type=int, default=None, help="run.seed of pretraining and fine-tuning"
    )
    add_verbose(ap)
    args = ap.parse_args(argv)
    t0 = time.time()
    out = args.out
    uri = f"sqlite:///{storage.split_uri(storage.join(out, 'mlflow.db'))[1]}"
    common = [f"tracking.uri={uri}", f"run.storage_path={storage.join(out, 'runs')}"]
    common += [f"run.seed={args.seed}"] if args.seed is not None else []
    archive, test_archive = storage.join(out, "archive"), storage.join(out, "archive_test")
    print(f"== 1/4 synth: {args.hours} h training archive + {args.test_hours} h held-out archive")
    write_archive(archive, args.hours, seed=0)
    write_archive(test_archive, args.test_hours, seed=1234)
    pre_res, ft_res = train(args, out, archive, common)
    lab, summary = label_held_out(out, test_archive, ft_res["checkpoint"], uri)
    print_summary(pre_res, ft_res, lab, summary, test_archive, uri)
    print(f"  total time          : {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
