"""``a2v manifest`` hears where an archive's sound is and recommends the preset that holds it."""

import json

import pytest

from pipelines.manifest import main
from pipelines.synth import write_archive


@pytest.mark.parametrize(
    "calls,top_below,preset",
    [("low", 4000, 8000), ("bird", 16_000, 32_000)],
)
def test_the_recommended_preset_holds_the_sampled_sound(
    ray_session, tmp_path, capsys, calls, top_below, preset
):
    archive = tmp_path / "archive"
    write_archive(str(archive), 90 / 3600, seed=3, sample_rate_hz=32_000, file_s=30.0, calls=calls)
    main(["--archive", str(archive), "--out", str(tmp_path / "m.parquet")])
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") : out.index("\n}") + 2])
    sound = summary["sound"]
    assert sound["files_sampled"] == 3 and sound["sound_top_hz"] < top_below
    assert summary["recommended_sample_rate_hz"] == preset
    assert summary["rate_preset_hz"] == 32_000  # what the files' rate alone would give
    assert f"--sample-rate-hz {preset} hears it all" in out
    assert f"recommended preset: --sample-rate-hz {preset} (the lowest that hears" in out
    heard = sound["sound_heard_by_preset"]
    assert list(heard) == ["8000", "16000", "24000", "32000"] and heard["32000"] == pytest.approx(
        1.0
    )
    assert heard[str(preset)] >= 0.99 and all(heard[p] < 0.99 for p in heard if int(p) < preset)
    if calls == "low":  # a lower preset than the files' rate is never an upsampling warning
        assert summary["warning"] is None


def test_sound_files_0_gives_the_rate_advice_alone(ray_session, tmp_path, capsys):
    archive = tmp_path / "archive"
    write_archive(str(archive), 30 / 3600, seed=3, sample_rate_hz=32_000, file_s=30.0, calls="low")
    main(["--archive", str(archive), "--out", str(tmp_path / "m.parquet"), "--sound-files", "0"])
    out = capsys.readouterr().out
    assert "hears it all" not in out and "--sample-rate-hz 32000 (the lowest whose band" in out
