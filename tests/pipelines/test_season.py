"""A field season end to end: site/night folders whose file names repeat in every site, start
times from the recorders' headers and names, tables per folder, the folder x night x class
counts, and short triggered files that cost their length, not a chunk."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from a2v_core import annotations as ann
from a2v_core.config import DataConfig
from a2v_core.config_tools import ManifestJob, SynthJob
from a2v_core.errors import InputError
from pipelines import label, manifest
from pipelines.data import inputs, storage
from pipelines.data.datasource import read_chunks
from pipelines.synth import write_season
from tests.helpers.jobs import label_job

pytestmark = pytest.mark.slow


def test_a_season_is_labelled_with_times_tables_per_folder_and_counts(finetuned, tmp_path_factory):
    root = tmp_path_factory.mktemp("season")
    cfg = SynthJob(out=str(root / "archive"), layout="season", sites=2, nights=2, file_s=6.0)
    cfg.sample_rate_hz = 8000  # the fixed model's rate
    write_season(cfg, 8)  # 2 files per site-night, named alike in both sites
    out = str(root / "labels")
    listing = str(root / "manifest.parquet")  # labelling takes the manifest: no listing again
    manifest.run(ManifestJob(archive=cfg.out, out=listing))
    with pytest.raises(InputError, match="lists .*season.*archive, not --archive"):
        inputs.listed_files(str(root), ["wav"], listing)
    summary = label.run(
        label_job(finetuned, cfg.out, out, "tables_per_folder_above=4", f"manifest={listing}")
    )  # 8 files: tables per folder
    run = summary["run_id"]
    assert summary["files_processed"] == 8 and summary["tables_per"] == "folder"
    recordings = label.read_parts(out, "recordings", run)
    assert len(recordings) == 8 and set(recordings["recorded_at_source"]) == {"header:audiomoth"}
    first = recordings.set_index("file").loc["site2/20240602/20240602_203000.WAV"]
    assert first["recorded_at"] == "2024-06-02T20:30:00+00:00"
    events = label.read_events(out, run)
    assert len(events) > 0
    starts = events["file"].str.rsplit("/", n=1).str[-1].str[:15]
    clock = pd.to_datetime(starts, format="%Y%m%d_%H%M%S")
    expected = clock + pd.to_timedelta(events["onset_s"], unit="s")
    assert (events["begin_time"] - expected).abs().max() < pd.Timedelta(milliseconds=1)
    # one Raven table per site-night folder, none per recording
    written = {rel for rel, _ in storage.list_all(f"{out}/raven/{run}")}
    assert written == {f"site{s}/2024060{n}.selections.txt" for s in (1, 2) for n in (1, 2)}
    table = ann.read_raven(
        io.BytesIO(storage.read_bytes(f"{out}/raven/{run}/site1/20240601.selections.txt"))
    )
    assert set(table["file"]) <= {
        "site1/20240601/20240601_203000.WAV",
        "site1/20240601/20240601_203011.WAV",
    }
    # folder x night x class: every class in every folder-night, counts adding up
    activity = pd.read_csv(f"{out}/summary/{run}.activity.csv")
    classes = summary["model_meta"]["classes"]
    assert len(activity) == 4 * len(classes)
    assert set(activity["night"]) == {"2024-06-01", "2024-06-02"}
    assert activity.groupby(["folder", "night"])["recordings"].first().eq(2).all()
    assert activity["events"].sum() == len(events)
    assert activity["audio_h"].groupby([activity["folder"], activity["night"]]).first().sum() == (
        pytest.approx(8 * 6 / 3600)
    )


def test_short_files_batched_together_give_the_events_of_each_file_alone(
    finetuned, tmp_path_factory
):
    import numpy as np
    import soundfile as sf

    from a2v_core.synth import synth_recording

    root = tmp_path_factory.mktemp("short")
    archive = root / "archive"
    lengths_s = [0.5, 0.75, 1.3, 3.0, 3.0, 7.7, 12.2]  # the last: a whole chunk and 2.2 s
    for i, length in enumerate(lengths_s):
        audio, _ = synth_recording(np.random.default_rng([7, i]), length, 8000, calls_per_s=3.0)
        (archive / f"site{i % 2}").mkdir(parents=True, exist_ok=True)
        sf.write(archive / f"site{i % 2}/SMU00001_20240601_2200{i:02d}.wav", audio, 8000)
    # each chunk is as long as its audio, rounded up to the 0.5 s bucket (not a 10 s clip)
    files = storage.list_files(str(archive), ["wav"])
    rows = read_chunks(DataConfig(archive=str(archive)), files, bucket_s=0.5).take_all()
    got = sorted(len(r["audio"]) / 8000 for r in rows)
    assert got == sorted([0.5, 1.0, 1.5, 3.0, 3.0, 8.0, 10.0, 2.5])
    mixed = label.run(label_job(finetuned, str(archive), str(root / "mixed")))
    together = label.read_events(str(root / "mixed"), mixed["run_id"])
    assert mixed["files_processed"] == len(lengths_s) and len(together) > 0
    key = ["file", "onset_s", "offset_s", "label"]
    # alone: the shortest, a 3 s one and the one whose last chunk is short (each a label run)
    alone_files = [f"site{i % 2}/SMU00001_20240601_2200{i:02d}.wav" for i in (0, 3, 6)]
    assert set(alone_files[1:]) <= set(together["file"])  # files with events among them
    for rel in alone_files:
        alone_run = label.run(label_job(finetuned, str(archive / rel), str(root / "alone")))
        alone = label.read_events(str(root / "alone"), alone_run["run_id"])
        alone = alone[alone["file"] == rel.rsplit("/", 1)[-1]].reset_index(drop=True)
        alone["file"] = rel  # an archive of one file: its name relative to its folder
        mine = together[together["file"] == rel].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone[key], mine[key], check_exact=False, atol=1e-9)
        assert np.allclose(alone["score"], mine["score"], atol=1e-5, rtol=0)
