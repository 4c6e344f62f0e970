import io
import shutil

import numpy as np
import pytest
import ray
import soundfile as sf

from a2v_core.config import DataConfig
from pipelines.data import storage
from pipelines.data.datasource import error_rows, good_chunks, read_chunks
from pipelines.manifest import build_manifest, summarize
from tests.helpers.audio import bad_files


def rows_by_id(ds):
    return {r["chunk_id"]: r for r in ds.take_all()}


def test_local_and_s3_archives_give_identical_chunks(ray_session, s3, synth_archive):
    uri = "s3://a2v-test/ds-archive"
    storage.upload_dir(synth_archive, uri)
    local = rows_by_id(good_chunks(read_chunks(DataConfig(archive=str(synth_archive)))))
    remote = rows_by_id(good_chunks(read_chunks(DataConfig(archive=uri))))
    assert len(local) == 12 * 6 and local.keys() == remote.keys()
    for cid, row in local.items():
        assert row["path"] == remote[cid]["path"] and row["offset_s"] == remote[cid]["offset_s"]
        assert np.array_equal(row["audio"], remote[cid]["audio"])


@pytest.mark.parametrize("read_only", [False, True])
def test_blocks_reach_consumers_as_the_datasource_yields_them(
    ray_session, synth_archive, read_only
):
    """Ray Data would otherwise concatenate a read task's blocks up to its 128 MiB target: an
    extra copy of all audio, and read-worker memory far above ``chunks_per_block`` chunks."""
    ctx = ray.data.DataContext.get_current()
    before = (ctx.target_max_block_size, ctx.op_resource_reservation_enabled)
    cfg = DataConfig(archive=str(synth_archive), chunks_per_block=5, read_tasks=2)
    ds = read_chunks(cfg, read_only=read_only)
    assert (ctx.target_max_block_size, ctx.op_resource_reservation_enabled) == before
    assert ds.context.op_resource_reservation_enabled is (not read_only)
    sizes = sorted(len(b["chunk_id"]) for b in ds.iter_batches(batch_size=None))
    # 12 files x 6 chunks over 2 read tasks: 36 chunks each, 7 full blocks and 1 row left
    assert sizes == [1, 1] + [5] * 14


@pytest.fixture(scope="module")
def bad_archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    for name, (data, _) in bad_files().items():
        (d / name).write_bytes(data)
    for i in range(3):
        buf = io.BytesIO()
        sf.write(
            buf,
            np.random.default_rng(i).standard_normal(8000 * 15).astype(np.float32) * 0.1,
            8000,
            format="FLAC",
        )
        (d / f"good_{i}.flac").write_bytes(buf.getvalue())
    (d / "notes.xyz").write_bytes(b"unsupported")
    (d / "gone.wav").write_bytes(b"RIFF")
    return d


@pytest.mark.parametrize("where", ["local", "s3"])
def test_bad_files_become_typed_error_rows_and_good_files_still_stream(
    ray_session, s3, tmp_path, bad_archive, where
):
    from pipelines.data.datasource import AudioChunkDatasource

    archive = tmp_path / "bad"
    shutil.copytree(bad_archive, archive)
    uri = str(archive) if where == "local" else f"s3://{s3['bucket']}/bad-{tmp_path.name}"
    if where == "s3":
        storage.upload_dir(archive, uri)
    source = AudioChunkDatasource(DataConfig(archive=uri))
    # listed, then missing at read time (S3: the size comes from the listing, no HEAD)
    fs, root = storage.filesystem(uri)
    fs.rm(f"{root}/gone.wav")
    ds = ray.data.read_datasource(source)
    errors = {r["path"]: r["error_type"] for r in error_rows(ds).take_all()}
    expected = {name: t for name, (_, t) in bad_files().items()} | {"gone.wav": "unreadable"}
    assert errors == expected
    good = good_chunks(ds).take_all()
    assert sorted({r["path"] for r in good}) == ["good_0.flac", "good_1.flac", "good_2.flac"]
    assert len(good) == 6


def test_manifest_reports_every_file(ray_session, bad_archive, synth_archive, capsys):
    m = build_manifest(str(bad_archive), files_per_task=2, progress_every_s=0)
    # without a terminal (as under `ray job submit`): progress lines with counts and errors
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[manifest]")]
    assert lines and lines[-1].startswith(
        f"[manifest] {(m.error_type != 'unsupported_format').sum()}/"
    )
    counts = m.loc[m.error_type.isin(["not_audio", "empty_file"])].error_type.value_counts()
    assert f"not_audio {counts['not_audio']}" in lines[-1] and "ETA" in lines[-1]
    by_path = dict(zip(m.path, m.error_type, strict=True))
    assert by_path["notes.xyz"] == "unsupported_format"
    assert by_path["truncated.flac"] in (
        "truncated",
        "",
    )  # header-only probe may still read a FLAC header
    assert by_path["random.wav"] == "not_audio" and by_path["good_0.flac"] == ""
    s = summarize(build_manifest(str(synth_archive)))
    assert len(build_manifest(str(synth_archive), max_files=1)) == 1  # a2v manifest --dry-run
    assert s["ok_files"] == 12 and abs(s["audio_hours"] - 0.2) < 1e-6 and s["errors_by_type"] == {}
    assert s["checks"].startswith("header (add --verify")
    # --verify decodes every file: the manifest and labelling agree on every error type
    verified = build_manifest(str(bad_archive), verify=True)
    by_path = dict(zip(verified.path, verified.error_type, strict=True))
    assert {n: by_path[n] for n in bad_files()} == {n: t for n, (_, t) in bad_files().items()}
    assert all(by_path[f"good_{i}.flac"] == "" for i in range(3))
    assert summarize(verified, verify=True)["checks"] == "header+decode"


def test_manifest_reports_rates_recommends_a_preset_and_warns_on_upsampling(
    ray_session, tmp_path, capsys
):
    from pipelines.manifest import main

    for rate in (8000, 44100, 48000):
        sf.write(tmp_path / f"rec_{rate}.wav", np.zeros(rate * 5, np.float32), rate)
    main(["--archive", str(tmp_path), "--out", str(tmp_path / "manifest.parquet")])
    out = capsys.readouterr().out
    s = summarize(build_manifest(str(tmp_path)))
    assert s["rates"] == {
        str(r): {"files": 1, "hours": pytest.approx(5 / 3600)} for r in (8000, 44100, 48000)
    }
    assert s["recommended_sample_rate_hz"] == 48000
    assert "33 %" in s["warning"] and "(files at 8000 Hz)" in s["warning"]
    assert "--sample-rate-hz 48000" in out and s["warning"] in out
    for rate in (8000, 44100, 48000):
        assert f"{rate} Hz: 1 files" in out


def test_no_audio_files_is_a_loud_error(ray_session, tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no audio files"):
        read_chunks(DataConfig(archive=str(tmp_path)))


def test_a_non_finite_stretch_costs_its_chunk_only(tmp_path):
    """A 35 s file with inf at 12 s: chunk 10-20 s is an error row, the other three decode."""
    from pipelines.data.datasource import WorkUnit, read_unit

    x = np.random.default_rng(0).normal(0, 0.1, 35 * 8000).astype(np.float32)
    x[12 * 8000] = np.inf
    sf.write(tmp_path / "rec.wav", x, 8000, subtype="FLOAT")
    cfg = DataConfig(archive=str(tmp_path), sample_rate_hz=8000)
    fs, root = storage.filesystem(str(tmp_path))
    unit = WorkUnit("rec.wav", (tmp_path / "rec.wav").stat().st_size)
    rows = list(read_unit(cfg, fs, root, unit))
    assert [(r["offset_s"], r["error_type"], r["n_chunks"]) for r in rows] == [
        (0.0, "", 4),
        (10.0, "non_finite", 4),
        (20.0, "", 4),
        (30.0, "", 4),
    ]
    assert "10.00 s" in rows[1]["error_message"] and not rows[1]["audio"].any()
    assert rows[3]["duration_s"] == pytest.approx(5.0)


class _BrokenAfter:
    """A file whose reads fail with a connection reset once past ``limit`` bytes, as an S3
    stream does when the connection drops mid-object."""

    def __init__(self, path, limit: int) -> None:
        self.f, self.limit = open(path, "rb"), limit

    def read(self, n=-1):
        if self.f.tell() + max(n, 0) > self.limit:
            raise ConnectionResetError(104, "Connection reset by peer")
        return self.f.read(n)

    def readinto(self, buf):
        if self.f.tell() + len(buf) > self.limit:
            raise ConnectionResetError(104, "Connection reset by peer")
        return self.f.readinto(buf)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


class _FlakyFS:
    """The first ``fails`` opens give a stream that breaks 25 s into the audio."""

    protocol = "file"

    def __init__(self, fails: int) -> None:
        self.fails, self.opens = fails, 0

    def open(self, path, mode="rb", **kw):
        self.opens += 1
        if self.opens <= self.fails:
            return _BrokenAfter(path, 8000 * 4 * 25)  # float32 samples
        return open(path, "rb")


@pytest.mark.parametrize(
    "fails, retries, expected",
    [
        (0, 3, [(0.0, ""), (10.0, ""), (20.0, ""), (30.0, "")]),
        # two drops, retried from the chunk each stopped at: every chunk once, in order
        (2, 3, [(0.0, ""), (10.0, ""), (20.0, ""), (30.0, "")]),
        # still failing after the retries: the chunks read so far, then one retryable row
        (9, 2, [(0.0, ""), (10.0, ""), (0.0, "retryable")]),
    ],
)
def test_transient_read_errors_are_retried_then_retryable(tmp_path, fails, retries, expected):
    from pipelines.data.datasource import WorkUnit, read_unit

    x = np.random.default_rng(0).normal(0, 0.1, 35 * 8000).astype(np.float32)
    sf.write(tmp_path / "rec.wav", x, 8000, subtype="FLOAT")
    cfg = DataConfig(archive=str(tmp_path), sample_rate_hz=8000, read_retries=retries)
    fs, waits = _FlakyFS(fails), []
    unit = WorkUnit("rec.wav", (tmp_path / "rec.wav").stat().st_size)
    rows = list(read_unit(cfg, fs, str(tmp_path), unit, sleep=waits.append))
    assert [(r["offset_s"], r["error_type"]) for r in rows] == expected
    assert waits == [cfg.read_retry_backoff_s * 2**i for i in range(min(fails, retries))]
    if expected[-1][1] == "retryable":
        assert "ConnectionResetError" in rows[-1]["error_message"]
    else:  # the retried chunks equal an unbroken read
        clean = list(read_unit(cfg, _FlakyFS(0), str(tmp_path), unit))
        assert all(np.array_equal(a["audio"], b["audio"]) for a, b in zip(rows, clean, strict=True))


def test_a_truncated_file_is_not_retried(tmp_path):
    from pipelines.data.datasource import WorkUnit, read_unit

    data, expected = bad_files()["truncated.flac"]
    (tmp_path / "t.flac").write_bytes(data)
    cfg = DataConfig(archive=str(tmp_path), sample_rate_hz=8000)
    fs, root = storage.filesystem(str(tmp_path))
    waits = []
    rows = list(read_unit(cfg, fs, root, WorkUnit("t.flac", len(data)), sleep=waits.append))
    assert rows[-1]["error_type"] == expected == "truncated" and waits == []


def test_time_expansion_gives_true_rates_and_real_time_in_chunks_and_the_manifest(
    ray_session, tmp_path, capsys
):
    """``data.time_expansion`` for chunks and ``a2v manifest --time-expansion`` for the rates:
    a 10x file stated at 25 kHz is 250 kHz sound, 0.1 s of real time per file second."""
    from pipelines.manifest import main

    archive = tmp_path / "te"
    archive.mkdir()
    sf.write(archive / "bat.wav", np.zeros(25_000 * 30, np.float32), 25_000)  # 3 s real time
    rows = good_chunks(
        read_chunks(
            DataConfig(archive=str(archive), sample_rate_hz=250_000, clip_s=1.0, time_expansion=10)
        )
    ).take_all()
    assert sorted(r["offset_s"] for r in rows) == [0.0, 1.0, 2.0]
    assert {r["source_rate_hz"] for r in rows} == {250_000}
    s = summarize(build_manifest(str(archive), time_expansion=10))
    assert s["rates"] == {"250000": {"files": 1, "hours": pytest.approx(3 / 3600)}}
    assert s["recommended_sample_rate_hz"] == 250_000
    main(
        ["--archive", str(archive), "--out", str(tmp_path / "m.parquet"), "--time-expansion", "10"]
    )
    assert "250000 Hz: 1 files" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "--archive",
                str(archive),
                "--out",
                str(tmp_path / "m.parquet"),
                "--time-expansion",
                "0",
            ]
        )
    assert exit_.value.code == 2


def test_time_expansion_keys_label_and_embed_runs():
    """A rerun with another factor changes every time written: it is another run."""
    from a2v_core.config import EmbedJob, LabelJob
    from pipelines.embed import fingerprint as embed_fingerprint
    from pipelines.inference.label_outputs import fingerprint

    plain, expanded = LabelJob(), LabelJob(data=DataConfig(time_expansion=10))
    assert fingerprint(plain, "v", {}) != fingerprint(expanded, "v", {})
    assert "time_expansion" not in fingerprint(plain, "v", {})  # old run ids are kept
    assert embed_fingerprint(EmbedJob(), "v") != embed_fingerprint(
        EmbedJob(data=DataConfig(time_expansion=10)), "v"
    )


def test_a_read_task_takes_at_most_256_files():
    from pipelines.data.datasource import UNITS_PER_TASK, read_task_count

    assert read_task_count(12, 2) == 8  # 4 per CPU while files are few
    assert read_task_count(5, 16) == 5  # never more tasks than files
    assert read_task_count(100_000, 2) * UNITS_PER_TASK >= 100_000  # a season: 391 tasks
    assert read_task_count(100_000, 2) == 391
