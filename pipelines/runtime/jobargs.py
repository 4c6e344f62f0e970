"""Command-line flags shared by every job: ``--config``, repeated ``--set key=value`` and
shorthand flags (``--archive`` = ``--set data.archive=...``), resolved into the job's typed
config by one loader; and ``command``, the one place a ``JobError`` becomes an ``error: ...``
line and an exit status (config errors: 2, before any work starts)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from a2v_core.config import Job
from a2v_core.config_loader import ConfigError, load_config, rejected
from a2v_core.config_tools import ToolJob
from a2v_core.errors import InputError, job_error_in
from pipelines.runtime import quiet_logs

F = TypeVar("F", bound=Callable[..., Any])

#: flag -> config key, the same spelling for every job
SHORTHANDS = {
    "archive": "data.archive",
    "annotations": "data.annotations",
    "name": "run.name",
    "storage_path": "run.storage_path",
    "max_steps": "optim.max_steps",
    "label_fraction": "data.label_fraction",
    "address": "cluster.address",
    "num_workers": "cluster.num_workers",
    "sample_rate_hz": "model.sample_rate_hz",
    "num_actors": "cluster.num_actors",
    "gpus_per_actor": "cluster.gpus_per_actor",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and every flag's default where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, [], argparse.SUPPRESS)
        if shown and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of a command: its name, its module docstring as the help text,
    every flag's default."""
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter)


#: the one help text of the flags every command that takes them shares
ADDRESS_HELP = (
    "Ray cluster address, e.g. auto or ray://head:10001 (default: $RAY_ADDRESS, else a local Ray)"
)
SET_HELP = "override one config key, GROUP.KEY=VALUE (repeatable; `a2v info --fields` lists them)"


def job_parser(prog: str, doc: str | None, shorthands: list[str]) -> argparse.ArgumentParser:
    ap = parser(prog, doc)
    ap.add_argument(
        "--config",
        help="YAML under configs/<job>/ (pretrain, finetune without it: configs/<job>/tiny.yaml)",
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="GROUP.KEY=VALUE",
        help=SET_HELP,
    )
    add_dry_run(ap)
    add_verbose(ap)
    for name in shorthands:
        ap.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            help=ADDRESS_HELP if name == "address" else f"= --set {SHORTHANDS[name]}=...",
        )
    return ap


class _Verbose(argparse.Action):
    """``--verbose``: set at parse time, before Ray starts (``quiet_logs``)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        os.environ[quiet_logs.VERBOSE_ENV] = "1"
        setattr(namespace, self.dest, True)


def add_verbose(ap: argparse.ArgumentParser) -> None:
    """The one ``--verbose`` flag of the commands that start Ray."""
    ap.add_argument(
        "--verbose",
        nargs=0,
        action=_Verbose,
        default=False,
        help="also show Ray's own INFO lines (Ray Data plans, Ray Train reports; otherwise only "
        f"in Ray's log files); = {quiet_logs.VERBOSE_ENV}=1",
    )


def add_dry_run(ap: argparse.ArgumentParser, what: str = "one file / one step") -> None:
    """The one ``--dry-run`` flag every command takes (``what``: what it does for this one)."""
    ap.add_argument("--dry-run", action="store_true", help=f"{what} end to end, then stop")


#: help texts a field shares with the same flag of every other command
_SHARED_HELP = {"address": ADDRESS_HELP}


def add_fields(ap: argparse.ArgumentParser, model: type[ToolJob], dry_run: str) -> None:
    """One flag per field of a tool command's typed config (``a2v_core.config_tools``):
    ``--field-name``, its description as help, required where the field has no default,
    ``store_true`` for a bool, repeatable for a list, choices for a Literal. Types and
    bounds are checked by the model (``tool_config``), so the parser never holds a second
    copy of a default or a check. ``dry_run``: what the command's ``--dry-run`` does."""
    for name, field in model.model_fields.items():
        if name == "dry_run":
            continue
        flag, ann = f"--{name.replace('_', '-')}", field.annotation
        kwargs: dict[str, Any] = {"help": _SHARED_HELP.get(name, field.description)}
        kind = (
            typing.get_args(ann)[0]
            if typing.get_origin(ann) in (typing.Union, types.UnionType)
            else ann
        )
        if kind is bool:
            kwargs["action"] = "store_true"
        elif typing.get_origin(kind) is list:
            kwargs.update(action="append", type=typing.get_args(kind)[0])
        elif typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(kind))
        else:
            kwargs["type"] = kind
        if field.is_required():
            kwargs["required"] = True
        elif kind is not bool:
            kwargs["default"] = field.get_default(call_default_factory=True)
        ap.add_argument(flag, dest=name, **kwargs)
    add_dry_run(ap, dry_run)
    if "address" in model.model_fields:  # it starts Ray
        add_verbose(ap)


def tool_config(model: type[ToolJob], args: argparse.Namespace) -> Any:
    """The parsed flags as ``model``; a rejected value is one ``error:`` line (exit 2)
    naming the flag."""
    try:
        return model.model_validate({k: getattr(args, k) for k in model.model_fields})
    except ValidationError as err:
        lines = []
        for loc, e, shown in rejected(err):
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"--{loc[0].replace('_', '-')}: {msg}{shown}" if loc else msg)
        raise ConfigError("; ".join(lines)) from None


def add_rerun_flags(ap: argparse.ArgumentParser, verb: str) -> None:
    """``--overwrite`` and ``--retry-errors``, the two ways to rerun an archive pass (label,
    embed) over outputs it has committed; ``rerun_overrides`` turns them into config keys."""
    ap.add_argument(
        "--overwrite", action="store_true", help="discard this run's outputs and start fresh"
    )
    ap.add_argument(
        "--retry-errors",
        action="store_true",
        help=f"{verb} again the files this run committed with a decode error",
    )


def rerun_overrides(args: argparse.Namespace) -> dict[str, str | None]:
    return {
        "overwrite": "true" if args.overwrite else None,
        "retry_errors": "true" if args.retry_errors else None,
    }


def add_threshold(ap: argparse.ArgumentParser) -> None:
    """The one ``--threshold`` flag of the jobs that write events (label, evaluate);
    ``threshold_overrides`` turns it into config keys."""
    ap.add_argument(
        "--threshold",
        type=float,
        help="one event threshold for every class: sets events.threshold AND turns off the "
        "per-class thresholds tuned into the model (events.thresholds_from_model=false). "
        "--set events.threshold=X alone changes only the threshold of classes the model holds "
        "no tuned one for",
    )


def threshold_overrides(args: argparse.Namespace) -> dict[str, str | None]:
    given = args.threshold is not None
    return {
        "events.threshold": str(args.threshold) if given else None,
        "events.thresholds_from_model": "false" if given else None,
    }


def resolve(
    job_cls: type[Job],
    args: argparse.Namespace,
    shorthands: list[str],
    extra: dict[str, Any] | None = None,
) -> Any:
    overrides = []
    for name in shorthands:
        value = getattr(args, name, None)
        if value is not None:
            overrides.append(f"{SHORTHANDS[name]}={value}")
    for key, value in (extra or {}).items():
        if value is not None:
            overrides.append(f"{key}={value}")
    overrides += args.overrides
    if getattr(args, "dry_run", False):
        overrides.append("run.dry_run=true")
    return load_config(job_cls, args.config or default_config(job_cls), overrides)


#: the recipe a training job runs without --config: the tiny one, never the bare defaults (the
#: paper's 384 230-step schedule on the tiny model)
DEFAULT_RECIPES = {
    "PretrainJob": "configs/pretrain/tiny.yaml",
    "FinetuneJob": "configs/finetune/tiny.yaml",
}


def default_config(job_cls: type[Job]) -> str | None:
    """The shipped tiny recipe of a training job (said in the log), or None (a job whose
    defaults are its recipe)."""
    rel = DEFAULT_RECIPES.get(job_cls.__name__)
    if rel is None:
        return None
    path = Path(__file__).resolve().parents[2] / rel
    if not path.is_file():
        raise InputError(f"--config is required (no {rel} beside this installation)")
    print(f"[{job_cls.__name__[:-3].lower()}] no --config: the tiny recipe {rel}")
    return str(path)


def command(main: F) -> F:
    """Wrap a command's ``main``: a ``JobError`` raised anywhere below it (a mistake in the
    user's inputs, a guard that stopped a run) ends as one ``error: ...`` line on stderr and
    the error's exit status, without a traceback; also one raised inside a Ray Train worker or
    a Ray Data actor (``job_error_in`` unwraps it). Every other exception is a bug and keeps
    its traceback."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except Exception as err:
            job_error = job_error_in(err)
            if job_error is None:
                raise
            print(f"error: {job_error}", file=sys.stderr)
            raise SystemExit(job_error.exit_code) from None

    return wrapped  # type: ignore[return-value]
