"""Fixtures of the end-to-end modules that share the share-nothing cluster."""

from __future__ import annotations

import pytest

from tests.e2e.cluster_jobs import PASSWORD


@pytest.fixture(scope="session")
def tracking_env(mlflow_server) -> dict[str, str]:
    """A job's environment: the MLflow server through a URI with a password (the server has no
    auth and ignores it), as users pass one."""
    host = mlflow_server.split("://", 1)[1]
    return {"MLFLOW_TRACKING_URI": f"http://a2v:{PASSWORD}@{host}"}
