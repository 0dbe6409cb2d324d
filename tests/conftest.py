import os
import random
from pathlib import Path

import pytest
import yaml

from atod.config import resolve
from atod.envs.base import Benchmark, Env, StepResult, Task
from atod.project_env import configure_environment

ROOT = Path(__file__).resolve().parent.parent
configure_environment(ROOT)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


def load_script(name: str):
    """The module of benchmarks/<name>.py (scripts, not a package: loaded from their path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- helpers shared by the benchmark tests (tests/test_env_*.py import them from here) -------------


# The tiny-model tests' world: 1-layer models on a small generated Search-QA benchmark.
TINY_ARCH = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64}


def tiny_searchqa():
    """(benchmark, tokenizer): a small generated Search-QA benchmark (20 train tasks) and a 512-token
    byte-level BPE tokenizer built on its corpus."""
    from atod.agent.config import TokenizerSpec
    from atod.agent.tokenizer import build_tokenizer
    from atod.config import PrepareConfig
    from atod.envs import build_benchmark

    prep = PrepareConfig(searchqa={"num_entities": 30, "train_tasks": 20, "test_in_domain_tasks": 4,
                                   "test_out_of_domain_tasks": 4})
    bench = build_benchmark("searchqa", prep)
    return bench, build_tokenizer(bench.corpus_texts(), TokenizerSpec(vocab_size=512))


def tiny_project(root: Path, models: dict[str, int]) -> Path:
    """A project root for a stage test: `tiny_searchqa()` saved under data/benchmarks/searchqa and, at each
    path of `models` (relative to `root`), a tiny model built with that seed plus the tokenizer."""
    from atod.agent.config import ModelSpec, TinyArch
    from atod.agent.models import build_tiny_model

    bench, tok = tiny_searchqa()
    bench.save(root / "data/benchmarks/searchqa")
    for out, seed in models.items():
        build_tiny_model(ModelSpec(arch=TinyArch(**TINY_ARCH)), tok, seed).save_pretrained(root / out)
        tok.save_pretrained(root / out)
    return root


def prepare_config(profile: str):
    """The `prepare` section of params.yaml under `profile`."""
    return resolve(yaml.safe_load((ROOT / "params.yaml").read_text()), profile=profile).prepare


def profile_config(section: str, profile: str):
    """The `prepare.<section>` config (e.g. "webshop") of params.yaml under `profile`."""
    return getattr(prepare_config(profile), section)


def play(env: Env, task: Task, rng: random.Random, policy) -> list[StepResult]:
    """One episode with `policy(env, result, rng) -> action`, `result` being the last StepResult;
    returns the StepResults, reset's first."""
    results = [env.reset(task)]
    while not results[-1].done:
        results.append(env.step(policy(env, results[-1], rng)))
    return results


def expert(noise: float):
    """The env's scripted expert as a `play` policy, a random step with probability `noise`."""
    return lambda env, result, rng: env.expert_action(rng, noise)


def success_rate(episodes: list[list[StepResult]]) -> float:
    return sum(e[-1].info.won for e in episodes) / len(episodes)


def assert_same_tasks(a: Benchmark, b: Benchmark) -> None:
    """Every split of `a` holds the same tasks (JSON, in order) in `b`."""
    for split in a.splits:
        assert [t.to_json() for t in a.tasks(split)] == [t.to_json() for t in b.tasks(split)], split


def assert_same_episodes(a: Benchmark, b: Benchmark, *, seed: int, noise: float, per_split: int = 4) -> None:
    """A noisy expert seeded alike plays the first `per_split` tasks of every split of `a` step for
    step the same in a fresh env of `a` and of `b`."""
    for split in a.splits:
        for task in a.tasks(split)[:per_split]:
            first = play(a.make_env(), task, random.Random(seed), expert(noise))
            second = play(b.make_env(), task, random.Random(seed), expert(noise))
            assert first == second, (split, task.task_id)
