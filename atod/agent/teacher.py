"""Teacher scoring: the teacher's log-prob of every token the student sampled.

A scorer takes token ids in and gives per-token log-probs out, so a local HF model and a remote
inference server (vLLM's OpenAI-compatible API) implement the same protocol. Teacher and student must
share the tokenizer (`atod.agent.models.check_compatible`); the scorer never re-tokenizes text.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Protocol, runtime_checkable

import torch
from transformers import PreTrainedModel

from atod.agent.models import generated_logprobs
from atod.types import RolloutBatch


@runtime_checkable
class TeacherScorer(Protocol):
    def score(self, batch: RolloutBatch) -> torch.Tensor:
        """float32 (B, T) on the CPU: teacher log p(input_ids[b, t] | input_ids[b, :t]) where
        `batch.loss_mask_B_T` is True, 0 elsewhere. No gradient."""
        ...


def _trim(batch: RolloutBatch, rows: slice) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Rows `rows` of the batch cut to their longest real length (right padding makes this safe)."""
    attention_b_T = batch.attention_mask_B_T[rows]
    length = int(attention_b_T.sum(-1).max()) if attention_b_T.numel() else 0
    return batch.input_ids_B_T[rows, :length], attention_b_T[:, :length], length


class LocalTeacher:
    """A teacher model in this process, scored `micro_batch_rows` rows per forward pass."""

    def __init__(self, model: PreTrainedModel, micro_batch_rows: int = 16):
        if micro_batch_rows < 1:
            raise ValueError(f"micro_batch_rows must be >= 1 (got {micro_batch_rows})")
        self.model = model
        self.micro_batch_rows = micro_batch_rows

    @torch.inference_mode()
    def score(self, batch: RolloutBatch) -> torch.Tensor:
        B, T = batch.input_ids_B_T.shape
        out_B_T = torch.zeros((B, T), dtype=torch.float32)
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, B, self.micro_batch_rows):
                rows = slice(start, min(start + self.micro_batch_rows, B))
                ids_b_L, mask_b_L, L = _trim(batch, rows)
                if L == 0:
                    continue
                dev = self.model.device
                lp_b_L = generated_logprobs(self.model, ids_b_L.to(dev), mask_b_L.to(dev),
                                            batch.loss_mask_B_T[rows, :L].to(dev))
                out_B_T[rows, :L] = lp_b_L.float().cpu()
        finally:
            self.model.train(was_training)
        return torch.where(batch.loss_mask_B_T.cpu(), out_B_T, torch.zeros_like(out_B_T))


class RemoteTeacher:
    """A teacher behind an OpenAI-compatible `/v1/completions` endpoint (vLLM convention).

    Each row is sent as `prompt` = its token ids with `echo=True, logprobs=0, max_tokens=1`
    (vLLM returns the prompt tokens' log-probs in `choices[i].logprobs.token_logprobs`, the first one
    null; the one generated token is ignored). Rows are sent `micro_batch_rows` per request (a list
    of token-id lists is a batch of prompts). The server must serve a model with the student's
    tokenizer; `model` is the served model's name.
    """

    def __init__(self, base_url: str, model: str, micro_batch_rows: int = 32, timeout_s: float = 300.0,
                 api_key: str | None = None):
        self.url = base_url.rstrip("/") + ("/completions" if base_url.rstrip("/").endswith("/v1")
                                           else "/v1/completions")
        self.model = model
        self.micro_batch_rows = micro_batch_rows
        self.timeout_s = timeout_s
        self.api_key = api_key

    def _post(self, prompts: list[list[int]]) -> dict:
        body = json.dumps({"model": self.model, "prompt": prompts, "max_tokens": 1, "echo": True,
                           "logprobs": 0, "temperature": 1.0}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"teacher endpoint {self.url} answered HTTP {e.code}: {e.read()[:500]!r}") from None
        except urllib.error.URLError as e:
            raise RuntimeError(f"teacher endpoint {self.url} is unreachable: {e.reason}") from None

    def score(self, batch: RolloutBatch) -> torch.Tensor:
        B, T = batch.input_ids_B_T.shape
        out_B_T = torch.zeros((B, T), dtype=torch.float32)
        lengths_B = batch.attention_mask_B_T.sum(-1).tolist()
        for start in range(0, B, self.micro_batch_rows):
            rows = list(range(start, min(start + self.micro_batch_rows, B)))
            prompts = [batch.input_ids_B_T[b, :int(lengths_B[b])].tolist() for b in rows]
            reply = self._post(prompts)
            choices = sorted(reply.get("choices", []), key=lambda c: c.get("index", 0))
            if len(choices) != len(rows):
                raise RuntimeError(f"teacher endpoint {self.url} returned {len(choices)} choices for {len(rows)} prompts")
            for b, prompt, choice in zip(rows, prompts, choices, strict=True):
                lps = (choice.get("logprobs") or {}).get("token_logprobs") or []
                if len(lps) < len(prompt):
                    raise RuntimeError(f"teacher endpoint {self.url} returned {len(lps)} prompt log-probs for a "
                                       f"{len(prompt)}-token prompt; does it support echo=True with logprobs?")
                values = [0.0 if v is None else float(v) for v in lps[:len(prompt)]]
                out_B_T[b, :len(prompt)] = torch.tensor(values, dtype=torch.float32)
        out_B_T[:, 0] = 0.0
        return torch.where(batch.loss_mask_B_T.cpu(), out_B_T, torch.zeros_like(out_B_T))
