import numpy as np
import pandas as pd

from a2v_core.events import EventRule, keep_top_class, merge_runs, moving_average, runs


def events_from_probs(p, classes, fr, **rule):
    return EventRule(**rule).events([("", 0.0, p)], classes, fr)


def test_runs_and_moving_average():
    assert runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    x = np.zeros((10, 1))
    x[4] = 1.0
    avg = moving_average(x, 4)
    assert avg[4, 0] == 0.25 and avg.sum() * 4 == 4.0


def test_event_straddling_a_chunk_boundary_is_one_event():
    fr = 200.0
    a, b = np.zeros((2000, 1)), np.zeros((2000, 1))
    a[1900:, 0] = 0.9  # last 0.5 s of chunk 0
    b[:100, 0] = 0.7  # first 0.5 s of chunk 1
    rule = EventRule()
    ev = merge_runs(
        pd.concat([rule.runs(a, ["x"], "f", 0.0, fr), rule.runs(b, ["x"], "f", 10.0, fr)])
    )
    assert len(ev) == 1
    assert abs(ev.onset_s[0] - 9.5) < 0.06 and abs(ev.offset_s[0] - 10.5) < 0.06
    whole = events_from_probs(np.concatenate([a, b]), ["x"], fr)
    assert len(whole) == 1 and abs(ev.score[0] - whole.score[0]) < 0.02


def test_short_events_are_dropped_and_threshold_applies():
    p = np.zeros((400, 2))
    p[100:104, 0] = 1.0  # 20 ms: too short after merging
    p[200:260, 1] = 0.5  # 300 ms at 0.5
    ev = events_from_probs(p, ["a", "b"], 200.0, pool_s=0.0)
    assert list(ev.label) == ["b"] and abs(ev.score[0] - 0.5) < 1e-9
    assert events_from_probs(p, ["a", "b"], 200.0, pool_s=0.0, class_thresholds={"b": 0.6}).empty


def test_top_class_only_keeps_the_best_of_overlaps():
    ev = pd.DataFrame(
        {
            "file": ["f"] * 3,
            "onset_s": [1.0, 1.2, 5.0],
            "offset_s": [2.0, 1.8, 6.0],
            "label": ["a", "b", "a"],
            "score": [0.4, 0.9, 0.3],
        }
    )
    kept = keep_top_class(ev)
    assert sorted(kept.label) == ["a", "b"] and 0.4 not in set(kept.score)
