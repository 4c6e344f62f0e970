"""Interpretability report of a fine-tuned model (PNG files).

    a2v report --model demo_out/runs/finetune-tiny/best --out demo_out/report \\
        [--archive demo_out/archive_test --annotations demo_out/archive_test/annotations.csv]

    sinc_filters.png   every Sinc filter's frequency response and the cumulative response, for
                       the initial (mel-spaced) and the trained filters side by side, drawn over
                       the mean spectrum of each annotated call class
    attention.png      attention maps per layer / head for a clip with calls, the attention
                       rollout over time, the spectrogram and the labelled events beneath
    frame_probs.png    frame probabilities vs the ground truth for the same clip

Without ``--archive/--annotations`` the clip is synthetic (``a2v_core.synth``, seed 0) and
its own call list stands in for the annotations.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import torch

from a2v_core import annotations as ann
from a2v_core.audio import normalise, open_sound, read_window
from a2v_core.config_tools import ReportJob
from a2v_core.encoder import sinc_front_end
from a2v_core.interpret import attention_maps, filter_responses, mean_spectrum
from a2v_core.plots import attention_png, frame_probs_png, sinc_filters_png
from a2v_core.synth import synth_recording
from pipelines.data import storage
from pipelines.runtime.jobargs import add_fields, command, parser, tool_config
from pipelines.runtime.run_dir import open_checkpoint


def read_segment(
    archive: str, file: str, onset_s: float, dur_s: float, sr: int, expansion: int = 1
) -> np.ndarray:
    """``dur_s`` seconds of real time from ``onset_s`` (a time-expansion file: k x its rate)."""
    fs, root = storage.filesystem(archive)
    with storage.open_member(fs, root, file) as fh, open_sound(fh, expansion) as snd:
        return read_window(snd, onset_s, dur_s, sr, normalize=False).audio


def class_segments(
    archive: str, truth: pd.DataFrame, sr: int, per_class: int = 40, expansion: int = 1
) -> dict:
    out = {}
    for label, group in truth.groupby("label"):
        segs = []
        for ev in group.head(per_class).itertuples(index=False):
            try:
                dur = ev.offset_s - ev.onset_s
                segs.append(read_segment(archive, ev.file, ev.onset_s, dur, sr, expansion))
            except Exception as err:  # a missing / broken file costs one segment, not the report
                print(f"[report] skipped {ev.file}@{ev.onset_s:.2f}: {err}")
        if segs:
            out[label] = segs
    return out


def busiest_clip(truth: pd.DataFrame, clip_s: float) -> tuple[str, float]:
    """(file, offset) of the clip with the most annotated calls."""
    starts = (truth["onset_s"] // clip_s) * clip_s
    counts = truth.assign(start=starts).groupby(["file", "start"]).size()
    file, start = counts.idxmax()
    return file, float(start)


def report_clip(
    archive: str | None,
    annotations: str | None,
    clip_s: float,
    sr: int,
    per_class: int,
    expansion: int = 1,
) -> tuple[np.ndarray, pd.DataFrame, dict, str]:
    """(audio, its events in clip time, segments per class for the mean spectra, a name):
    the busiest annotated clip of the archive, or a synthetic clip without one."""
    if archive and annotations:
        archive = storage.absolute(archive)
        truth = ann.read_csv(io.BytesIO(storage.read_bytes(storage.absolute(annotations))))
        file, offset = busiest_clip(truth, clip_s)
        audio = read_segment(archive, file, offset, clip_s, sr, expansion)
        clip_events = truth[truth["file"] == file].assign(
            onset_s=lambda d: d["onset_s"] - offset, offset_s=lambda d: d["offset_s"] - offset
        )
        spectra_src = class_segments(archive, truth, sr, per_class, expansion)
        source = f"{file} @ {offset:g} s"
    else:
        rng = np.random.default_rng(0)
        audio, clip_events = synth_recording(rng, clip_s, sr, calls_per_s=0.8)
        spectra_src = {}
        for ev in clip_events.itertuples(index=False):
            seg = audio[int(ev.onset_s * sr) : int(ev.offset_s * sr)]
            spectra_src.setdefault(ev.label, []).append(seg)
        source = "synthetic clip (seed 0)"
    clip_events = clip_events[(clip_events["offset_s"] > 0) & (clip_events["onset_s"] < clip_s)]
    return audio, clip_events, spectra_src, source


def run(cfg: ReportJob) -> dict:
    """Write the PNGs (a dry run: from one annotated call per class)."""
    model_uri, out, archive, annotations = cfg.model, cfg.out, cfg.archive, cfg.annotations
    per_class = 1 if cfg.dry_run else cfg.per_class
    opened = open_checkpoint(model_uri, ("finetune",))  # one load; its config: the threshold
    model, meta, config = opened.model, opened.meta, opened.config
    model_cfg, classes = model.model_cfg, list(meta["classes"])
    sr, fr = int(meta["sample_rate_hz"]), float(meta["frame_rate_hz"])
    expansion = cfg.time_expansion or int(config.get("data", {}).get("time_expansion", 1))
    audio, clip_events, spectra_src, source = report_clip(
        archive, annotations, float(meta["clip_s"]), sr, per_class, expansion
    )
    initial, trained = sinc_front_end(model_cfg).sinc, model.encoder.local.sinc.sinc
    freqs, mag0 = filter_responses(initial)
    _, mag1 = filter_responses(trained)
    spectra = {label: mean_spectrum(segs, sr) for label, segs in sorted(spectra_src.items())}
    x = torch.as_tensor(normalise(audio.astype(np.float32)))[None]
    maps, rollout, probs = attention_maps(model, x)
    targets = ann.frame_targets(clip_events, classes, 0.0, len(probs), sr, model_cfg.hop_samples)
    # the frame threshold (fine-tuning configs before it had its own key kept it in events)
    threshold = float(
        config.get("frame_threshold", config.get("events", {}).get("threshold", 0.175))
    )
    pngs = {
        "sinc_filters.png": sinc_filters_png(
            freqs, {"initial (mel)": mag0, "trained": mag1}, spectra
        ),
        "attention.png": attention_png(maps, rollout, audio, sr, fr, clip_events, classes),
        "frame_probs.png": frame_probs_png(probs, targets, classes, fr, threshold),
    }
    written = {name: storage.join(out, name) for name in pngs}
    for name, png in pngs.items():
        storage.write_bytes(written[name], png)
    moved = torch.stack(trained.band_edges_hz()) - torch.stack(initial.band_edges_hz())
    summary = {
        "model": model_uri,
        "clip": source,
        "events_in_clip": int(len(clip_events)),
        "filters_moved_hz": float(moved.abs().mean().detach()),
        "files": written,
    }
    storage.write_bytes(storage.join(out, "report.json"), json.dumps(summary, indent=2).encode())
    print(f"[report] {source}: {len(clip_events)} calls; wrote {', '.join(written)} -> {out}")
    return summary


@command
def main(argv: list[str] | None = None) -> None:
    ap = parser("a2v report", __doc__)
    add_fields(ap, ReportJob, "every PNG from one call per class")
    run(tool_config(ReportJob, ap.parse_args(argv)))


if __name__ == "__main__":
    main()
