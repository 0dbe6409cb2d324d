"""params.yaml validation: the shipped file loads in every profile; each kind of bad input is refused
before compute with a message naming the key path and what is allowed."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atod.config import PROFILES, ConfigError, Params, deep_merge, load_params, resolve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_params_load_in_every_profile(raw):
    for name in PROFILES:
        p = resolve(raw, profile=name)
        assert isinstance(p, Params) and p.profile == name
    assert load_params(ROOT / "params.yaml").profile == raw["profile"]


def test_profiles_override_and_differ(raw):
    smoke, default, gpu = (resolve(raw, profile=n) for n in ("smoke", "default", "gpu"))
    assert smoke.train.steps < default.train.steps < gpu.train.steps
    assert smoke.prepare.alfworld.train_tasks < default.prepare.alfworld.train_tasks
    # a profile only touches what it overrides
    assert smoke.agent.history_length == default.agent.history_length
    assert smoke.evaluate.confidence == default.evaluate.confidence
    assert smoke.train.clip_eps == default.train.clip_eps


def test_deep_merge_replaces_lists_and_keeps_siblings():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    out = deep_merge(base, {"a": {"y": [3]}})
    assert out == {"a": {"x": 1, "y": [3]}, "b": 2}
    assert base["a"]["y"] == [1, 2]


def _bad(raw, path, value):
    bad = copy.deepcopy(raw)
    node = bad
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return bad


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("train.stepz", 3, ["train.stepz", "unknown key", "steps"]),
        ("train.steps", "many", ["train.steps", "integer", "'many'"]),
        ("train.steps", 0, ["train.steps", "greater than or equal to 1"]),
        ("train.clip_eps", 1.5, ["train.clip_eps", "less than or equal to 1"]),
        ("train.methods", ["atod", "ppo"], ["train.methods.1", "'grpo'", "'atod'", "'ppo'"]),
        ("train.anneal.kind", "sigmoid", ["train.anneal.kind", "'linear'", "'cosine'"]),
        ("train.anneal.kappa_min", 2.0, ["train.anneal", "kappa_min"]),
        ("train.updates_per_step", 17, ["train", "updates_per_step (17)", "a minibatch would be empty"]),
        # data-parallel processes share a step's tasks equally (params.yaml has tasks_per_step 2)
        ("train.processes_per_run", 3, ["train", "tasks_per_step (2) must be a multiple of processes_per_run (3)"]),
        ("models.student.source", "pretrained", ["models.student", "name_or_path"]),
        ("models.tokenizer.vocab_size", 100, ["models.tokenizer", "vocab_size 100", "byte-level ASCII alphabet",
                                              "use at least 175"]),
        ("models.student.arch.num_heads", 5, ["hidden_size", "num_heads"]),
        # every model is trained, and float16 AdamW without loss scaling gives NaN weights within a step
        ("models.teacher.dtype", "float16", ["models.teacher.dtype", "float16 is not supported", "use bfloat16"]),
        ("agent.eval_temperature", -1, ["agent.eval_temperature", "greater than 0"]),
        ("prepare.benchmarks", ["alfworld", "minecraft"], ["prepare.benchmarks.1", "'webshop'"]),
        ("evaluate.confidence", 1.5, ["evaluate.confidence"]),
        ("bogus_section", {}, ["bogus_section", "unknown key", "train"]),
        # SeqKD trains on the cache: a warm-up's demonstration, check and checkpoint settings do not apply
        ("cache_teacher.seqkd.eval_every", 10, ["cache_teacher.seqkd.eval_every", "unknown key", "lr"]),
        # repeats would train one run twice, at once, in one work directory
        ("train.seeds", [0, 1, 0], ["  train: seeds lists 0 more than once"]),
        ("train.methods", ["atod", "opd", "atod"], ["  train: methods lists atod more than once"]),
        ("prepare.benchmarks", ["webshop", "webshop"], ["  prepare: benchmarks lists webshop more than once"]),
        # GRPO's group advantage is 0 for a group of one (the default's methods: grpo, opd, atod)
        ("train.samples_per_task", 1, ["train: samples_per_task is 1", "so grpo, atod would train without"]),
        # what one section asks of another
        ("prepare.benchmarks", ["alfworld"],
         ["  train.benchmarks has webshop, searchqa, which prepare.benchmarks (alfworld) does not generate"]),
        ("train.eval_tasks", 3000, [("train.eval_tasks (3000) validation tasks are held out of "
                                    "prepare.alfworld.train_tasks (6000): they must be under half")]),
        ("agent.max_new_tokens", 1000, ["models.student.arch.max_position_embeddings (1024) leaves 24 positions"]),
        ("models.tokenizer.source", "pretrained", [("models: tokenizer.source 'pretrained' loads the tokenizer of "
                                                   "student.name_or_path, but student.source is 'tiny'")]),
    ],
)
def test_bad_values_name_the_key(raw, path, value, expected):
    with pytest.raises(ConfigError) as exc:
        resolve(_bad(raw, path, value))
    message = str(exc.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"


def test_bad_value_in_another_profile_is_caught_early(raw):
    bad = copy.deepcopy(raw)
    bad["profiles"]["gpu"]["train"]["steps"] = -5
    with pytest.raises(ConfigError) as exc:
        resolve(bad, profile="smoke")
    assert "profile 'gpu'" in str(exc.value) and "train.steps" in str(exc.value)


def test_bad_profile_blocks(raw):
    with pytest.raises(ConfigError, match="profile: 'huge' is not one of smoke, default, gpu"):
        resolve(raw, profile="huge")
    bad = copy.deepcopy(raw)
    bad["profiles"]["tiny"] = {}
    with pytest.raises(ConfigError, match="profiles.tiny: unknown profile"):
        resolve(bad)
    bad = copy.deepcopy(raw)
    bad["profiles"]["smoke"]["trian"] = {"steps": 1}
    with pytest.raises(ConfigError, match=r"profiles.smoke.trian: unknown section; allowed: prepare"):
        resolve(bad)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    f = tmp_path / "params.yaml"
    f.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(f)
    f.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_params(f)


def test_flat_params_are_leaves(raw):
    flat = resolve(raw).flat()
    assert flat["train.anneal.kappa_min"] == 0.1
    assert flat["profile"] == raw["profile"]
    assert all(not isinstance(v, dict) for v in flat.values())


def test_cli_refuses_bad_params_with_exit_2(raw, tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(_bad(raw, "train.lr", -1.0)))
    proc = subprocess.run([sys.executable, "-m", "atod.cli", "config", "validate", "--params", str(f)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 2
    assert "train.lr" in proc.stderr and "greater than 0" in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "atod.cli", "config", "validate"], capture_output=True, text=True, check=False,
                        cwd=ROOT)
    assert ok.returncode == 0, ok.stderr


def test_samples_per_task_1_is_allowed_without_an_rl_term(raw):
    """OPD alone has rho = 0: its groups need no second episode."""
    bad = _bad(_bad(raw, "train.samples_per_task", 1), "train.methods", ["opd"])
    assert resolve(bad).train.samples_per_task == 1


def test_an_error_in_the_sections_is_not_blamed_on_a_profile(raw):
    """The default profile has no overrides and is validated first, so a bad key in the sections themselves
    is reported without a profile (it used to read "profile 'smoke', including profiles.smoke")."""
    with pytest.raises(ConfigError) as exc:
        resolve(_bad(raw, "train.stepz", 3), profile="smoke")
    assert str(exc.value).splitlines()[:2] == ["invalid parameters in params.yaml:",
                                               ("  train.stepz: unknown key; allowed keys here: adv_eps, anneal, "
                                               "benchmarks, checkpoint_every, clip_eps, eval_every, eval_tasks, lr, "
                                               "lr_schedule, max_grad_norm, methods, microbatch_tokens, "
                                               "parallel_runs, processes_per_run, samples_per_task, seeds, steps, tasks_per_step, "
                                               "updates_per_step, warmup_steps, weight_decay")]
