"""The formats ``a2v label`` writes events in: one registry from which the config's allowed
``formats``, the writers, the ``--formats`` help and ``--overwrite``'s cleanup are derived.

A format writes a table per recording (``<out>/<name>/<run>/<file><suffix>``), one table over
the run (``<out>/<name>/<run><suffix>``), or both. ``parquet`` is written always: the run's
events parts (``<out>/events/run=<run>/``, which labelling resumes from; a relabelled file's
older rows stay in them until ``read_events`` skips them) and, when the run finishes, the clean
view ``<out>/parquet/<run>.events.parquet`` (each file's newest events once: what to read with
DuckDB, pandas or Spark). Adding a format is one entry here.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from a2v_core.annotations import to_audacity, to_raven

#: (events table, model rate, band low edge Hz, combined over recordings?) -> file contents
Render = Callable[[pd.DataFrame, float, float, bool], str | bytes]


@dataclass(frozen=True)
class LabelFormat:
    name: str
    help: str
    render: Render | None = None  # None: no table of its own
    per_file: str | None = None  # suffix of the per-recording tables (after the file's name)
    per_run: str | None = None  # suffix of the one table over the run (after the run id)
    #: an archive too large for a table per recording gets one per folder (``per_file`` suffix
    #: after the folder's path) when the format can hold many recordings (Raven's Begin Path)
    per_folder: bool = False

    def per_file_path(self, run_id: str, file: str) -> tuple[str, ...]:
        return (self.name, run_id, f"{file}{self.per_file}")

    def per_run_path(self, run_id: str) -> tuple[str, ...]:
        return (self.name, f"{run_id}{self.per_run}")


def _raven(table: pd.DataFrame, sr: float, low_hz: float, combined: bool) -> str:
    return to_raven(table, sr, combined=combined, low_hz=low_hz)


def _audacity(table: pd.DataFrame, sr: float, low_hz: float, combined: bool) -> str:
    return to_audacity(table)


def _csv(table: pd.DataFrame, sr: float, low_hz: float, combined: bool) -> str:
    return table.to_csv(index=False)


def _parquet(table: pd.DataFrame, sr: float, low_hz: float, combined: bool) -> bytes:
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return buf.getvalue()


FORMATS: dict[str, LabelFormat] = {
    f.name: f
    for f in (
        LabelFormat(
            "parquet",
            "the run's events as Parquet parts and, when the run finishes, one clean table "
            "parquet/<run>.events.parquet (always written)",
            _parquet,
            per_run=".events.parquet",
        ),
        LabelFormat(
            "raven",
            "Raven Pro selection tables, per recording (per folder above "
            "tables_per_folder_above files) and one over the run (Begin Path)",
            _raven,
            per_file=".selections.txt",
            per_run=".selections.txt",
            per_folder=True,
        ),
        LabelFormat("audacity", "Audacity label tracks per recording", _audacity, per_file=".txt"),
        LabelFormat("csv", "one CSV of the run's events", _csv, per_run=".events.csv"),
    )
}
DEFAULT_FORMATS = ["parquet", "raven"]
#: the formats every run writes, asked for or not
ALWAYS = ("parquet",)


def written(names: list[str]) -> list[LabelFormat]:
    """The formats a run with ``--formats names`` writes: those and ``ALWAYS``."""
    return [FORMATS[n] for n in dict.fromkeys([*ALWAYS, *names])]


def formats_help() -> str:
    """The ``--formats`` help: every format and what it writes."""
    return "comma list of: " + "; ".join(f"{f.name} ({f.help})" for f in FORMATS.values())


def check_formats(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; the formats are {', '.join(FORMATS)}")
    return names
