"""bench/fewshot.py's bookkeeping: the labelled calls a split holds and the paired table."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from a2v_core.errors import InputError
from bench import fewshot, fewshot_table


def test_labelled_calls_count_onsets_inside_train_clips_only():
    splits = pd.DataFrame(
        {
            "path": ["a.wav", "a.wav", "b.wav"],
            "offset_s": [0.0, 10.0, 0.0],
            "split": ["train", "valid", "train"],
        }
    )
    events = pd.DataFrame(
        {
            "file": ["a.wav", "a.wav", "a.wav", "b.wav", "c.wav"],
            "onset_s": [1.0, 9.9, 12.0, 10.0, 1.0],  # b.wav at 10.0 s is past its 10 s clip
            "offset_s": [1.5, 10.4, 12.5, 10.5, 1.5],
            "label": ["cc", "cc", "sn", "sn", "synch"],
        }
    )
    calls = fewshot_table.labelled_calls(splits, events, clip_s=10.0)
    assert calls.to_dict() == {"cc": 2, "sn": 0, "synch": 0}
    # a class the test part lacks (gy6or6's introductory notes "0") scores nothing: not counted
    assert fewshot_table.labelled_calls(splits, events, 10.0, {"cc", "sn"}).to_dict() == {
        "cc": 2,
        "sn": 0,
    }


def test_summary_pairs_each_budget_with_scratch_of_the_same_seed():
    rows = []
    aps = {0: [0.5, 0.6, 0.5], 500: [0.7, 0.6, 0.8], 1000: [0.9, 0.9, 0.9]}
    for budget, values in aps.items():
        for seed, ap in enumerate(values):
            rows.append(
                {
                    "pretrain_steps": budget,
                    "seed": seed,
                    "label_fraction": 0.1,
                    "init": "pretrained" if budget else "scratch",
                    "min_calls_per_class": 2 + seed,
                    "frame_macro_ap": ap,
                    "frame_micro_f1": ap,
                    "event_f1": ap,
                    "event_f1_iou50": ap,
                    "wall_s": 10.0,
                }
            )
    table = fewshot_table.summary(pd.DataFrame(rows)).set_index("pretrain_steps")
    assert list(table.index) == [500, 1000]
    row = table.loc[500]
    assert row["seeds"] == 3 and row["min_calls_per_class"] == 2 and row["wall_s"] == 30
    assert row["frame_macro_ap_pretrained"] == "0.700 +- 0.100"
    assert row["frame_macro_ap_scratch"] == "0.533 +- 0.058"
    assert row["frame_macro_ap_diff"] == "+0.167 +- 0.153"  # differences 0.2, 0.0, 0.3
    assert table.loc[1000, "event_f1_diff"] == "+0.367 +- 0.058"
    assert "frame_macro_ap_vs_full" not in table  # no scratch at 100 % labels: no such column

    # scratch at 100 % labels, from an earlier invocation: kept, and each pretrained cell is
    # paired with it too; a cell run again replaces its earlier row
    full = [
        {**rows[0], "label_fraction": 1.0, "seed": seed, "frame_macro_ap": ap}
        for seed, ap in enumerate([0.8, 0.85, 0.9])
    ]
    stale = {**rows[3], "frame_macro_ap": 0.1}  # budget 500, seed 0, run again below
    both = fewshot_table.merged(pd.DataFrame(full + [stale]), pd.DataFrame(rows))
    assert len(both) == len(rows) + 3
    assert (
        both.loc[(both["pretrain_steps"] == 500) & (both["seed"] == 0), "frame_macro_ap"].item()
        == 0.7
    )
    table = fewshot_table.summary(both).set_index("pretrain_steps")
    assert table.loc[1000, "frame_macro_ap_vs_full"] == "+0.050 +- 0.050"  # 0.1, 0.05, 0.0


def test_the_plan_always_holds_scratch_and_every_stated_cell():
    cells = fewshot.plan([1000, 500], [0.05, 0.1], [0, 1, 2])
    assert len(cells) == 3 * 2 * 3 and len(set(c.name for c in cells)) == len(cells)
    assert {c.budget for c in cells} == {0, 500, 1000}
    assert {(c.init, c.budget == 0) for c in cells} == {("scratch", True), ("pretrained", False)}
    assert fewshot.plan([0], [1.0], [7]) == [fewshot.Cell(0, 1.0, 7)]


def labelled_archive(root: Path) -> Path:
    """Six short recordings over two days and two sites, and a CSV naming them."""
    rows = []
    for day in ("d1", "d2"):
        for site in ("a", "b", "c"):
            rel = f"{site}/rec_{day}.wav"
            (root / site).mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, np.zeros(8000, np.float32), 8000)
            rows += [(rel, 0.1, 0.2, "cc"), (rel, 0.3, 0.4, "noise")]
    pd.DataFrame(rows, columns=["file", "onset_s", "offset_s", "label"]).to_csv(
        root / "labels.csv", index=False
    )
    return root


def test_the_group_split_never_puts_a_test_recording_in_training(tmp_path):
    from bench.archive_split import group_split

    archive = labelled_archive(tmp_path / "archive")
    out = str(tmp_path / "bench")
    train, test = group_split(str(archive), str(archive / "labels.csv"), "_d2", out, ("noise",))
    train_files = {p.relative_to(train).as_posix() for p in Path(train).rglob("*.wav")}
    test_files = {p.relative_to(test).as_posix() for p in Path(test).rglob("*.wav")}
    assert test_files == {"a/rec_d2.wav", "b/rec_d2.wav", "c/rec_d2.wav"}
    assert train_files == {"a/rec_d1.wav", "b/rec_d1.wav", "c/rec_d1.wav"}
    for part, files in ((train, train_files), (test, test_files)):
        table = pd.read_csv(Path(part) / "annotations.csv")
        assert set(table["file"]) == files and set(table["label"]) == {"cc"}  # noise dropped
    # the same split again reuses the copy; another one into the same --out is refused
    (Path(train) / "a/rec_d1.wav").write_bytes(b"kept")
    assert group_split(str(archive), str(archive / "labels.csv"), "_d2", out, ("noise",)) == (
        train,
        test,
    )
    assert (Path(train) / "a/rec_d1.wav").read_bytes() == b"kept"
    with pytest.raises(InputError, match="use another --out"):
        group_split(str(archive), str(archive / "labels.csv"), "^c/", out, ("noise",))
    with pytest.raises(InputError, match="matches 0 of the 6"):
        group_split(str(archive), str(archive / "labels.csv"), "_d9", str(tmp_path / "x"))


def test_finished_cells_are_not_run_again_and_seeds_move_the_split(tmp_path, monkeypatch):
    archive = labelled_archive(tmp_path / "archive")
    args = fewshot.parse(
        [
            "--out", str(tmp_path / "bench"),
            "--archive", str(archive),
            "--annotations", str(archive / "labels.csv"),
            "--test-files", "_d2",
            "--pretrain-steps", "500",
            "--seeds", "0,1",
        ]
    )  # fmt: skip
    out = str(tmp_path / "bench")
    train, test = fewshot.parts(args, out)
    bench = fewshot.Bench(args, out, train, test)
    jobs = {s: bench.finetune_job(fewshot.Cell(0, 0.1, s), None) for s in (0, 1)}
    assert jobs[0].data.split_seed != jobs[1].data.split_seed
    assert (jobs[0].run.seed, jobs[1].run.seed) == (0, 1)
    assert jobs[0].data.label_fraction == 0.1 and jobs[0].data.archive == train
    cell = fewshot.Cell(500, 0.1, 1, bench.recipe)
    assert bench.finetune_job(cell, "x/final").pretrained == "x/final"
    # a finished cell: its best model, its evaluation and its splits exist
    runs = Path(out) / "runs" / cell.name
    (runs / "best").mkdir(parents=True)
    (runs / "best" / "model.pt").write_bytes(b"weights")
    pd.DataFrame({"path": ["a/rec_d1.wav"], "offset_s": [0.0], "split": ["train"]}).to_csv(
        runs / "splits.csv", index=False
    )
    metrics = {"frame": {"macro_ap": 0.9, "micro_f1": 0.8}, "events": {"iou_0": {"f1": 0.7}}}
    (Path(out) / "eval" / cell.name).mkdir(parents=True)
    (Path(out) / "eval" / cell.name / "metrics.json").write_text(json.dumps(metrics))

    def ran(*_, **__):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr(fewshot.finetune, "run", ran)
    monkeypatch.setattr(fewshot.evaluate, "run", ran)
    monkeypatch.setattr(fewshot.pretrain, "run", ran)
    events = pd.read_csv(Path(train) / "annotations.csv")
    row = bench.scored(cell, events)
    assert row["frame_macro_ap"] == 0.9 and row["init"] == "pretrained"
    assert row["pretrain_set"] == "" and row["pretrain_recipe"] == bench.recipe
    # the same cell with another pretraining recipe is not the finished one: it pretrains
    args.pretrain_overrides = ["optim.lr=0.003"]
    other = fewshot.Cell(500, 0.1, 1, fewshot.Bench(args, out, train, test).recipe)
    with pytest.raises(AssertionError, match="ran again"):
        fewshot.Bench(args, out, train, test).scored(other, events)
    assert (
        row["pretrain_steps"] == 500
        and row["seed"] == 1
        and row["calls_per_class"] == {"cc": 1, "noise": 1}
    )


def test_another_pretraining_recipe_is_other_runs_and_rows_never_the_earlier_ones(tmp_path):
    archive = labelled_archive(tmp_path / "archive")
    out = str(tmp_path / "bench")
    given = ["--out", out, "--archive", str(archive), "--annotations", str(archive / "labels.csv")]
    given += ["--test-files", "_d2"]

    def bench(*more: str) -> fewshot.Bench:
        args = fewshot.parse(given + list(more))
        return fewshot.Bench(args, out, *fewshot.parts(args, out))

    plain, fast = bench(), bench("--pretrain-set", "ema.decay=0.995")
    same = bench("--pretrain-set", f"ema.decay={plain.pretrain_job(1, 0, 'x').ema.decay}")
    assert plain.recipe != fast.recipe and same.recipe == plain.recipe  # settings, not spelling
    assert plain.keys == fast.keys  # the fine-tuning and evaluation settings are the same
    run = plain.pretrain_job(2000, 0, "x").run  # a checkpoint at every quarter, for the probe
    assert (run.checkpoint_every_steps, run.keep_checkpoints) == (500, 5)
    assert bench("--set", "optim.lr=0.1").keys != plain.keys
    one = fewshot.plan([1000], [0.1], [0], plain.recipe)
    two = fewshot.plan([1000], [0.1], [0], fast.recipe)
    names = {c.init: c.name for c in one}, {c.init: c.name for c in two}
    assert names[0]["scratch"] == names[1]["scratch"] == "fewshot-scratch-0.1-s0"  # shared arm
    assert names[0]["pretrained"] != names[1]["pretrained"]
    assert fewshot.pretrain_name(500, 1, False, "a") != fewshot.pretrain_name(500, 1, False, "b")
    assert fewshot.recipe_of(["optim.lr=0.002", "ema.decay=0.99"]) == (
        "ema.decay=0.99 optim.lr=0.002"  # the order they were given in does not matter
    )
    assert "pw" not in fewshot.recipe_of(["data.archive=s3://me:pw@host/b"])

    # a table from before recipes were told apart merges as one unnamed recipe, and each recipe
    # is its own line of the summary, paired with the same scratch runs
    def row(budget, recipe, seed, ap):
        return {
            "pretrain_recipe": recipe and recipe[-4:],
            "pretrain_steps": budget,
            "label_fraction": 0.1,
            "seed": seed,
            "init": "pretrained" if budget else "scratch",
            "min_calls_per_class": 5,
            "frame_macro_ap": ap,
            "frame_micro_f1": ap,
            "event_f1": ap,
            "event_f1_iou50": ap,
            "wall_s": 1.0,
        } | ({"pretrain_set": recipe} if recipe is not None else {})

    def row_old(budget, seed, ap):  # a table from before recipes were told apart
        old = row(budget, None, seed, ap)
        del old["pretrain_recipe"]
        return old

    old = pd.DataFrame([row_old(0, s, 0.5) for s in (0, 1)] + [row_old(9, 0, 0.7)])
    new = pd.DataFrame([row(9, "ema.decay=0.99", s, 0.9) for s in (0, 1)])
    both = fewshot_table.merged(old, new)
    assert len(both) == 5 and set(both["pretrain_set"]) == {"", "ema.decay=0.99"}
    assert set(both["pretrain_recipe"]) == {"", "0.99"}
    again = fewshot_table.read_table(both.to_csv(index=False).encode())  # as fewshot.csv
    assert set(again["pretrain_recipe"]) == {"", "0.99"} and set(again["pretrain_set"]) == set(
        both["pretrain_set"]
    )  # a key of digits stays text, and no recipe stays "", not NaN
    table = fewshot_table.summary(both).set_index("pretrain_set")
    assert table.loc["", "frame_macro_ap_diff"] == "+0.200 +- 0.000"  # seed 0 only
    assert table.loc["ema.decay=0.99", "frame_macro_ap_diff"] == "+0.400 +- 0.000"
    assert table.loc["ema.decay=0.99", "seeds"] == 2


def test_an_out_folder_refuses_a_rerun_with_other_shared_settings(tmp_path):
    out = str(tmp_path / "bench")
    base = ["--out", out, "--finetune-steps", "50", "--set", "tracking.uri=http://u:pw@h:5000"]
    keys = {"finetune_config": "abc", "evaluate_config": "def"}
    fewshot.held_settings(fewshot.parse(base), out, keys)
    held = (tmp_path / "bench" / "bench.json").read_text()
    assert "pw" not in held and '"finetune_steps": 50' in held
    fewshot.held_settings(fewshot.parse(base + ["--pretrain-set", "optim.lr=0.002"]), out, keys)
    for other in (["--finetune-steps", "60"], ["--set", "model.sample_rate_hz=32000"]):
        with pytest.raises(InputError, match="other settings.*use another --out"):
            fewshot.held_settings(fewshot.parse(base + other), out, keys)
    with pytest.raises(InputError, match="hours"):
        fewshot.held_settings(fewshot.parse(base + ["--hours", "1"]), out, keys)
    with pytest.raises(InputError, match="finetune_config"):  # e.g. its YAML changed
        fewshot.held_settings(fewshot.parse(base), out, keys | {"finetune_config": "abd"})
    assert (tmp_path / "bench" / "bench.json").read_text() == held  # the record is kept
