"""Teacher trajectory cache: parquet + manifest round trip, SeqKD examples, atomic writes."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from atod.agent.config import AgentConfig, ModelSpec, TinyArch, TokenizerSpec
from atod.agent.models import build_tiny_model
from atod.agent.tokenizer import build_tokenizer
from atod.config import PrepareConfig
from atod.envs import build_benchmark
from atod.train.config import CacheTeacherConfig
from atod.train.teacher_cache import TeacherCache, cache_teacher_trajectories, load_teacher_cache

AGENT = AgentConfig(max_new_tokens=12)
TINY = ModelSpec(arch=TinyArch(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64))


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    prep = PrepareConfig(searchqa={"num_entities": 30, "train_tasks": 20, "test_in_domain_tasks": 4,
                                   "test_out_of_domain_tasks": 4})
    bench = build_benchmark("searchqa", prep)
    tok = build_tokenizer(bench.corpus_texts(), TokenizerSpec(vocab_size=512))
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
