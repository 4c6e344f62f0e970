"""The event settings group: how frame probabilities become events (``a2v_core.events``), and
their defaults per frame rate."""

from __future__ import annotations

from pydantic import Field

from a2v_core.config_groups import Group
from a2v_core.events import EventRule


class EventConfig(Group):
    """Frame probabilities -> events (docs/recipe.md §8)."""

    threshold: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="event threshold on the pooled frame probabilities, for every class without "
        "a tuned or explicit one (fine-tuning: what a class with too few validation events keeps)",
    )
    class_thresholds: dict[str, float] = Field(
        default_factory=dict, description="explicit per-class event thresholds (win over all)"
    )
    thresholds_from_model: bool = Field(
        True,
        description="use the per-class thresholds tuned on validation and saved in the checkpoint "
        "(explicit class_thresholds still win; --threshold turns this off)",
    )
    pool_s: float = Field(
        0.1, ge=0, description="moving-average window (unset at 1 kHz frames: 0.005)"
    )
    min_event_s: float = Field(
        0.05, ge=0, description="shortest event kept (unset at 1 kHz frames: 0.002)"
    )
    top_class_only: bool = Field(
        False, description="of time-overlapping events of one file keep only the highest-scoring"
    )
    tune_iou: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="fine-tuning: a validation event counts as found above this IoU when the "
        "per-class thresholds are tuned. 0 (any overlap) rewards one low-threshold event that "
        "spans a whole clip: the tiny demo tuned 'agg' to 0.05 and it covered the archive",
    )
    tune_min_events: int = Field(
        3,
        ge=1,
        description="fine-tuning: a class with fewer validation events than this keeps "
        "`threshold` instead of a tuned one (the tiny demo's validation split held one 'synch' "
        "call; missing it at IoU 0.5 tuned the class to 0.95 and silenced a class with frame "
        "AP 0.84)",
    )

    def at_frame_rate(self, frame_rate_hz: float) -> EventConfig:
        """This config for a model of ``frame_rate_hz``: ``pool_s`` and ``min_event_s``, where
        not set, take that frame rate's defaults (``EVENT_DEFAULTS_S``)."""
        defaults = EVENT_DEFAULTS_S[int(frame_rate_hz)]
        update = {
            key: value
            for key, value in zip(("pool_s", "min_event_s"), defaults, strict=True)
            if key not in self.model_fields_set
        }
        return self.model_copy(update=update)

    def rule(self, class_thresholds: dict[str, float] | None = None) -> EventRule:
        """The events these settings make (``a2v_core.events``), with ``class_thresholds``
        (e.g. a model's tuned ones) under this config's explicit ``class_thresholds``."""
        return EventRule(
            threshold=self.threshold,
            class_thresholds={**(class_thresholds or {}), **self.class_thresholds},
            pool_s=self.pool_s,
            min_event_s=self.min_event_s,
            top_class_only=self.top_class_only,
        )


#: (pool_s, min_event_s) per frame rate: 0.1 s and 0.05 s at 200 Hz (the original, for calls
#: of 30 ms and more); 5 ms and 2 ms at 1 kHz, for bat calls of 1-20 ms (20 frames of pooling
#: would average a 2 ms call down to a tenth of its probability, 10 frames drop it)
EVENT_DEFAULTS_S: dict[int, tuple[float, float]] = {200: (0.1, 0.05), 1000: (0.005, 0.002)}
