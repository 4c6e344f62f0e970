import numpy as np
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
