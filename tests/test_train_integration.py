"""The trainer's entry point on a real generated benchmark with tiny models saved to disk, and the
training-step speed benchmark (ours only here; the TRL comparison is marked slow)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_ARCH, tiny_searchqa

from atod.agent.config import ModelSpec, TinyArch, TokenizerSpec
from atod.agent.models import TokenizerMismatchError, build_tiny_model
from atod.agent.tokenizer import build_tokenizer
from atod.config import Params
from atod.train.trainer import train

ARCH = TINY_ARCH


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("models")
    bench, tok = tiny_searchqa()
    spec = ModelSpec(arch=TinyArch(**ARCH))
    for name, seed in (("student", 0), ("teacher", 1)):
        build_tiny_model(spec, tok, seed).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    other = build_tokenizer(bench.corpus_texts()[:50], TokenizerSpec(vocab_size=400))
    build_tiny_model(spec, other, 2).save_pretrained(root / "alien")
    other.save_pretrained(root / "alien")
    return bench, root


def params(**train) -> Params:
    base = {"steps": 2, "tasks_per_step": 2, "samples_per_task": 2, "checkpoint_every": 1, "eval_every": 1, "eval_tasks": 4,
            "anneal": {"anneal_steps": 1}}
    base.update(train)
    return Params(models={"student": {"arch": ARCH}, "teacher": {"arch": ARCH}, "device": "cpu"},
                  agent={"max_new_tokens": 12}, train=base)


def test_train_entry_point(dirs, tmp_path):
    bench, root = dirs
    logged = []
    summary = train("atod", bench, student_dir=root / "student", teacher_dir=root / "teacher", params=params(),
                    seed=0, out_dir=tmp_path, log=lambda m, s: logged.append((s, m)),
                    eval_fn=lambda model, step: {"success": 0.1 * step}, progress=False)
    assert summary["best_step"] == 2 and summary["resumed_from_step"] == 0
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "reward" in r] == [1, 2]
    assert [r["val_success"] for r in records if "val_success" in r] == pytest.approx([0.1, 0.2])
    assert all(r["kl_teacher"] == r["kl_teacher"] for r in records if "reward" in r)  # not NaN
    for sub in ("final", "best", "checkpoint/model"):
        assert (tmp_path / sub / "config.json").is_file() and (tmp_path / sub / "tokenizer.json").is_file()
    # a finished run resumes to a no-op that reports the same final metrics
    again = train("atod", bench, student_dir=root / "student", teacher_dir=root / "teacher", params=params(),
                  seed=0, out_dir=tmp_path, progress=False)
    assert again["resumed_from_step"] == 2 and again["final"]["reward"] == summary["final"]["reward"]


def test_grpo_needs_no_teacher_and_teacher_tokenizer_is_checked(dirs, tmp_path):
    bench, root = dirs
    summary = train("grpo", bench, student_dir=root / "student", teacher_dir=None, params=params(steps=1), seed=0,
                    out_dir=tmp_path / "g", progress=False)
    assert summary["final"]["kappa"] == 0.0
    with pytest.raises(TokenizerMismatchError, match="student and teacher tokenizers are not compatible"):
        train("opd", bench, student_dir=root / "student", teacher_dir=root / "alien", params=params(steps=1), seed=0,
              out_dir=tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()  # refused before anything is written
    with pytest.raises(ValueError, match="seqkd is supervised"):
        train("seqkd", bench, student_dir=root / "student", teacher_dir=None, params=params(), seed=0,
              out_dir=tmp_path / "s", progress=False)


def _bench_params() -> Params:
    return Params(prepare={"alfworld": {"train_tasks": 8, "valid_seen_tasks": 2, "valid_unseen_tasks": 2}},
                  models={"student": {"arch": ARCH}, "teacher": {"arch": ARCH}, "tokenizer": {"vocab_size": 400}},
                  agent={"max_new_tokens": 8}, train={"tasks_per_step": 2, "samples_per_task": 2, "eval_tasks": 2})


def test_train_step_benchmark_ours():
    from atod.train.bench import run_train_step_benchmark

    r = run_train_step_benchmark(_bench_params(), steps=1, warmup=1, with_trl=False)
    assert r["ours_step_s"] > 0 and r["sequences_per_step"] == 4 and r["ratio_vs_trl"] is None
    assert r["ours_step_s"] >= r["ours_rollout_s"]


@pytest.mark.slow
def test_train_step_benchmark_vs_trl():
    pytest.importorskip("trl")
    from atod.train.bench import run_train_step_benchmark

    r = run_train_step_benchmark(_bench_params(), steps=1, warmup=1)
    assert r["trl_step_s"] > 0 and r["ratio_vs_trl"] == pytest.approx(r["ours_step_s"] / r["trl_step_s"])
