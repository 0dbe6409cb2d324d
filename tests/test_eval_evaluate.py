"""summarize_episodes on hand-made episodes; evaluate_policy on a tiny random model (smoke-sized)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from atod.agent.config import AgentConfig, ModelSpec, TinyArch, TokenizerSpec
from atod.agent.models import build_tiny_model
from atod.agent.tokenizer import build_tokenizer
from atod.config import load_params
from atod.envs import build_benchmark
from atod.eval.compare import EvalRecord
from atod.eval.config import EvaluateConfig
from atod.eval.evaluate import evaluate_policy, flat_metrics, pick_transcripts, summarize_episodes
from atod.types import EpisodeRecord, TurnRecord

torch.set_num_threads(1)


def episode(task_id, won, score, turns, invalid, sample=0):
    turn = TurnRecord(prompt=f"goal {task_id}", response="<action>look</action>", action="look",
                      observation="nothing", reward=0.0, invalid=invalid > 0, format_error=False,
                      num_generated_tokens=3)
    return EpisodeRecord(benchmark="webshop", split="test", task_id=task_id, group=0, sample=sample,
                         reward=10.0 * won, won=won, score=score, num_turns=turns, invalid_steps=invalid,
                         format_errors=0, turns=[turn] * turns)


def test_summarize_episodes_hand_made():
    eps = [episode("a", True, 1.0, 2, 0), episode("a", False, 0.5, 4, 2, sample=1),
           episode("b", False, 0.0, 4, 1), episode("c", True, 1.0, 2, 0)]
    s = summarize_episodes(eps, n_resamples=300, confidence=0.95, seed=0)
    assert s["n_episodes"] == 4 and s["n_tasks"] == 3
    assert s["success"]["mean"] == pytest.approx(0.5)
    assert s["score"]["mean"] == pytest.approx(2.5 / 4)
    assert s["turns"]["mean"] == pytest.approx(3.0)
    assert s["invalid_rate"]["mean"] == pytest.approx(3 / 12)  # invalid steps / steps, pooled
    for k in ("success", "score", "turns", "invalid_rate"):
        low, high = s[k]["ci"]
        assert low <= s[k]["mean"] <= high
    assert summarize_episodes(eps, n_resamples=300, seed=0) == s
    # All-won episodes: a zero-width success interval at 1.
    assert summarize_episodes([episode("a", True, 1.0, 1, 0)] * 5, n_resamples=50)["success"]["ci"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="no episodes"):
        summarize_episodes([])


def test_pick_transcripts_mixes_outcomes_and_flat_metrics():
    eps = [episode("a", False, 0.0, 1, 0), episode("b", False, 0.0, 1, 0), episode("c", True, 1.0, 2, 0)]
    texts = pick_transcripts(eps, 2)
    assert len(texts) == 2 and "task c" in texts[0] and "WON" in texts[0] and "task a" in texts[1]
    assert "--- turn 2 ---" in texts[0]
    assert pick_transcripts(eps, 10)[-1].startswith("=== webshop/test task b")
    flat = flat_metrics(summarize_episodes(eps, n_resamples=20), prefix="eval/")
    assert flat["eval/success"] == pytest.approx(1 / 3) and "eval/invalid_rate_ci_high" in flat


@pytest.fixture(scope="module")
def tiny_webshop():
    params = load_params(profile="smoke")
    bench = build_benchmark("webshop", params.prepare)
    tok = build_tokenizer(bench.corpus_texts(), TokenizerSpec(vocab_size=512))
    spec = ModelSpec(arch=TinyArch(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32,
                                   max_position_embeddings=1024))
    return bench, tok, build_tiny_model(spec, tok, seed=0)


def test_evaluate_policy_tiny_random_model(tiny_webshop):
    bench, tok, model = tiny_webshop
    cfg = EvaluateConfig(tasks_per_split=3, samples_per_task=2, tasks_per_batch=2, bootstrap_samples=50,
                         num_transcripts=2, seed=5)
    agent = AgentConfig(max_new_tokens=8)
    model.train()
    result = evaluate_policy(model, tok, bench, "test", cfg=cfg, agent=agent, device="cpu")
    assert model.training  # the caller's mode is restored

    assert result["benchmark"] == "webshop" and result["split"] == "test"
    assert result["n_episodes"] == 6 and result["n_tasks"] == 3 and result["temperature"] == agent.eval_temperature
    first_three = [t.task_id for t in bench.tasks("test")[:3]]
    assert sorted({r["task_id"] for r in result["episodes"]}) == sorted(first_three)
    won = np.array([r["won"] for r in result["episodes"]], dtype=float)
    assert result["success"]["mean"] == pytest.approx(won.mean())
    for k in ("success", "score", "turns", "invalid_rate"):
        low, high = result[k]["ci"]
        assert low <= result[k]["mean"] <= high
    assert 1 <= len(result["transcripts"]) <= 2 and "--- turn 1 ---" in result["transcripts"][0]
    json.dumps(result)  # artifacts are plain JSON

    again = evaluate_policy(model, tok, bench, "test", cfg=cfg, agent=agent, device="cpu")
    # same tasks, same seeds: deterministic, down to the generated text (the outcome rows alone would agree
    # for any sampling: this random model makes a format error at every turn)
    assert again["episodes"] == result["episodes"] and again["transcripts"] == result["transcripts"]
    other = evaluate_policy(model, tok, bench, "test", cfg=cfg.model_copy(update={"seed": cfg.seed + 1}),
                            agent=agent, device="cpu")
    assert other["transcripts"] != result["transcripts"]  # the seed drives the sampling
    rec = EvalRecord.from_result(result, method="vanilla", seed=0, checkpoint="final")
    assert rec.n_episodes == 6

    with pytest.raises(ValueError, match="no split"):
        evaluate_policy(model, tok, bench, "valid_seen", cfg=cfg, agent=agent, device="cpu")
