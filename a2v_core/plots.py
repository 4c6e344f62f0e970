"""Figures (PNG bytes) for evaluation and interpretability; matplotlib only, no Ray/MLflow."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def pr_curves_png(
    y_true: np.ndarray, y_prob: np.ndarray, classes: list[str], title: str = ""
) -> bytes:
    """Frame-level precision-recall curve per class (classes without positives are skipped)."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    y = y_true >= 0.5
    for c, name in enumerate(classes):
        if not y[:, c].any():
            continue
        precision, recall, _ = precision_recall_curve(y[:, c], y_prob[:, c])
        ax.plot(recall, precision, label=f"{name} (prevalence {y[:, c].mean():.3%})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title or "frame-level precision-recall", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def sinc_filters_png(
    freqs: np.ndarray,
    responses: dict[str, np.ndarray],
    class_spectra: dict[str, np.ndarray] | None = None,
) -> bytes:
    """One panel per filter bank (e.g. initial mel vs trained): each filter's magnitude
    response (thin), the cumulative response (bold), and the mean spectrum of every call class
    (dB, right axis)."""
    fig, axes = plt.subplots(1, len(responses), figsize=(6.5 * len(responses), 4.2), squeeze=False)
    for ax, (name, mag) in zip(axes[0], responses.items(), strict=True):
        for row in mag:
            ax.plot(freqs, row / max(row.max(), 1e-12), color="0.6", lw=0.6)
        total = mag.sum(0)
        ax.plot(freqs, total / total.max(), color="k", lw=2, label="cumulative (scaled)")
        ax.set_xlabel("frequency (Hz)")
        ax.set_ylabel("filter gain (each filter to 1)")
        ax.set_xlim(0, freqs[-1])
        ax.set_title(f"{name}: {len(mag)} Sinc filters", fontsize=10)
        if class_spectra:
            tw = ax.twinx()
            for i, (label, db) in enumerate(class_spectra.items()):
                tw.plot(freqs, db, color=f"C{i % 10}", lw=1.2, alpha=0.8, label=label)
            tw.set_ylabel("class mean spectrum (dB)")
            tw.legend(fontsize=7, loc="upper right")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return to_png(fig)


def _events_strip(ax, events, duration_s: float, classes: list[str]) -> None:
    for _, ev in events.iterrows():
        if ev["label"] in classes:
            y = classes.index(ev["label"])
            ax.broken_barh(
                [(ev["onset_s"], ev["offset_s"] - ev["onset_s"])],
                (y - 0.4, 0.8),
                color=f"C{y % 10}",
            )
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlim(0, duration_s)
    ax.set_ylabel("labelled")


def attention_png(
    maps: list[np.ndarray],
    rollout: np.ndarray,
    audio: np.ndarray,
    sample_rate_hz: float,
    frame_rate_hz: float,
    events,
    classes: list[str],
) -> bytes:
    """Per layer x head pooled attention maps; below them the rollout received per frame over
    time, the spectrogram and the labelled events of the same clip."""
    layers, heads = len(maps), maps[0].shape[0]
    duration = len(audio) / sample_rate_hz
    fig = plt.figure(figsize=(max(8, 2.2 * heads), 2.2 * layers + 6))
    grid = fig.add_gridspec(layers + 3, heads, height_ratios=[1] * layers + [0.9, 1.2, 0.8])
    for i, layer in enumerate(maps):
        for h in range(heads):
            ax = fig.add_subplot(grid[i, h])
            ax.imshow(layer[h], cmap="viridis", extent=(0, duration, duration, 0), aspect="auto")
            ax.set_title(f"layer {i} head {h}", fontsize=7)
            ax.tick_params(labelsize=6)
    t = np.arange(rollout.shape[0]) / frame_rate_hz
    ax = fig.add_subplot(grid[layers, :])
    ax.plot(t, rollout.mean(0), lw=0.8)
    ax.set_xlim(0, duration)
    ax.set_ylabel("rollout\n(attention received)", fontsize=8)
    ax = fig.add_subplot(grid[layers + 1, :])
    ax.specgram(audio, NFFT=256, Fs=sample_rate_hz, noverlap=192, cmap="magma")
    ax.set_xlim(0, duration)
    ax.set_ylabel("Hz")
    _events_strip(fig.add_subplot(grid[layers + 2, :]), events, duration, classes)
    fig.tight_layout()
    return to_png(fig)


def frame_probs_png(
    probs: np.ndarray,
    targets: np.ndarray,
    classes: list[str],
    frame_rate_hz: float,
    threshold: float,
) -> bytes:
    """Frame probabilities (lines) over the ground-truth frames (shaded), one row per class."""
    t = np.arange(len(probs)) / frame_rate_hz
    fig, axes = plt.subplots(
        len(classes), 1, figsize=(10, 0.9 * len(classes) + 1), sharex=True, squeeze=False
    )
    for c, (ax, name) in enumerate(zip(axes[:, 0], classes, strict=True)):
        ax.fill_between(
            t, 0, targets[:, c], color="C2", alpha=0.3, step="mid", label="ground truth"
        )
        ax.plot(t, probs[:, c], color="C0", lw=0.8, label="probability")
        ax.axhline(threshold, color="C3", lw=0.6, ls="--")
        ax.set_ylim(0, 1)
        ax.set_ylabel(name, fontsize=8, rotation=0, ha="right")
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncol=2)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return to_png(fig)
