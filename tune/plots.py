"""The sweep's picture: best validation metric of every trial vs each swept parameter."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tune.space import SweepConfig  # noqa: E402


def plot_sweep(table: pd.DataFrame, sweep: SweepConfig) -> bytes:
    """PNG bytes: one panel per parameter; trials ASHA stopped early are hollow markers."""
    keys = list(sweep.space)
    metric = f"best_{sweep.metric}"
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), squeeze=False)
    early = table["stopped_early"].astype(bool)
    for ax, key in zip(axes[0], keys, strict=True):
        x = table[key]
        numeric = pd.api.types.is_numeric_dtype(x)
        xs = x if numeric else x.astype(str)
        ax.scatter(xs[~early], table.loc[~early, metric], c="C0", label="completed")
        ax.scatter(
            xs[early],
            table.loc[early, metric],
            facecolors="none",
            edgecolors="C3",
            label="stopped early",
        )
        if numeric and sweep.space[key].log_scale:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(sweep.metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"sweep {sweep.name}: {len(table)} trials")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
