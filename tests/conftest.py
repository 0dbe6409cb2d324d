import os
from pathlib import Path

import pytest

from atod.project_env import configure_environment

ROOT = Path(__file__).resolve().parent.parent
configure_environment(ROOT)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT
