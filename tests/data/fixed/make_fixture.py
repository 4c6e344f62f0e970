"""How tests/data/fixed/ was made (run once; the test reads what it wrote, never this).

    python tests/data/fixed/make_fixture.py --model <a fine-tuned run>/best

- ``model/``: the checkpoint folder, byte for byte as fine-tuning exported it (the committed one
  is the few-shot benchmark's scratch arm, seed 1: 10 % of the 2 h synthetic archive, 300
  steps, val macro AP 0.83; 0.5 MB);
- ``archive/site_a/rec_00000.flac``: 30 s of synthetic audio (8 kHz, PCM16) with calls;
- ``thresholds.json``: per class, the lowest threshold in [0.15, 0.6] at least 1e-3 from every
  smoothed frame probability of the archive below, else the farthest one (class ``al``: 5.2e-4;
  computed with a2v_core alone, chunk by chunk as the predictor does). The test compares events
  exactly; that holds across machines and BLAS builds only while float noise (~1e-6 to 1e-5)
  stays far below that margin (the checkpoint's own tuned thresholds had a frame 3e-6 away);
- ``events.csv``: what ``a2v label`` wrote with those thresholds for that archive plus the real
  recording ``../shared/data/real/spinetail/spinetail.wav`` (44.1 kHz: the resampling path).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

HERE = Path(__file__).resolve().parent
MARGIN = 1e-3  # 100-1000x the float noise between machines in a frame probability
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))


def smoothed_probs(model_dir: Path, archive: Path) -> tuple[list[str], np.ndarray]:
    """(classes, every valid frame's 0.1 s-smoothed probabilities (frames, classes)), computed
    with a2v_core alone, chunk by chunk as the predictor does."""
    from a2v_core.audio import iter_chunks
    from a2v_core.checkpoint import load_classifier
    from a2v_core.events import moving_average

    model, meta = load_classifier(model_dir)
    model.eval()
    rate, out = float(meta["frame_rate_hz"]), []
    for path in sorted(archive.rglob("*.*")):
        with open(path, "rb") as f:
            for chunk in iter_chunks(f, meta["clip_s"], meta["sample_rate_hz"]):
                with torch.no_grad():
                    feats, _ = model.features(torch.as_tensor(chunk.audio[None]))
                    probs = torch.sigmoid(model.head(feats))[0].numpy()
                n = int(np.ceil(chunk.valid_samples / meta["sample_rate_hz"] * rate))
                out.append(moving_average(probs[:n], int(round(0.1 * rate))))
    return meta["classes"], np.concatenate(out)


def wide_margin_thresholds(classes: list[str], smooth: np.ndarray) -> dict[str, float]:
    """Per class, the lowest threshold in [0.15, 0.6] (steps of 0.005) at least MARGIN from
    every frame (low: more events to compare), else the one farthest from every frame."""
    grid = np.round(np.arange(0.15, 0.6001, 0.005), 3)
    best = {}
    for c, name in enumerate(classes):
        gap = np.abs(smooth[:, c][:, None] - grid[None]).min(0)
        wide = np.flatnonzero(gap >= MARGIN)
        best[name] = float(grid[wide[0]] if len(wide) else grid[int(np.argmax(gap))])
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    from a2v_core.synth import synth_recording
    from tests.pipelines.test_fixed_model import fixed_archive, label_fixed

    shutil.rmtree(HERE / "model", ignore_errors=True)
    shutil.copytree(args.model, HERE / "model")
    audio, _ = synth_recording(np.random.default_rng([2026, 12]), 30.0, 8000, calls_per_s=0.5)
    (HERE / "archive/site_a").mkdir(parents=True, exist_ok=True)
    sf.write(HERE / "archive/site_a/rec_00000.flac", audio, 8000, subtype="PCM_16")
    with tempfile.TemporaryDirectory() as tmp:
        archive = fixed_archive(Path(tmp) / "archive")
        classes, smooth = smoothed_probs(HERE / "model", archive)
        thresholds = wide_margin_thresholds(classes, smooth)
        thr = np.array([thresholds[c] for c in classes])
        print(
            f"thresholds {thresholds}; smallest |probability - threshold| over "
            f"{len(smooth)} frames: {np.abs(smooth - thr).min():.2e}"
        )
        (HERE / "thresholds.json").write_text(json.dumps(thresholds, indent=1) + "\n")
        summary, events = label_fixed(archive, Path(tmp) / "out")
        assert summary["files_processed"] == 2, summary
        events.to_csv(HERE / "events.csv", index=False)
        print(events.groupby(["file", "label"]).size())


if __name__ == "__main__":
    main()
