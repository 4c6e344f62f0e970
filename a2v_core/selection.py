"""Which fine-tuning weights are exported as ``best``, and with which per-class thresholds: the
decisions a validation makes, kept out of the Ray Train loop so that they are tested on their
own and run alike in every loop that fine-tunes (``pipelines/finetune.py``,
``bench/gpu_check.py``).

The best validation is the one with the highest ``select_metric``; ties (e.g. F1 0 for every
early validation) go to the other metric, then to the earlier validation. Per-class event
thresholds are tuned at a new best (they travel with its weights) and at the final step (the
``final`` export's), not at every validation: tuning costs a grid of event passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

METRICS = ("val_micro_f1", "val_macro_ap")


@dataclass
class BestKeeper:
    select_metric: str = "val_micro_f1"
    best: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRICS, -1.0))
    best_thresholds: dict[str, float] = field(default_factory=dict)
    last_thresholds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def restore(cls, select_metric: str, meta: dict | None) -> BestKeeper:
        """The keeper of a run resumed from a checkpoint's meta (or a fresh one)."""
        meta = meta or {}
        return cls(
            select_metric,
            {**dict.fromkeys(METRICS, -1.0), **meta.get("best", {})},
            dict(meta.get("class_thresholds_best", {})),
            dict(meta.get("class_thresholds_last", {})),
        )

    @property
    def order(self) -> list[str]:
        return [self.select_metric, *(m for m in METRICS if m != self.select_metric)]

    def is_better(self, val: dict[str, float]) -> bool:
        return tuple(val[k] for k in self.order) > tuple(self.best[k] for k in self.order)

    def update(
        self,
        val: dict[str, float],
        step: int,
        final: bool,
        tune: Callable[[], dict[str, float]],
        keep_weights: Callable[[], Any],
    ) -> bool:
        """One validation at ``step`` (``final``: the last step). ``tune()`` gives this
        validation's per-class thresholds; ``keep_weights()`` stores the model's weights as the
        best. -> whether this validation is the new best."""
        better = self.is_better(val)
        if better or final:
            self.last_thresholds = tune()
        if better:
            self.best = {**val, "step": step}
            self.best_thresholds = self.last_thresholds
            keep_weights()
        return better

    def progress(self) -> str:
        """The best so far, as a validation's log line ends: ``best val_macro_ap 0.283 @ 100``,
        or that none is kept yet (every validation scored NaN, e.g. a collapsed encoder)."""
        if "step" not in self.best:
            return f"no best {self.select_metric} yet: no validation has scored"
        return (
            f"best {self.select_metric} {self.best[self.select_metric]:.3f} @ {self.best['step']}"
        )

    def meta(self) -> dict:
        """What a checkpoint carries of the selection (``restore`` reads it back)."""
        return {
            "best": self.best,
            "class_thresholds_best": self.best_thresholds,
            "class_thresholds_last": self.last_thresholds,
        }

    def thresholds_of(self, export: str) -> dict[str, float]:
        """The thresholds an export carries: the best weights' or the last ones'."""
        return self.best_thresholds if export == "best" else self.last_thresholds
