"""Rate presets: 200 Hz (or 1 kHz) frames at every rate, impulses land on their frame, the
front end's fields follow the rate, rates without a preset are refused naming the nearest."""

import math

import numpy as np
import pandas as pd
import pytest
import soxr
import torch

from a2v_core.config import FinetuneJob, ModelConfig, PretrainJob
from a2v_core.config_events import EventConfig
from a2v_core.config_loader import ConfigError, build_config
from a2v_core.encoder import LocalEncoder
from a2v_core.rates import (
    RATE_PRESETS,
    recommend_preset_hz,
    upsampled_fraction,
    upsampling_warning,
)
from a2v_core.sinc import SincConv
from a2v_core.synth import BAT_CLASSES, BIRD_CLASSES, synth_recording

PRESETS = [(r, 200) for r in RATE_PRESETS] + [(r, 1000) for r in RATE_PRESETS if r >= 96_000]


@pytest.mark.parametrize("rate,frames", PRESETS)
def test_every_rate_gives_its_frames_and_an_impulse_lands_on_its_frame(rate, frames):
    torch.manual_seed(0)
    cfg = ModelConfig(preset="tiny", sample_rate_hz=rate, frame_rate_hz=frames)
    assert cfg.hop_samples * frames == rate
    assert all(k >= s + 1 for _, k, s in cfg.conv_layers if s > 1), cfg.conv_layers
    assert cfg.sinc_taps % 2 == 1 and abs(cfg.sinc_taps - math.sqrt(rate / 2)) <= 1
    enc = LocalEncoder(cfg).eval()
    seconds = 0.5
    n = int(seconds * rate)
    with torch.no_grad():
        silence = enc(torch.zeros(1, n))
        assert silence.shape[1] == frames * seconds  # exactly: training targets have as many
        for t0 in (0.1, 0.2371, 0.4):
            x = torch.zeros(1, n)
            x[0, int(t0 * rate)] = 1.0
            response = (enc(x) - silence).abs().sum(-1)[0]
            centre = float((response * torch.arange(len(response))).sum() / response.sum())
            assert abs(centre - t0 * frames) <= 1.0, (rate, t0, centre)


@pytest.mark.parametrize("preset", ["tiny", "base", "large"])
@pytest.mark.parametrize("rate", [8000, 48000, 384000])
def test_every_size_combines_with_every_rate(preset, rate):
    cfg = ModelConfig(preset=preset, sample_rate_hz=rate)
    assert cfg.frame_rate_hz == 200 and cfg.sample_rate_hz / cfg.hop_samples == 200
    # the size preset's stride-1 layers stay; its channels stay
    assert [c for c, _, _ in cfg.conv_layers] == [
        c for c, _, _ in ModelConfig(preset=preset).conv_layers
    ]


def test_the_8khz_preset_is_the_original_front_end():
    cfg = ModelConfig(preset="large")
    assert (cfg.sinc_taps, cfg.sinc_stride, cfg.sinc_min_band_hz) == (63, 1, 127.0)
    assert cfg.conv_layers[:4] == [(512, 10, 5), (512, 3, 2), (512, 3, 2), (512, 3, 2)]


def test_a_strided_sinc_layer_keeps_every_dth_output_of_the_full_rate_one():
    torch.manual_seed(1)
    full = SincConv(24, 155, 48000, 50.0, 310.0)
    strided = SincConv(24, 155, 48000, 50.0, 310.0, stride=6)
    x = torch.randn(2, 48000)
    with torch.no_grad():
        a, b = full(x)[..., ::6], strided(x)
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-5)


def test_ultrasonic_filters_start_near_10_khz_and_audible_ones_as_before():
    bat = ModelConfig(sample_rate_hz=250_000)
    low, high = LocalEncoder(bat).sinc.sinc.band_edges_hz()
    assert abs(float(low[0]) - 10_000) < 1 and float(high[-1]) == pytest.approx(125_000, rel=0.01)
    assert bat.band_hz == (10_000.0, 125_000.0)
    bird = LocalEncoder(ModelConfig(sample_rate_hz=48_000)).sinc.sinc
    assert float(bird.band_edges_hz()[0][0]) == pytest.approx(100.0)  # 2 x min_low, as at 8 kHz


@pytest.mark.parametrize("rate", [44100, 22050, 11025, 20000])
def test_a_rate_without_a_preset_is_refused_naming_the_nearest(rate):
    with pytest.raises(ConfigError) as err:
        build_config(PretrainJob, {}, [f"model.sample_rate_hz={rate}"])
    near = {44100: 48000, 22050: 24000, 11025: 8000, 20000: 24000}[rate]  # a tie: the higher
    message = str(err.value)
    assert f"nearest preset is {near}" in message and len(message.splitlines()) == 2
    assert "archive" not in message  # the whole config is not printed


def test_the_data_rate_follows_the_model_and_cannot_disagree():
    job = build_config(FinetuneJob, {}, ["model.sample_rate_hz=32000"])
    assert job.data.sample_rate_hz == 32000 and job.data.clip_samples == 320_000
    job = build_config(FinetuneJob, {}, ["data.sample_rate_hz=48000"])
    assert job.model.sample_rate_hz == 48000 and job.model.sinc_stride == 6
    with pytest.raises(ConfigError, match="data follows the model"):
        build_config(FinetuneJob, {}, ["model.sample_rate_hz=48000", "data.sample_rate_hz=8000"])
    with pytest.raises(ConfigError, match="1 kHz frames are for the ultrasonic"):
        build_config(PretrainJob, {}, ["model.frame_rate_hz=1000"])
    with pytest.raises(ConfigError, match="leave them unset"):
        build_config(
            PretrainJob, {}, ["model.sample_rate_hz=48000", "model.conv_layers=[[48,10,5]]"]
        )


def test_one_khz_frames_default_to_2_s_clips_and_scale_the_event_defaults():
    job = build_config(FinetuneJob, {}, ["model.sample_rate_hz=250000", "model.frame_rate_hz=1000"])
    assert job.data.clip_s == 2.0
    assert (job.events.pool_s, job.events.min_event_s) == (0.005, 0.002)  # 2 ms calls survive
    ev = EventConfig(pool_s=0.3).at_frame_rate(1000)
    assert ev.pool_s == 0.3 and ev.min_event_s == 0.002  # set keys stay
    assert EventConfig().at_frame_rate(200) == EventConfig()


def test_the_recommended_preset_covers_most_hours_and_upsampling_is_warned():
    hours = {8000: 1.0, 44100: 1.0, 48000: 1.0}
    assert recommend_preset_hz(hours) == 48000
    assert upsampled_fraction(hours, 48000) == pytest.approx(1 / 3)
    message = upsampling_warning(hours, 48000)
    assert message and "33 %" in message and "8000 Hz" in message
    assert upsampling_warning({48000: 9.5, 8000: 0.5}, 48000) is None  # 5 %: quiet
    assert recommend_preset_hz({32000: 9.0, 48000: 1.0}) == 32000


def band_energy_share(x: np.ndarray, sr: int, low_hz: float, high_hz: float) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(power[(f >= low_hz) & (f <= high_hz)].sum() / power.sum())


def test_synthetic_bird_calls_live_where_an_8_khz_model_cannot_hear_them():
    x, events = synth_recording(np.random.default_rng(3), 20.0, 48000)
    assert set(events["label"]) <= {c.label for c in BIRD_CLASSES} and len(events) >= 3
    calls = np.concatenate(
        [x[int(r.onset_s * 48000) : int(r.offset_s * 48000)] for r in events.itertuples()]
    )
    assert band_energy_share(calls, 48000, 4500, 16000) > 0.8
    # at 8 kHz a call is no louder than the noise around it
    low = soxr.resample(x, 48000, 8000)
    r = events.iloc[0]
    inside = low[int(r.onset_s * 8000) : int(r.offset_s * 8000)]
    before = low[max(0, int((r.onset_s - 0.3) * 8000)) : int((r.onset_s - 0.05) * 8000)]
    assert inside.std() < 3 * before.std()


def test_synthetic_bat_calls_are_2_to_10_ms_sweeps_between_20_and_100_khz():
    x, events = synth_recording(np.random.default_rng(4), 5.0, 250_000)
    assert set(events["label"]) <= {c.label for c in BAT_CLASSES} and len(events) >= 5
    durations = events["offset_s"] - events["onset_s"]
    assert durations.between(0.0019, 0.0101).all()
    calls = np.concatenate(
        [x[int(r.onset_s * 250_000) : int(r.offset_s * 250_000)] for r in events.itertuples()]
    )
    assert band_energy_share(calls, 250_000, 18_000, 105_000) > 0.8


def test_a_call_shorter_than_a_frame_still_marks_its_frame():
    from a2v_core.annotations import frame_targets

    calls = pd.DataFrame(
        {
            "file": ["a"] * 2,
            "onset_s": [0.1011, 0.3],
            "offset_s": [0.1031, 0.302],
            "label": ["fm"] * 2,
        }
    )
    y = frame_targets(calls, ["fm"], 0.0, 100, 250_000, 1250)  # 5 ms frames
    assert np.flatnonzero(y[:, 0]).tolist() == [20, 60]
    assert frame_targets(calls, ["fm"], 1.0, 100, 250_000, 1250).sum() == 0  # not in this chunk


def test_a_job_built_in_code_or_assigned_to_keeps_one_rate():
    job = build_config(FinetuneJob, {}, ["model.sample_rate_hz=48000"])
    job.pretrained = "/somewhere/final"  # the job validates the assignment: groups stay models
    job.run.name = "renamed"
    assert isinstance(job.model, ModelConfig) and job.data.sample_rate_hz == 48000
    built = FinetuneJob(model=ModelConfig(sample_rate_hz=32000))
    assert built.data.sample_rate_hz == 32000
    with pytest.raises(ValueError, match="data follows the model"):
        FinetuneJob(model=ModelConfig(sample_rate_hz=32000), data={"sample_rate_hz": 8000})


def test_time_expansion_is_named_in_the_first_log_line():
    cfg = ModelConfig(sample_rate_hz=250_000)
    assert "time-expanded" not in cfg.hearing("label")
    line = cfg.hearing("label", 10)
    assert "time-expanded 10x" in line and "real time (file seconds / 10)" in line
