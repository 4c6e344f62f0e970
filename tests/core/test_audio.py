import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from a2v_core.audio import DecodeError, chunk_offsets, iter_chunks, probe
from tests.helpers.audio import bad_files, wav_bytes


def test_chunks_concatenate_to_the_resampled_file():
    rng = np.random.default_rng(0)
    sr = 44100
    x = (rng.standard_normal(int(25.3 * sr)) * 0.1).astype(np.float32)
    data = wav_bytes(x, sr, subtype="FLOAT")
    chunks = list(iter_chunks(io.BytesIO(data), 10.0, 8000, normalize=False))
    assert [c.offset_s for c in chunks] == [0.0, 10.0, 20.0] and chunks[0].n_chunks == 3
    assert (
        chunks[-1].valid_samples == int(round(5.3 * 8000))
        and not chunks[-1].audio[chunks[-1].valid_samples :].any()
    )
    joined = np.concatenate([c.audio[: c.valid_samples] for c in chunks])
    whole = soxr.resample(x, sr, 8000, quality="HQ")
    assert len(joined) == len(whole)
    err = np.abs(joined - whole)
    assert err.max() < 1e-3 * np.abs(whole).max() + 1e-5


def test_chunks_are_normalised_per_clip():
    x = np.sin(np.arange(80000 * 2) / 10).astype(np.float32) * 0.3 + 0.1
    chunks = list(iter_chunks(io.BytesIO(wav_bytes(x, 8000)), 10.0, 8000))
    for c in chunks:
        assert abs(c.audio.mean()) < 1e-3 and abs(c.audio.std() - 1) < 1e-2


@pytest.mark.parametrize(
    "fmt,subtype",
    [
        ("WAV", "PCM_16"),
        ("WAV", "PCM_24"),
        ("WAV", "PCM_32"),
        ("WAV", "FLOAT"),
        ("FLAC", "PCM_16"),
        ("FLAC", "PCM_24"),
        ("OGG", "VORBIS"),
    ],
)
def test_formats_decode(fmt, subtype):
    x = (np.random.default_rng(1).standard_normal(16000 * 3) * 0.1).astype(np.float32)
    chunks = list(iter_chunks(io.BytesIO(wav_bytes(x, 16000, fmt, subtype)), 2.0, 8000))
    assert len(chunks) == 2 and chunks[0].audio.shape == (16000,)


def test_loudest_channel_selection():
    x = np.zeros((8000, 2), np.float32)
    x[:, 1] = np.sin(np.arange(8000) / 5)
    x[:, 0] = 0.01 * np.sin(np.arange(8000) / 3)
    first = next(
        iter_chunks(io.BytesIO(wav_bytes(x, 8000)), 1.0, 8000, channel="first", normalize=False)
    )
    loud = next(
        iter_chunks(io.BytesIO(wav_bytes(x, 8000)), 1.0, 8000, channel="loudest", normalize=False)
    )
    assert np.abs(first.audio).max() < 0.02 and np.abs(loud.audio).max() > 0.9


@pytest.mark.parametrize("name", list(bad_files()))
def test_bad_inputs_raise_typed_errors(name):
    data, expected = bad_files()[name]
    with pytest.raises(DecodeError) as err:
        list(iter_chunks(io.BytesIO(data), 10.0, 8000))
    assert err.value.error_type == expected


def test_probe_and_offsets():
    info = probe(io.BytesIO(wav_bytes(np.zeros(8000 * 25, np.float32), 8000)))
    assert info.duration_s == 25.0 and info.channels == 1
    assert chunk_offsets(25.0, 10.0) == [0.0, 10.0, 20.0]
    assert chunk_offsets(20.0, 10.0, overlap_s=5.0) == [0.0, 5.0, 10.0]


def test_chunks_say_which_channel_they_were_read_from(tmp_path):

    from a2v_core.audio import iter_chunks

    sr = 8000
    t = np.arange(sr * 12) / sr
    loud, quiet = np.sin(2 * np.pi * 440 * t) * 0.5, np.full_like(t, 1e-4)
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([quiet, loud, quiet], axis=1), sr)  # the second of three is loud
    with open(path, "rb") as f:
        picked = [c.channel for c in iter_chunks(f, 10.0, sr, channel="loudest")]
    assert picked == [1, 1]
    with open(path, "rb") as f:
        assert [c.channel for c in iter_chunks(f, 10.0, sr, channel="first")] == [0, 0]


def test_a_time_expanded_file_is_read_at_its_true_rate_and_in_real_time():
    """A 10x time-expansion detector plays 2 s of 250 kHz sound out over 20 s; the recorder
    stores it at 25 kHz. Read with time_expansion=10 the file is the 250 kHz sound again:
    samples unchanged (no resampling), 1 s chunks of real time, the true rate in each chunk."""
    rng = np.random.default_rng(3)
    true_rate, factor = 250_000, 10
    x = (rng.standard_normal(2 * true_rate) * 0.1).astype(np.float32)
    data = wav_bytes(x, true_rate // factor, subtype="FLOAT")
    info = probe(io.BytesIO(data), time_expansion=factor)
    assert info.sample_rate_hz == true_rate and info.duration_s == pytest.approx(2.0)
    assert probe(io.BytesIO(data)).duration_s == pytest.approx(20.0)  # the file as stated
    chunks = list(iter_chunks(io.BytesIO(data), 1.0, true_rate, normalize=False, time_expansion=10))
    assert [c.offset_s for c in chunks] == [0.0, 1.0]
    assert {c.source_rate_hz for c in chunks} == {true_rate}
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks]), x)
    # without the factor the same file is 20 s at 25 kHz: 20 chunks, all upsampled
    assert len(list(iter_chunks(io.BytesIO(data), 1.0, true_rate, normalize=False))) == 20
    with pytest.raises(ValueError, match="whole number >= 1"):
        probe(io.BytesIO(data), time_expansion=0)
