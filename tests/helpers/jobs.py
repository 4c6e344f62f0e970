"""Job configs the pipeline tests run."""

from __future__ import annotations

from a2v_core.config import LabelJob
from a2v_core.config_loader import load_config
from tests.conftest import ROOT

THRESHOLD = 0.025


def label_job(model: str, archive: str, out: str, *extra: str) -> LabelJob:
    return load_config(
        LabelJob,
        ROOT / "configs/label/default.yaml",
        [
            f"model={model}",
            f"data.archive={archive}",
            f"out={out}",
            "tracking.enabled=false",
            "cluster.cpus_per_worker=0.5",
            "formats=[parquet,raven,audacity,csv]",
            # one low threshold (the checkpoint's tuned ones are 0.2-0.7) keeps events certain
            f"events.threshold={THRESHOLD}",
            "events.thresholds_from_model=false",
            *extra,
        ],
    )
