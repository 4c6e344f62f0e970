import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from a2v_core import annotations as ann
from a2v_core.audio import iter_chunks

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
pytestmark = pytest.mark.skipif(not REAL.exists(), reason="shared/data/real not present")


def test_audacity_with_frequency_rows_matches_flat_csv():
    t = ann.read_audacity(REAL / "spinetail/spinetail.txt", file="spinetail.wav")
    assert len(t) == 18 and t["label"].value_counts().to_dict() == {"SP": 14, "CRER": 4}
    flat = ann.read_csv(REAL / "spinetail/spinetail_annotations.csv")
    assert np.allclose(t["onset_s"], flat["onset_s"]) and np.allclose(
        t["high_freq_hz"], flat["high_freq_hz"]
    )
    again = ann.read_audacity(io.StringIO(ann.to_audacity(t)), file="spinetail.wav")
    assert np.allclose(again["low_freq_hz"], t["low_freq_hz"]) and list(again["label"]) == list(
        t["label"]
    )


def test_raven_overlapping_multi_species_table():
    t = ann.read_raven(
        REAL / "chronister2021_raven/Recording_1_Segment_07.Table.1.selections.txt", file="rec.wav"
    )
    assert len(t) == 279 and t["label"].nunique() == 8
    starts = t.sort_values("onset_s")
    assert (starts["onset_s"].values[1:] < starts["offset_s"].values[:-1]).any()  # boxes overlap
    snippet = t[t["onset_s"] < 10.0]
    assert len(snippet) == 9


def test_round_trips_raven_csv_audacity():
    t = ann.read_csv(REAL / "spinetail/spinetail_annotations.csv")
    raven = ann.read_raven(io.StringIO(ann.to_raven(t, 44100)))
    assert np.allclose(raven["onset_s"], t["onset_s"], atol=1e-4) and list(raven["file"]) == list(
        t["file"]
    )
    buf = io.StringIO()
    ann.write_csv(raven, buf)
    buf.seek(0)
    back = ann.read_csv(buf)
    aud = ann.read_audacity(io.StringIO(ann.to_audacity(back)), file="spinetail.wav")
    assert np.allclose(aud["offset_s"], t["offset_s"], atol=1e-4) and list(aud["label"]) == list(
        t["label"]
    )


def test_frame_targets_at_exact_5ms_boundaries():
    events = pd.DataFrame(
        {
            "file": ["f"] * 2,
            "onset_s": [0.010, 10.0 + 0.0125],
            "offset_s": [0.020, 10.03],
            "label": ["a", "b"],
            "focal": [True, False],
        }
    )
    y = ann.frame_targets(events, ["a", "b", "focal"], 0.0, 2000, 8000, 40)
    assert np.flatnonzero(y[:, 0]).tolist() == [2, 3] and np.flatnonzero(y[:, 2]).tolist() == [2, 3]
    y2 = ann.frame_targets(events, ["a", "b", "focal"], 10.0, 2000, 8000, 40)
    # onset 12.5 ms -> first frame whose sample (40 i) >= 100 is i = 3; offset 30 ms -> < 240 -> up to 5
    assert np.flatnonzero(y2[:, 1]).tolist() == [3, 4, 5] and not y2[:, 0].any()


def test_class_list_is_explicit_and_checked():
    t = pd.DataFrame({"file": ["f"], "onset_s": [0.0], "offset_s": [1.0], "label": ["x"]})
    assert ann.class_list(t, ["y", "x"]) == ["y", "x"]
    with pytest.raises(ValueError, match="not in the class list"):
        ann.class_list(t, ["y"])


def test_250khz_recording_decodes_and_targets_align():
    wav = REAL / "deermouse_jourjine2023/deermouse-go.wav"
    assert sf.info(str(wav)).samplerate == 250000
    with open(wav, "rb") as f:
        chunks = list(iter_chunks(f, 1.0, 8000))
    assert chunks[0].audio.shape == (8000,) and np.isfinite(chunks[0].audio).all()
    calls = ann.read_csv(REAL / "deermouse_jourjine2023/annotations_in_clip.csv")
    y = ann.frame_targets(calls, ["pup_call"], 0.0, 200, 8000, 40)
    assert y[:, 0].sum() > 0 and y[int(0.6 * 200), 0] == 1 and y[int(0.3 * 200), 0] == 0


def test_bad_tables_are_rejected():
    with pytest.raises(ValueError, match="missing column"):
        ann.canonical_table(pd.DataFrame({"file": ["a"], "onset_s": [1.0]}))
    with pytest.raises(ValueError, match="offset < onset"):
        ann.canonical_table(
            pd.DataFrame({"file": ["a"], "onset_s": [2.0], "offset_s": [1.0], "label": ["x"]})
        )


def test_any_format_is_detected_by_content_and_errors_name_the_file():
    table = pd.DataFrame(
        {
            "file": ["rec.wav", "rec.wav"],
            "onset_s": [1.0, 2.5],
            "offset_s": [1.5, 3.0],
            "label": ["cc", "sn"],
        }
    )
    buf = io.StringIO()
    ann.write_csv(table, buf)
    flat = buf.getvalue().encode()
    raven = ann.to_raven(table, 8000).encode()
    audacity = ann.to_audacity(table).encode()
    assert [ann.sniff(x) for x in (flat, raven, audacity)] == ["csv", "raven", "audacity"]
    for data, source in ((flat, "a.csv"), (raven, "rec.wav.selections.txt")):
        got = ann.read_any(data, source)
        assert got[ann.COLUMNS].equals(table[ann.COLUMNS]), source
    # an Audacity track names no recording: its own name, less the label file's extension
    assert set(ann.read_any(audacity, "s3://b/labels/rec.wav.txt")["file"]) == {"rec.wav"}
    with pytest.raises(ValueError) as err:
        ann.read_any(b"path,start,end,species\nrec.wav,1,2,cc\n", "s3://b/ann.csv")
    assert str(err.value).startswith("s3://b/ann.csv: missing column(s)") and "BytesIO" not in str(
        err.value
    )
    with pytest.raises(ValueError, match="^site1/rec.txt"):
        ann.read_any(b"1.0\tx\tcc\n", "site1/rec.txt")


def test_reviewed_spans_leave_unreviewed_frames_unknown():
    """A reviewed table (kept hits and negatives): frames inside a row are known (its class on,
    every other off; a negative all off); frames outside every row are NaN."""
    events = pd.DataFrame(
        {
            "file": ["f"] * 2,
            "onset_s": [1.0, 3.0],
            "offset_s": [2.0, 4.0],
            "label": ["a", "negative"],
        }
    )
    y = ann.frame_targets(events, ["a", "b"], 0.0, 2000, 8000, 40, reviewed=True)
    known = ~np.isnan(y).any(-1)
    assert np.flatnonzero(known).tolist() == list(range(200, 400)) + list(range(600, 800))
    assert (y[200:400] == [1.0, 0.0]).all() and (y[600:800] == 0.0).all()
    assert np.isnan(y[:200]).all() and np.isnan(y[800:]).all()
    # exhaustive (the default): the same rows, everything else background
    y0 = ann.frame_targets(events, ["a", "b"], 0.0, 2000, 8000, 40)
    assert not np.isnan(y0).any() and y0.sum() == 200
