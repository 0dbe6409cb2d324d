"""Plain data types passed between rollouts, teacher scoring and training.

Shape suffixes: B = rows (token sequences), T = time (tokens), E = episodes.
A row is one token sequence fed to the model: with per-turn prompts (verl-agent style) one row per
(episode, turn); with one growing conversation one row per episode. Either way the token-level
semantics are the same: `loss_mask_B_T[b, t]` is True exactly for tokens the policy generated, and
`old_logprobs_B_T[b, t]` is log pi_rollout(input_ids[b, t] | input_ids[b, :t]) at those positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TurnRecord:
    """One turn of an episode, for inspection and caching (text, not tensors)."""

    prompt: str  # the rendered prompt text (per-turn prompt, or the conversation so far)
    response: str  # the generated text of this turn
    action: str | None  # extracted action (None = malformed)
    observation: str  # the environment's answer to this action
    reward: float  # raw step reward from the environment
    invalid: bool
    format_error: bool
    num_generated_tokens: int


@dataclass
class EpisodeRecord:
    """One finished episode."""

    benchmark: str
    split: str
    task_id: str
    group: int  # index of the task within the batch: GRPO groups episodes by this
    sample: int  # index of the sample within its group (0..G-1)
    reward: float  # shaped training reward (e.g. 10 x won - penalties), see atod.rollout
    won: bool
    score: float
    num_turns: int
    invalid_steps: int
    format_errors: int
    turns: list[TurnRecord] = field(default_factory=list)

    def transcript(self) -> str:
        parts = []
        for k, t in enumerate(self.turns):
            parts.append(f"--- turn {k + 1} ---\n[prompt]\n{t.prompt}\n[response]\n{t.response}\n"
                         f"[observation]\n{t.observation}")
        return "\n".join(parts)


@dataclass
class RolloutBatch:
    """Token-level view of a batch of episodes, ready for teacher scoring and the loss.

    Tensors are right-padded with pad id / zeros. Every row belongs to one episode.
    """

    input_ids_B_T: torch.Tensor  # long (B, T)
    attention_mask_B_T: torch.Tensor  # long/bool (B, T): 1 on real tokens
    loss_mask_B_T: torch.Tensor  # bool (B, T): True on generated tokens only
    old_logprobs_B_T: torch.Tensor  # float32 (B, T): rollout policy log-prob of each generated token, 0 elsewhere
    turn_index_B_T: torch.Tensor  # long (B, T): turn k (0-based) of each generated token, -1 elsewhere
    episode_index_B: torch.Tensor  # long (B,): which episode (index into `episodes`) each row belongs to
    episodes: list[EpisodeRecord]
    teacher_logprobs_B_T: torch.Tensor | None = None  # float32 (B, T), filled by teacher scoring

    @property
    def num_generated_tokens(self) -> int:
        return int(self.loss_mask_B_T.sum())

    def to(self, device: torch.device | str) -> RolloutBatch:
        def mv(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.to(device)

        return RolloutBatch(
            input_ids_B_T=self.input_ids_B_T.to(device),
            attention_mask_B_T=self.attention_mask_B_T.to(device),
            loss_mask_B_T=self.loss_mask_B_T.to(device),
            old_logprobs_B_T=self.old_logprobs_B_T.to(device),
            turn_index_B_T=self.turn_index_B_T.to(device),
            episode_index_B=self.episode_index_B.to(device),
            episodes=self.episodes,
            teacher_logprobs_B_T=mv(self.teacher_logprobs_B_T),
        )
