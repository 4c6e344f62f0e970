"""bench/rates.py's bookkeeping: the gy6or6 day split and the paired table."""

import pandas as pd

from bench import rates


def test_gy6or6_split_holds_three_days_for_training_and_the_fourth_for_testing(tmp_path):
    train, test = rates.gy6or6_split(tmp_path)
    train_files = {p.name for p in train.glob("*.flac")}
    test_files = {p.name for p in test.glob("*.flac")}
    assert len(train_files) == 34 and len(test_files) == 10
    assert all(rates.TEST_DAY in f for f in test_files)
    assert not any(rates.TEST_DAY in f for f in train_files)
    for d, files in ((train, train_files), (test, test_files)):
        table = pd.read_csv(d / "annotations.csv")
        assert set(table["file"]) == files and not table["label"].isin(["-", "x"]).any()


def test_the_table_pairs_each_rate_with_the_first_by_seed():
    runs = pd.DataFrame(
        {
            "rate_hz": [8000, 8000, 32000, 32000],
            "seed": [1, 2, 1, 2],
            "frame_macro_ap": [0.7, 0.5, 0.8, 0.7],
            "event_f1": [0.6, 0.6, 0.6, 0.7],
        }
    )
    table = rates.quality_table(runs).set_index("rate_hz")
    assert table.loc[8000, "frame_macro_ap"] == "0.600 +- 0.141"
    assert table.loc[32000, "frame_macro_ap_vs_8000"] == "+0.150 +- 0.071"
    assert table.loc[32000, "event_f1_vs_8000"] == "+0.050 +- 0.071"
