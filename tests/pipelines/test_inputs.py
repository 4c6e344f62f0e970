"""Input checks before Ray starts: each user mistake ends as one ``error: ...`` line with exit
status 2 and loses nothing (``--overwrite`` deletes only after every check passed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from a2v_core import annotations as ann
from a2v_core.config import FinetuneJob
from a2v_core.config_loader import load_config
from a2v_core.errors import InputError
from pipelines.data import inputs
from pipelines.data.finetune_data import prepare
from tests.helpers.cli import checkpoint, cli, clis, one_error_line

ROOT = Path(__file__).resolve().parents[2]


def test_label_mistakes_end_in_one_line_before_ray(tmp_path, synth_archive):
    model = checkpoint(tmp_path / "ft", "finetune")
    pre = checkpoint(tmp_path / "pre", "pretrain")
    out = str(tmp_path / "labels")
    base = ["--archive", str(synth_archive), "--out", out]
    (tmp_path / "empty").mkdir()
    clis(
        (["label", *base], "--model is required"),
        (
            ["label", "--model", str(tmp_path / "nope"), *base],
            f"--model {tmp_path / 'nope'}: not a checkpoint",
        ),
        (
            ["label", "--model", pre, *base],
            f"--model {pre}: a pretraining checkpoint; this job needs a fine-tuned one",
        ),
        (
            ["label", "--model", model, "--archive", str(tmp_path / "typo"), "--out", out],
            f"--archive {tmp_path / 'typo'}: not found",
        ),
        (
            ["label", "--model", model, "--archive", str(tmp_path / "empty"), "--out", out],
            "no audio files (.wav, .flac",
        ),
        (["manifest", "--archive", str(tmp_path / "typo"), "--out", out], "not found"),
        (
            ["label", "--model", model, *base, "--classes", "cc,owl"],
            "--classes ['owl']: not classes of this model",
        ),
    )


def test_overwrite_with_a_typo_deletes_nothing(tmp_path):
    model = checkpoint(tmp_path / "ft", "finetune")
    out = tmp_path / "labels"
    kept = [out / "events/model_version=sha-1/part-00000.parquet", out / "raven/a.selections.txt"]
    for f in kept:
        f.parent.mkdir(parents=True)
        f.write_bytes(b"earlier outputs")
    res = cli(
        "label",
        *("--model", model, "--archive", str(tmp_path / "typo"), "--out", str(out)),
        "--overwrite",
    )
    one_error_line(res, "--archive")
    assert all(f.read_bytes() == b"earlier outputs" for f in kept)


def test_annotations_that_match_no_recording_stop_evaluation(tmp_path, synth_archive):
    model = checkpoint(tmp_path / "ft", "finetune")
    wrong = pd.read_csv(synth_archive / "annotations.csv")
    wrong["file"] = "site9/" + wrong["file"].str.replace("/", "_")
    wrong.to_csv(tmp_path / "wrong.csv", index=False)
    (tmp_path / "cols.csv").write_text("path,start,end,species\nrec.wav,1,2,cc\n")
    evaluate = ["evaluate", "--model", model, "--archive", str(synth_archive)]
    evaluate += ["--out", str(tmp_path / "ev")]
    res, _ = clis(
        ([*evaluate, "--annotations", str(tmp_path / "wrong.csv")], "recordings is in the archive"),
        (
            [*evaluate, "--annotations", str(tmp_path / "cols.csv")],
            f"--annotations {tmp_path / 'cols.csv'}: missing column(s)",
        ),
    )
    assert "site9/collar_000_rec_00000.wav" in res.stderr


def test_raven_and_audacity_annotations_match_the_csv(tmp_path, synth_archive, capsys):
    truth = ann.read_csv(synth_archive / "annotations.csv")
    files = [f for f, _ in inputs.archive_files(str(synth_archive), ["wav"])]
    raven, audacity = tmp_path / "raven", tmp_path / "audacity"
    for d in (raven, audacity):
        d.mkdir()
    for file, rows in truth.groupby("file"):
        name = file.rsplit("/", 1)[-1]
        (raven / f"{name}.selections.txt").write_text(
            ann.to_raven(rows, 8000)
        )  # Begin File: base name
        (audacity / f"{name}.txt").write_text(ann.to_audacity(rows))
    (raven / "README.md").write_text("not a table")
    key = ["file", "onset_s", "offset_s", "label"]
    want = truth[key].sort_values(key).reset_index(drop=True)
    for folder in (raven, audacity):
        got = inputs.match_annotations(
            inputs.read_annotations(str(folder)), files, str(folder), str(synth_archive)
        )
        got = got[key].sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-4)
    # a partial match keeps the matched rows and says how many were left out
    extra = pd.concat([truth, truth.head(3).assign(file="other/site.wav")])
    kept = inputs.match_annotations(extra, files, "a.csv", "arch")
    assert len(kept) == len(truth)
    assert "a.csv: 3 rows name 1 recordings not in arch" in capsys.readouterr().out

    # fine-tuning reads a Raven folder into the same clips and splits as the CSV
    def job(annotations):
        return load_config(
            FinetuneJob,
            ROOT / "configs/finetune/tiny.yaml",
            [f"data.archive={synth_archive}", f"data.annotations={annotations}"],
        )

    from_csv, from_raven = prepare(job(synth_archive / "annotations.csv")), prepare(job(raven))
    assert from_csv[1] == from_raven[1]
    assert list(from_csv[2]["split"]) == list(from_raven[2]["split"])


def test_a_corrupt_annotated_file_stops_finetuning_naming_it(tmp_path, synth_archive):
    archive = tmp_path / "archive"
    shutil.copytree(synth_archive, archive)
    (archive / "collar_000/rec_00003.wav").write_bytes(b"RIFF\x00\x00garbage")
    job = load_config(
        FinetuneJob,
        ROOT / "configs/finetune/tiny.yaml",
        [f"data.archive={archive}", f"data.annotations={archive}/annotations.csv"],
    )
    with pytest.raises(InputError, match="names collar_000/rec_00003.wav, which does not decode"):
        prepare(job)


def test_progress_lines_without_a_terminal():
    import io as _io

    from pipelines.inference.progress import ProgressLog

    now = [0.0]
    out = _io.StringIO()
    log = ProgressLog("label", 100, every_s=30, enabled=True, clock=lambda: now[0], out=out)
    log.update(0, 0.0, {})
    now[0] = 31.0
    log.update(10, 3600.0, {"truncated": 1, "not_audio": 0})
    now[0] = 40.0
    log.update(12, 4000.0, {})  # under 30 s since the last line: nothing
    now[0] = 62.0
    log.update(20, 7200.0, {})
    lines = out.getvalue().splitlines()
    assert lines == [
        "[label] 10/100 files, 1.00 audio h, 116x real time, errors: truncated 1, ETA 4m39s",
        "[label] 20/100 files, 2.00 audio h, 116x real time, errors: none, ETA 4m08s",
    ]


def test_a_reviewed_search_table_fine_tunes_on_its_spans_only(tmp_path, synth_archive):
    """A reviewed ``a2v search`` Raven table (hits kept as the class, rejected ones marked
    ``negative``): the negative label is no class, only clips holding a reviewed span are
    used, and a table of negatives alone or a class list naming the negative label stop."""
    truth = ann.read_csv(synth_archive / "annotations.csv")
    calls = truth[truth["label"] == "synch"].head(4)
    kept = calls.assign(offset_s=calls["onset_s"] + 1.0)  # 1 s windows, as search returns
    rejected = kept.assign(label="negative", onset_s=kept["onset_s"] + 3.0)
    rejected["offset_s"] = rejected["onset_s"] + 1.0
    table = pd.concat([kept, rejected], ignore_index=True)[["file", "onset_s", "offset_s", "label"]]
    raven = tmp_path / "hits.selections.txt"
    raven.write_text(ann.to_raven(table, 8000, combined=True))

    def job(annotations, *sets):
        return load_config(
            FinetuneJob,
            ROOT / "configs/finetune/tiny.yaml",
            [f"data.archive={synth_archive}", f"data.annotations={annotations}", *sets],
        )

    events, classes, clips, files = prepare(job(raven))
    assert classes == ["synch"] and (events["label"] == "negative").sum() == len(rejected)
    spans = {(f, o // 10 * 10) for f, o in zip(table["file"], table["onset_s"], strict=True)}
    spans |= {
        (f, (o - 1e-6) // 10 * 10) for f, o in zip(table["file"], table["offset_s"], strict=True)
    }
    assert set(zip(clips["path"], clips["offset_s"], strict=True)) <= spans
    assert len(clips) >= len(set(table["file"])) and set(clips["split"]) >= {"train"}
    # every clip of those files would have been used with exhaustive annotations
    exhaustive = prepare(job(raven, "data.negative_label=rejected"))
    assert len(exhaustive[2]) > len(clips) and "negative" in exhaustive[1]

    only_negatives = tmp_path / "neg.selections.txt"
    only_negatives.write_text(ann.to_raven(rejected, 8000, combined=True))
    with pytest.raises(InputError, match="every row is labelled 'negative'"):
        prepare(job(only_negatives))
    with pytest.raises(InputError, match="'negative' is data.negative_label"):
        prepare(job(raven, "data.classes=[synch,negative]"))


def test_a_pretrained_encoder_is_fine_tuned_at_its_own_rate(tmp_path):
    from pipelines.finetune import check_pretrained

    pre = checkpoint(tmp_path / "pre", "pretrain")  # an 8 kHz encoder
    job = load_config(
        FinetuneJob,
        ROOT / "configs/finetune/tiny.yaml",
        [f"pretrained={pre}", "model.sample_rate_hz=48000"],
    )
    with pytest.raises(InputError, match="pretrained at 8000 Hz .*--sample-rate-hz 8000"):
        check_pretrained(job)
    check_pretrained(load_config(FinetuneJob, None, [f"pretrained={pre}"]))


def test_training_and_embedding_mistakes_end_in_one_line_before_ray(tmp_path, synth_archive):
    """Each job's flags, each mistake: a wrong path, the wrong kind of checkpoint, an empty
    archive, annotations naming no recording of the archive, an unknown class."""
    ft = checkpoint(tmp_path / "ft", "finetune")
    pre = checkpoint(tmp_path / "pre", "pretrain")
    (tmp_path / "empty").mkdir()
    wrong = pd.read_csv(synth_archive / "annotations.csv").assign(file="other/x.wav")
    wrong.to_csv(tmp_path / "wrong.csv", index=False)
    runs = ["--storage-path", str(tmp_path / "runs")]
    tune = ["finetune", "--config", "configs/finetune/tiny.yaml", *runs]
    tune += [
        "--archive",
        str(synth_archive),
        "--annotations",
        str(synth_archive / "annotations.csv"),
    ]
    clis(
        ([*tune, "--pretrained", str(tmp_path / "nope")], "--pretrained "),
        ([*tune, "--pretrained", ft], "a fine-tuned checkpoint; this job needs a pretraining one"),
        (
            [*tune, "--archive", str(tmp_path / "empty")],
            f"--archive {tmp_path / 'empty'}: no audio files",
        ),
        ([*tune, "--annotations", str(tmp_path / "wrong.csv")], "recordings is in the archive"),
        ([*tune, "--set", "data.classes=[cc,owl]"], "data.classes"),
        (
            [
                "pretrain",
                "--config",
                "configs/pretrain/tiny.yaml",
                *runs,
                "--archive",
                str(tmp_path / "typo"),
            ],
            f"--archive {tmp_path / 'typo'}: not found",
        ),
        (
            ["embed", "--model", str(tmp_path / "nope"), "--archive", str(synth_archive)],
            f"--model {tmp_path / 'nope'}: not a checkpoint",
        ),
        (
            ["embed", "--model", pre, "--archive", str(tmp_path / "empty"), "--out", str(tmp_path)],
            "no audio files",
        ),
    )


def test_a_job_error_raised_inside_ray_is_unwrapped_to_the_users_message(ray_session, tmp_path):
    """A ``JobError`` raised in a Ray task, a Ray Data actor or a Ray Train worker reaches the
    driver wrapped (``RayTaskError``, ``WorkerGroupError``): ``job_error_in`` finds the user's
    message inside, so ``command`` prints it as the one ``error:`` line."""
    import numpy as np
    import ray
    import ray.data
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from a2v_core.errors import job_error_in

    message = "--archive x: an epoch of the archive gave no batch"

    @ray.remote
    def task():
        raise InputError(message)

    class Actor:
        def __call__(self, batch):
            raise InputError(message)

    def loop(config):
        raise InputError(message)

    failures = []
    try:
        ray.get(task.remote())
    except Exception as err:
        failures.append(err)
    try:
        ray.data.from_items([{"x": np.zeros(1)}]).map_batches(
            Actor, compute=ray.data.ActorPoolStrategy(size=1)
        ).take_all()
    except Exception as err:
        failures.append(err)
    try:
        TorchTrainer(
            loop,
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name="err", storage_path=str(tmp_path)),
        ).fit()
    except Exception as err:
        failures.append(err)
    assert len(failures) == 3
    for err in failures:
        found = job_error_in(err)
        assert isinstance(found, InputError) and str(found) == message, (type(err), err)
    assert job_error_in(RuntimeError("a bug")) is None


def season(out: Path, **kw) -> pd.DataFrame:
    """Two sites x one night of AudioMoth-named files (the same names in both sites), one Raven
    table per site whose Begin Paths are the labeller's Windows paths."""
    from a2v_core.config_tools import SynthJob
    from pipelines.synth import write_season

    cfg = SynthJob(out=str(out), layout="season", sites=2, nights=1, file_s=4.0, **kw)
    return write_season(cfg, 4)


def test_one_raven_table_per_site_places_every_annotation(tmp_path):
    truth = season(tmp_path / "season", sample_rate_hz=8000)
    files = [f for f, _ in inputs.archive_files(str(tmp_path / "season"), ["wav"])]
    assert len(files) == 4 and len({f.rsplit("/", 1)[-1] for f in files}) == 2  # names repeat
    got = inputs.match_annotations(
        inputs.read_annotations(str(tmp_path / "season/raven")), files, "raven", "season"
    )
    key = ["file", "onset_s", "offset_s", "label"]
    pd.testing.assert_frame_equal(
        got[key].sort_values(key).reset_index(drop=True),
        truth[key].sort_values(key).reset_index(drop=True),
        check_exact=False,
        atol=1e-4,
    )
    assert got.attrs["unmatched"] == {}
    # a table covering a site the archive does not hold: its rows are counted, not placed
    shutil.rmtree(tmp_path / "season/site2")
    files = [f for f, _ in inputs.archive_files(str(tmp_path / "season"), ["wav"])]
    got = inputs.match_annotations(
        inputs.read_annotations(str(tmp_path / "season/raven")), files, "raven", "season"
    )
    assert set(got["file"].str.split("/").str[0]) == {"site1"}
    n_site2 = int(truth["file"].str.startswith("site2/").sum())
    assert got.attrs["unmatched"]["site2.selections.txt"]["rows"] == n_site2


def test_names_that_fit_several_recordings_stop_finetuning_before_ray(tmp_path):
    truth = season(tmp_path / "season", sample_rate_hz=8000)
    base_only = truth.assign(file=truth["file"].str.rsplit("/", n=1).str[-1])
    base_only.to_csv(tmp_path / "base_names.csv", index=False)
    res = cli(
        "finetune",
        *("--archive", str(tmp_path / "season"), "--annotations", str(tmp_path / "base_names.csv")),
        *("--storage-path", str(tmp_path / "runs")),
    )
    one_error_line(res, "--annotations")
    line = res.stderr.strip()
    assert "fit several files of the archive" in line and "base_names.csv" in line
    assert "20240601_203000.WAV -> ['site1/20240601/20240601_203000.WAV'" in line
    assert "Begin Path" in line  # the fix
    assert not (tmp_path / "runs").exists()
