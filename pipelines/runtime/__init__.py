"""What every job runs on: its arguments, its pinned paths, the Ray connection, MLflow."""
