"""Few-shot benchmark: does self-supervised pretraining carry performance at few labels?

    python bench/fewshot.py --out outputs/fewshot                       # 2-core laptop, hours
    python bench/fewshot.py --out outputs/fewshot-10 --fractions 0.1 --pretrain-steps 200 \\
        --finetune-steps 150                                             # one cell, ~1 h
    python bench/fewshot.py --out s3://bucket/fewshot --preset base \\
        --hours 20 --pretrain-steps 20000 --finetune-steps 3000 \\
        --set cluster.num_workers=4 --set cluster.use_gpu=true --address auto   # a cluster

A synthetic archive (fixed seed) is pretrained on in full, once per seed, then fine-tuned with
each label fraction, from the pretrained encoder and from random initialisation with the same
budget, seed and split (the two arms of a seed are paired). The seed also moves the
labelled split (``data.split_seed``), which is where most of the few-shot spread comes from.
Every fine-tuned model is scored by ``a2v evaluate`` on a separate held-out synthetic archive.
Prints a table (label fraction x {pretrained, scratch}) of frame macro-AP, micro-F1 and event
F1 (IoU > 0) as mean +- sd over the seeds, the paired difference, and the labelled calls per
class at each fraction (the fewest over classes and seeds), and writes ``<out>/fewshot.csv``
(one row per run) and ``fewshot.md``. The pretraining budget defaults to the best step of a
``bench/probe.py`` table given with ``--probe``. Every stage is skipped when its output
already exists, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import io
import json
import time

import pandas as pd

from a2v_core.config import EvaluateJob, FinetuneJob, PretrainJob
from a2v_core.config_loader import load_config
from pipelines import evaluate, finetune, pretrain
from pipelines.data import inputs, storage
from pipelines.runtime.run_dir import BEST, FINAL, SPLITS  # noqa: E402
from pipelines.synth import write_archive

METRICS = ("frame_macro_ap", "frame_micro_f1", "event_f1")
MIN_CALLS = 3  # fewer labelled calls of a class: a cell measures the draw, not the initialisation


def labelled_calls(splits: pd.DataFrame, events: pd.DataFrame, clip_s: float) -> pd.Series:
    """Calls per class whose onset lies in a train clip."""
    train = splits.loc[splits["split"] == "train", ["path", "offset_s"]]
    hits = events.merge(
        train.rename(columns={"offset_s": "clip_at"}), left_on="file", right_on="path"
    )
    inside = (hits["onset_s"] >= hits["clip_at"]) & (hits["onset_s"] < hits["clip_at"] + clip_s)
    counts = hits[inside].groupby("label").size()
    return counts.reindex(sorted(set(events["label"])), fill_value=0)


def probe_best_step(table_uri: str) -> int:
    table = pd.read_csv(io.BytesIO(storage.read_bytes(table_uri)))
    steps = table.dropna(subset=["step"])
    return int(steps.loc[steps["probe_macro_ap"].idxmax(), "step"])


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """mean +- sd per (fraction, init) and of the paired pretrained - scratch difference."""
    rows = []
    for frac, g in runs.groupby("label_fraction"):
        row = {"label_fraction": frac, "seeds": g["seed"].nunique()}
        row["min_calls_per_class"] = int(g["min_calls_per_class"].min())
        wide = g.pivot(index="seed", columns="init", values=list(METRICS))
        for m in METRICS:
            for init in ("pretrained", "scratch"):
                v = wide[m][init]
                row[f"{m}_{init}"] = f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0:.3f}"
            d = wide[m]["pretrained"] - wide[m]["scratch"]
            row[f"{m}_diff"] = f"{d.mean():+.3f} +- {d.std(ddof=1) if len(d) > 1 else 0:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="outputs/fewshot")
    ap.add_argument("--preset", default="tiny", choices=["tiny", "base", "large"])
    ap.add_argument(
        "--hours",
        type=float,
        default=2.0,
        help="synthetic training audio (2 h: 5 %% of it holds >= 3 calls of the rarest class)",
    )
    ap.add_argument("--test-hours", type=float, default=0.1, help="held-out synthetic audio")
    ap.add_argument("--archive-seed", type=int, default=2024)
    ap.add_argument("--seeds", default="0,1,2", help="pretraining, fine-tuning and split seeds")
    ap.add_argument(
        "--pretrain-steps", type=int, default=None, help="default: --probe's best, else 400"
    )
    ap.add_argument("--probe", default=None, help="a bench/probe.py probe.csv")
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--fractions", default="0.05,0.1,1.0")
    ap.add_argument("--address", default=None, help="Ray cluster (default: local)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="both jobs")
    ap.add_argument(
        "--pretrain-set",
        dest="pretrain_overrides",
        action="append",
        default=[],
        help="pretraining only (e.g. optim.lr=0.002, as bench/probe.py --set)",
    )
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.pretrain_steps is None:
        args.pretrain_steps = probe_best_step(args.probe) if args.probe else 400
    out = storage.absolute(args.out) if not storage.is_remote(args.out) else args.out
    archive, test = storage.join(out, "archive"), storage.join(out, "archive_test")
    uri = f"sqlite:///{storage.split_uri(storage.join(out, 'mlflow.db'))[1]}"
    if storage.is_remote(out):
        uri = None  # $MLFLOW_TRACKING_URI on a cluster
    common = [f"run.storage_path={storage.join(out, 'runs')}"]
    common += [f"tracking.uri={uri}"] if uri else []
    common += [f"cluster.address={args.address}"] if args.address else []
    common += args.overrides
    finetune_cfg = f"configs/finetune/{args.preset}.yaml"
    pretrain_cfg = f"configs/pretrain/{args.preset}.yaml"
    data = [f"data.archive={archive}"]
    ann_uri = storage.join(archive, "annotations.csv")

    if not storage.exists(storage.join(test, "annotations.csv")):
        print(f"== synth {args.hours} h (seed {args.archive_seed}) + {args.test_hours} h held out")
        write_archive(archive, args.hours, seed=args.archive_seed)
        write_archive(test, args.test_hours, seed=args.archive_seed + 1)
    events = inputs.read_annotations(ann_uri)

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        seeded = [f"run.seed={seed}"]
        pre_name = f"fewshot-pretrain-s{seed}"
        pre_final = storage.join(out, "runs", pre_name, FINAL)
        if not storage.exists(storage.join(pre_final, "model.pt")):
            print(f"== seed {seed}: pretrain {args.preset}, {args.pretrain_steps} steps")
            sets = [f"optim.max_steps={args.pretrain_steps}", f"run.name={pre_name}"]
            sets += args.pretrain_overrides
            pretrain.run(load_config(PretrainJob, pretrain_cfg, common + data + seeded + sets))
        for frac in (float(f) for f in args.fractions.split(",")):
            for init in ("pretrained", "scratch"):
                name = f"fewshot-{init}-{frac:g}-s{seed}"
                best = storage.join(out, "runs", name, BEST)
                job = load_config(
                    FinetuneJob,
                    finetune_cfg,
                    common
                    + data
                    + seeded
                    + [
                        f"data.annotations={ann_uri}",
                        f"data.label_fraction={frac}",
                        f"data.split_seed={1612 + seed}",
                        f"optim.max_steps={args.finetune_steps}",
                        f"run.validate_every_steps={max(1, args.finetune_steps // 6)}",
                        f"run.checkpoint_every_steps={max(1, args.finetune_steps // 3)}",
                        f"run.name={name}",
                        "tracking.registered_model=animal2vec-fewshot",
                    ]
                    + ([f"pretrained={pre_final}"] if init == "pretrained" else []),
                )
                if not storage.exists(storage.join(best, "model.pt")):
                    print(f"== seed {seed}: finetune {init}, {frac:.0%} of the labels")
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
                splits_uri = storage.join(out, "runs", name, SPLITS)
                splits = pd.read_csv(io.BytesIO(storage.read_bytes(splits_uri)))
                calls = labelled_calls(splits, events, job.data.clip_s)
                rows.append(
                    {
                        "seed": seed,
                        "label_fraction": frac,
                        "init": init,
                        "train_clips": int((splits["split"] == "train").sum()),
                        "min_calls_per_class": int(calls.min()),
                        "calls_per_class": calls.to_dict(),
                        "frame_macro_ap": m["frame"]["macro_ap"],
                        "frame_micro_f1": m["frame"]["micro_f1"],
                        "event_f1": m["events"]["iou_0"]["f1"],
                    }
                )
    runs = pd.DataFrame(rows)
    table = summary(runs)
    storage.write_bytes(storage.join(out, "fewshot.csv"), runs.to_csv(index=False).encode())
    md = table.to_markdown(index=False)
    storage.write_bytes(storage.join(out, "fewshot.md"), (md + "\n").encode())
    print(
        "\n== few-shot: pretrained vs scratch (held-out synthetic archive), mean +- sd over seeds"
    )
    print(md)
    thin = table.loc[table["min_calls_per_class"] < MIN_CALLS, "label_fraction"].tolist()
    if thin:
        print(
            f"warning: at label fraction {', '.join(f'{f:g}' for f in thin)} some seed's split holds "
            f"fewer than {MIN_CALLS} calls of a class: such a cell follows which clips were drawn "
            "more than the initialisation (a larger --hours gives every class more calls)"
        )
    print(
        f"preset {args.preset}, {args.hours} h train / {args.test_hours} h test (archive seed "
        f"{args.archive_seed}), seeds {args.seeds}, {args.pretrain_steps} pretrain + "
        f"{args.finetune_steps} finetune steps; pretraining --set {args.pretrain_overrides}, both "
        f"--set {args.overrides}; {time.time() - t0:.0f} s"
    )
    return runs


if __name__ == "__main__":
    main()
