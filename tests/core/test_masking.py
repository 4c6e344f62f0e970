import numpy as np
import pytest

from a2v_core.masking import channel_mask, span_mask, student_keep_mask, time_mask


def test_recipe_masks_93_percent_with_equal_rows():
    rng = np.random.default_rng(0)
    fractions = []
    for _ in range(20):
        m = span_mask(12, 2000, 1.5, 2, rng)
        counts = m.sum(1)
        assert (counts == counts[0]).all()
        fractions.append(m.mean())
    assert abs(np.mean(fractions) - 0.93) < 0.01


def test_keep_mask_has_equal_kept_counts():
    keep = student_keep_mask(24, 2000, 1.5, 2, np.random.default_rng(1))
    kept = keep.sum(1)
    assert (kept == kept[0]).all() and 100 < kept[0] < 180


@pytest.mark.parametrize("prob,length,expected", [(0.825, 4, 0.59), (1.0, 3, 0.69), (1.1, 2, 0.79)])
def test_finetune_time_masks_hit_their_fractions(prob, length, expected):
    rng = np.random.default_rng(2)
    frac = np.mean([time_mask(8, 2000, prob, length, rng).float().mean().item() for _ in range(10)])
    assert abs(frac - expected) < 0.02


def test_channel_mask_fraction():
    rng = np.random.default_rng(3)
    frac = np.mean([channel_mask(8, 1024, 0.5, 64, rng).float().mean().item() for _ in range(50)])
    assert abs(frac - 0.41) < 0.03


def test_spans_have_the_configured_length():
    m = span_mask(1, 2000, 0.05, 10, np.random.default_rng(4), same_count=False)
    padded = np.concatenate([[0], m[0].astype(int), [0]])
    starts, ends = np.flatnonzero(np.diff(padded) == 1), np.flatnonzero(np.diff(padded) == -1)
    assert np.all((ends - starts) % 10 == 0) or np.all(ends - starts >= 10)
