"""Batched multi-turn rollouts: every episode of a batch advances one turn per generation call.

Layout: per-turn prompts (verl-agent style), one token row per (episode, turn). Each turn's prompt is
re-rendered from the task, the last `history_length` (observation, action) pairs and the current
observation, so its length is bounded whatever the episode length. The alternative, one growing
conversation per episode, was measured with `atod.agent.bench.layout_cost` on 30 expert episodes per
benchmark (default profile, embedded 2048-token tokenizer, history_length 2):

    benchmark  turns  per-turn tokens/episode (longest row)  conversation tokens/episode (longest row)
    alfworld    8.9        2235 (325)                              1487 (2267)
    webshop     4.9        2561 (794)                              1793 (2321)
    searchqa    2.5         632 (475)                               483 (659)

A conversation processes about 1/3 fewer tokens per expert episode, but its rows grow with the turn
count: expert episodes already exceed the tiny models' 1024 positions, and a weak policy's 50-turn
ALFWorld episode would be ~8k tokens in one row (attention cost and activation memory grow with the
square / the length of the longest row). Per-turn rows stay under ~800 tokens, micro-batch evenly,
and let finished episodes leave at every turn boundary. Both layouts would give the same mask
semantics: the loss mask is True exactly on generated tokens (atod/types.py).

Generation: our own sampling loop over the HF model with a KV cache and left padding (prefill the
prompts, then one decode step per token). Rows that emit a stop token (the closing tag, or EOS) leave
the batch at once (their cache rows are dropped), so one long response does not keep finished ones
decoding; identical prompts (a task's samples at turn 0) are prefilled once; the cache writes into a
buffer preallocated for the whole response (`PreallocatedLayer`) instead of concatenating per token.
Sampling is from the full softmax at `temperature` (no top-k/top-p), with a `torch.Generator` seeded
from `seed`, so rollouts are deterministic for a seed on a given device. Measured against
`model.generate` on the same batched prompts (`atod bench rollout`, 1 CPU thread, 0.48M-parameter
student, ALFWorld, 64 envs): 47.3 vs 45.3 env steps/s - about the same speed, but the own loop gives
the temperature-1 log-probs for free and drops finished rows; against the naive loop (one episode at a
time, `generate` per turn) 7.3x at 64 envs on one thread (11x with 2 threads, noisy: shared machine).

Recorded log-probs: `old_logprobs` is the log-prob of each sampled token under the model at
temperature 1 (log_softmax of the plain logits), whatever temperature was sampled at. PPO/GRPO ratios
and the OPD term compare the policy pi_theta (temperature 1) with pi_old and the teacher at
temperature 1; recording the tempered sampling distribution instead would bias every ratio and every
teacher-student difference whenever temperature != 1. At the default training temperature 1.0 the two coincide.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import partial

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from atod.agent.config import AgentConfig
from atod.agent.prompts import NO_ACTION, extract_action, render_prompt, stop_strings
from atod.agent.tokenizer import stop_token_ids
from atod.envs.base import Benchmark, Env, StepResult, Task
from atod.types import EpisodeRecord, RolloutBatch, TurnRecord


@dataclass
class _Turn:
    """Token-level record of one turn (one row of the batch)."""

    prompt_ids: list[int]
    response_ids: list[int]
    response_logprobs: list[float]


@dataclass
class _Episode:
    env: Env
    task: Task
    group: int
    sample: int
    result: StepResult
    history: list[tuple[str, str]] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    token_turns: list[_Turn] = field(default_factory=list)
    invalid_steps: int = 0
    format_errors: int = 0
    finished: bool = False


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str, max_prompt_tokens: int) -> list[int]:
    """Token ids of one user message through the chat template, with the generation prompt.
    Prompts longer than `max_prompt_tokens` keep their end (task and instruction sit there)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[-max_prompt_tokens:]


class PreallocatedLayer(DynamicLayer):
    """A `DynamicLayer` that writes new keys/values into a buffer sized for the whole response instead
    of concatenating one token at a time: `torch.cat` of the growing cache was 38% of a decode step at 64
    rows (torch profiler, 4-layer tiny model, CPU). `keys`/`values` are views of the filled part, so
    everything that reads a DynamicLayer (masks, lengths, batch selection) works unchanged."""

    def __init__(self, capacity: int = 0):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        if not self.is_initialized:
            self.device = key_states.device
            B, H, _, _ = key_states.shape
            size = max(self.capacity, n)
            self.key_buffer = key_states.new_zeros(B, H, size, key_states.shape[-1])
            self.value_buffer = value_states.new_zeros(B, H, size, value_states.shape[-1])
            self.length = 0
            self.is_initialized = True
        if self.length + n > self.key_buffer.shape[-2]:  # more tokens than planned: grow (rare)
            grow = max(n, self.key_buffer.shape[-2])
            self.key_buffer = torch.cat([self.key_buffer, self.key_buffer.new_zeros(
                *self.key_buffer.shape[:2], grow, self.key_buffer.shape[-1])], dim=-2)
            self.value_buffer = torch.cat([self.value_buffer, self.value_buffer.new_zeros(
                *self.value_buffer.shape[:2], grow, self.value_buffer.shape[-1])], dim=-2)
        self.key_buffer[:, :, self.length:self.length + n] = key_states
        self.value_buffer[:, :, self.length:self.length + n] = value_states
        self.length += n
        self.keys = self.key_buffer[:, :, :self.length]
        self.values = self.value_buffer[:, :, :self.length]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self.keys = self.key_buffer[:, :, :self.length]
            self.values = self.value_buffer[:, :, :self.length]


def make_cache(capacity: int) -> DynamicCache:
    """A DynamicCache whose layers preallocate `capacity` positions (see PreallocatedLayer); with a
    transformers whose DynamicCache has no `layer_class_to_replicate`, a plain DynamicCache (same
    results, without the preallocation)."""
    cache = DynamicCache()
    if not cache.layers and getattr(cache, "layer_class_to_replicate", None) is not None:
        cache.layer_class_to_replicate = partial(PreallocatedLayer, capacity)
    return cache


def _forward_kwargs(model: PreTrainedModel) -> tuple[str, bool]:
    """The model's name for the KV-cache argument (transformers >= 5.2x says `cache`, older releases and
    many remote-code models `past_key_values`) and whether it accepts `logits_to_keep`."""
    params = inspect.signature(model.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


def sample_categorical(probs_b_V: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row of probs_b_V (B x V, rows summing to ~1) by inverse-CDF sampling: the first
    index whose cumulative probability exceeds u ~ U[0, total). Same distribution as
    `torch.multinomial(probs, 1)`, about 15x faster at 64 x 740 on CPU (multinomial was 9% of a rollout
    at 64 environments). Zero-probability tokens are never drawn. Returns token ids (B,)."""
    cdf_b_V = probs_b_V.cumsum(-1)
    u_b_1 = torch.rand(cdf_b_V.shape[0], 1, generator=generator, device=cdf_b_V.device) * cdf_b_V[:, -1:]
    return torch.searchsorted(cdf_b_V, u_b_1, right=True).squeeze(-1).clamp_(max=cdf_b_V.shape[1] - 1)


@torch.inference_mode()
def sample_responses(
    model: PreTrainedModel,
    prompts: list[list[int]],
    *,
    stop_ids: list[int],
    max_new_tokens: int,
    temperature: float,
    generator: torch.Generator,
    pad_id: int,
) -> tuple[list[list[int]], list[list[float]]]:
    """Sample one response per prompt, all prompts at once, with a KV cache.

    prompts: token ids per row (unpadded; left-padded here). A response ends right after a token in
    `stop_ids` (kept in the response) or after `max_new_tokens` tokens.
    Returns (response token ids, their temperature-1 log-probs) per row.
    """
    device = model.device
    B = len(prompts)
    # Identical prompts (the G samples of a task at turn 0) are prefilled once, then their cache rows
    # and last logits are repeated.
    unique: dict[tuple[int, ...], int] = {}
    source_B = [unique.setdefault(tuple(ids), len(unique)) for ids in prompts]
    firsts = list(unique)
    U = len(firsts)
    P = max(len(p) for p in firsts)
    input_ids_U_P = torch.full((U, P), pad_id, dtype=torch.long)
    attention_U_P = torch.zeros((U, P), dtype=torch.long)
    for u, ids in enumerate(firsts):
        input_ids_U_P[u, P - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_U_P[u, P - len(ids):] = 1
    input_ids_U_P, attention_U_P = input_ids_U_P.to(device), attention_U_P.to(device)
    position_U_P = (attention_U_P.cumsum(-1) - 1).clamp(min=0)
    stop_S = torch.tensor(stop_ids, dtype=torch.long, device=device)

    cache_arg, has_logits_to_keep = _forward_kwargs(model)
    cache = make_cache(P + max_new_tokens)
    extra = {"logits_to_keep": 1} if has_logits_to_keep else {}
    out = model(input_ids=input_ids_U_P, attention_mask=attention_U_P, position_ids=position_U_P,
                use_cache=True, **{cache_arg: cache}, **extra)
    logits_b_V = out.logits[:, -1].float()
    position_B_P, attention_B_P = position_U_P, attention_U_P
    if U < B:
        expand_B = torch.tensor(source_B, dtype=torch.long, device=device)
        cache.batch_select_indices(expand_B)
        logits_b_V, position_B_P, attention_B_P = logits_b_V[expand_B], position_U_P[expand_B], attention_U_P[expand_B]
    next_pos_b = position_B_P[:, -1] + 1
    attention_b_L = attention_B_P
    rows_b = torch.arange(B, device=device)  # which original row each live row is

    responses: list[list[int]] = [[] for _ in range(B)]
    logprobs: list[list[float]] = [[] for _ in range(B)]
    for step in range(max_new_tokens):
        logp_b_V = torch.log_softmax(logits_b_V, dim=-1)  # temperature-1 policy: what gets recorded
        probs_b_V = logp_b_V.exp() if temperature == 1.0 else torch.softmax(logits_b_V / temperature, dim=-1)
        token_b = sample_categorical(probs_b_V, generator)
        token_lp_b = logp_b_V.gather(-1, token_b[:, None]).squeeze(-1)
        for row, tok, lp in zip(rows_b.tolist(), token_b.tolist(), token_lp_b.tolist(), strict=True):
            responses[row].append(tok)
            logprobs[row].append(lp)
        live_b = ~torch.isin(token_b, stop_S)
        if step == max_new_tokens - 1 or not bool(live_b.any()):
            break
        if not bool(live_b.all()):  # drop finished rows from the batch and the cache
            keep = live_b.nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            token_b, next_pos_b = token_b[keep], next_pos_b[keep]
            attention_b_L, rows_b = attention_b_L[keep], rows_b[keep]
        attention_b_L = torch.cat([attention_b_L, attention_b_L.new_ones(len(rows_b), 1)], dim=1)
        out = model(input_ids=token_b[:, None], attention_mask=attention_b_L, position_ids=next_pos_b[:, None],
                    use_cache=True, **{cache_arg: cache})
        logits_b_V = out.logits[:, -1].float()
        next_pos_b = next_pos_b + 1
    return responses, logprobs


def shaped_reward(benchmark: str, won: bool, format_errors: int, agent_cfg: AgentConfig) -> float:
    """verl-agent style training reward: ALFWorld / WebShop `success_reward` x won (WebShop won means
    score == 1) minus `invalid_penalty` per format error; Search-QA exact match (0/1, not scaled)
    minus `searchqa_invalid_penalty` per format error."""
    if benchmark == "searchqa":
        return float(won) - agent_cfg.searchqa_invalid_penalty * format_errors
    return agent_cfg.success_reward * float(won) - agent_cfg.invalid_penalty * format_errors


def collect_rollouts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    benchmark: Benchmark,
    tasks: list[Task],
    *,
    samples_per_task: int,
    temperature: float,
    agent_cfg: AgentConfig,
    seed: int,
    split: str,
    device: torch.device | str,
    progress: bool = False,
    max_turns: int | None = None,
    handoff: tuple[int, PreTrainedModel] | None = None,
) -> RolloutBatch:
    """Run `samples_per_task` episodes of every task, all at once, and return them as a RolloutBatch.

    Episode e = group * samples_per_task + sample, group = index of its task in `tasks`. Each turn,
    every unfinished episode renders its prompt, all prompts are sampled in one batched generation,
    each response's action is extracted and its env stepped; finished episodes drop out. `max_turns`
    (default: the benchmark's own limit) stops episodes early, e.g. for benchmarks of throughput.
    `handoff=(k, other)` (diagnostics: can the teacher finish from the student's states?): from turn k
    on, `other` (same tokenizer and device) acts instead of `model`; its log-probs are recorded then.
    Rows: one per (episode, turn), ordered by episode then turn, right-padded (see atod/types.py).
    Deterministic given `seed` (and device). `device` must be where `model` lives.
    """
    if samples_per_task < 1:
        raise ValueError(f"samples_per_task must be >= 1 (got {samples_per_task})")
    actors = [model] if handoff is None else [model, handoff[1]]
    if torch.device(device).type != model.device.type:
        raise ValueError(f"model is on {model.device} but collect_rollouts was asked for device {device}")
    if handoff is not None and handoff[1].device != model.device:
        raise ValueError(f"the hand-off model is on {handoff[1].device} but the first model on {model.device}")
    name = benchmark.name
    stop_ids = stop_token_ids(tokenizer, stop_strings(name))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompt_limit = {}  # per actor: a hand-off model with a longer context still sees its full prompt
    for m in actors:
        max_positions = getattr(m.config, "max_position_embeddings", None) or 1 << 30
        prompt_limit[id(m)] = min(agent_cfg.max_prompt_tokens, max_positions - agent_cfg.max_new_tokens)
        if prompt_limit[id(m)] < 1:
            raise ValueError(f"the model has {max_positions} positions and agent.max_new_tokens is "
                             f"{agent_cfg.max_new_tokens}: no room is left for the prompt")
    turn_limit = benchmark.max_turns if max_turns is None else max_turns
    generator = torch.Generator(device=model.device).manual_seed(seed)

    episodes: list[_Episode] = []
    for g, task in enumerate(tasks):
        for s in range(samples_per_task):
            env = benchmark.make_env()
            episodes.append(_Episode(env=env, task=task, group=g, sample=s, result=env.reset(task)))

    was_training = [m.training for m in actors]
    for m in actors:
        m.eval()
    bar = tqdm(total=turn_limit, desc=f"rollout {name}", disable=not progress, leave=False)
    try:
        for turn in range(turn_limit):
            live = [ep for ep in episodes if not ep.finished]
            if not live:
                break
            prompts = [
                render_prompt(name, ep.task.goal, ep.history, ep.result.observation, ep.result.admissible_actions,
                              step=turn, history_length=agent_cfg.history_length, think=agent_cfg.think)
                for ep in live
            ]
            acting = model if handoff is None or turn < handoff[0] else handoff[1]
            prompt_ids = [encode_prompt(tokenizer, p, prompt_limit[id(acting)]) for p in prompts]
            responses, logprobs = sample_responses(
                acting, prompt_ids, stop_ids=stop_ids, max_new_tokens=agent_cfg.max_new_tokens,
                temperature=temperature, generator=generator, pad_id=pad_id)
            for ep, prompt, p_ids, r_ids, r_lp in zip(live, prompts, prompt_ids, responses, logprobs, strict=True):
                text = tokenizer.decode(r_ids, skip_special_tokens=True)
                action = extract_action(name, text)
                previous = ep.result.observation
                ep.result = ep.env.step(action)
                info = ep.result.info
                ep.invalid_steps += int(info.invalid)
                ep.format_errors += int(info.format_error or action is None)
                ep.history.append((previous, action if action is not None else NO_ACTION))
                ep.turns.append(TurnRecord(prompt=prompt, response=text, action=action,
                                           observation=ep.result.observation, reward=ep.result.reward,
                                           invalid=info.invalid, format_error=info.format_error or action is None,
                                           num_generated_tokens=len(r_ids)))
                ep.token_turns.append(_Turn(p_ids, r_ids, r_lp))
                ep.finished = ep.result.done or len(ep.turns) >= turn_limit
            bar.update(1)
            bar.set_postfix(live=sum(not ep.finished for ep in episodes))
    finally:
        bar.close()
        for m, training in zip(actors, was_training, strict=True):
            m.train(training)

    records = []
    for ep in episodes:
        info = ep.result.info
        records.append(EpisodeRecord(
            benchmark=name, split=split, task_id=ep.task.task_id, group=ep.group, sample=ep.sample,
            reward=shaped_reward(name, info.won, ep.format_errors, agent_cfg), won=bool(info.won),
            score=float(info.score), num_turns=len(ep.turns), invalid_steps=ep.invalid_steps,
            format_errors=ep.format_errors, turns=ep.turns))
    return _to_batch(episodes, records, pad_id)


def _to_batch(episodes: list[_Episode], records: list[EpisodeRecord], pad_id: int) -> RolloutBatch:
    """One right-padded row per (episode, turn): prompt tokens then response tokens."""
    rows = [(e, k, t) for e, ep in enumerate(episodes) for k, t in enumerate(ep.token_turns)]
    B = len(rows)
    T = max((len(t.prompt_ids) + len(t.response_ids) for _, _, t in rows), default=1)
    input_ids_B_T = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask_B_T = torch.zeros((B, T), dtype=torch.long)
    loss_mask_B_T = torch.zeros((B, T), dtype=torch.bool)
    old_logprobs_B_T = torch.zeros((B, T), dtype=torch.float32)
    turn_index_B_T = torch.full((B, T), -1, dtype=torch.long)
    episode_index_B = torch.zeros(B, dtype=torch.long)
    for b, (e, k, t) in enumerate(rows):
        p, r = len(t.prompt_ids), len(t.response_ids)
        input_ids_B_T[b, :p + r] = torch.tensor(t.prompt_ids + t.response_ids, dtype=torch.long)
        attention_mask_B_T[b, :p + r] = 1
        loss_mask_B_T[b, p:p + r] = True
        old_logprobs_B_T[b, p:p + r] = torch.tensor(t.response_logprobs, dtype=torch.float32)
        turn_index_B_T[b, p:p + r] = k
        episode_index_B[b] = e
    return RolloutBatch(input_ids_B_T=input_ids_B_T, attention_mask_B_T=attention_mask_B_T,
                        loss_mask_B_T=loss_mask_B_T, old_logprobs_B_T=old_logprobs_B_T,
                        turn_index_B_T=turn_index_B_T, episode_index_B=episode_index_B, episodes=records)
