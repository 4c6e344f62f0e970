"""Archive labelling with a tiny fine-tuned checkpoint: S3 in and out, bad files, resume."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from a2v_core import annotations as ann
from a2v_core.checkpoint import load_classifier
from pipelines import label
from pipelines.data import storage
from tests.helpers.audio import bad_files
from tests.helpers.jobs import THRESHOLD, label_job

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_label_s3_archive_with_bad_files(finetuned, s3, synth_archive, capsys):
    archive = "s3://a2v-test/label-archive"
    storage.upload_dir(synth_archive, archive)
    for name, (data, _) in bad_files().items():
        storage.write_bytes(f"{archive}/bad/{name}", data)
    out = "s3://a2v-test/labels"
    summary = label.run(label_job(finetuned, archive, out, "embeddings=true"))
    errors = label.read_errors(out, summary["run_id"])
    assert dict(zip(errors.file, errors.error_type, strict=True)) == {
        f"bad/{n}": t for n, (_, t) in bad_files().items()
    }
    assert summary["files_processed"] == 12 + len(bad_files()) and summary[
        "audio_hours"
    ] == pytest.approx(0.2)
    run = summary["run_id"]
    events = label.read_events(out, run)
    assert len(events) > 0 and list(events.columns) == label.EVENT_COLUMNS  # the contract
    # the closing line counts what was written (it said "0 events" whatever was written)
    assert summary["events_written"] == len(events)
    closing = f"[label] {summary['files_processed']} files, {summary['chunks_processed']} chunks, "
    closing += f"{len(events)} events, "
    assert closing in capsys.readouterr().out
    # --embeddings: one mean embedding (model width) per decoded chunk, none for bad files
    emb = label.read_parts(out, "embeddings", run)
    width = load_classifier(storage.local_copy(finetuned))[0].model_cfg.width
    assert len(emb) == 12 * 6 and set(map(len, emb["embedding"])) == {width}
    assert np.isfinite(np.stack(emb["embedding"])).all()
    assert emb.groupby("file").size().eq(6).all()
    labelled = {f for f in events.file}
    assert labelled <= {f"collar_000/rec_{i:05d}.wav" for i in range(12)}
    # Raven tables read back with the annotation reader equal the Parquet events
    assert set(events["archive"]) == {archive} and set(events["run_id"]) == {run}
    for file, group in events.groupby("file"):
        raven = ann.read_raven(
            io.BytesIO(storage.read_bytes(f"{out}/raven/{run}/{file}.selections.txt"))
        )
        g = group.sort_values(["onset_s", "label"]).reset_index(drop=True)
        assert list(raven.label) == list(g.label)
        assert np.allclose(raven.onset_s, g.onset_s, atol=1e-4) and np.allclose(
            raven.offset_s, g.offset_s, atol=1e-4
        )
        assert set(raven.file) == {Path(file).name}
    # the combined table over the archive: Begin Path = relative path, times per file
    combined = ann.read_raven(io.BytesIO(storage.read_bytes(f"{out}/raven/{run}.selections.txt")))
    key = ["file", "onset_s", "label"]
    c, e = (t.sort_values(key).reset_index(drop=True) for t in (combined, events))
    assert list(c.file) == list(e.file) and list(c.label) == list(e.label)
    assert np.allclose(c.onset_s, e.onset_s, atol=1e-4)
    run_json = storage.read_bytes(f"{out}/run.json")
    assert (
        b"x_real_time" in run_json
        and b"errors_by_type" in run_json
        and b"secret" not in run_json.lower()
    )
    assert storage.exists(f"{out}/csv/{run}.events.csv") and storage.exists(f"{out}/audacity/{run}")


def test_interrupted_labelling_resumes_without_duplicates(
    finetuned, synth_archive, tmp_path, ray_env
):
    full = tmp_path / "full"
    reference = label.run(label_job(finetuned, str(synth_archive), str(full)))
    ref_events = label.read_events(str(full)).drop(columns=["run_id"])
    out = tmp_path / "resumed"
    args = [
        "--model",
        finetuned,
        "--archive",
        str(synth_archive),
        "--out",
        str(out),
        "--set",
        "tracking.enabled=false",
        "--set",
        "flush_every_files=1",
        "--set",
        "flush_every_s=0",
        "--set",
        "cluster.cpus_per_worker=0.5",
        "--set",
        f"events.threshold={THRESHOLD}",
        "--set",
        "events.thresholds_from_model=false",
        "--formats",
        "parquet,raven,audacity,csv",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.label", *args],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ray_env,
    )
    progress = out / "_progress" / reference["run_id"]
    deadline = time.time() + 180
    while time.time() < deadline and len(list(progress.glob("*.json"))) < 4:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    done_before = len(list(progress.glob("*.json")))
    assert 0 < done_before < 12, "kill did not land mid-run"
    resumed = label.run(label_job(finetuned, str(synth_archive), str(out)))
    assert (
        resumed["files_skipped_done"] >= done_before
        and resumed["files_processed"] <= 12 - done_before
    )
    events = label.read_events(str(out)).drop(columns=["run_id"])
    assert not events.duplicated(["file", "onset_s", "label"]).any()
    pd.testing.assert_frame_equal(
        events.reset_index(drop=True),
        ref_events.reset_index(drop=True),
        atol=1e-6,
        check_dtype=False,
    )


def test_dry_run_labels_one_file(finetuned, synth_archive, tmp_path):
    summary = label.run(
        label_job(finetuned, str(synth_archive), str(tmp_path / "dry"), "run.dry_run=true")
    )
    assert summary["files_processed"] == 1 and summary["wall_s"] > 0


def test_label_and_embed_use_a_gpu_when_the_cluster_has_one_unless_told_not_to():
    """No flag: one GPU per model actor on a cluster with a GPU, CPU without; a number set
    (the flag, a config) is kept, 0 included; the shipped CPU recipes leave it unset."""
    from a2v_core.config import EmbedJob, LabelJob
    from a2v_core.config_loader import load_config
    from pipelines.inference.archive_pass import actor_gpus

    assert actor_gpus(LabelJob(), {"CPU": 16.0, "GPU": 4.0}) == 1.0
    assert actor_gpus(LabelJob(), {"CPU": 16.0}) == 0.0
    assert actor_gpus(LabelJob(), {"CPU": 16.0, "GPU": 0.5}) == 0.0  # no whole GPU to give
    told = LabelJob.model_validate({"cluster": {"gpus_per_actor": 0}})
    assert actor_gpus(told, {"GPU": 4.0}) == 0.0 and told.cluster.gpus_per_actor == 0.0
    half = EmbedJob.model_validate({"cluster": {"gpus_per_actor": 0.5}})
    assert actor_gpus(half, {"GPU": 1.0}) == 0.5
    for job, path in ((LabelJob, "label/default.yaml"), (EmbedJob, "embed/default.yaml")):
        assert load_config(job, ROOT / "configs" / path).cluster.gpus_per_actor is None
    assert load_config(LabelJob, ROOT / "configs/label/gpu.yaml").cluster.gpus_per_actor == 1
