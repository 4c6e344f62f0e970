"""Rate presets measured: does a model at the archive's own rate learn as well, and how fast?

    python bench/rates.py quality --out outputs/rates-gy6or6 --rates 8000,32000 --seeds 1,2,3
    python bench/rates.py quality --out outputs/rates-synth48 --synth-rate 48000 --rates 8000,48000
    python bench/rates.py speed --presets tiny,base --rates 8000,32000,48000,250000

``quality``: a tiny model fine-tuned from scratch at each rate, the same steps, seeds and split
seeds, scored by ``a2v evaluate`` on held-out recordings; prints frame macro AP and event F1
(IoU > 0) as mean +- sd per rate and the paired difference against the first rate. The default
data is the Bengalese finch gy6or6 song in ``../shared/data/real`` (32 kHz, human labels; days
23-25 March train, 26 March test; the two notes labelled once, ``-`` and ``x``, are dropped);
``--synth-rate R`` uses ``a2v synth --sample-rate-hz R`` archives instead (calls where only R
hears them). Each finished run is skipped when the bench is run again.

``speed``: per preset and rate, the bare model forward over 10 s chunks (2 s at 1 kHz frames)
on one thread, and ``a2v label`` end to end on a synthetic archive at that rate (one actor,
one CPU), as x real time, with the ratio against the first rate of the same preset; and the
peak resident memory of the labelling process tree.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2v_core.config import EvaluateJob, FinetuneJob, ModelConfig  # noqa: E402
from a2v_core.config_loader import load_config  # noqa: E402
from a2v_core.encoder import Encoder, flush_denormals  # noqa: E402
from bench.archive_split import group_split  # noqa: E402

GY6OR6 = ROOT.parent / "shared/data/real/bengalese_finch_gy6or6"
TEST_DAY = "_260312_"
GY6OR6_DROPPED = ("-", "x")  # notes labelled once: no class to learn or score


def gy6or6_split(out: Path) -> tuple[Path, Path]:
    """<out>/train and <out>/test: the recordings of days 23-25 and of day 26, each with its
    annotations.csv (``bench.archive_split``; the notes labelled once, ``-`` and ``x``, left
    out)."""
    train, test = group_split(
        str(GY6OR6), str(GY6OR6 / "annotations.csv"), TEST_DAY, str(out), GY6OR6_DROPPED
    )
    return Path(train), Path(test)


def synth_split(out: Path, rate: int, hours: float) -> tuple[Path, Path]:
    from pipelines.synth import write_archive

    train, test = out / "train", out / "test"
    if not (test / "annotations.csv").exists():
        write_archive(str(train), hours, seed=2030, sample_rate_hz=rate)
        write_archive(str(test), max(0.1, hours / 4), seed=2031, sample_rate_hz=rate)
    return train, test


def fit_and_score(
    out: Path, name: str, rate: int, steps: int, train: Path, test: Path, sets: list[str]
) -> dict:
    """Fine-tune tiny from scratch at ``rate`` on ``train`` (``--set`` ``sets`` last) and score
    it with ``a2v evaluate`` on ``test``; a finished stage is not run again. Returns the best
    checkpoint, frame macro AP and event F1 (IoU > 0)."""
    from pipelines import evaluate, finetune

    best = out / "runs" / name / "best"
    tracking = [s for s in sets if s.startswith("tracking.")]
    if not (best / "model.pt").exists():
        finetune.run(
            load_config(
                FinetuneJob,
                ROOT / "configs/finetune/tiny.yaml",
                [
                    f"model.sample_rate_hz={rate}",
                    f"data.archive={train}",
                    f"data.annotations={train / 'annotations.csv'}",
                    f"optim.max_steps={steps}",
                    f"run.validate_every_steps={max(1, steps // 6)}",
                    f"run.checkpoint_every_steps={max(1, steps // 3)}",
                    f"run.storage_path={out / 'runs'}",
                    f"run.name={name}",
                    *sets,
                ],
            )
        )
    metrics = out / "eval" / name / "metrics.json"
    if not metrics.exists():
        evaluate.run(
            load_config(
                EvaluateJob,
                ROOT / "configs/label/default.yaml",
                [
                    f"model={best}",
                    f"data.archive={test}",
                    f"data.annotations={test / 'annotations.csv'}",
                    f"out={out / 'eval' / name}",
                    f"run.name=eval-{name}",
                    "overwrite=true",
                    *(s for s in tracking if not s.startswith("tracking.registered_model")),
                ],
            )
        )
    m = json.loads(metrics.read_text())
    return {"model": str(best), "ap": m["frame"]["macro_ap"], "f1": m["events"]["iou_0"]["f1"]}


def quality(args: argparse.Namespace) -> pd.DataFrame:
    out = Path(args.out).resolve()
    train, test = (
        synth_split(out, args.synth_rate, args.hours) if args.synth_rate else gy6or6_split(out)
    )
    tracking = [
        f"tracking.uri=sqlite:///{out / 'mlflow.db'}",
        "tracking.registered_model=animal2vec-rates",
    ]
    rows = []
    for rate in (int(r) for r in args.rates.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.time()
            seeded = [f"run.seed={seed}", f"data.split_seed={1612 + seed}"]
            m = fit_and_score(
                out,
                f"rate{rate}{args.tag}-s{seed}",
                rate,
                args.steps,
                train,
                test,
                [*seeded, *tracking, *args.overrides],
            )
            rows.append(
                {
                    "rate_hz": rate,
                    "arm": f"{rate}{args.tag}",
                    "seed": seed,
                    "frame_macro_ap": m["ap"],
                    "event_f1": m["f1"],
                    "wall_s": round(time.time() - t0),
                }
            )
    runs = pd.DataFrame(rows)
    runs.to_csv(out / f"rates{args.tag}.csv", index=False)
    print(runs.to_string(index=False))
    print(quality_table(runs).to_markdown(index=False))
    return runs


def quality_table(runs: pd.DataFrame) -> pd.DataFrame:
    """mean +- sd per rate, and the paired (same seed) difference to the first rate."""
    col = "arm" if "arm" in runs else "rate_hz"
    first = runs[col].iloc[0]
    base = runs[runs[col] == first].set_index("seed")
    rows = []
    for arm, g in runs.groupby(col, sort=False):
        row = {col: arm, "seeds": len(g)}
        for m in ("frame_macro_ap", "event_f1", *(c for c in runs if c.startswith("valid_ap@"))):
            v = g[m]
            row[m] = f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0:.3f}"
            d = g.set_index("seed")[m] - base[m]
            row[f"{m}_vs_{first}"] = f"{d.mean():+.3f} +- {d.std(ddof=1) if len(d) > 1 else 0:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def valid_ap_at(out: Path, run_name: str, steps: str) -> dict:
    """The run's validation frame macro AP at each of ``steps`` (from its MLflow history):
    how fast it learned, within one budget."""
    import mlflow

    if not steps:
        return {}
    client = mlflow.tracking.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("a2v/finetune")
    found = client.search_runs([exp.experiment_id], f"attributes.run_name = '{run_name}'")
    history = (
        {h.step: h.value for h in client.get_metric_history(found[0].info.run_id, "val_macro_ap")}
        if found
        else {}
    )
    return {f"valid_ap@{s}": history.get(int(s)) for s in steps.split(",")}


def collected(args: argparse.Namespace) -> pd.DataFrame:
    """Every scored run under ``--out`` (``eval/rate<R><tag>-s<seed>/metrics.json``), arms in
    ``--arms`` order (the first is the paired baseline), as ``quality`` prints them."""
    import re

    out = Path(args.out)
    rows = []
    for metrics in sorted(out.glob("eval/*/metrics.json")):
        m = re.fullmatch(r"rate(\d+)(.*)-s(\d+)", metrics.parent.name)
        if not m:
            continue
        scores = json.loads(metrics.read_text())
        rows.append(
            {
                "arm": f"{m[1]}{m[2]}",
                "seed": int(m[3]),
                "frame_macro_ap": scores["frame"]["macro_ap"],
                "event_f1": scores["events"]["iou_0"]["f1"],
                **valid_ap_at(out, metrics.parent.name, args.valid_steps),
            }
        )
    runs = pd.DataFrame(rows)
    order = args.arms.split(",") if args.arms else sorted(set(runs["arm"]))
    runs = runs[runs["arm"].isin(order)]
    runs = runs.iloc[runs["arm"].map(order.index).argsort(kind="stable")]
    print(runs.pivot(index="seed", columns="arm", values="frame_macro_ap")[order].round(3))
    print(quality_table(runs).to_markdown(index=False))
    return runs


def bare_forward(cfg: ModelConfig, clip_s: float, batch: int = 8, reps: int = 2) -> float:
    """x real time of the encoder forward (no grad, one thread) over ``batch`` clips."""
    torch.set_num_threads(1)
    flush_denormals()
    enc = Encoder(cfg).eval()
    x = torch.randn(batch, int(clip_s * cfg.sample_rate_hz))
    with torch.no_grad():
        enc(x)
        t = time.perf_counter()
        for _ in range(reps):
            enc(x)
    return batch * clip_s * reps / (time.perf_counter() - t)


def speed(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    for preset in args.presets.split(","):
        for rate in (int(r) for r in args.rates.split(",")):
            cfg = ModelConfig(preset=preset, sample_rate_hz=rate, dropout=0.0)
            clip_s = 10.0 if cfg.frame_rate_hz == 200 else 2.0
            rows.append(
                {
                    "preset": preset,
                    "rate_hz": rate,
                    "frontend_macs_vs_8k": cfg.frontend_macs_per_s
                    / ModelConfig(preset=preset).frontend_macs_per_s,
                    # base/large: 2 clips, once (one base forward of 80 s takes ~70 s here)
                    "forward_x_rt": bare_forward(
                        cfg, clip_s, *((8, 2) if preset == "tiny" else (2, 1))
                    ),
                }
            )
            if preset == "tiny" and args.label_hours > 0:
                rows[-1].update(label_speed(rate, args.label_hours))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    for col in ("forward_x_rt", "label_x_rt"):
        if col in table:
            table[f"{col}_vs_first"] = table[col] / table.groupby("preset")[col].transform("first")
    print(table.round(3).to_markdown(index=False))
    return table


def label_speed(rate: int, hours: float) -> dict:
    """``a2v label`` (1 actor, 1 CPU) of a tiny model at ``rate`` (fine-tuned 1 step: speed is
    what is measured) over a synthetic archive at that rate, in a child process; its x real
    time and the peak resident memory of that process tree."""
    import subprocess

    with tempfile.TemporaryDirectory() as d:
        from pipelines.synth import write_archive

        write_archive(f"{d}/archive", hours, seed=7, sample_rate_hz=rate)
        model = f"{d}/runs/ft/best"
        common = [f"--set=tracking.uri=sqlite:///{d}/mlflow.db"]
        subprocess.run(
            [sys.executable, "-m", "pipelines.finetune", "--config", "configs/finetune/tiny.yaml"]
            + [f"--sample-rate-hz={rate}", f"--archive={d}/archive", "--max-steps=1"]
            + [f"--annotations={d}/archive/annotations.csv", f"--storage-path={d}/runs"]
            + ["--name=ft", "--set=run.validate_every_steps=1", *common],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        cmd = [sys.executable, "-m", "pipelines.label", "--model", model]
        cmd += ["--archive", f"{d}/archive", "--out", f"{d}/labels", *common]
        peak = peak_process_rss_mb(cmd)
        summary = json.loads(Path(f"{d}/labels/run.json").read_text())
    return {"label_x_rt": summary["x_real_time"], "label_peak_process_rss_mb": peak}


def peak_process_rss_mb(cmd: list[str]) -> float:
    """Run ``cmd``; the largest resident memory any one process of its tree (the driver, a
    predictor actor, a read task) reached, polled every 0.2 s."""
    import subprocess

    import psutil

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            for p in [root, *root.children(recursive=True)]:
                peak = max(peak, p.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode()[-2000:]}")
    return peak / 2**20


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--out", default="outputs/rates-gy6or6")
    q.add_argument("--rates", default="8000,32000")
    q.add_argument("--seeds", default="1,2,3")
    q.add_argument("--steps", type=int, default=300)
    q.add_argument("--synth-rate", type=int, default=0, help="synthetic archives at this rate")
    q.add_argument("--hours", type=float, default=0.5, help="synthetic training audio")
    q.add_argument("--set", dest="overrides", action="append", default=[])
    q.add_argument(
        "--tag", default="", help="names this arm's runs (rate<R><tag>-s<seed>) beside others"
    )
    t = sub.add_parser("table", help="the arms scored under --out, paired by seed")
    t.add_argument("--out", default="outputs/rates-gy6or6")
    t.add_argument("--arms", default="", help="e.g. 8000,32000,16000 (the first: the baseline)")
    t.add_argument("--valid-steps", default="", help="e.g. 50,150: validation AP at those steps")
    s = sub.add_parser("speed")
    s.add_argument("--presets", default="tiny,base")
    s.add_argument("--rates", default="8000,32000,48000,250000")
    s.add_argument("--label-hours", type=float, default=0.25, help="0: no labelling run")
    args = ap.parse_args(argv)
    np.set_printoptions(precision=3)
    {"quality": quality, "table": collected, "speed": speed}[args.what](args)


if __name__ == "__main__":
    main()
