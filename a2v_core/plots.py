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
