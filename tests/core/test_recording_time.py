"""When a recording started: the three name styles, the AudioMoth comment and GUANO."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pandas as pd
import soundfile as sf

from a2v_core.activity import activity_table
from a2v_core.recording_time import from_name, night_of, recording_time


def test_the_three_name_styles():
    assert from_name("site1/20240601/20240601_203000.WAV").recorded_at == "2024-06-01T20:30:00"
    assert from_name("x/20240601_203000.WAV").source == "name:audiomoth"
    songmeter = from_name(r"D:\bats\S4A12345_20240602_011503_000.wav")
    assert (songmeter.recorded_at, songmeter.source) == ("2024-06-02T01:15:03", "name:songmeter")
    plain = from_name("site-3 dawn 2024-06-03T04-45-10 take2.flac")
    assert (plain.recorded_at, plain.source) == ("2024-06-03T04:45:10", "name:stamp")
    assert from_name("rec_00001.wav").source == ""  # no time in it
    assert from_name("20241399_999999.wav").source == ""  # digits that are no time


def wav(comment: str = "", guano: str = "") -> io.BytesIO:
    from pipelines.synth import encode

    header = {"comment": comment} if comment else {"guano": guano}
    return io.BytesIO(encode(np.zeros(800, np.float32), 8000, "WAV", header))


def test_headers_win_over_names_and_keep_their_time_zone():
    moth = wav("Recorded at 21:05:00 02/06/2024 (UTC+2) by AudioMoth 24F3 at medium gain.")
    got = recording_time("site1/20240601_000000.WAV", moth)
    assert (got.recorded_at, got.source) == ("2024-06-02T21:05:00+02:00", "header:audiomoth")
    assert moth.tell() == 0 and sf.read(moth)[0].shape == (800,)  # the file reads as before
    bat = wav(guano="GUANO|Version: 1.0\nTimestamp: 2024-06-03T01:02:03\nMake: X\n")
    assert recording_time("bat.wav", bat).recorded_at == "2024-06-03T01:02:03"
    assert sf.read(bat)[0].shape == (800,)  # a GUANO chunk after the audio is no audio
    plain = wav(comment="made by hand")
    assert recording_time("20240601_203000.wav", plain).source == "name:audiomoth"


def test_a_night_runs_noon_to_noon_and_every_folder_night_class_is_counted():
    assert night_of(dt.datetime(2024, 6, 2, 3, 0)) == dt.date(2024, 6, 1)
    assert night_of(dt.datetime(2024, 6, 1, 21, 0)) == dt.date(2024, 6, 1)
    recordings = pd.DataFrame(
        dict(
            file=["s1/a.wav", "s1/b.wav", "s2/a.wav", "c.wav"],
            audio_s=[60.0, 60.0, 30.0, 10.0],
            recorded_at=["2024-06-01T23:00:00", "2024-06-02T01:00:00+00:00", "", ""],
            recorded_at_source=["name:audiomoth", "header:audiomoth", "", ""],
        )
    )
    events = pd.DataFrame(
        dict(
            file=["s1/a.wav", "s1/a.wav", "s1/b.wav"],
            label=["x", "x", "y"],
            begin_time=[dt.datetime(2024, 6, 1, 23, 0, i) for i in range(3)],
        )
    )
    table = activity_table(recordings, events, ["x", "y"]).set_index(["folder", "night", "label"])
    assert len(table) == 3 * 2  # s1 / 2024-06-01, s2 / unknown, the root / unknown
    assert table.loc[("s1", "2024-06-01", "x"), ["recordings", "events"]].tolist() == [2, 2]
    assert table.loc[("s1", "2024-06-01", "y"), "recordings_with_events"] == 1
    assert table.loc[("s2", "", "x"), "events"] == 0 and table.loc[("", "", "y"), "audio_h"] > 0
