"""The same events for the same model and archive: a committed checkpoint (tests/data/fixed/,
made by its make_fixture.py) labels a committed synthetic file and a shared real recording
(44.1 kHz, resampled), and must give exactly the committed events. A change to reading,
chunking, resampling, the model's forward pass, pooling, thresholds or event merging that
moves one event fails here; a deliberate one regenerates the fixture and says why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from a2v_core.config import LabelJob
from a2v_core.config_loader import load_config
from pipelines import label
from tests.conftest import ROOT, SHARED

FIXED = ROOT / "tests/data/fixed"
MODEL = FIXED / "model"
SPINETAIL = SHARED / "data/real/spinetail/spinetail.wav"
COLUMNS = ["file", "onset_s", "offset_s", "label", "score"]


def label_fixed(archive: Path, out: Path) -> tuple[dict, pd.DataFrame]:
    """``a2v label --model tests/data/fixed/model`` with the fixture's per-class thresholds."""
    thresholds = json.loads((FIXED / "thresholds.json").read_text())
    job = load_config(
        LabelJob,
        ROOT / "configs/label/default.yaml",
        [
            f"model={MODEL}",
            f"data.archive={archive}",
            f"out={out}",
            "tracking.enabled=false",
            "cluster.cpus_per_worker=0.5",
            "events.thresholds_from_model=false",  # those of thresholds.json, far from every frame
            f"events.class_thresholds={json.dumps(thresholds)}",
            "formats=[parquet]",
        ],
    )
    summary = label.run(job)
    events = label.read_events(str(out), summary["run_id"])[COLUMNS]
    return summary, events.sort_values(["file", "onset_s", "label"]).reset_index(drop=True)


def fixed_archive(dest: Path) -> Path:
    shutil.copytree(FIXED / "archive", dest)
    (dest / "spinetail").mkdir()
    shutil.copy(SPINETAIL, dest / "spinetail/spinetail.wav")
    return dest


@pytest.mark.slow
def test_a_fixed_checkpoint_labels_a_fixed_archive_into_the_same_events(ray_session, tmp_path):
    expected = pd.read_csv(FIXED / "events.csv")
    assert set(expected["file"]) == {"site_a/rec_00000.flac", "spinetail/spinetail.wav"}
    assert expected["label"].nunique() >= 3 and len(expected) >= 10  # a fixture worth checking
    summary, got = label_fixed(fixed_archive(tmp_path / "archive"), tmp_path / "out")
    assert summary["files_processed"] == 2 and summary["errors_by_type"] == {}
    keys = ["file", "onset_s", "offset_s", "label"]
    pd.testing.assert_frame_equal(got[keys], expected[keys], check_exact=False, atol=1e-9)
    assert (got["score"] - expected["score"]).abs().max() < 1e-4
    # every event says at which rate its recording was made (the model heard 8 kHz)
    full = label.read_events(str(tmp_path / "out"), summary["run_id"])
    rates = full.groupby("file")["source_rate_hz"].unique().map(list).to_dict()
    assert rates == {"site_a/rec_00000.flac": [8000], "spinetail/spinetail.wav": [44100]}
    assert set(summary["audio_hours_by_source_rate_hz"]) == {8000, 44100}
