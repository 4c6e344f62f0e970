"""Errors a job ends with, raised as values by library code. Only a command's ``main``
(wrapped by ``pipelines.runtime.jobargs.command``) turns one into a single ``error: ...`` line on
stderr and its ``exit_code``; nothing below ``main`` ends the process."""

from __future__ import annotations

import re


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


def job_error_in(err: BaseException | None) -> JobError | None:
    """The ``JobError`` an exception carries, however Ray wrapped it: Ray Train's
    ``WorkerGroupError`` (``worker_failures``) and ``ControllerError``, a ``RayTaskError``
    (``cause``: a Ray Data actor's or task's exception), or a ``__cause__``/``__context__``
    chain; last, the text of a wrapper whose exception did not travel with it (Ray Data's
    ``UserCodeException`` keeps only the traceback text, whose last line is
    ``a2v_core.errors.InputError: <message>``). None when there is none: then the error is a
    bug and keeps its traceback. (Found by attribute and text, so this module needs no Ray.)"""
    seen: set[int] = set()
    todo = [err]
    wrapped = None
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(e, JobError):
            if not isinstance(cause, BaseException):
                return e  # the error as raised (a Ray wrapper has a ``cause``)
            wrapped = wrapped or e
        if isinstance(cause, BaseException):
            todo.insert(0, cause)
        todo += list((getattr(e, "worker_failures", None) or {}).values())
        todo += [getattr(e, "controller_failure", None), e.__cause__, e.__context__]
    if wrapped is not None or err is None:
        return wrapped
    found = _RAISED.findall(str(err))
    if found:
        name, message = found[-1]
        return {"InputError": InputError, "RunStopped": RunStopped}.get(name, JobError)(message)
    return None


#: the last line of a traceback text that ended in one of this module's errors
_RAISED = re.compile(r"^a2v_core\.errors\.(InputError|RunStopped|JobError): (.+)$", re.MULTILINE)
