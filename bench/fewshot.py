"""Few-shot benchmark: does self-supervised pretraining carry performance at few labels?

    python bench/fewshot.py --out outputs/fewshot                       # 2-core laptop, ~25 min
    python bench/fewshot.py --out s3://bucket/fewshot --preset base \\
        --hours 20 --pretrain-steps 20000 --finetune-steps 3000 \\
        --set cluster.num_workers=4 --set cluster.use_gpu=true --address auto   # a cluster

A synthetic archive (fixed seed) is pretrained on in full, then fine-tuned with 1 %, 10 % and
100 % of the labelled clips, from the pretrained encoder and from random initialisation with
the same budget (same steps, splits, seed). Every fine-tuned model is scored by
``a2v evaluate`` on a separate held-out synthetic archive. Prints a table (label fraction x
{pretrained, scratch}) of frame macro-AP, micro-F1 and event F1 (IoU > 0) with the
differences, and writes it to ``<out>/fewshot.csv`` / ``fewshot.md``. Every stage is skipped
when its output already exists, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from a2v_core.config import EvaluateJob, FinetuneJob, PretrainJob
from a2v_core.config_loader import load_config
from pipelines import evaluate, finetune, pretrain, storage
from pipelines.synth import write_archive


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="outputs/fewshot")
    ap.add_argument("--preset", default="tiny", choices=["tiny", "base", "large"])
    ap.add_argument("--hours", type=float, default=0.5, help="synthetic training audio")
    ap.add_argument("--test-hours", type=float, default=0.1, help="held-out synthetic audio")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--pretrain-steps", type=int, default=400)
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--fractions", default="0.01,0.1,1.0")
    ap.add_argument("--address", default=None, help="Ray cluster (default: local)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="both jobs")
    args = ap.parse_args(argv)
    t0 = time.time()
    out = storage.absolute(args.out) if not storage.is_remote(args.out) else args.out
    archive, test = storage.join(out, "archive"), storage.join(out, "archive_test")
    uri = f"sqlite:///{storage.split_uri(storage.join(out, 'mlflow.db'))[1]}"
    if storage.is_remote(out):
        uri = None  # $MLFLOW_TRACKING_URI on a cluster
    common = [f"run.storage_path={storage.join(out, 'runs')}"]
    common += [f"tracking.uri={uri}"] if uri else []
    common += [f"cluster.address={args.address}"] if args.address else []
    common += args.overrides
    finetune_cfg = (
        "configs/finetune/tiny.yaml"
        if args.preset == "tiny"
        else f"configs/finetune/{args.preset}.yaml"
    )
    pretrain_cfg = f"configs/pretrain/{args.preset}.yaml"
    data = [f"data.archive={archive}"]

    if not storage.exists(storage.join(archive, "annotations.csv")):
        print(f"== synth {args.hours} h (seed {args.seed}) + {args.test_hours} h held out")
        write_archive(archive, args.hours, seed=args.seed)
        write_archive(test, args.test_hours, seed=args.seed + 1)

    pre_final = storage.join(out, "runs", "fewshot-pretrain", "final")
    if not storage.exists(storage.join(pre_final, "model.pt")):
        print(f"== pretrain {args.preset}, {args.pretrain_steps} steps on all the audio")
        job = load_config(
            PretrainJob,
            pretrain_cfg,
            common + data + [f"optim.max_steps={args.pretrain_steps}", "run.name=fewshot-pretrain"],
        )
        pretrain.run(job)

    rows = []
    for frac in (float(f) for f in args.fractions.split(",")):
        for init in ("pretrained", "scratch"):
            name = f"fewshot-{init}-{frac:g}"
            best = storage.join(out, "runs", name, "best")
            if not storage.exists(storage.join(best, "model.pt")):
                print(f"== finetune {init}, {frac:.0%} of the labels, {args.finetune_steps} steps")
                job = load_config(
                    FinetuneJob,
                    finetune_cfg,
                    common
                    + data
                    + [
                        f"data.annotations={storage.join(archive, 'annotations.csv')}",
                        f"data.label_fraction={frac}",
                        f"optim.max_steps={args.finetune_steps}",
                        f"run.validate_every_steps={max(1, args.finetune_steps // 6)}",
                        f"run.checkpoint_every_steps={max(1, args.finetune_steps // 3)}",
                        f"run.name={name}",
                        "tracking.registered_model=animal2vec-fewshot",
                    ]
                    + ([f"pretrained={pre_final}"] if init == "pretrained" else []),
                )
                finetune.run(job)
            metrics_uri = storage.join(out, "eval", name, "metrics.json")
            if not storage.exists(metrics_uri):
                ev = load_config(
                    EvaluateJob,
                    "configs/label/default.yaml",
                    [
                        f"model={best}",
                        f"data.archive={test}",
                        f"data.annotations={storage.join(test, 'annotations.csv')}",
                        f"out={storage.join(out, 'eval', name)}",
                        f"run.name=eval-{name}",
                        "overwrite=true",
                    ]
                    + ([f"tracking.uri={uri}"] if uri else [])
                    + ([f"cluster.address={args.address}"] if args.address else []),
                )
                evaluate.run(ev)
            m = json.loads(storage.read_bytes(metrics_uri))
            rows.append(
                {
                    "label_fraction": frac,
                    "init": init,
                    "frame_macro_ap": m["frame"]["macro_ap"],
                    "frame_micro_f1": m["frame"]["micro_f1"],
                    "event_f1": m["events"]["iou_0"]["f1"],
                }
            )
    table = pd.DataFrame(rows)
    wide = table.pivot(index="label_fraction", columns="init")
    wide.columns = [f"{metric}_{init}" for metric, init in wide.columns]
    for metric in ("frame_macro_ap", "frame_micro_f1", "event_f1"):
        wide[f"{metric}_diff"] = wide[f"{metric}_pretrained"] - wide[f"{metric}_scratch"]
    wide = wide.reset_index()
    storage.write_bytes(storage.join(out, "fewshot.csv"), wide.to_csv(index=False).encode())
    md = wide.to_markdown(index=False, floatfmt=".3f")
    storage.write_bytes(storage.join(out, "fewshot.md"), (md + "\n").encode())
    print("\n== few-shot: pretrained vs scratch (held-out synthetic archive)")
    print(md)
    print(
        f"preset {args.preset}, {args.hours} h train / {args.test_hours} h test (seed {args.seed}), "
        f"{args.pretrain_steps} pretrain + {args.finetune_steps} finetune steps; {time.time() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
