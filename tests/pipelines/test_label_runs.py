"""Run identity under one ``--out``: site after site whose file names repeat, a changed
threshold, a file changed in place, rec.wav beside rec.flac, unsafe object keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from a2v_core.errors import InputError
from pipelines import label
from pipelines.data import storage
from pipelines.inference.archive_pass import FileState
from pipelines.inference.label_outputs import safe_relpath
from pipelines.synth import write_archive
from tests.helpers.jobs import label_job

pytestmark = pytest.mark.slow


def test_sites_settings_and_changed_files_each_get_exactly_their_run(finetuned, tmp_path):
    s1, s2 = tmp_path / "site1", tmp_path / "site2"
    write_archive(str(s1), 30 / 3600, seed=1, file_s=10.0)  # 3 files: collar_000/rec_0000N.wav
    write_archive(str(s2), 30 / 3600, seed=2, file_s=10.0)  # the same names, other audio
    audio, sr = sf.read(s1 / "collar_000/rec_00000.wav")
    sf.write(s1 / "collar_000/rec_00000.flac", audio, sr)  # rec.wav and rec.flac side by side
    out = str(tmp_path / "labels")

    a = label.run(label_job(finetuned, str(s1), out))
    b = label.run(label_job(finetuned, str(s2), out))
    assert a["files_processed"] == 4 and b["files_processed"] == 3  # site 2 is not skipped
    assert a["run_id"] != b["run_id"] and b["other_runs_in_out"] == [a["run_id"]]
    events = label.read_events(out)
    assert set(events["archive"]) == {str(s1), str(s2)}
    per_run = events.groupby("run_id")["file"].nunique().to_dict()
    assert per_run == {a["run_id"]: 4, b["run_id"]: 3}
    for ext in ("wav", "flac"):
        assert storage.exists(
            f"{out}/raven/{a['run_id']}/collar_000/rec_00000.{ext}.selections.txt"
        )

    again = label.run(label_job(finetuned, str(s1), out))  # a resubmission resumes
    assert again["run_id"] == a["run_id"] and again["files_processed"] == 0

    before = label.read_events(out, a["run_id"])
    other = label.run(label_job(finetuned, str(s1), out, "events.threshold=0.05"))
    assert other["run_id"] not in (a["run_id"], b["run_id"]) and other["files_processed"] == 4
    pd.testing.assert_frame_equal(label.read_events(out, a["run_id"]), before)
    only = label.run(label_job(finetuned, str(s1), out, "classes=[cc,sn]"))  # --classes cc,sn
    assert only["run_id"] not in (a["run_id"], other["run_id"])
    assert set(label.read_events(out, only["run_id"])["label"]) == {"cc", "sn"} & set(
        before["label"]
    )

    # a recording rewritten in place (same size, new content) is labelled again, once
    noise = np.random.default_rng(0).normal(0, 0.05, len(audio)).astype("float32")
    sf.write(s1 / "collar_000/rec_00001.wav", noise, sr, subtype="PCM_16")
    changed = label.run(label_job(finetuned, str(s1), out))
    assert changed["files_processed"] == 1 and changed["files_changed_relabelled"] == 1
    after = label.read_events(out, a["run_id"])
    assert not after.duplicated(["file", "onset_s", "label"]).any()
    # reading the parts directly counts the relabelled file's old events too; the clean view
    # (rewritten when the run finishes) holds each file's newest events once, as read_events
    raw = pd.read_parquet(f"{out}/events/run={a['run_id']}")
    assert len(raw) > len(after)
    view = pd.read_parquet(f"{out}/parquet/{a['run_id']}.events.parquet")
    pd.testing.assert_frame_equal(view, after)
    unchanged = before[before["file"] != "collar_000/rec_00001.wav"].reset_index(drop=True)
    kept = after[after["file"] != "collar_000/rec_00001.wav"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, unchanged)
    assert set(label.journal(out, a["run_id"])[0]) == {
        "collar_000/rec_00000.wav",
        "collar_000/rec_00000.flac",
        "collar_000/rec_00001.wav",
        "collar_000/rec_00002.wav",
    }


def test_unsafe_object_keys_become_error_rows_and_write_nothing(finetuned, s3, synth_archive):
    archive = "s3://a2v-test/unsafe-archive"
    good = (synth_archive / "collar_000/rec_00000.wav").read_bytes()
    storage.write_bytes(f"{archive}/ok/rec.wav", good)
    s3["fs"].pipe("a2v-test/unsafe-archive/a/../../escaped.wav", good)  # a legal S3 key
    out = "s3://a2v-test/unsafe-labels"
    summary = label.run(label_job(finetuned, archive, out))
    errors = label.read_errors(out, summary["run_id"])
    assert list(zip(errors.file, errors.error_type, strict=True)) == [
        ("a/../../escaped.wav", "unsafe_path")
    ]
    written = [rel for rel, _ in storage.list_all("s3://a2v-test")]
    assert not any(rel.endswith("escaped.wav.selections.txt") for rel in written)
    assert summary["files_processed"] == 1


@pytest.mark.parametrize(
    "rel, safe",
    [
        ("a/b.wav", True),
        ("a/../../x.wav", False),
        ("/abs.wav", False),
        ("a//b.wav", False),
        ("./a.wav", False),
        ("..", False),
        ("", False),
        ("a\\..\\b.wav", False),
    ],
)
def test_safe_relpath(rel, safe):
    assert (safe_relpath(rel) is not None) == safe


def test_a_single_file_archive_writes_under_out_only(finetuned, tmp_path):
    """``--archive`` naming one recording: it is labelled as that file of its folder, and every
    output lands under ``--out``, none beside the recording."""
    site = tmp_path / "site"
    write_archive(str(site), 20 / 3600, seed=3, file_s=10.0)  # 2 files
    folder = site / "collar_000"
    before = set(folder.iterdir())
    one = folder / "rec_00001.wav"
    out = str(tmp_path / "labels")
    summary = label.run(label_job(finetuned, str(one), out))
    assert summary["files_total"] == 1 and summary["files_processed"] == 1
    assert set(folder.iterdir()) == before  # nothing written beside the recording
    events = label.read_events(out, summary["run_id"])
    assert set(events["file"]) == {"rec_00001.wav"} and set(events["archive"]) == {str(folder)}
    assert storage.exists(f"{out}/raven/{summary['run_id']}/rec_00001.wav.selections.txt")
    # the other file of the folder, labelled the same way, joins the same run
    other = label.run(label_job(finetuned, str(folder / "rec_00000.wav"), out))
    assert other["run_id"] == summary["run_id"] and other["files_processed"] == 1
    assert set(label.read_events(out, other["run_id"])["file"]) == {
        "rec_00000.wav",
        "rec_00001.wav",
    }
    with pytest.raises(InputError, match="no audio files"):
        label.run(label_job(finetuned, str(site / "collar_000/../annotations.csv"), out))


def test_concurrent_and_crashed_writers_lose_nothing(s3):
    """Two drivers writing one prefix at once (the same run resubmitted twice, and another run),
    interleaved part by part, plus a writer killed between its Parquet part and its commit
    marker: every committed file is read exactly once, nobody's part is deleted, and the
    half-written part stays invisible until (unless) its marker lands."""
    from pipelines.inference.label_outputs import OutputWriter, journal

    out = "s3://a2v-test/concurrent"
    job_a = label_job("unused", "s3://a2v-test/site-a", out)
    job_b = label_job("unused", "s3://a2v-test/site-b", out)
    run = [["", 1.0, 2.0, "cc", 0.9, 10]]

    def runs_of(file):
        return [[file, *r[1:]] for r in run]

    a1, a2 = OutputWriter(job_a, "v1", "run-a", 8000), OutputWriter(job_a, "v1", "run-a", 8000)
    b = OutputWriter(job_b, "v1", "run-b", 8000)
    for i in range(3):  # interleaved: a1, b, a2 commit in turns
        for w, name in ((a1, f"a1_{i}.wav"), (b, f"b_{i}.wav"), (a2, f"a2_{i}.wav")):
            w.add_file(name, (100, "etag"), FileState.with_runs(runs_of(name)))
            w.flush()
    both = OutputWriter(job_a, "v1", "run-a", 8000)  # both drivers label one file: no twin rows
    both.add_file("a1_0.wav", (100, "etag"), FileState.with_runs(runs_of("a1_0.wav")))
    both.flush()
    # a writer killed after its Parquet part, before its marker
    crashed = OutputWriter(job_a, "v1", "run-a", 8000)
    crashed.add_file("late.wav", (100, "etag"), FileState.with_runs(runs_of("late.wav")))
    marker_write = storage.write_bytes
    pending = {}

    def hold_marker(uri, data):
        if "/_progress/" in uri:
            pending[uri] = data
        else:
            marker_write(uri, data)

    storage.write_bytes = hold_marker
    try:
        crashed.flush()
    finally:
        storage.write_bytes = marker_write
    a = label.read_events(out, "run-a")
    assert sorted(a.file) == sorted(
        [f"a1_{i}.wav" for i in range(3)] + [f"a2_{i}.wav" for i in range(3)]
    )
    assert sorted(label.read_events(out, "run-b").file) == [f"b_{i}.wav" for i in range(3)]
    assert "late.wav" not in journal(out, "run-a")[0]
    # another writer committing meanwhile removes nothing: the late marker still commits
    extra = OutputWriter(job_a, "v1", "run-a", 8000)
    extra.add_file("z.wav", (100, "etag"), FileState.with_runs(runs_of("z.wav")))
    extra.flush()
    for uri, data in pending.items():
        storage.write_bytes(uri, data)
    files = sorted(label.read_events(out, "run-a").file)
    assert files == sorted([*a.file, "late.wav", "z.wav"]) and len(set(files)) == len(files)
    assert set(label.read_events(out).run_id) == {"run-a", "run-b"}


def test_raven_channel_is_the_channel_analysed(finetuned, synth_archive, tmp_path):
    """A stereo recording whose calls are on the second channel: `data.channel=loudest` labels
    channel 2 and says so (events `channel`, Raven `Channel`, both tables); `first` says 1."""
    import io

    from a2v_core import annotations as ann
    from pipelines.inference.label_outputs import channel_at

    audio, sr = sf.read(synth_archive / "collar_000/rec_00000.wav")
    quiet = np.random.default_rng(0).normal(0, 1e-3, len(audio))
    site = tmp_path / "stereo"
    site.mkdir()
    sf.write(site / "rec.wav", np.stack([quiet, audio], axis=1), sr, subtype="PCM_16")
    out = str(tmp_path / "labels")
    loud = label.run(label_job(finetuned, str(site), out, "data.channel=loudest"))
    first = label.run(label_job(finetuned, str(site), out))
    assert loud["run_id"] != first["run_id"]  # the channel choice is part of the fingerprint
    events = label.read_events(out, loud["run_id"])
    assert len(events) and set(events["channel"]) == {2}
    assert set(label.read_events(out, first["run_id"])["channel"]) == {1}
    for name in (f"{loud['run_id']}/rec.wav.selections.txt", f"{loud['run_id']}.selections.txt"):
        raw = pd.read_csv(io.BytesIO(storage.read_bytes(f"{out}/raven/{name}")), sep="\t")
        assert set(raw["Channel"]) == {2}, name
    assert len(ann.read_raven(io.BytesIO(storage.read_bytes(f"{out}/raven/{name}")))) == len(events)
    # an event is given the channel of the chunk it starts in
    assert channel_at(pd.Series([0.0, 9.99, 10.0, 35.0]), {0.0: 0, 10.0: 1, 20.0: 0}) == [
        1,
        1,
        2,
        1,
    ]
