import numpy as np

from a2v_core.synth import CALL_CLASSES, CLASSES, synth_archive, synth_recording


def test_deterministic_per_seed_and_sparse():
    a1, t1 = synth_recording(np.random.default_rng(3), 60.0)
    a2, t2 = synth_recording(np.random.default_rng(3), 60.0)
    assert np.array_equal(a1, a2) and t1.equals(t2)
    assert a1.dtype == np.float32 and len(a1) == 480000 and np.abs(a1).max() <= 0.9 + 1e-6
    busy = (t1.offset_s - t1.onset_s).sum() / 60.0
    assert 0.005 < busy < 0.15 and len(t1) > 3


def test_archive_has_imbalanced_classes_and_realistic_durations():
    tables = [t for _, _, t in synth_archive(0.5, seed=1)]
    import pandas as pd

    t = pd.concat(tables)
    counts = t.label.value_counts()
    assert set(counts.index) <= set(CLASSES) and len(counts) >= 6
    assert counts.max() > 3 * counts.min()
    dur = (t.offset_s - t.onset_s).groupby(t.label).mean()
    assert dur["sn"] < 0.07 and dur["agg"] > 0.3


def test_the_low_call_set_stays_below_4_khz_at_any_rate():
    from a2v_core.spectrum import SoundSpectrum
    from a2v_core.synth import synth_recording

    spec = SoundSpectrum()
    for seed in range(3):
        audio, events = synth_recording(np.random.default_rng(seed), 30.0, 32_000, calls="low")
        assert set(events["label"]) <= {c.label for c in CALL_CLASSES}
        spec.add(audio, 32_000)
    assert spec.top_hz() < 4000
