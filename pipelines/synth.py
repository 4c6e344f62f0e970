"""``a2v synth``: write a synthetic MeerKAT-like archive (audio + annotations) to a URI.

    a2v synth --out demo_out/archive --hours 0.5 --seed 0
    a2v synth --out s3://bucket/archive --hours 2

Writes ``<out>/<collar>/<rec>.wav`` (8 kHz PCM16 by default), ``<out>/annotations.csv``
(file, onset_s, offset_s, label) and one Raven selection table per recording next to it.
"""

from __future__ import annotations

import io

import pandas as pd
import soundfile as sf

from a2v_core import annotations
from a2v_core.config_tools import SynthJob
from a2v_core.redact import redact_uri
from a2v_core.synth import synth_archive
from pipelines.data import storage
from pipelines.runtime.jobargs import add_fields, command, parser, tool_config


def write_archive(
    out: str,
    hours: float,
    seed: int = 0,
    sample_rate_hz: int = 8000,
    file_s: float = 60.0,
    audio_format: str = "WAV",
) -> pd.DataFrame:
    """Write the archive; returns the annotation table."""
    tables = []
    ext = {"WAV": "wav", "FLAC": "flac"}[audio_format]
    for name, audio, events in synth_archive(hours, seed, file_s, sample_rate_hz):
        name = name.rsplit(".", 1)[0] + f".{ext}"
        events["file"] = name
        buf = io.BytesIO()
        sf.write(buf, audio, sample_rate_hz, format=audio_format, subtype="PCM_16")
        storage.write_bytes(storage.join(out, name), buf.getvalue())
        raven = annotations.to_raven(events, sample_rate_hz)
        storage.write_bytes(
            storage.join(out, name.rsplit(".", 1)[0] + ".Table.1.selections.txt"), raven.encode()
        )
        tables.append(events)
    table = pd.concat(tables, ignore_index=True)
    table.attrs["n_files"] = len(tables)  # recordings written, with or without calls
    buf = io.StringIO()
    annotations.write_csv(table, buf)
    storage.write_bytes(storage.join(out, "annotations.csv"), buf.getvalue().encode())
    return table


def run(cfg: SynthJob) -> pd.DataFrame:
    """Write the archive and its annotations; -> the annotation table (a dry run: one
    recording)."""
    hours = cfg.file_s / 3600 if cfg.dry_run else cfg.hours
    table = write_archive(cfg.out, hours, cfg.seed, cfg.sample_rate_hz, cfg.file_s, cfg.format)
    n_files = table.attrs["n_files"]
    print(
        f"synth: wrote {n_files} recordings ({hours:g} h) and {len(table)} events to {redact_uri(cfg.out)}"
    )
    print(
        f"synth: annotations at {redact_uri(storage.join(cfg.out, 'annotations.csv'))}; classes: "
        f"{sorted(table['label'].unique())}"
    )
    return table


@command
def main(argv: list[str] | None = None) -> None:
    ap = parser("a2v synth", __doc__)
    add_fields(ap, SynthJob, "one recording")
    run(tool_config(SynthJob, ap.parse_args(argv)))


if __name__ == "__main__":
    main()
