"""MLflow for every job: one run per job (rank 0 only), params = the flattened resolved config,
metrics per log interval, artifacts, and the fine-tuned model in the registry.

Tracking URI: ``tracking.uri`` > ``$MLFLOW_TRACKING_URI`` > ``sqlite:///<cwd>/mlflow.db``.
Credentials never reach MLflow: keys that look secret are dropped and URIs with user info
are redacted before logging.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from a2v_core.errors import job_error_in
from a2v_core.redact import SECRET_KEY, redact_tree, redact_uri

__all__ = ["SECRET_KEY", "Tracker", "redact", "redact_tree", "redact_uri", "tracking_uri"]


def tracking_uri(uri: str | None = None) -> str:
    return (
        uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"
    )


def redact(params: dict[str, Any]) -> dict[str, Any]:
    """Drop secret-looking keys; strip user:password@ from URIs; stringify long values."""
    out = {}
    for key, value in params.items():
        if SECRET_KEY.search(key):
            continue
        out[key] = redact_uri(str(value))[:5000]
    return out


def experiment_name(given: str | None, job: str | None = None) -> str:
    """The MLflow experiment: the one set (``tracking.experiment``), else
    ``$MLFLOW_EXPERIMENT_NAME`` (as MLflow's own clients read it), else ``a2v/<job>``."""
    return given or os.environ.get("MLFLOW_EXPERIMENT_NAME") or (f"a2v/{job}" if job else "a2v")


class Tracker:
    """A thin MLflow run handle; every method is a no-op when ``active`` is False."""

    def __init__(self, uri: str | None, experiment: str | None, active: bool = True) -> None:
        self.active = active
        self.run_id: str | None = None
        self.logged_through = -1  # steps up to here are in the run already (see resume_from)
        if not active:
            return
        import mlflow

        self.mlflow = mlflow
        resolved = tracking_uri(uri)
        if redact_uri(resolved) != resolved:
            # MLflow prints "View run <name> at: <tracking URI>/#/..." to stdout when a run
            # ends, password included: job logs would hold it
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        mlflow.set_tracking_uri(resolved)
        mlflow.set_experiment(experiment_name(experiment))

    def start(
        self,
        run_name: str,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        run_id: str | None = None,
    ) -> str | None:
        """Start (or, with ``run_id``, resume) a run."""
        if not self.active:
            return None
        run = self.mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags)
        self.run_id = run.info.run_id
        if params and not run_id:
            items = redact(params)
            keys = list(items)
            for i in range(0, len(keys), 100):  # MLflow caps a batch at 100 params
                self.mlflow.log_params({k: items[k] for k in keys[i : i + 100]})
        return self.run_id

    def find_run(self, run_name: str) -> str | None:
        """The id of an unfinished or finished run with this name (driver restart), else None."""
        if not self.active:
            return None
        runs = self.mlflow.search_runs(
            filter_string=f"tags.`a2v.run_name` = '{run_name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
            output_format="list",
        )
        return runs[0].info.run_id if runs else None

    def resume_from(self, step: int) -> None:
        """A Train worker group restarted from a checkpoint at ``step``: the steps it now
        repeats were already logged by the attempt that died (up to the last logged step);
        log only what comes after, so each step appears once in every metric's history."""
        if not self.active or not self.run_id:
            return
        client = self.mlflow.MlflowClient()
        logged = [
            m.step
            for key in client.get_run(self.run_id).data.metrics
            for m in client.get_metric_history(self.run_id, key)
        ]
        self.logged_through = max([step, *logged])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.active and step > self.logged_through:
            clean = {
                k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and v == v
            }
            self.mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.active:
            p = Path(path)
            if p.is_dir():
                self.mlflow.log_artifacts(str(p), artifact_path=artifact_path)
            else:
                self.mlflow.log_artifact(str(p), artifact_path=artifact_path)

    def log_text(self, text: str, name: str) -> None:
        if self.active:
            self.mlflow.log_text(redact_uri(text), name)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.active:
            self.mlflow.set_tags(redact(tags))

    def log_png(self, png: bytes, name: str) -> None:
        """A PNG (bytes, as the plot helpers return them) as an MLflow image artifact."""
        if self.active:
            import io

            from PIL import Image

            self.mlflow.log_image(Image.open(io.BytesIO(png)), name)

    def close_running_children(self, status: str = "KILLED") -> int:
        """Mark child runs of this run still RUNNING (left by an interrupted driver) as
        ``status``; -> how many."""
        if not self.active or not self.run_id:
            return 0
        runs = self.mlflow.search_runs(
            filter_string=f"tags.`mlflow.parentRunId` = '{self.run_id}' "
            "and attributes.status = 'RUNNING'",
            search_all_experiments=True,
            output_format="list",
        )
        client = self.mlflow.MlflowClient()
        for run in runs:
            client.set_terminated(run.info.run_id, status)
        return len(runs)

    def register_model(self, model: Any, registered_name: str, alias: str = "best") -> str | None:
        """Log a torch model, register a new version and point ``alias`` at it."""
        if not self.active:
            return None
        import mlflow.pytorch
        from mlflow import MlflowClient

        import a2v_core

        # pickle (not pt2): no torch.export tracing; the model code travels with the artifact.
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=registered_name,
            serialization_format="pickle",
            pip_requirements=["torch==2.13.0"],
            code_paths=[str(Path(a2v_core.__file__).parent)],
        )
        version = str(info.registered_model_version)
        MlflowClient().set_registered_model_alias(registered_name, alias, version)
        return version

    def fail(self, why: BaseException | str) -> None:
        """End the run FAILED with why as the ``a2v.error`` tag: the user's message when a
        ``JobError`` is inside the exception (however Ray wrapped it), else its type and text.
        The one place a job's MLflow run is marked FAILED."""
        if isinstance(why, BaseException):
            job_error = job_error_in(why)
            why = str(job_error) if job_error else f"{type(why).__name__}: {why}"
        self.set_tags({"a2v.error": why[:1000]})
        self.end("FAILED")

    @contextmanager
    def failing_on_error(self) -> Iterator[None]:
        """``with tracker.failing_on_error(): ...``: any exception inside marks the run FAILED
        (``fail``) and goes on."""
        try:
            yield
        except BaseException as err:
            self.fail(err)
            raise

    def end(self, status: str = "FINISHED") -> None:
        if self.active and self.run_id:
            self.mlflow.end_run(status=status)
