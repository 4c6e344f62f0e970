import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from a2v_core.events import EventRule
from a2v_core.metrics import event_metrics, frame_metrics, overlap_event_metrics

RULE = EventRule(threshold=0.15, pool_s=0.0)  # the tests' flat curves, unpooled


def ev(rows):
    return pd.DataFrame(rows, columns=["file", "onset_s", "offset_s", "label", "score"])


def truth(rows):
    return pd.DataFrame(rows, columns=["file", "onset_s", "offset_s", "label"])


def test_frame_ap_equals_sklearn_and_f1_by_hand():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 3)) > 0.8).astype(float)
    p = np.clip(y * 0.5 + rng.random((500, 3)) * 0.6, 0, 1)
    m = frame_metrics(y, p, ["a", "b", "c"], 0.175)
    assert m["macro_ap"] == pytest.approx(average_precision_score(y, p, average="macro"))
    pred = p >= 0.175
    tp, fp, fn = (pred & (y == 1)).sum(), (pred & (y == 0)).sum(), (~pred & (y == 1)).sum()
    assert m["micro_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_perfect_and_empty_predictions():
    t = truth([("f", 1.0, 2.0, "a"), ("f", 3.0, 4.0, "b")])
    perfect = event_metrics(
        ev([("f", 1.0, 2.0, "a", 0.9), ("f", 3.0, 4.0, "b", 0.8)]), t, ["a", "b"]
    )
    assert perfect["f1"] == 1.0 and perfect["precision"] == 1.0
    empty = event_metrics(ev([]), t, ["a", "b"])
    assert empty["f1"] == 0.0 and empty["recall"] == 0.0


def test_one_miss_one_split_and_overlapping_classes():
    t = truth([("f", 1.0, 2.0, "a"), ("f", 5.0, 6.0, "a"), ("f", 1.5, 2.5, "b")])
    pred = ev(
        [
            ("f", 1.0, 1.4, "a", 0.9),
            ("f", 1.6, 2.0, "a", 0.8),  # a split: 1 TP + 1 FP
            ("f", 1.5, 2.5, "b", 0.7),
        ]
    )  # overlapping class b: its own TP; a's 5-6 s is missed
    m = event_metrics(pred, t, ["a", "b"], iou_threshold=0.0)
    a = m["per_class"]["a"]
    assert (a["tp"], a["n_pred"], a["n_true"]) == (1, 2, 2)
    assert a["precision"] == 0.5 and a["recall"] == 0.5
    assert m["per_class"]["b"]["f1"] == 1.0
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)


def test_iou_threshold_half():
    t = truth([("f", 0.0, 1.0, "a")])
    pred = ev([("f", 0.6, 1.0, "a", 0.9)])  # IoU 0.4
    assert event_metrics(pred, t, ["a"], 0.0)["f1"] == 1.0
    assert event_metrics(pred, t, ["a"], 0.5)["f1"] == 0.0


def test_event_ap_counts_missed_events_and_needs_predictions():
    from a2v_core.metrics import match_class, ranked_ap

    truth = pd.DataFrame(
        {"file": ["a"] * 3, "onset_s": [0.0, 2.0, 4.0], "offset_s": [1.0, 3.0, 5.0], "label": "x"}
    )
    none = pd.DataFrame(columns=["file", "onset_s", "offset_s", "label", "score"])
    assert match_class(none, truth)["ap"] == 0.0
    # ranks: hit (P=1), miss, hit (P=2/3); the third event is never found -> (1 + 2/3) / 3
    pred = pd.DataFrame(
        {
            "file": ["a"] * 3,
            "onset_s": [0.1, 8.0, 2.2],
            "offset_s": [0.9, 9.0, 2.8],
            "label": "x",
            "score": [0.9, 0.8, 0.7],
        }
    )
    m = match_class(pred, truth)
    assert m["tp"] == 2 and m["ap"] == pytest.approx((1 + 2 / 3) / 3)
    # sklearn agrees when every ground-truth item is retrieved
    hits = np.array([True, False, True])
    assert ranked_ap(hits, 2) == pytest.approx(average_precision_score(hits, [3, 2, 1]))


def test_event_thresholds_pick_the_best_f1_and_the_higher_of_ties():
    from a2v_core.metrics import tune_thresholds

    fr = 200.0
    p = np.full((2000, 2), 0.02)
    p[400:460, 0] = 0.6  # the true call (2.0-2.3 s)
    p[1000:1040, 0] = 0.3  # a louder noise bump: a false positive below 0.3
    clips = [("a.wav", 10.0, p, None)]
    truth = pd.DataFrame({"file": ["a.wav"], "onset_s": [12.0], "offset_s": [12.3], "label": ["x"]})
    thr = tune_thresholds(clips, truth, ["x", "y"], fr, RULE)
    assert thr == {"x": 0.55, "y": 0.15}  # F1 = 1 for 0.3..0.55; class y has no truth


def test_event_thresholds_at_iou_half_refuse_one_event_spanning_the_clip():
    """A class the model only knows as 'slightly up everywhere': any-overlap matching tunes its
    threshold down until one event covers the clip and 'finds' the call with no false positive
    (F1 1); at IoU 0.5 that event is a miss, so the tuned threshold keeps the short, right event
    (plus the noise bump: F1 2/3)."""
    from a2v_core.metrics import tune_thresholds

    fr = 200.0
    p = np.full((2000, 1), 0.07)  # above 0.05 everywhere: one 10 s event at threshold 0.05
    p[400:460, 0] = 0.12  # the call (2.0-2.3 s), weakly
    p[1000:1040, 0] = 0.2  # a louder noise bump
    clips = [("a.wav", 10.0, p, None)]
    truth = pd.DataFrame({"file": ["a.wav"], "onset_s": [12.0], "offset_s": [12.3], "label": ["x"]})
    assert tune_thresholds(clips, truth, ["x"], fr, RULE) == {"x": 0.05}
    assert tune_thresholds(clips, truth, ["x"], fr, RULE, iou_threshold=0.5) == {"x": 0.1}


def test_event_thresholds_keep_the_default_below_min_events():
    """One validation call that the model misses would tune its class to the top of the grid
    (silence); below ``min_events`` the class keeps the default instead."""
    from a2v_core.metrics import tune_thresholds

    fr = 200.0
    p = np.full((2000, 1), 0.02)
    p[1000:1040, 0] = 0.5  # a detection, but not where the one true call is
    clips = [("a.wav", 0.0, p, None)]
    truth = pd.DataFrame({"file": ["a.wav"], "onset_s": [2.0], "offset_s": [2.3], "label": ["x"]})
    assert tune_thresholds(clips, truth, ["x"], fr, RULE) == {"x": 0.95}
    assert tune_thresholds(clips, truth, ["x"], fr, RULE, min_events=3) == {"x": 0.15}
    three = pd.concat([truth] * 3).assign(onset_s=[2.0, 7.0, 8.0], offset_s=[2.3, 7.3, 8.3])
    assert tune_thresholds(clips, three, ["x"], fr, RULE, min_events=3) == {"x": 0.95}


def test_overlap_metric_does_not_penalise_splits_like_the_paper():
    t = truth([("f", 1.0, 2.0, "a"), ("f", 5.0, 6.0, "a"), ("g", 1.0, 2.0, "a")])
    pred = ev(
        [
            ("f", 1.0, 1.4, "a", 0.9),
            ("f", 1.6, 2.0, "a", 0.8),  # the same call, split: both predictions are right
            ("f", 8.0, 9.0, "a", 0.7),  # on no call
            ("g", 5.0, 6.0, "a", 0.6),  # other file: times of f's call do not count
        ]
    )
    m = overlap_event_metrics(pred, t, ["a"])
    c = m["per_class"]["a"]
    assert (c["pred_on_a_call"], c["n_pred"], c["calls_found"], c["n_true"]) == (2, 4, 1, 3)
    assert m["precision"] == 0.5 and m["recall"] == pytest.approx(1 / 3)
    strict = event_metrics(pred, t, ["a"])
    assert strict["per_class"]["a"]["tp"] == 1  # one-to-one: the split's second half is an FP
    # touching is not overlapping
    assert overlap_event_metrics(ev([("f", 2.0, 3.0, "a", 0.5)]), t, ["a"])["precision"] == 0.0


def test_tuning_scores_a_call_split_by_a_chunk_border_as_one_event():
    """A 60 ms call, 30 ms on each side of a chunk border: labelling merges the two runs and
    keeps the event (>= min_event_s 50 ms), so the best threshold is the highest that finds all
    three calls (0.45). Tuning once dropped each 30 ms half before merging: it never found the
    split call, and tuned the class to 0.75, a threshold at which labelling misses it."""
    from a2v_core.metrics import tune_thresholds

    fr = 200.0
    a, b = np.full((2000, 1), 0.02), np.full((2000, 1), 0.02)
    a[-6:, 0] = b[:6, 0] = 0.5
    a[500:540, 0] = b[900:940, 0] = 0.8  # two louder calls: three validation events
    clips = [("a.wav", 0.0, a, None), ("a.wav", 10.0, b, None)]
    truth = pd.DataFrame(
        {
            "file": ["a.wav"] * 3,
            "onset_s": [2.5, 9.97, 14.5],
            "offset_s": [2.7, 10.03, 14.7],
            "label": ["x"] * 3,
        }
    )
    assert tune_thresholds(clips, truth, ["x"], fr, RULE, iou_threshold=0.5, min_events=3) == {
        "x": 0.45
    }
