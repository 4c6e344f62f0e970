"""bench/fewshot.py's bookkeeping: the labelled calls a split holds and the paired table."""

import pandas as pd

from bench import fewshot


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
    calls = fewshot.labelled_calls(splits, events, clip_s=10.0)
    assert calls.to_dict() == {"cc": 2, "sn": 0, "synch": 0}


def test_summary_pairs_the_arms_of_a_seed():
    rows = []
    for seed, (pre, scr) in enumerate([(0.7, 0.5), (0.6, 0.6), (0.8, 0.5)]):
        for init, ap in (("pretrained", pre), ("scratch", scr)):
            rows.append(
                {
                    "seed": seed,
                    "label_fraction": 0.1,
                    "init": init,
                    "min_calls_per_class": 2 + seed,
                    "frame_macro_ap": ap,
                    "frame_micro_f1": ap,
                    "event_f1": ap,
                }
            )
    row = fewshot.summary(pd.DataFrame(rows)).iloc[0]
    assert row["seeds"] == 3 and row["min_calls_per_class"] == 2
    assert row["frame_macro_ap_pretrained"] == "0.700 +- 0.100"
    assert row["frame_macro_ap_diff"] == "+0.167 +- 0.153"  # differences 0.2, 0.0, 0.3
