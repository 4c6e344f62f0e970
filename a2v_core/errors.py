"""Errors that are the user's to fix, raised as values by library code and turned into one
``error: ...`` line and exit status 2 by each command's ``main`` (``pipelines.jobargs``)."""

from __future__ import annotations


class InputError(ValueError):
    """An input (a URI, a file, a table) is not what the job needs. The message names the
    argument or file and what was expected."""


class RunStopped(RuntimeError):
    """A guard stopped a training run (e.g. representation collapse): not an input mistake,
    but a result the user must see as one line, with the MLflow run marked FAILED."""
