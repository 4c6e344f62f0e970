import numpy as np
import pytest
import torch

from a2v_core.sinc import PSwish, SincConv, hz_to_mel


def make(n=127, k=63):
    return SincConv(n, k, 8000, 50.0, float(np.ceil(8000 / k)))


def test_initial_band_edges_follow_mel_spacing():
    sinc = make()
    low, high = sinc.band_edges_hz()
    # first filter 100-238 Hz, last 3810-4000 Hz (docs/recipe.md §2)
    assert abs(low[0].item() - 100.0) < 1 and abs(high[0].item() - 238.0) < 1.5
    assert abs(low[-1].item() - 3810) < 5 and abs(high[-1].item() - 4000.0) < 0.01
    raw = sinc.low_hz_[:, 0].detach()
    mel = hz_to_mel(torch.cat([raw, raw[-1:] + sinc.band_hz_[-1:, 0].detach()]))
    steps = torch.diff(mel)
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-3)


def test_each_kernel_peaks_inside_its_band():
    sinc = make()
    kernels = sinc.kernels().detach().numpy()
    low, high = (t.detach().numpy() for t in sinc.band_edges_hz())
    spec = np.abs(np.fft.rfft(kernels, n=8192, axis=1))
    freqs = np.fft.rfftfreq(8192, 1 / 8000)
    peak = freqs[spec.argmax(1)]
    tol = 8000 / 63  # one kernel-resolution bin
    assert np.all(peak >= low - tol) and np.all(peak <= high + tol)


def test_output_length_equals_input_length_and_symmetry():
    sinc = make(16, 63)
    y = sinc(torch.randn(2, 1234))
    assert y.shape == (2, 16, 1234)
    k = sinc.kernels()
    assert torch.allclose(k, torch.flip(k, dims=[1]))


def test_pswish_is_identity_at_init():
    act = PSwish(8)
    x = torch.randn(2, 8, 50)
    assert torch.allclose(act(x), x)


def edges(**fields):
    from a2v_core.config import ModelConfig
    from a2v_core.encoder import sinc_front_end

    cfg = ModelConfig(preset="tiny", **fields)
    low, high = (t.detach() for t in sinc_front_end(cfg).sinc.band_edges_hz())
    return cfg, low, high


def straddling(low, high, fold_hz):
    return int((torch.floor(low / fold_hz) != torch.floor((high - 1e-3) / fold_hz)).sum())


def test_off_folds_moves_every_band_off_the_folds_of_the_sinc_output_rate_width_kept():
    cfg, low, high = edges(sample_rate_hz=32_000)
    assert cfg.sinc_fold_hz == 4000 and straddling(low, high, 4000) == 5  # the preset as it was
    _, f_low, f_high = edges(sample_rate_hz=32_000, sinc_off_folds=True)
    assert straddling(f_low, f_high, 4000) == 0
    assert torch.allclose(f_high - f_low, high - low, atol=1e-3)
    assert f_low.min() >= 100 - 1e-3 and f_high.max() <= 16_000 + 1e-3
    # a front end at the input rate has no fold inside its band: nothing moves
    _, low8, high8 = edges(sample_rate_hz=8000)
    _, f_low8, f_high8 = edges(sample_rate_hz=8000, sinc_off_folds=True)
    assert torch.equal(low8, f_low8) and torch.equal(high8, f_high8)


def test_init_high_puts_every_filter_below_it_and_the_band_says_so():
    cfg, low, high = edges(sample_rate_hz=32_000, sinc_init_high_hz=6000)
    assert cfg.band_hz == (100.0, 6000.0)
    assert abs(high.max().item() - 6000) < 0.5 and low.min().item() == pytest.approx(100)
    assert "hears 100-6000 Hz" in cfg.hearing("finetune")
    from a2v_core.config import ModelConfig

    with pytest.raises(ValueError, match="leaves no band"):
        ModelConfig(preset="tiny", sample_rate_hz=32_000, sinc_init_high_hz=150)
