"""bench/probe.py at a toy budget: every stage runs, keeps the requested checkpoints and
probes features that carry the labels."""

import math

import numpy as np
import pandas as pd
import pytest

from a2v_core.config import ModelConfig
from bench import probe


@pytest.mark.slow
def test_probe_table_over_steps(s3_pretrained, tmp_path, capsys):
    """The probe of an existing run (the suite's 2-worker S3 pretraining): its config, its kept
    checkpoints, no pretraining of its own."""
    argv = ["--out", str(tmp_path), "--steps", "0,30", "--hours", "0.04", "--test-hours", "0.02"]
    argv += ["--probe-frames", "20000", "--pretrain-run", s3_pretrained["run_dir"]]
    table = probe.main(argv)
    assert list(table["features"]) == ["log-mel", "step 0", "step 30"]
    assert table["probe_macro_ap"].between(0, 1).all()
    assert table["real_ap"].between(0, 1).all()
    steps = table.dropna(subset=["step"])
    assert steps["heldout_loss"].map(math.isfinite).all() and (steps["target_std"] > 0).all()
    # random init and step 30 are two different encoders: the held-out loss tells them apart
    assert steps["heldout_loss"].iloc[1] < steps["heldout_loss"].iloc[0]
    out = capsys.readouterr().out
    assert "| log-mel" in out and "== pretrain" not in out
    assert pd.read_csv(tmp_path / "probe.csv").shape == table.shape
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SystemExit, match=r"no checkpoint at steps \[10\].*holds \[20, 30\]"):
        probe.main([*argv[:2], "--steps", "0,10", *argv[4:]])


def test_probe_pretrains_with_a_checkpoint_at_every_requested_step(tmp_path):
    args = probe.parse_args(["--steps", "0,200,800,2400", "--set", "optim.lr=0.001"])
    steps = [0, 200, 800, 2400]
    job = probe.pretrain_job(args, steps, str(tmp_path / "a"), str(tmp_path))
    assert job.optim.max_steps == 2400 and job.run.checkpoint_every_steps == 200
    assert job.run.keep_checkpoints == 13  # 200, 400, ..., 2400: none deleted before probing
    assert job.run.storage_path == str(tmp_path / "runs") and job.optim.lr == 0.001
    job = probe.pretrain_job(args, [0, 300, 500], str(tmp_path / "a"), str(tmp_path))
    assert job.run.checkpoint_every_steps == 100 and job.run.keep_checkpoints == 6


def test_probe_table_prints_steps_as_whole_numbers():
    table = pd.DataFrame(
        {"features": ["log-mel", "step 300"], "step": [None, 300], "probe_macro_ap": [0.6841, 0.12]}
    ).astype({"step": "Int64"})
    rows = probe.markdown(table).splitlines()[2:]
    assert [r.split("|")[2].strip() for r in rows] == ["", "300"]  # not nan / 300.000
    assert "0.684" in rows[0] and "0.120" in rows[1]


def test_logmel_probe_finds_a_tone():
    """A pure tone in half of the frames: a linear probe on log-mel separates it (AP ~ 1),
    and the frames that are zero padding never enter the features or the targets."""
    model = ModelConfig(preset="tiny")
    sr, hop = model.sample_rate_hz, model.hop_samples
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, (4, 10 * sr)).astype(np.float32)
    t = np.arange(10 * sr) / sr
    tone = np.sin(2 * np.pi * 1500 * t) * (t % 2 < 1)  # on in the first second of every two
    audio += tone.astype(np.float32)
    n = 10 * sr // hop
    y = ((np.arange(n) * hop / sr) % 2 < 1).astype(np.float32)[:, None]
    targets = [y, y, y, y[: n // 2]]  # the last chunk holds 5 s of audio
    clips = probe.Clips(audio, targets, ["tone"])
    x = probe.logmel_features(model, clips)
    assert x.shape == (3 * n + n // 2, 64)
    ap = probe.chunk_out_ap(x, clips, 20000, 0)
    assert ap > 0.95
    shuffled = probe.Clips(audio, [rng.permutation(t) for t in targets], ["tone"])
    assert probe.chunk_out_ap(x, shuffled, 20000, 0) < 0.8


@pytest.mark.slow
def test_probe_on_a_labelled_archive_fits_on_one_group_and_scores_the_other(tmp_path, capsys):
    """--archive: the probe's train and test parts are bench.archive_split's group split (the
    split the few-shot benchmark uses), not a synthetic archive."""
    from pipelines.synth import write_archive

    archive = tmp_path / "mine"
    write_archive(str(archive), 0.03, seed=5, file_s=10.0)  # 11 files collar_000/rec_000NN.wav
    table_path = archive / "annotations.csv"
    out = tmp_path / "probe"
    argv = ["--out", str(out), "--steps", "0", "--probe-frames", "5000", "--archive", str(archive)]
    table = probe.main(argv + ["--annotations", str(table_path), "--test-files", "rec_0000[0-2]"])
    test = sorted(p.name for p in (out / "test").rglob("*.wav"))
    train = sorted(p.name for p in (out / "train").rglob("*.wav"))
    assert test == ["rec_00000.wav", "rec_00001.wav", "rec_00002.wav"]
    assert len(train) >= 5 and not set(train) & set(test)
    assert list(table["features"]) == ["log-mel", "step 0"]
    assert table["probe_macro_ap"].between(0, 1).all()
    printed = capsys.readouterr().out
    assert f"{len(train)} / {len(test)} chunks" in printed and "test: 'rec_0000[0-2]'" in printed
