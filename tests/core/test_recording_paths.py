"""A recording is its relative path: names from tables land on exactly one file or on none."""

from __future__ import annotations

from a2v_core.recording_paths import RecordingIndex, segments, table_hints

SEASON = [
    f"{site}/{night}/{name}"
    for site in ("site1", "site2", "site3")
    for night in ("20240601", "20240602")
    for name in ("20240601_203000.WAV", "20240601_203100.WAV")
]


def test_segments_read_paths_from_any_machine():
    assert segments(r"D:\season\site2\rec.wav") == ["season", "site2", "rec.wav"]
    assert segments("/Users/anna/./site2//rec.wav") == ["Users", "anna", "site2", "rec.wav"]
    assert segments("rec.wav") == ["rec.wav"]


def test_a_begin_path_from_another_machine_names_one_recording():
    index = RecordingIndex(SEASON)
    got = index.match(r"E:\Season 2024\site2\20240602\20240601_203100.WAV")
    assert got.file == "site2/20240602/20240601_203100.WAV" and not got.candidates
    # a relative path is itself
    assert index.match("site3/20240601/20240601_203000.WAV").file == (
        "site3/20240601/20240601_203000.WAV"
    )


def test_a_base_name_alone_is_ambiguous_until_the_table_says_where_it_is():
    index = RecordingIndex(SEASON)
    got = index.match("20240601_203000.WAV")
    assert got.file is None and len(got.candidates) == 6
    # the table sits in site2/20240601/ (or is named after that folder)
    hints = table_hints("site2/20240601/Table.1.selections.txt")
    assert index.match("20240601_203000.WAV", hints).file == "site2/20240601/20240601_203000.WAV"
    hints = table_hints("tables/site1.selections.txt")
    got = index.match("20240602/20240601_203000.WAV", hints)
    assert got.file == "site1/20240602/20240601_203000.WAV"
    # a hint that fits several folders does not pick one
    got = index.match("20240601_203000.WAV", table_hints("site2.txt"))
    assert got.file is None and len(got.candidates) == 6
    one_night = RecordingIndex([f for f in SEASON if "/20240602/" not in f])
    got = one_night.match("20240601_203000.WAV", table_hints("site2.txt"))
    assert got.file == "site2/20240601/20240601_203000.WAV"


def test_another_sites_row_never_lands_on_this_archive():
    index = RecordingIndex(["site1/rec.wav", "site1/other.wav"])
    assert index.match("/old/site3/rec.wav").file is None  # the folder disagrees
    assert index.match("/old/site3/rec.wav").candidates == ()
    assert index.match("rec.wav").file == "site1/rec.wav"  # unique base name
    assert index.match("rec").file == "site1/rec.wav"  # an Audacity track named after it
    assert index.match("rec.flac").file is None
