"""What a job's log shows: our progress lines, warnings and errors.

Ray's own INFO lines (Ray Data's "Starting execution", execution plans and "execution
finished" of every dataset, Ray Train's "Reporting training result", "Checkpoint
successfully created", worker-group start lines) stay in the log files Ray already keeps
(``<session>/logs/ray-data/ray-data.log``, the worker and controller logs) and leave the
console, in the driver and, through a worker setup hook, in every worker process of the job.
``--verbose`` (or ``A2V_VERBOSE=1`` in the job's environment) puts them back.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import yaml

VERBOSE_ENV = "A2V_VERBOSE"

#: the hook Ray runs in every worker process of the job before its first task
WORKER_HOOK = "pipelines.runtime.quiet_logs.quiet_worker"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false")


#: Ray Data's variable naming its logging config (read each time Ray Data configures logging)
RAY_DATA_CONFIG_ENV = "RAY_DATA_LOGGING_CONFIG"


def quiet_ray_data() -> None:
    """Ray Data's console handler at WARNING, its file handlers as they are. Ray Data
    configures its logger again in every task that runs a dataset's operator, from its
    default config or the YAML ``$RAY_DATA_LOGGING_CONFIG`` names: so the quiet config is
    that YAML (written once per node, in the temp dir). A user's own config is kept."""
    if os.environ.get(RAY_DATA_CONFIG_ENV):
        return
    import ray.data._internal.logging as data_logging

    config = copy.deepcopy(data_logging.DEFAULT_CONFIG)
    config["handlers"]["console"]["level"] = "WARNING"
    text = yaml.safe_dump(config)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"a2v-ray-data-logging-{digest}.yaml"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    os.environ[RAY_DATA_CONFIG_ENV] = str(path)
    data_logging.configure_logging()


def quiet_train_worker() -> None:
    """Ray Train's "Reporting training result" line is logged by a logger named after its
    file (not under ``ray.train``), so ``ray.train.LoggingConfig`` does not reach it."""
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def quiet_progress_bars() -> None:
    """No Ray Data progress bars in a worker's own datasets either (the driver's datasets
    carry the driver's context, whose bars ``init_ray`` turns off), and not the line saying
    so once per process (Ray logs it through ``log_once``: its key taken here first)."""
    import ray.data
    from ray.util.debug import log_once

    ray.data.DataContext.get_current().enable_progress_bars = False
    log_once("ray_data_progress_manager_disabled")


def quiet_ray_internals() -> None:
    """Deprecation warnings raised inside Ray's own modules (a user can do nothing about
    them; ours still show) and MLflow's INFO lines (store migrations, new experiments)."""
    import warnings

    from ray.util.annotations import RayDeprecationWarning

    warnings.filterwarnings("ignore", category=RayDeprecationWarning, module=r"ray(\.|$)")
    # MLflow sets its logger's level when it is imported: its variable, and the level now
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())


def quiet_driver() -> None:
    """The driver's side, after Ray started (``init_ray``)."""
    quiet_ray_data()
    quiet_progress_bars()
    quiet_ray_internals()


def quiet_worker() -> None:
    """The worker setup hook (``WORKER_HOOK``): a failure here never stops a job."""
    for quiet in (quiet_ray_data, quiet_train_worker, quiet_progress_bars, quiet_ray_internals):
        try:
            quiet()
        except Exception as err:  # a Ray upgrade moved something: louder logs, same job
            logging.getLogger(__name__).debug("quiet_logs: %s: %r", quiet.__name__, err)


def runtime_env() -> dict:
    """The job's runtime env entries that quiet its workers (none when verbose)."""
    return {} if verbose() else {"worker_process_setup_hook": WORKER_HOOK}


def train_log_level() -> str:
    """Ray Train's console level (``ray.train.LoggingConfig``)."""
    return "INFO" if verbose() else "WARNING"
