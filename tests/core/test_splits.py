import numpy as np
import pandas as pd


def test_split_is_stratified():
    from a2v_core.splits import make_splits

    rng = np.random.default_rng(0)
    presence = (rng.random((400, 5)) < [0.5, 0.3, 0.2, 0.1, 0.05]).astype(int)
    split = make_splits(pd.DataFrame(index=range(400)), presence, 0.2, 0.25, seed=1612)
    train = presence[split.values == "train"]
    assert abs(len(train) - 80) <= 1
    share = train.sum(0) / presence[split.values != "valid"].sum(0)
    assert np.all(np.abs(share - 0.25) < 0.08), share
    assert (
        make_splits(pd.DataFrame(index=range(400)), presence, 0.2, 0.25, seed=1612) == split
    ).all()


def test_one_class_is_stratified_too():
    """A single-class table (a reviewed search for one call type) splits, stratified on the
    class's presence (the stratifier alone rejects a one-column matrix as 'binary')."""
    from a2v_core.splits import make_splits

    presence = np.zeros((100, 1), dtype=int)
    presence[:20] = 1
    split = make_splits(pd.DataFrame(index=range(100)), presence, 0.2, 0.5, seed=1)
    assert (split == "valid").sum() == 20 and presence[split.values == "valid"].sum() == 4
    assert (split == "train").sum() == 40 and presence[split.values == "train"].sum() == 8
