"""Batched rollouts and teacher scoring with tiny random models (fake env; real benchmarks when present)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from atod.agent.config import AgentConfig, ModelSpec, TinyArch, TokenizerSpec
from atod.agent.models import build_tiny_model, token_logprobs
from atod.agent.rollout import collect_rollouts, shaped_reward
from atod.agent.teacher import LocalTeacher
from atod.agent.tokenizer import build_tokenizer
from atod.envs.base import StepInfo, StepResult, Task

torch.set_num_threads(1)


class BoxEnv:
    """A tiny ALFWorld-like env: open the box named in the goal. 3 turns at most."""

    benchmark = "alfworld"
    max_turns = 3

    def reset(self, task: Task) -> StepResult:
        self.target = task.payload["box"]
        self.turn = 0
        self.done = False
        return StepResult("You are in a room. You see box 1, box 2 and box 3.", self._admissible(), 0.0, False,
                          StepInfo())

    def _admissible(self) -> tuple[str, ...]:
        return ("look", "open box 1", "open box 2", "open box 3")

    def step(self, action: str | None) -> StepResult:
        if self.done:
            return StepResult("The episode is over.", (), 0.0, True, StepInfo(turn=self.turn))
        self.turn += 1
        won = action == f"open box {self.target}"
        invalid = action not in self._admissible()
        self.done = won or self.turn >= self.max_turns
        obs = "You open the box. Well done." if won else ("Nothing happens." if invalid else "The box is empty.")
        return StepResult(obs, self._admissible(), float(won), self.done,
                          StepInfo(won=won, score=float(won), invalid=invalid, format_error=action is None,
                                   turn=self.turn))

    def expert_action(self, rng: random.Random, noise: float = 0.0) -> str:
        return f"open box {self.target}"


@dataclass
class BoxBenchmark:
    name: str = "alfworld"
    splits: tuple[str, ...] = ("train",)
    max_turns: int = 3

    def tasks(self, split: str) -> list[Task]:
        return [Task("alfworld", split, f"box-{i}", f"open box {i % 3 + 1}", {"box": i % 3 + 1}) for i in range(6)]

    def make_env(self) -> BoxEnv:
        return BoxEnv()

    def save(self, directory: Path) -> None:  # pragma: no cover - not needed here
        raise NotImplementedError

    def corpus_texts(self) -> list[str]:
        env, out = BoxEnv(), []
        for task in self.tasks("train"):
            r = env.reset(task)
            out += [task.goal, r.observation, *r.admissible_actions, "Nothing happens.", "The box is empty.",
                    "You open the box. Well done.", "The episode is over."]
        return out


ARCH = TinyArch(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
CFG = AgentConfig(max_new_tokens=12)


@pytest.fixture(scope="module")
def setup():
    bench = BoxBenchmark()
    tok = build_tokenizer(bench.corpus_texts(), TokenizerSpec(vocab_size=400))
    model = build_tiny_model(ModelSpec(arch=ARCH), tok, seed=0)
    return bench, tok, model


def _rollout(setup, seed=0, samples=2, temperature=1.0, cfg=CFG):
    bench, tok, model = setup
    return collect_rollouts(model, tok, bench, bench.tasks("train")[:4], samples_per_task=samples,
                            temperature=temperature, agent_cfg=cfg, seed=seed, split="train", device="cpu")


def test_episodes_complete_with_consistent_records(setup):
    batch = _rollout(setup)
    bench, tok, _ = setup
    assert len(batch.episodes) == 8
    assert [(e.group, e.sample) for e in batch.episodes] == [(g, s) for g in range(4) for s in range(2)]
    for e, ep in enumerate(batch.episodes):
        assert 1 <= ep.num_turns <= bench.max_turns and len(ep.turns) == ep.num_turns
        assert ep.num_turns == bench.max_turns or ep.won
        rows = (batch.episode_index_B == e).nonzero().squeeze(-1)
        assert len(rows) == ep.num_turns
        for k, (row, turn) in enumerate(zip(rows.tolist(), ep.turns, strict=True)):
            mask = batch.loss_mask_B_T[row]
            assert int(mask.sum()) == turn.num_generated_tokens
            assert torch.all(batch.turn_index_B_T[row][mask] == k) and torch.all(batch.turn_index_B_T[row][~mask] == -1)
            # the masked tokens are exactly the response: a contiguous block ending the row's real tokens
            n_real = int(batch.attention_mask_B_T[row].sum())
            positions = mask.nonzero().squeeze(-1)
            assert positions.tolist() == list(range(n_real - turn.num_generated_tokens, n_real))
            assert tok.decode(batch.input_ids_B_T[row][mask], skip_special_tokens=True) == turn.response
            assert torch.all(batch.old_logprobs_B_T[row][~mask] == 0) and torch.all(batch.old_logprobs_B_T[row][mask] < 0)
            # the prompt part decodes to the chat-templated prompt text
            prompt_text = tok.decode(batch.input_ids_B_T[row][:positions[0]])
            assert "".join(turn.prompt.split()) in "".join(prompt_text.split())
        assert ep.reward == pytest.approx(CFG.success_reward * ep.won - CFG.invalid_penalty * ep.format_errors)
    assert batch.num_generated_tokens == sum(t.num_generated_tokens for ep in batch.episodes for t in ep.turns)


def test_responses_stop_at_closing_tag_or_limit(setup):
    batch = _rollout(setup, samples=4)
    _, tok, _ = setup
    stops = {tok.convert_tokens_to_ids("</action>"), tok.eos_token_id}
    saw_stop = False
    for row in range(batch.input_ids_B_T.shape[0]):
        gen = batch.input_ids_B_T[row][batch.loss_mask_B_T[row]].tolist()
        assert not stops & set(gen[:-1])
        assert gen[-1] in stops or len(gen) == CFG.max_new_tokens
        saw_stop |= gen[-1] in stops
    assert saw_stop  # with a 400-token vocabulary a random model emits a stop token within 12 tokens sometimes


def test_recorded_logprobs_equal_a_fresh_forward(setup):
    batch = _rollout(setup, temperature=0.7)  # recorded log-probs are temperature-1 ones whatever we sample at
    _, _, model = setup
    with torch.no_grad():
        fresh_B_T = token_logprobs(model, batch.input_ids_B_T, batch.attention_mask_B_T)
    m = batch.loss_mask_B_T
    assert torch.allclose(fresh_B_T[m], batch.old_logprobs_B_T[m], atol=1e-4)


def test_teacher_self_scoring_gives_zero_kl(setup):
    batch = _rollout(setup)
    _, _, model = setup
    teacher_B_T = LocalTeacher(model, micro_batch_rows=5).score(batch)
    assert teacher_B_T.shape == batch.input_ids_B_T.shape and teacher_B_T.dtype == torch.float32
    assert torch.all(teacher_B_T[~batch.loss_mask_B_T] == 0)
    assert (teacher_B_T - batch.old_logprobs_B_T).abs().max() < 1e-5


def test_same_seed_same_rollouts_other_seed_differs(setup):
    a, b, c = _rollout(setup, seed=7), _rollout(setup, seed=7), _rollout(setup, seed=8)
    assert torch.equal(a.input_ids_B_T, b.input_ids_B_T) and torch.equal(a.old_logprobs_B_T, b.old_logprobs_B_T)
    assert [t.response for e in a.episodes for t in e.turns] == [t.response for e in b.episodes for t in e.turns]
    assert a.input_ids_B_T.shape != c.input_ids_B_T.shape or not torch.equal(a.input_ids_B_T, c.input_ids_B_T)


def test_handoff_lets_another_model_act_from_turn_k(setup):
    bench, tok, model = setup
    other = build_tiny_model(ModelSpec(arch=ARCH), tok, seed=1)

    def run(first, handoff=None):
        return collect_rollouts(first, tok, bench, bench.tasks("train")[:4], samples_per_task=2, temperature=1.0,
                                agent_cfg=CFG, seed=3, split="train", device="cpu", handoff=handoff)

    def responses(batch):
        return [[t.response for t in e.turns] for e in batch.episodes]

    other.eval()  # each model's mode is restored afterwards
    alone, other_alone = run(model), run(other)
    assert responses(run(model, (0, other))) == responses(other_alone)
    assert responses(run(model, (bench.max_turns, other))) == responses(alone)
    mixed = run(model, (1, other))
    assert [r[:1] for r in responses(mixed)] == [r[:1] for r in responses(alone)]  # turn 0: the first model's
    assert responses(mixed) != responses(alone)
    # each turn's recorded log-probs are those of the model that acted at that turn
    with torch.no_grad():
        lp_first = token_logprobs(model, mixed.input_ids_B_T, mixed.attention_mask_B_T)
        lp_other = token_logprobs(other, mixed.input_ids_B_T, mixed.attention_mask_B_T)
    turn_B = mixed.turn_index_B_T.max(-1).values
    for row in range(mixed.input_ids_B_T.shape[0]):
        m = mixed.loss_mask_B_T[row]
        expected = (lp_first if turn_B[row] == 0 else lp_other)[row][m]
        assert torch.allclose(expected, mixed.old_logprobs_B_T[row][m], atol=1e-4)
    assert model.training and not other.training
    # each model's prompts are cut to its own context: a hand-off model with fewer positions (prompts of
    # at most 20 tokens here) leaves the first model's turns as they are alone
    short = build_tiny_model(ModelSpec(arch=ARCH.model_copy(update={"max_position_embeddings": 32})), tok, seed=1)
    assert max(len(e.turns) for e in alone.episodes) > 1
    assert responses(run(model, (bench.max_turns, short))) == responses(alone)
    assert responses(run(model, (0, short))) == responses(run(short))


def test_garbage_model_gives_invalid_steps_not_exceptions(setup):
    batch = _rollout(setup, samples=2, cfg=AgentConfig(max_new_tokens=4))  # too short to close a tag
    for ep in batch.episodes:
        assert ep.format_errors == ep.invalid_steps == ep.num_turns == 3 and not ep.won
        assert all(t.action is None and t.format_error for t in ep.turns)
        assert ep.reward == pytest.approx(-0.3)
        assert "(no valid action)" in ep.turns[-1].prompt


def test_no_room_for_the_prompt_is_an_error(setup):
    """ARCH has TinyArch's 1024 positions: 1024 new tokens leave none for the prompt (an empty prompt
    budget used to keep the whole prompt, past the model's positions)."""
    assert setup[2].config.max_position_embeddings == 1024
    with pytest.raises(ValueError, match="the model has 1024 positions and agent.max_new_tokens is 1024: no room"):
        _rollout(setup, cfg=AgentConfig(max_new_tokens=1024))


def test_shaped_rewards():
    cfg = AgentConfig()
    assert shaped_reward("alfworld", True, 2, cfg) == pytest.approx(10 - 0.2)
    assert shaped_reward("webshop", False, 1, cfg) == pytest.approx(-0.1)
    assert shaped_reward("searchqa", True, 1, cfg) == pytest.approx(1 - 0.01)


@pytest.fixture(scope="module")
def real():
    from atod.config import load_params
    from atod.envs import BENCHMARKS, build_benchmark

    prepare = load_params(Path(__file__).resolve().parents[1] / "params.yaml", profile="smoke").prepare
    benchmarks = {name: build_benchmark(name, prepare) for name in BENCHMARKS}
    tok = build_tokenizer([t for b in benchmarks.values() for t in b.corpus_texts()], TokenizerSpec())
    model = build_tiny_model(ModelSpec(arch=ARCH), tok, seed=1)
    return benchmarks, tok, model


@pytest.mark.parametrize("name", ["alfworld", "webshop", "searchqa"])
def test_random_model_completes_episodes_on_every_benchmark(real, name):
    benchmarks, tok, model = real
    bench = benchmarks[name]
    cfg = AgentConfig(max_new_tokens=8)
    for split in bench.splits:
        batch = collect_rollouts(model, tok, bench, bench.tasks(split)[:2], samples_per_task=2, temperature=1.0,
                                 agent_cfg=cfg, seed=0, split=split, device="cpu")
        assert len(batch.episodes) == 4
        for ep in batch.episodes:
            assert ep.split == split and ep.benchmark == name
            assert 1 <= ep.num_turns <= bench.max_turns
            assert ep.num_turns == bench.max_turns or ep.won or ep.turns[-1].action is not None  # ended by the env
            assert ep.invalid_steps >= ep.format_errors == sum(t.action is None for t in ep.turns)
            penalty = cfg.searchqa_invalid_penalty if name == "searchqa" else cfg.invalid_penalty
            scale = 1.0 if name == "searchqa" else cfg.success_reward
            assert ep.reward == pytest.approx(scale * ep.won - penalty * ep.format_errors)
        assert batch.input_ids_B_T.shape[0] == sum(ep.num_turns for ep in batch.episodes)
        assert int(batch.loss_mask_B_T.sum()) == sum(t.num_generated_tokens for ep in batch.episodes for t in ep.turns)
        assert batch.input_ids_B_T.shape[1] <= model.config.max_position_embeddings
    with torch.no_grad():
        fresh_B_T = token_logprobs(model, batch.input_ids_B_T, batch.attention_mask_B_T)
    m = batch.loss_mask_B_T
    assert torch.allclose(fresh_B_T[m], batch.old_logprobs_B_T[m], atol=1e-4)
    assert (LocalTeacher(model, micro_batch_rows=4).score(batch) - batch.old_logprobs_B_T).abs().max() < 1e-5


def test_remote_teacher_against_a_vllm_style_endpoint(setup):
    """RemoteTeacher speaks the vLLM /v1/completions echo convention; a local stand-in server answers
    with the same model, so the scores must equal LocalTeacher's."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from atod.agent.teacher import RemoteTeacher

    _, _, model = setup
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            choices = []
            for i, prompt in enumerate(body["prompt"]):
                ids = torch.tensor([prompt])
                with torch.no_grad():
                    lps = token_logprobs(model, ids, torch.ones_like(ids))[0].tolist()
                choices.append({"index": i, "text": "x", "logprobs": {"token_logprobs": [None] + lps[1:] + [-1.0]}})
            data = json.dumps({"choices": choices[::-1]}).encode()  # any order: matched by index
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        batch = _rollout(setup)
        remote = RemoteTeacher(f"http://127.0.0.1:{server.server_address[1]}/v1", model="tiny", micro_batch_rows=5)
        scores_B_T = remote.score(batch)
    finally:
        server.shutdown()
        server.server_close()
    assert requests[0]["echo"] is True and requests[0]["logprobs"] == 0 and len(requests[0]["prompt"]) == 5
    assert torch.all(scores_B_T[~batch.loss_mask_B_T] == 0)
    assert (scores_B_T - LocalTeacher(model).score(batch)).abs().max() < 1e-5
    with pytest.raises(RuntimeError, match="unreachable"):
        RemoteTeacher(f"http://127.0.0.1:{server.server_address[1]}", model="tiny", timeout_s=2).score(batch)


def test_preallocated_cache_layer_matches_concatenation():
    from atod.agent.rollout import PreallocatedLayer

    g = torch.Generator().manual_seed(0)
    layer = PreallocatedLayer(capacity=4)
    chunks = [torch.randn(3, 2, n, 5, generator=g) for n in (3, 1, 2, 1)]  # 7 tokens > capacity 4: grows
    for c in chunks:
        keys, values = layer.update(c, -c)
    expected = torch.cat(chunks, dim=-2)
    assert torch.equal(keys, expected) and torch.equal(values, -expected) and layer.get_seq_length() == 7
    layer.batch_select_indices(torch.tensor([2, 0, 0]))
    assert torch.equal(layer.keys, expected[[2, 0, 0]])
    keys, _ = layer.update(chunks[1][:3], chunks[1][:3])
    assert torch.equal(keys[:, :, :7], expected[[2, 0, 0]]) and keys.shape[-2] == 8


def test_sample_categorical_matches_the_distribution():
    from atod.agent.rollout import sample_categorical

    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.0, 0.2, 0.0, 0.5, 0.3], [1.0, 0.0, 0.0, 0.0, 0.0]])
    draws = torch.stack([sample_categorical(probs, g) for _ in range(20000)])  # (N, 2)
    freq = torch.bincount(draws[:, 0], minlength=5).float() / len(draws)
    assert freq[0] == 0 and freq[2] == 0  # zero-probability tokens are never drawn
    assert torch.allclose(freq, probs[0], atol=0.015)
    assert (draws[:, 1] == 0).all()
