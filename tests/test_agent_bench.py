"""The rollout benchmark runs end to end on a real benchmark (tiny sizes; no timing assertions)."""

from __future__ import annotations

from pathlib import Path

import torch

from atod.agent.bench import format_report, layout_cost, run_rollout_benchmark
from atod.agent.config import AgentConfig, ModelSpec, TinyArch, TokenizerSpec
from atod.agent.tokenizer import build_tokenizer
from atod.config import load_params
from atod.envs import build_benchmark

torch.set_num_threads(1)


def test_rollout_benchmark_and_layout_cost():
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", profile="smoke")
    bench = build_benchmark("searchqa", params.prepare)
    spec = ModelSpec(arch=TinyArch(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64))
    report = run_rollout_benchmark(params, benchmark=bench, env_counts=(1, 3), spec=spec, device="cpu",
                                   agent_cfg=AgentConfig(max_new_tokens=6), max_turns=2, naive_max_episodes=2)
    assert set(report["runs"]) == {"1", "3"} and report["speedup_3"] > 0
    assert report["benchmark"] == "searchqa" and report["device"] == "cpu"
    for n, run in report["runs"].items():
        assert run["ours"]["env_steps"] <= int(n) * 2 and run["naive"]["episodes"] == min(int(n), 2)
        assert run["ours"]["env_steps"] >= int(n) and run["generate_batched"]["env_steps"] >= int(n)
        assert run["ours"]["generated_tokens"] <= run["ours"]["env_steps"] * 6
    assert "speedup" in format_report(report)

    tok = build_tokenizer(bench.corpus_texts(), TokenizerSpec())
    cost = layout_cost(bench, tok, AgentConfig(), episodes=5)
    assert cost["episodes"] == 5 and cost["mean_turns"] >= 1
    assert cost["per_turn_longest_row"] <= cost["per_turn_tokens_per_episode"] * 5
