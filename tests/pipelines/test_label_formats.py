"""The label formats registry: the config's allowed formats, the writers, the ``--formats`` help
and ``--overwrite``'s cleanup all come from ``a2v_core.label_formats.FORMATS``."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from a2v_core import label_formats
from a2v_core.config import LabelJob
from a2v_core.label_formats import FORMATS, LabelFormat, formats_help
from pipelines.data import storage
from pipelines.inference.archive_pass import FileState
from pipelines.inference.label_outputs import (
    OutputWriter,
    events_frame,
    remove_run,
    write_run_tables,
)

RUNS = [["site/rec.wav", 1.0, 1.5, "cc", 4.0, 10], ["site/rec.wav", 3.0, 3.2, "sn", 20.0, 40]]


def label_everything(out: str, run_id: str, formats: list[str]) -> LabelJob:
    job = LabelJob(out=out, formats=formats)
    writer = OutputWriter(job, "v1", run_id, 8000)
    events = events_frame(writer.add_file("site/rec.wav", (1, "v"), FileState.with_runs(RUNS)))
    writer.flush()  # the events parts and the commit markers of the journal
    write_run_tables(job, run_id, events, 0.0)
    return job


def files_under(out: str) -> set[str]:
    return {rel for rel, _ in storage.list_all(out)}


def test_every_format_is_written_and_overwrite_removes_all_of_one_run(tmp_path):
    out = str(tmp_path / "labels")
    label_everything(out, "run-a", list(FORMATS))
    label_everything(out, "run-b", list(FORMATS))
    written = files_under(out)
    for run in ("run-a", "run-b"):
        assert f"raven/{run}/site/rec.wav.selections.txt" in written
        assert f"raven/{run}.selections.txt" in written  # one table over the run
        assert f"audacity/{run}/site/rec.wav.txt" in written
        assert f"csv/{run}.events.csv" in written
        assert f"parquet/{run}.events.parquet" in written  # the clean view
    remove_run(out, "run-a")
    left = files_under(out)
    assert not [f for f in left if "run-a" in f]  # the combined tables went too
    assert {f for f in written if "run-b" in f} <= left  # another run keeps everything


def test_a_new_format_is_one_registry_entry(tmp_path, monkeypatch):
    def render(table, sr, low_hz, combined):
        return "\n".join(table["label"]) + ("\n(all)" if combined else "")

    new = LabelFormat("labels-only", "just the labels", render, per_file=".lbl", per_run=".lbl")
    monkeypatch.setitem(label_formats.FORMATS, new.name, new)
    assert "labels-only (just the labels)" in formats_help()
    out = str(tmp_path / "labels")
    label_everything(out, "run-a", ["labels-only"])  # parquet is written anyway
    assert storage.read_bytes(f"{out}/labels-only/run-a/site/rec.wav.lbl").decode() == "cc\nsn"
    assert storage.read_bytes(f"{out}/labels-only/run-a.lbl").decode().endswith("(all)")
    assert storage.exists(f"{out}/parquet/run-a.events.parquet")
    remove_run(out, "run-a")
    assert not [f for f in files_under(out) if f.startswith("labels-only")]


def test_an_unknown_format_names_the_known_ones():
    with pytest.raises(
        ValidationError, match="unknown format.*'xml'.*parquet, raven, audacity, csv"
    ):
        LabelJob(formats=["raven", "xml"])
    for name in FORMATS:
        assert name in formats_help()
    assert pd.Series(LabelJob().formats).isin(list(FORMATS)).all()


def test_two_archives_labelled_into_one_prefix_leave_two_run_records(tmp_path, capsys):
    """``runs/<run>.run.json`` per run (``run.json`` is only the last invocation), removed with
    the run by ``--overwrite``."""
    import json

    from pipelines.inference.archive_pass import finish_run
    from pipelines.runtime.tracking import Tracker

    out = str(tmp_path / "labels")
    job = LabelJob(out=out)
    for run_id, files in (("site1-aaaa", 3), ("site2-bbbb", 5)):
        summary = {"run_id": run_id, "files_processed": files, "files_to_retry": 0}
        finish_run(job, "label", Tracker(None, "x", active=False), summary, ("files_processed",))
    records = {
        p.name: json.loads(p.read_text()) for p in (tmp_path / "labels/runs").glob("*.run.json")
    }
    assert {k: v["files_processed"] for k, v in records.items()} == {
        "site1-aaaa.run.json": 3,
        "site2-bbbb.run.json": 5,
    }
    assert json.loads((tmp_path / "labels/run.json").read_text())["run_id"] == "site2-bbbb"
    remove_run(out, "site1-aaaa")
    assert not (tmp_path / "labels/runs/site1-aaaa.run.json").exists()
    assert (tmp_path / "labels/runs/site2-bbbb.run.json").exists()
