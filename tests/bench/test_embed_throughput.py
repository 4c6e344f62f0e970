"""bench/embed_throughput.py on a minute of audio: the bare model and `a2v embed` produce the
same number of windows, and the table carries x real time and the ratio to the bare model."""

from __future__ import annotations

from bench import embed_throughput


def test_embed_throughput_compares_like_with_like(ray_session, finetuned, capsys):
    table = embed_throughput.main(
        ["--model", finetuned, "--hours", "0.02", "--actors", "1", "--batch-size", "4"]
    )
    assert list(table["what"]) == ["bare model (1 thread)", "a2v embed, 1 actor(s) x 1 CPU"]
    assert table["windows"].nunique() == 1 and table["windows"].iloc[0] >= 60
    assert table["audio_h"].round(4).nunique() == 1
    assert table["vs_bare"].iloc[0] == 1.0 and (table["x_real_time"] > 0).all()
    assert "vs_bare" in capsys.readouterr().out
