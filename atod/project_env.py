"""The project's own offline-safe process environment.

Called explicitly by entry points (the `atod` CLI, the pipeline scripts, tests) - never on import - so a
user does not export anything by hand: Prefect keeps its state under `<root>/.prefect` with analytics
off, MLflow tracks into `<root>/mlflow.db` (sqlite), DVC analytics are off, Hugging Face works offline.
Values already set in the environment win (a user can point MLflow or Prefect elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path


def find_project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: cwd) holding params.yaml and pyproject.toml,
    falling back to the directory holding this package's parent."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "params.yaml").is_file() and (d / "pyproject.toml").is_file():
            return d
    return Path(__file__).resolve().parent.parent


def offline_environment(root: Path) -> dict[str, str]:
    """The variables `configure_environment` sets (unless already set)."""
    return {
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "GIT_PYTHON_REFRESH": "quiet",
    }


def configure_environment(root: Path | None = None) -> Path:
    """Set the offline-safe variables for this process and its children; returns the project root."""
    root = root or find_project_root()
    for key, value in offline_environment(root).items():
        os.environ.setdefault(key, value)
    return root


if __name__ == "__main__":  # `eval "$(python -m atod.project_env --exports)"` in the shell scripts
    import sys

    if sys.argv[1:] != ["--exports"]:
        sys.exit("usage: python -m atod.project_env --exports")
    _root = find_project_root()
    for _key, _value in offline_environment(_root).items():
        print(f'export {_key}="${{{_key}:-{_value}}}"')
