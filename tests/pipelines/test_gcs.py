"""gs:// against a real GCS emulator (gcp-storage-emulator over HTTP, read through gcsfs and
pyarrow's GCS filesystem): storage calls and labelling an archive here; Ray Train checkpoints on
gs:// and resuming from them in test_training.py (the driver-restart test)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from pipelines import label
from pipelines.data import storage
from tests.helpers.jobs import label_job

ROOT = Path(__file__).resolve().parents[2]


def test_gs_storage_round_trip(gcs, tmp_path):
    base = f"gs://{gcs['bucket']}/roundtrip"
    storage.write_bytes(f"{base}/a/x.wav", b"one")
    storage.write_bytes(f"{base}/a/b/y.WAV", b"three")
    storage.write_bytes(f"{base}/a/notes.txt", b"-")
    assert storage.read_bytes(f"{base}/a/x.wav") == b"one"
    assert storage.list_files(f"{base}/a", ["wav"]) == [("b/y.WAV", 5), ("x.wav", 3)]
    # a rewrite gives a new version (the GCS generation): labelling's journal relabels it
    before = dict((r, v) for r, _, v in storage.list_versions(f"{base}/a", ["wav"]))
    time.sleep(0.01)
    storage.write_bytes(f"{base}/a/x.wav", b"one")
    after = dict((r, v) for r, _, v in storage.list_versions(f"{base}/a", ["wav"]))
    assert after["x.wav"] and after["x.wav"] != before["x.wav"]
    assert after["b/y.WAV"] == before["b/y.WAV"]
    # directories up and down; what Ray Train is given sees the same objects
    (tmp_path / "d/e").mkdir(parents=True)
    (tmp_path / "d/e/f.bin").write_bytes(b"f")
    storage.upload_dir(tmp_path / "d", f"{base}/up")
    with storage.fetched(f"{base}/up") as local:
        assert (Path(local) / "e/f.bin").read_bytes() == b"f"
    assert not Path(local).exists()
    path, fs = storage.train_storage(f"gs://{gcs['bucket']}/roundtrip/up")
    assert path == f"{gcs['bucket']}/roundtrip/up" and isinstance(fs, pafs.GcsFileSystem)
    assert fs.get_file_info(f"{path}/e/f.bin").size == 1
    assert storage.train_storage("gcs://b/p")[0] == "b/p"  # the other spelling
    storage.remove(base)
    assert not storage.exists(f"{base}/a/x.wav")
    with pytest.raises(FileNotFoundError, match="archive not found"):
        storage.list_files(f"{base}/a", ["wav"])


@pytest.mark.slow
def test_label_on_gs(gcs, finetuned, synth_archive, tmp_path):
    """An archive on gs:// is labelled with a gs:// model into gs://, with the same events as
    labelling a local copy. (Ray Train checkpoints on gs:// and resuming from them:
    tests/pipelines/test_training.py::test_driver_restart_continues_from_checkpoint_on_gs.)"""
    bucket = gcs["bucket"]
    archive = f"gs://{bucket}/archive"
    local = tmp_path / "archive"
    for i in range(3):  # 3 one-minute files keep it short
        rel = f"collar_000/rec_{i:05d}.wav"
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(synth_archive / rel, local / rel)
    storage.upload_dir(local, archive)

    model = f"gs://{bucket}/model"
    storage.upload_dir(finetuned, model)
    out = f"gs://{bucket}/labels"
    summary = label.run(label_job(model, archive, out))
    assert summary["files_processed"] == 3 and summary["errors_by_type"] == {}
    events = label.read_events(out, summary["run_id"])
    assert len(events) > 0 and set(events.archive) == {archive}
    assert storage.exists(f"{out}/raven/{summary['run_id']}.selections.txt")
    # the same model and files read from local disk give the same events
    ref_out = tmp_path / "ref"
    ref = label.run(label_job(str(finetuned), str(local), str(ref_out)))
    key = ["file", "onset_s", "label"]
    a, b = (
        t[[*key, "offset_s", "score"]].sort_values(key).reset_index(drop=True)
        for t in (events, label.read_events(str(ref_out), ref["run_id"]))
    )
    pd.testing.assert_frame_equal(a, b)
    # a resubmission labels nothing again
    again = label.run(label_job(model, archive, out))
    assert again["run_id"] == summary["run_id"] and again["files_processed"] == 0
