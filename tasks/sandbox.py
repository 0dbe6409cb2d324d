"""A throw-away copy of the project (git + DVC initialised) for tests and overhead measurements.

    copy_project(src, dst, profile="smoke") -> dst

Copies the code and configuration (atod/, tasks/, flows/, params.yaml, dvc.yaml, pyproject.toml,
.dvc/config, .dvcignore, .gitignore), sets `profile`, points the DVC remote at `dst/../dvc-remote`, and
makes one git commit (DVC experiments need one). Data, MLflow and Prefect state are not copied: the copy
starts empty, so `dvc repro` in it reproduces everything from scratch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

COPIED = ("atod", "tasks", "flows", "params.yaml", "dvc.yaml", "pyproject.toml", ".dvcignore", ".gitignore")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def sandbox_env(root: Path) -> dict[str, str]:
    """Environment for commands run in the copy: its own MLflow db and Prefect home, the venv first on
    PATH, no inherited parent run or Prefect API."""
    from atod.project_env import offline_environment

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ATOD_", "MLFLOW_", "PREFECT_")) and k not in ("DVC_NO_ANALYTICS",)}
    env.update(offline_environment(root))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(root)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True, timeout=300)


def copy_project(src: Path, dst: Path, profile: str | None = "smoke",
                 profile_overrides: dict | None = None) -> Path:
    """Copy the project from `src` to a new directory `dst`, set `profile`, init git and commit.
    `profile_overrides` are deep-merged into `profiles.<profile>` of the copy's params.yaml (tests use
    it to shrink the smoke profile further; the YAML is rewritten, comments are lost)."""
    import yaml

    from atod.config import deep_merge
    from flows.pipeline import set_profile

    dst.mkdir(parents=True)
    for name in COPIED:
        s = src / name
        if s.is_dir():
            shutil.copytree(s, dst / name, ignore=IGNORE)
        elif s.is_file():
            shutil.copy2(s, dst / name)
    (dst / ".dvc").mkdir()
    shutil.copy2(src / ".dvc" / "config", dst / ".dvc" / "config")
    (dst / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    if profile is not None and profile_overrides:
        raw = yaml.safe_load((dst / "params.yaml").read_text())
        raw.setdefault("profiles", {})[profile] = deep_merge(raw["profiles"].get(profile) or {}, profile_overrides)
        (dst / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    if profile is not None:
        set_profile(dst / "params.yaml", profile)
    env = sandbox_env(dst)
    dvc = [sys.executable, "-m", "dvc"]
    _run(dvc + ["remote", "add", "-f", "-d", "local", str(dst.parent / "dvc-remote")], dst, env)
    _run(["git", "init", "-q"], dst, env)
    _run(["git", "-c", "user.name=atod", "-c", "user.email=atod@localhost", "add", "-A"], dst, env)
    _run(["git", "-c", "user.name=atod", "-c", "user.email=atod@localhost", "commit", "-q", "-m", "sandbox"], dst, env)
    return dst
