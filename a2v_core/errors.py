"""Errors a job ends with, raised as values by library code. Only a command's ``main``
(wrapped by ``pipelines.runtime.jobargs.command``) turns one into a single ``error: ...`` line on
stderr and its ``exit_code``; nothing below ``main`` ends the process."""

from __future__ import annotations


class JobError(Exception):
    """A job cannot go on. ``str(err)`` is the message for the user (no ``error:`` prefix);
    ``exit_code`` the status the command exits with."""

    exit_code = 1


class InputError(JobError, ValueError):
    """An input (a URI, a file, a table, a config key) is not what the job needs. The message
    names the argument or file and what was expected. Exit status 2, as argparse uses."""

    exit_code = 2


class RunStopped(JobError, RuntimeError):
    """A guard stopped a training run (e.g. representation collapse): not an input mistake,
    but a result the user must see as one line, with the MLflow run marked FAILED."""
