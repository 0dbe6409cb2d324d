"""benchmarks/gpu_repro.py: the reproduction's settings are those of `scripts/run.sh repro`, and they land
in the chosen profile's section (so a profile's own overrides cannot hide them). The run itself, on a
CPU with the smoke profile, is in tests/test_pipeline_e2e.py."""

import re
import shutil
from pathlib import Path

import yaml
from conftest import load_script

from atod.config import load_params

ROOT = Path(__file__).resolve().parents[1]


def _module():
    return load_script("gpu_repro")


def test_repro_settings_are_the_run_scripts():
    script = (ROOT / "scripts" / "run.sh").read_text()
    repro = script[script.index('exec dvc exp run -n'):script.index("elif")]  # the `run.sh repro` branch
    sets = dict(re.findall(r"""-S ['"]?([\w.]+)=([^'"\s]+)""", repro))
    assert sets.pop("train.benchmarks") == "[$list]"  # the benchmarks given on the command line
    assert {k: yaml.safe_load(v) for k, v in sets.items()} == _module().REPRO_SETTINGS


def test_settings_win_over_the_profiles_own(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    module = _module()
    smoke = load_params(tmp_path / "params.yaml", profile="smoke")
    settings = {**module.REPRO_SETTINGS, "train.benchmarks": ["webshop"], "models.device": "cpu"}
    assert smoke.train.seeds != [0, 1, 2] and smoke.train.steps != 90  # smoke overrides both
    params = load_params(module.write_params(tmp_path, "smoke", settings))
    assert params.profile == "smoke"
    assert (params.train.methods, params.train.seeds, params.train.steps, params.train.anneal.anneal_steps) == (
        module.REPRO_SETTINGS["train.methods"], [0, 1, 2], 90, 48)
    assert params.train.benchmarks == ["webshop"] and params.models.device == "cpu"
    assert params.agent == smoke.agent and params.evaluate == smoke.evaluate  # the rest is the profile's
