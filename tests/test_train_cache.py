"""Teacher trajectory cache: parquet + manifest round trip, SeqKD examples, atomic writes; the
`cache_teacher` stage passes `seqkd_successful_only` on."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import TINY_ARCH, tiny_project, tiny_searchqa

from atod.agent.config import AgentConfig, ModelSpec, TinyArch
from atod.agent.models import build_tiny_model
from atod.train.config import CacheTeacherConfig
from atod.train.teacher_cache import TeacherCache, cache_teacher_trajectories, load_teacher_cache

AGENT = AgentConfig(max_new_tokens=12)
TINY = ModelSpec(arch=TinyArch(**TINY_ARCH))


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    bench, tok = tiny_searchqa()
    return bench, tok, build_tiny_model(TINY, tok, seed=3)


def test_cache_round_trip(setup, tmp_path):
    bench, tok, teacher = setup
    cfg = CacheTeacherConfig(tasks_per_benchmark=3, samples_per_task=2, seed=5)
    manifest = cache_teacher_trajectories(teacher, tok, bench, cfg=cfg, agent_cfg=AGENT, out_dir=tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary directories left
    cache = load_teacher_cache(tmp_path / "c")
    assert cache.manifest == manifest == json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["num_episodes"] == 6 == len(cache.episodes)
    assert manifest["num_turns"] == len(cache.turns) == int(cache.episodes["num_turns"].sum())
    assert manifest["generated_tokens"] == sum(len(x) for x in cache.turns["response_token_ids"])
    for row in cache.turns.itertuples():
        assert len(row.response_token_ids) == len(row.response_logprobs) > 0
        assert all(lp <= 0 for lp in row.response_logprobs)
        # the stored token ids decode to the stored response text
        assert tok.decode(list(row.response_token_ids), skip_special_tokens=True) == row.response
    # same seed -> same cache
    again = cache_teacher_trajectories(teacher, tok, bench, cfg=cfg, agent_cfg=AGENT, out_dir=tmp_path / "c")
    assert again == manifest
    pd.testing.assert_frame_equal(load_teacher_cache(tmp_path / "c").turns, cache.turns)


def test_sft_examples_successful_only():
    episodes = pd.DataFrame({"episode": [0, 1], "task_id": ["a", "b"], "won": [True, False]})
    turns = pd.DataFrame({"episode": [0, 0, 1], "turn": [1, 0, 0], "prompt": ["p01", "p00", "p10"],
                          "response": ["r01", "r00", "r10"]})
    cache = TeacherCache({"benchmark": "searchqa"}, episodes, turns)
    assert [e.prompt for e in cache.sft_examples()] == ["p00", "p01"]
    assert [e.prompt for e in cache.sft_examples(successful_only=False)] == ["p00", "p01", "p10"]
    assert cache.success_rate == 0.5
    none_won = TeacherCache({"benchmark": "searchqa"}, episodes.assign(won=False), turns)
    assert len(none_won.sft_examples()) == 3  # falls back to every episode


def test_missing_cache_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="cache_teacher stage"):
        load_teacher_cache(tmp_path)


def test_cache_tasks_leave_out_the_validation_slice(setup):
    from atod.train.splits import split_validation
    from atod.train.teacher_cache import cache_tasks

    bench = setup[0]
    _, valid = split_validation(bench.tasks("train"), 4)
    every = cache_tasks(bench, 100, seed=0, holdout=4)
    assert len(every) == len(bench.tasks("train")) - 4
    assert not {t.task_id for t in every} & {t.task_id for t in valid}
    assert cache_tasks(bench, 5, seed=0, holdout=4) == every[:5]  # the same seeded order, cut


@pytest.mark.parametrize("successful_only", [True, False])
def test_cache_teacher_stage_uses_seqkd_successful_only(tmp_path, monkeypatch, successful_only):
    from atod.config import Params
    from tasks.stages import SEQKD_DIR, SFT_DIR, TEACHER_DIR, StageRun
    from tasks.stages.cache_teacher import cache_teacher
    from tasks.tracking import TRACKING_ENV

    root = tiny_project(tmp_path, {SFT_DIR: 0, TEACHER_DIR: 1})
    monkeypatch.setenv(TRACKING_ENV, "off")
    asked, original = [], TeacherCache.sft_examples

    def spy(self, successful_only=True):
        asked.append(successful_only)
        return original(self, successful_only=successful_only)

    monkeypatch.setattr(TeacherCache, "sft_examples", spy)
    p = Params(prepare={"benchmarks": ["searchqa"]}, agent={"max_new_tokens": 12}, train={"eval_tasks": 4, "benchmarks": ["searchqa"]},
               models={"student": {"arch": TINY_ARCH}, "teacher": {"arch": TINY_ARCH}, "device": "cpu",
                       "torch_threads": 1},
               cache_teacher={"tasks_per_benchmark": 2, "seqkd_successful_only": successful_only,
                              "seqkd": {"steps": 1, "sequences_per_step": 2}})
    summary = cache_teacher(p, root, StageRun(run_id="", root=root))
    assert asked == [successful_only]
    assert summary["seqkd"]["examples"] > 0 and (root / SEQKD_DIR / "model.safetensors").is_file()


def test_a_failed_or_interrupted_write_keeps_the_previous_cache(setup, tmp_path, monkeypatch):
    """A write that fails midway leaves the previous cache loadable as it was; a write killed between the
    swap's two renames (only `<name>.old` complete) still loads; a directory without its COMPLETE marker
    (a copy that stopped midway) is refused with the stage to run."""
    bench, tok, teacher = setup
    cfg = CacheTeacherConfig(tasks_per_benchmark=2, samples_per_task=2, seed=5)
    first = cache_teacher_trajectories(teacher, tok, bench, cfg=cfg, agent_cfg=AGENT, out_dir=tmp_path / "c")
    turns = load_teacher_cache(tmp_path / "c").turns

    calls = []

    def fail_second(self, path, *args, **kwargs):  # episodes.parquet written, then turns.parquet fails
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, path, *args, **kwargs)

    real = pd.DataFrame.to_parquet
    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail_second)
    with pytest.raises(OSError, match="disk full"):
        cache_teacher_trajectories(teacher, tok, bench, cfg=cfg.model_copy(update={"seed": 6}), agent_cfg=AGENT,
                                   out_dir=tmp_path / "c")
    monkeypatch.undo()
    assert len(calls) == 2
    kept = load_teacher_cache(tmp_path / "c")
    assert kept.manifest == first
    pd.testing.assert_frame_equal(kept.turns, turns)

    (tmp_path / "c").rename(tmp_path / "c.old")  # killed after the first rename of a later write
    pd.testing.assert_frame_equal(load_teacher_cache(tmp_path / "c").turns, turns)
    (tmp_path / "c.old" / "COMPLETE").unlink()
    with pytest.raises(FileNotFoundError, match="no complete teacher cache .* run the cache_teacher stage"):
        load_teacher_cache(tmp_path / "c")
