"""The ``a2v`` command: one subcommand per job, each dispatching to ``pipelines.<job>.main``
(so ``a2v pretrain ...`` and ``python -m pipelines.pretrain ...`` are the same thing)."""

from __future__ import annotations

import importlib
import sys

#: subcommand -> (module, one-line help). Only jobs that exist are listed.
COMMANDS = {
    "synth": ("pipelines.synth", "write a synthetic MeerKAT-like archive with ground truth"),
    "manifest": ("pipelines.manifest", "probe every file of an archive into a Parquet manifest"),
    "info": (
        "pipelines.info",
        "parameter counts, frame rate, receptive field, masking of a config",
    ),
    "pretrain": ("pipelines.pretrain", "self-supervised pretraining on Ray Train"),
    "finetune": ("pipelines.finetune", "frame-level fine-tuning with focal loss on Ray Train"),
    "tune": ("tune.sweep", "Ray Tune sweep over masking / focal-loss / lr settings (ASHA, MLflow)"),
    "label": (
        "pipelines.label",
        "label a whole archive into events (Parquet, Raven, Audacity, CSV)",
    ),
    "embed": (
        "pipelines.embed",
        "embed a whole archive: one vector per window (partitioned Parquet)",
    ),
    "index": (
        "pipelines.index",
        "an approximate nearest-neighbour index (usearch, sharded) over a run of embeddings",
    ),
    "search": (
        "pipelines.search",
        "search an archive's embeddings by example: the top-k windows as a Raven table",
    ),
    "evaluate": (
        "pipelines.evaluate",
        "score a model on an annotated archive: frame AP/F1, event P/R/F1, PR curves",
    ),
    "report": (
        "pipelines.report",
        "interpretability PNGs: Sinc filter responses, attention maps, frame probabilities",
    ),
    "demo": (
        "pipelines.demo",
        "the whole chain on a synthetic archive: synth -> pretrain -> finetune -> label",
    ),
}


def version() -> str:
    """The installed package's version (pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("animal2vec-ray")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def usage() -> str:
    lines = [
        "usage: a2v <command> [options]   (a2v <command> --help for options; a2v --version)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if argv[0] in ("-V", "--version"):
        print(f"a2v {version()}")
        return
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"a2v: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    importlib.import_module(COMMANDS[name][0]).main(rest)


if __name__ == "__main__":
    main()
