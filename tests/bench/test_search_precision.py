"""bench/search_precision.py: what counts as a true hit, and the ranking it scores."""

import numpy as np
import pandas as pd

from bench import search_precision as sp


def test_a_window_is_a_true_hit_when_it_holds_enough_of_a_call():
    windows = pd.DataFrame(
        {"file": ["a.wav"] * 4 + ["b.wav"], "offset_s": [0.0, 1.0, 2.0, 3.0, 0.0]}
    ).assign(duration_s=1.0)
    calls = pd.DataFrame(
        {"file": ["a.wav", "a.wav"], "onset_s": [0.97, 2.5], "offset_s": [1.5, 2.52]}
    )
    # 0.03 s of the first call in window 0 is not enough; the 0.02 s call fits whole in window 2
    assert list(sp.true_windows(windows, calls, 0.05)) == [False, True, True, False, False]
    assert list(sp.true_windows(windows, calls, 1e-6)) == [True, True, True, False, False]


def test_ranking_leaves_out_windows_and_precision_counts_the_top():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.8, 0.2]], np.float32)
    keep = np.array([False, True, True, True])
    ranked = sp.ranked_ids(vectors, np.array([[1, 0]], np.float32), keep)
    assert list(ranked) == [1, 3, 2]
    truth = np.array([True, True, False, False])
    assert sp.precision_at(truth, ranked, 1) == 1.0 and sp.precision_at(truth, ranked, 2) == 0.5
