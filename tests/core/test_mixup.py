"""A-weighted BC mixup (a2v_core.mixup)."""

import numpy as np
import pytest
import torch

from a2v_core.mixup import a_weighted_gain_db, a_weighting_db, bc_mixup


def test_a_weighting_matches_the_standards_reference_points():
    db = a_weighting_db(torch.tensor([1000.0, 100.0, 10000.0, 20.0]))
    # IEC 61672 table values (nominal frequencies: 20 Hz is 19.95 Hz there)
    np.testing.assert_allclose(db.numpy(), [0.0, -19.1, -2.5, -50.5], atol=0.15)


def test_a_louder_clip_has_a_higher_gain_and_silence_the_floor():
    t = torch.arange(8000) / 8000
    tone = torch.sin(2 * torch.pi * 1000 * t)[None]
    gains = a_weighted_gain_db(torch.cat([tone, 0.1 * tone, torch.zeros_like(tone)]), 8000)
    assert gains[0] - gains[1] == pytest.approx(20.0, abs=0.01)
    assert gains[2] == pytest.approx(-80.0)


def test_mixup_mixes_with_the_partner_at_unit_norm_and_targets_by_r():
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(4, 4000, generator=g)
    targets = torch.eye(4)[:, None, :].expand(4, 10, 4).clone()
    perm = torch.tensor([1, 0, 3, 2])
    mixed, soft = bc_mixup(audio, 8000, torch.Generator().manual_seed(1), targets, perm)
    r = 0.5 + 0.5 * torch.rand((), generator=torch.Generator().manual_seed(1)).item()
    assert torch.allclose(soft, r * targets + (1 - r) * targets[perm])
    # each mix is a combination of the clip and its partner: solve for (a, b) per clip
    for i in range(4):
        basis = torch.stack([audio[i], audio[perm[i]]], 1)
        coef = torch.linalg.lstsq(basis, mixed[i, :, None]).solution[:, 0]
        assert torch.allclose(basis @ coef, mixed[i], atol=1e-4)
        a, b = coef.tolist()
        assert a > 0 and b > 0 and a**2 + b**2 == pytest.approx(1.0, abs=1e-4)  # p/sqrt(...)
    single = torch.randn(1, 4000)
    assert bc_mixup(single, 8000)[0] is single  # nothing to mix with
