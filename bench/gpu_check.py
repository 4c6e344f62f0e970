"""One-accelerator check of the training and labelling steps (a2v_core only, no Ray).

Runs, per preset, the per-worker updates of ``pipelines.pretrain`` and ``pipelines.finetune``
(``a2v_core.training.pretrain_step`` / ``finetune_step``, with the preset's shipped recipe:
AdamW groups, warmup + cosine, clipping, EMA, mixup) and the labelling predictor's forward on
synthetic 10 s clips, under the bf16 autocast the pipelines use on CUDA, and prints a table
(and a JSON with ``--out``):

- pretrain: seconds per update, audio-seconds/s, peak accelerator memory, loss of the first and
  last update (finite, falling), the paper batch per GPU for ``large`` (5 clips x 12 clones), and
  the same step with the ALiBi scale fixed (the fused attention path);
- finetune: seconds per update and peak memory, encoder frozen and unfrozen; then one
  validation as the fine-tuning loop runs it (``training.validation_pass``, the per-class threshold
  tuning of ``metrics.tune_thresholds`` and ``selection.BestKeeper``), with its seconds;
- the collapse guard (``pretrain.collapse_message``) on the last pretraining update;
- inference: x real time of the labelling forward (batch 16, the original's);
- consistency: frame probabilities of one model on CPU fp32 vs the accelerator in fp32 and bf16;
- the projected accelerator-hours of the paper's pretraining budget (384k updates of 1,000 s).

    python bench/gpu_check.py --presets tiny,large --steps 10 --out gpu_check.json

On a machine without CUDA it runs on CPU (use ``--presets tiny``), which is how it is tested.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from a2v_core.audio import normalise
from a2v_core.config import FinetuneJob, ModelConfig, PretrainJob
from a2v_core.config_loader import load_config
from a2v_core.events import EventRule
from a2v_core.finetune import FrameClassifier
from a2v_core.metrics import tune_thresholds
from a2v_core.pretrain import Data2VecPretrainer, collapse_message, stops_run
from a2v_core.selection import BestKeeper
from a2v_core.synth import synth_recording
from a2v_core.training import TrainState, finetune_step, pretrain_step, validation_pass

ROOT = Path(__file__).resolve().parents[1]
SR, CLIP_S = 8000, 10.0
PAPER_UPDATES, PAPER_AUDIO_S_PER_UPDATE = 384_230, 1000.0  # animal2vec_spec.md, pretraining
PER_GPU_BATCH = {"tiny": 8, "base": 5, "large": 5}  # large: max_tokens 408k samples -> 5 clips


def clips(n: int, seed: int = 0) -> torch.Tensor:
    """n normalised 10 s synthetic recordings with calls (as the datasource yields them)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, _ = synth_recording(rng, CLIP_S, SR, calls_per_s=0.5)
        out.append(normalise(x))
    return torch.as_tensor(np.stack(out))


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def peak_gib(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def timed_steps(step, steps: int, dev: torch.device) -> tuple[float, list[float]]:
    """Seconds per step over ``steps`` steps after two warm-up steps; the losses of all steps."""
    losses = [step(), step()]
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        losses.append(step())
    sync(dev)
    return (time.perf_counter() - t0) / steps, losses


def jobs(cfg: ModelConfig) -> tuple[PretrainJob, FinetuneJob]:
    """The preset's shipped pretraining and fine-tuning recipes (optimizer, schedule,
    masking, mixup, loss) with ``cfg`` as the model."""
    pre = load_config(PretrainJob, ROOT / f"configs/pretrain/{cfg.preset}.yaml", [])
    ft = load_config(FinetuneJob, ROOT / f"configs/finetune/{cfg.preset}.yaml", [])
    return pre.model_copy(update={"model": cfg}), ft.model_copy(update={"model": cfg})


def pretrain_check(cfg: ModelConfig, batch: int, steps: int, dev: torch.device) -> dict:
    job = jobs(cfg)[0]
    torch.manual_seed(0)
    model = Data2VecPretrainer(cfg, job.masking, job.ema).to(dev).train()
    student = [(n, p) for n, p in model.named_parameters() if not n.startswith("teacher.")]
    state = TrainState.create(model, student, job.optim)
    audio = clips(batch).to(dev)

    last = {}

    def step() -> float:  # the pipelines' update: AdamW groups, schedule, clip, EMA
        last["out"], metrics = pretrain_step(state, model, [audio], job)
        return metrics["loss"]

    reset_peak(dev)
    s, losses = timed_steps(step, steps, dev)
    # the guard the pretraining loop applies (from step 0 here: is the short run's spread sane?)
    guard = job.ema.model_copy(update={"collapse_after_steps": 0})
    collapse = collapse_message(state.step, last["out"], guard)
    return {
        "collapse": collapse or "",
        "stops": stops_run(collapse, guard),
        "batch": batch,
        "clone_batch": cfg.clone_batch,
        "s_per_update": s,
        "audio_s_per_s": batch * CLIP_S / s,
        "peak_gib": peak_gib(dev),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "finite": bool(np.isfinite(losses).all()),
    }


def finetune_check(cfg: ModelConfig, batch: int, steps: int, dev: torch.device) -> dict:
    job = jobs(cfg)[1]
    job.optim.freeze_steps = steps + 2  # the first timed_steps head-only, the second not
    torch.manual_seed(0)
    model = FrameClassifier(cfg, 8, job.finetune_masking, job.optim.freeze_frontend, 0.01)
    model = model.to(dev).train()
    state = TrainState.create(model, list(model.named_parameters()), job.optim)
    audio = clips(batch, seed=1).to(dev)
    y = (torch.rand(batch, int(CLIP_S * cfg.frame_rate_hz), 8) < 0.02).float().to(dev)
    frames = torch.ones(y.shape[:2], dtype=torch.bool, device=dev)

    def step() -> float:
        return finetune_step(state, model, [(audio, y, frames)], job)["loss"]

    res = {"batch": batch}
    for key in ("frozen", "unfrozen"):
        reset_peak(dev)
        s, losses = timed_steps(step, steps, dev)
        res[f"{key}_s_per_update"] = s
        res[f"{key}_peak_gib"] = peak_gib(dev)
        res[f"{key}_finite"] = bool(np.isfinite(losses).all())
    return res | validation_check(model, job, audio, y, dev)


def validation_check(model, job: FinetuneJob, audio, y, dev: torch.device) -> dict:
    """One validation as ``pipelines.finetune`` runs it on rank 0: frame metrics, per-class
    threshold tuning on the events ``a2v label`` would write, the best-weights decision."""
    classes = [f"c{i}" for i in range(y.shape[-1])]
    batch = {
        "audio": audio.float().cpu().numpy(),
        "path": np.array([f"clip{i}.wav" for i in range(len(audio))]),
        "offset_s": np.zeros(len(audio)),
        "duration_s": np.full(len(audio), CLIP_S),
    }
    targets = y.cpu().numpy()
    truth = pd.concat(  # the targets as events, the validation truth
        [
            EventRule(threshold=0.5, pool_s=0.0, min_event_s=0.0).events(
                [(f, 0.0, targets[i])], classes, job.model.frame_rate_hz
            )
            for i, f in enumerate(batch["path"])
        ]
    )
    sync(dev)
    t0 = time.perf_counter()
    val, clips_ = validation_pass(model, [batch], lambda b: targets, job, classes, dev)
    keeper = BestKeeper(job.select_metric)
    better = keeper.update(
        val,
        1,
        final=True,
        tune=lambda: tune_thresholds(
            clips_, truth, classes, job.model.frame_rate_hz, job.events.rule()
        ),
        keep_weights=lambda: None,
    )
    return {
        "validation_s": time.perf_counter() - t0,
        "val_macro_ap": val["val_macro_ap"],
        "best_kept": better,
        "thresholds_tuned": len(keeper.best_thresholds),
    }


@torch.no_grad()
def probs(model: FrameClassifier, audio: torch.Tensor, dev: torch.device, bf16: bool):
    """Frame probabilities as the labelling predictor computes them (``model`` is on ``dev``)."""
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
        feats, _ = model.features(audio.to(dev))
        p = torch.sigmoid(model.head(feats))
    return p.float().cpu()


def inference_check(cfg: ModelConfig, batch: int, steps: int, dev: torch.device) -> dict:
    torch.manual_seed(0)
    model = FrameClassifier(cfg, 8).to(dev).eval()
    audio = clips(batch, seed=2).to(dev)
    reset_peak(dev)
    s, _ = timed_steps(
        lambda: float(probs(model, audio, dev, dev.type == "cuda").mean()), steps, dev
    )
    return {"batch": batch, "x_real_time": batch * CLIP_S / s, "peak_gib": peak_gib(dev)}


def consistency_check(cfg: ModelConfig, dev: torch.device) -> dict:
    """Max |p_cpu_fp32 - p_dev| over every frame and class of 4 clips (same weights)."""
    torch.manual_seed(0)
    model = FrameClassifier(cfg, 8).eval()
    audio = clips(4, seed=3)
    # A trained head is not flat: scale it to logits of std 3, probabilities over (0, 1).
    with torch.no_grad():
        model.head.weight.mul_(3.0 / model(audio).std())
    ref = probs(model, audio, torch.device("cpu"), False)
    model.to(dev)
    res = {"p_range": [float(ref.min()), float(ref.max())]}
    if dev.type == "cuda":
        res["max_abs_fp32"] = float((probs(model, audio, dev, False) - ref).abs().max())
        res["max_abs_bf16"] = float((probs(model, audio, dev, True) - ref).abs().max())
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="tiny,large")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=0, help="clips per update (default: per preset)")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    report: dict = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
        "presets": {},
    }
    print(f"gpu_check: torch {report['torch']} on {report['device']}", flush=True)
    for name in args.presets.split(","):
        cfg = ModelConfig(preset=name, attention_dropout=0.0)
        b = args.batch or PER_GPU_BATCH[name]
        r: dict = {"params_m": sum(p.numel() for p in FrameClassifier(cfg, 8).parameters()) / 1e6}
        r["pretrain"] = pretrain_check(cfg, b, args.steps, dev)
        print(f"[{name}] pretrain {r['pretrain']}", flush=True)
        alt = cfg.model_copy(update={"learned_alibi_scale": not cfg.learned_alibi_scale})
        r["pretrain_alibi_scale_" + ("fixed" if cfg.learned_alibi_scale else "learned")] = (
            pretrain_check(alt, b, args.steps, dev)
        )
        r["finetune"] = finetune_check(cfg, b, args.steps, dev)
        print(f"[{name}] finetune {r['finetune']}", flush=True)
        r["inference"] = inference_check(cfg, args.batch or 16, args.steps, dev)
        r["consistency"] = consistency_check(cfg, dev)
        hours = PAPER_UPDATES * PAPER_AUDIO_S_PER_UPDATE / r["pretrain"]["audio_s_per_s"] / 3600
        r["paper_pretraining_device_hours"] = hours
        report["presets"][name] = r
        print(f"[{name}] {json.dumps({k: r[k] for k in ('inference', 'consistency')})}", flush=True)
    print(
        "\n| preset | pretrain s/update | audio-s/s | peak GiB | loss first -> last | "
        "alt ALiBi s/update | finetune s/update frozen / unfrozen | label x real time | "
        "max |dp| bf16 | paper budget device-h |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in report["presets"].items():
        p, f = r["pretrain"], r["finetune"]
        alt = next(v for k, v in r.items() if k.startswith("pretrain_alibi"))
        print(
            f"| {name} | {p['s_per_update']:.3f} | {p['audio_s_per_s']:.0f} | {p['peak_gib']:.1f} | "
            f"{p['loss_first']:.3f} -> {p['loss_last']:.3f} | {alt['s_per_update']:.3f} | "
            f"{f['frozen_s_per_update']:.3f} / {f['unfrozen_s_per_update']:.3f} | "
            f"{r['inference']['x_real_time']:.0f} | "
            f"{r['consistency'].get('max_abs_bf16', float('nan')):.4f} | "
            f"{r['paper_pretraining_device_hours']:.0f} |"
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
