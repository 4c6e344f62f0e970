"""Where the Sinc filters sit, and what that alone is worth: the front-end part of the cause
table in docs/sample_rates.md.

    python bench/sinc_bands.py --out outputs/sinc-gy6or6            # gy6or6, about 5 minutes
    python bench/sinc_bands.py --out outputs/sinc-synth --synth-rate 32000 --low-band
    python bench/sinc_bands.py --out outputs/sinc-gy6or6 --trained outputs/rates-gy6or6/runs

For each front-end variant (a rate preset, alone or with ``model.sinc_off_folds`` /
``model.sinc_init_high_hz`` / another Sinc stride), on the training and held-out recordings
(gy6or6: days 23-25 and day 26, as ``bench/rates.py`` splits them; or a synthetic archive):

- ``filters_in_sound``: the filters whose centre lies below the frequency that holds 99 % of the
  training audio's sound (``a2v_core.spectrum``), and ``straddle``: the filters whose band
  straddles a fold of the Sinc output rate (a multiple of its Nyquist);
- ``sinc_ap``: a linear probe (``bench.probe``: one logistic regression per class) on the Sinc
  layer's band envelopes at init (log mean |output| per 5 ms frame, +-2 frames of context),
  fitted on the training days and scored by frame macro AP on the held-out day. It is
  deterministic: the filters' init has no seed;
- ``frontend_ap``: the same probe on the Sinc + conv stack output at init (the conv stack is
  random: mean +- sd over ``--seeds``), which also sees what band-pass sampling folds together.

``--trained DIR``: for every fine-tuned run under DIR (``<run>/best/model.pt``), how far its
filters' edges moved from their init, in Hz (the front end's learning rate measured).
Prints the tables and writes ``<out>/sinc_bands.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2v_core import annotations  # noqa: E402
from a2v_core.audio import normalise  # noqa: E402
from a2v_core.config import ModelConfig  # noqa: E402
from a2v_core.encoder import ConvFeatureStack, sinc_front_end  # noqa: E402
from a2v_core.spectrum import SoundSpectrum  # noqa: E402
from bench.probe import probe_ap  # noqa: E402

#: name -> ModelConfig fields (tiny); the audio is read at each variant's rate (soxr HQ)
VARIANTS = {
    "8k": {"sample_rate_hz": 8000},
    "16k": {"sample_rate_hz": 16000},
    "16k off folds": {"sample_rate_hz": 16000, "sinc_off_folds": True},
    "32k": {"sample_rate_hz": 32000},
    "32k off folds": {"sample_rate_hz": 32000, "sinc_off_folds": True},
    "32k 16 kHz front end": {
        "sample_rate_hz": 32000,
        "sinc_stride": 2,
        "conv_layers": [[32, 20, 10], [32, 3, 2], [32, 3, 2], [32, 3, 2]],
    },
    "32k filters to sound": {"sample_rate_hz": 32000, "sinc_init_high_hz": "sound"},
    "32k filters to sound, off folds": {
        "sample_rate_hz": 32000,
        "sinc_init_high_hz": "sound",
        "sinc_off_folds": True,
    },
}


def read_part(part: Path) -> tuple[list[tuple[np.ndarray, int]], pd.DataFrame]:
    files = sorted(p for p in part.rglob("*") if p.suffix.lower() in (".flac", ".wav"))
    audio = []
    for f in files:
        x, sr = sf.read(f, dtype="float32", always_2d=True)
        audio.append((x[:, 0], sr))
    table = annotations.read_csv(part / "annotations.csv")
    names = [str(f.relative_to(part)) for f in files]
    return list(zip(names, audio, strict=True)), table


def sound_of(files) -> SoundSpectrum:
    spec = SoundSpectrum()
    for _, (x, sr) in files:
        spec.add(x, sr)
    return spec


@torch.no_grad()
def features(cfg: ModelConfig, files, table, classes, conv_seed: int | None):
    """(frames, D) features and (frames, C) targets over ``files`` at ``cfg``'s rate."""
    front = sinc_front_end(cfg).eval()
    hop = cfg.hop_samples // cfg.sinc_stride  # Sinc outputs per frame
    if conv_seed is not None:
        torch.manual_seed(conv_seed)
        convs = ConvFeatureStack(cfg.sinc_filters, [tuple(c) for c in cfg.conv_layers]).eval()
    xs, ys = [], []
    by_file = {f: g for f, g in table.groupby("file")}
    for name, (x, sr) in files:
        if sr != cfg.sample_rate_hz:
            x = soxr.resample(x, sr, cfg.sample_rate_hz, quality="HQ").astype(np.float32)
        s = torch.from_numpy(normalise(x))[None]
        out = front(s)  # (1, F, S / stride)
        n = out.shape[-1] // hop
        if conv_seed is None:
            env = out[0, :, : n * hop].abs().reshape(out.shape[1], n, hop).mean(-1)
            f = torch.log(env + 1e-4).T.numpy()  # (T, F)
        else:
            f = convs(out)[0].T.numpy()[:n]
        ctx = np.concatenate([np.roll(f, k, axis=0) for k in (-2, -1, 0, 1, 2)], axis=1)
        rows = by_file.get(name, table.iloc[:0])
        y = annotations.frame_targets(rows, classes, 0.0, n, cfg.sample_rate_hz, cfg.hop_samples)
        xs.append(ctx)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def band_counts(cfg: ModelConfig, top_hz: float) -> dict:
    low, high = sinc_front_end(cfg).sinc.band_edges_hz()
    low, high = low.detach().numpy(), high.detach().numpy()
    row = {"filters_in_sound": int(((low + high) / 2 <= top_hz).sum())}
    fold = cfg.sinc_fold_hz
    row["straddle"] = (
        0 if fold is None else int((np.floor(low / fold) != np.floor((high - 1e-3) / fold)).sum())
    )
    return row


def variant_config(fields: dict, top_hz: float) -> ModelConfig:
    fields = dict(fields)
    if fields.get("sinc_init_high_hz") == "sound":
        fields["sinc_init_high_hz"] = float(np.ceil(top_hz / 100) * 100)
    return ModelConfig(preset="tiny", **fields)


def init_table(args, train, test, train_table, test_table) -> pd.DataFrame:
    spec = sound_of(train)
    top = spec.top_hz()
    print(
        f"sound: 99 % below {top:.0f} Hz, {100 * spec.fraction_below(4000):.0f} % below 4 kHz "
        f"({spec.files} training files)"
    )
    classes = annotations.class_list(train_table)
    rows = []
    for name in args.variants.split(";"):
        cfg = variant_config(VARIANTS[name], top)
        row = {"variant": name, "init_band_hz": f"{cfg.band_hz[0]:g}-{cfg.band_hz[1]:g}"}
        row |= band_counts(cfg, top)
        tr = features(cfg, train, train_table, classes, None)
        te = features(cfg, test, test_table, classes, None)
        row["sinc_ap"] = probe_ap(*tr, *te, classes, args.max_frames, 0)
        aps = []
        for seed in range(1, args.seeds + 1):
            tr = features(cfg, train, train_table, classes, seed)
            te = features(cfg, test, test_table, classes, seed)
            aps.append(probe_ap(*tr, *te, classes, args.max_frames, seed))
        row["frontend_ap"] = (
            f"{np.mean(aps):.3f} +- {np.std(aps, ddof=1) if len(aps) > 1 else 0:.3f}"
        )
        print(row, flush=True)
        rows.append(row)
    return pd.DataFrame(rows)


def moved_table(runs: Path) -> pd.DataFrame:
    """How far each run's filter edges moved from the init of its own config, in Hz."""
    import yaml

    rows = []
    for model in sorted(runs.glob("*/best/model.pt")):
        cfg_file = model.parent / "config.yaml"
        job = yaml.safe_load(cfg_file.read_text())
        cfg = ModelConfig(**job["model"])
        init_low, init_high = (e.detach() for e in sinc_front_end(cfg).sinc.band_edges_hz())
        state = torch.load(model, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        low_ = next(v for k, v in state.items() if k.endswith("sinc.sinc.low_hz_"))
        band_ = next(v for k, v in state.items() if k.endswith("sinc.sinc.band_hz_"))
        low = cfg.sinc_min_low_hz + low_.abs()[:, 0]
        high = low + cfg.sinc_min_band_hz + band_.abs()[:, 0]
        moved = torch.cat([(low - init_low).abs(), (high - init_high).abs()])
        rows.append(
            {
                "run": model.parent.parent.name,
                "max_moved_hz": float(moved.max()),
                "mean_moved_hz": float(moved.mean()),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="outputs/sinc-gy6or6")
    ap.add_argument("--split", default="outputs/rates-gy6or6", help="bench/rates.py's --out")
    ap.add_argument("--variants", default=";".join(VARIANTS))
    ap.add_argument("--seeds", type=int, default=3, help="conv stack inits per variant")
    ap.add_argument("--max-frames", type=int, default=20000)
    ap.add_argument("--trained", default=None, help="a folder of fine-tuned runs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if args.trained:
        moved = moved_table(Path(args.trained))
        print(moved.to_markdown(index=False))
        moved.to_csv(out / "moved.csv", index=False)
        return
    split = Path(args.split)
    if not (split / "test" / "annotations.csv").exists():
        from bench.rates import gy6or6_split

        gy6or6_split(split)
    train, train_table = read_part(split / "train")
    test, test_table = read_part(split / "test")
    table = init_table(args, train, test, train_table, test_table)
    print(table.to_markdown(index=False))
    table.to_csv(out / "sinc_bands.csv", index=False)


if __name__ == "__main__":
    main()
