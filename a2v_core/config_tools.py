"""Typed configs of the tool commands (index, search, report, manifest, synth).

These commands take flags only (no YAML, no ``--set``): each field below is one flag,
``--field-name``, whose help is the field's description and whose checks are the field's
bounds (``pipelines.runtime.jobargs.add_fields`` builds the parser from the model, so a flag
and its config key can never drift apart). ``a2v info --fields --job index`` lists them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from a2v_core.config_groups import ClusterConfig
from a2v_core.rates import DEFAULT_RATE_HZ, RATE_PRESETS

#: vector precisions of an index (``a2v_core.vector_index``)
IndexDtype = Literal["f32", "f16", "i8"]

_ADDRESS = ClusterConfig.model_fields["address"].description
#: one flag, one meaning: --embeddings is always an `a2v embed` output
_EMBEDDINGS = "the --out of `a2v embed` (its window embeddings)"


class ToolJob(BaseModel):
    """A tool command's flags, validated; ``dry_run`` is each command's own small pass."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dry_run: bool = Field(False, description="a small pass end to end, then stop")


class IndexJob(ToolJob):
    """``a2v index``: an approximate-search index of one embedding run."""

    embeddings: str = Field(description=_EMBEDDINGS)
    run: str | None = Field(None, description="the run under --embeddings (when several)")
    out: str = Field(description="output URI of the index")
    shard_rows: int = Field(2_000_000, ge=1, description="windows per index shard")
    dtype: IndexDtype = Field("f16", description="vector precision in the index")
    connectivity: int = Field(16, ge=2, le=256, description="HNSW links per node (M)")
    expansion_add: int = Field(64, ge=1, description="HNSW efConstruction")
    cpus_per_shard: int = Field(2, ge=1, description="a shard build's threads")
    address: str | None = Field(None, description=_ADDRESS)
    overwrite: bool = Field(False, description="replace another index at --out")


class SearchJob(ToolJob):
    """``a2v search``: the windows of an archive most like a few examples."""

    embeddings: str | None = Field(None, description=_EMBEDDINGS)
    index: str | None = Field(
        None, description="the --out of `a2v index`: approximate search, any size (else exact)"
    )
    run: str | None = Field(None, description="the run under --embeddings (when several)")
    model: str = Field(description="the checkpoint the run was embedded with")
    query: list[str] = Field(
        min_length=1,
        description="an example of what to find: a recording URI, optionally a span in seconds "
        "(FILE[:ONSET-OFFSET]; repeatable)",
    )
    top_k: int = Field(50, ge=1, description="hits to return")
    label: str = Field("query", description="the hits' Annotation in the Raven table")
    out: str = Field(description="output URI for hits.parquet / .selections.txt")

    @model_validator(mode="after")
    def _one_source(self) -> SearchJob:
        if (self.embeddings is None) == (self.index is None):
            raise ValueError("give exactly one of --embeddings (exact) or --index (approximate)")
        return self


class ReportJob(ToolJob):
    """``a2v report``: what a fine-tuned model learned, as PNGs."""

    model: str = Field(description="fine-tuned checkpoint URI")
    out: str = Field(description="output directory / URI")
    archive: str | None = Field(
        None, description="annotated archive (for class spectra and a real clip)"
    )
    annotations: str | None = Field(None, description="annotation CSV of that archive")
    per_class: int = Field(40, ge=1, description="annotated calls per class in the mean spectra")
    time_expansion: int | None = Field(
        None,
        ge=1,
        le=100,
        description="the archive's time-expansion factor (None: the model's "
        "data.time_expansion); annotation times are real time, as every job's",
    )

    @model_validator(mode="after")
    def _archive_with_annotations(self) -> ReportJob:
        if (self.archive is None) != (self.annotations is None):
            raise ValueError("--archive and --annotations go together")
        return self


class ManifestJob(ToolJob):
    """``a2v manifest``: one row per recording of an archive (rate, channels, hours, errors)."""

    archive: str = Field(description="folder or prefix (local, s3://, gs://)")
    out: str = Field(description="Parquet URI, e.g. demo_out/manifest.parquet")
    address: str | None = Field(None, description=_ADDRESS)
    progress_every_s: float = Field(
        30.0, gt=0, description="seconds between progress lines in logs without a terminal"
    )
    verify: bool = Field(
        False,
        description="decode every file as labelling does (finds truncated or NaN audio; slower)",
    )
    time_expansion: int = Field(
        1,
        ge=1,
        le=100,
        description="recordings from a time-expansion detector, slowed down this many times: "
        "report the true rates and durations (as data.time_expansion does for every job)",
    )
    sound_files: int = Field(
        16,
        ge=0,
        description="files per rate read (30 s from each middle) to find where the archive's "
        "sound lies and recommend the preset that hears it whole (0: rates only)",
    )


class SynthJob(ToolJob):
    """``a2v synth``: a synthetic annotated archive (tests, demo, benchmarks)."""

    out: str = Field(description="local path, file://, s3:// or gs:// URI")
    hours: float = Field(0.25, gt=0, description="hours of audio to write")
    seed: int = Field(0, description="seed of calls, noise and recordings")
    sample_rate_hz: int = Field(
        DEFAULT_RATE_HZ,
        ge=min(RATE_PRESETS) // 2,
        le=2 * max(RATE_PRESETS),
        description="rate of the recordings; calls live where only this rate hears them",
    )
    file_s: float | None = Field(
        None,
        gt=0,
        description="length of each recording (s); default 60 (collar), 55 (season: 55 s on, "
        "gap_s off), 10 (bats: the longest triggered file; they last 0.5 s to this)",
    )
    format: Literal["WAV", "FLAC"] = Field("WAV", description="file format")
    layout: Literal["collar", "season", "bats"] = Field(
        "collar",
        description="collar: collar_NNN/rec_NNNNN.wav with one Raven table per recording; "
        "season: site/night folders of AudioMoth-named files (the same names in every site), "
        "start time in the WAV comment, one Raven table per site with Begin Paths from "
        "another machine; bats: the same folders of triggered 0.5-10 s Song Meter-named files "
        "with GUANO timestamps (use --sample-rate-hz 384000)",
    )
    calls: Literal["auto", "low", "bird", "bat"] = Field(
        "auto",
        description="collar: the calls written; auto: where only the rate hears them (below 4 kHz "
        "up to 24 kHz, bird-like 5-15 kHz at 32-96 kHz, bat-like above); low, bird or bat: that "
        "set at any rate (low at 32 kHz: song a lower preset hears whole)",
    )
    sites: int = Field(3, ge=1, description="season/bats: site folders")
    nights: int = Field(2, ge=1, description="season/bats: night folders per site")
    gap_s: float = Field(5.0, ge=0, description="season: seconds between recordings")

    @property
    def recording_s(self) -> float:
        """The length of each recording (the longest, for bats)."""
        return self.file_s or {"collar": 60.0, "season": 55.0, "bats": 10.0}[self.layout]


#: command -> its typed config
TOOLS: dict[str, type[ToolJob]] = {
    "index": IndexJob,
    "search": SearchJob,
    "report": ReportJob,
    "manifest": ManifestJob,
    "synth": SynthJob,
}
