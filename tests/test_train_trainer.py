"""The ATOD trainer on a toy task with tiny models built from config (seconds each).

Toy task: a prompt of two tokens, then two "turns" of 3 sampled tokens separated by an observation
token, all in one row (the growing-conversation layout of atod.types). Reward = share of generated
tokens equal to TARGET; the teacher is a second tiny model with sharpened logits.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from atod.agent.models import token_logprobs
from atod.envs.base import Task
from atod.train.config import TrainConfig
from atod.train.trainer import _truncate_metrics, run_training
from atod.types import EpisodeRecord, RolloutBatch

VOCAB, TARGET, OBS, BOS = 16, 5, 2, 1
TURN_TOKENS = 3


def tiny_model(seed: int, hidden: int = 32) -> Qwen3ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=hidden // 2,
                      max_position_embeddings=64, tie_word_embeddings=True, pad_token_id=0)
    return Qwen3ForCausalLM(cfg)


def toy_tasks(n: int = 6) -> list[Task]:
    return [Task("toy", "train", f"t{i}", goal=str(i), payload={"token": 6 + i % 8}) for i in range(n)]


def toy_rollout(model, tasks: list[Task], seed: int, samples_per_task: int = 4) -> RolloutBatch:
    """Sample two 3-token turns per episode at temperature 1 from `model` (no KV cache: tiny)."""
    g = torch.Generator().manual_seed(seed)
    rows, episodes = [], []
    with torch.no_grad():
        for gi, task in enumerate(tasks):
            for j in range(samples_per_task):
                ids, lps, turns = [BOS, task.payload["token"]], [0.0, 0.0], [-1, -1]
                for k in range(2):
                    if k > 0:
                        ids.append(OBS)
                        lps.append(0.0)
                        turns.append(-1)
                    for _ in range(TURN_TOKENS):
                        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
                        logp = torch.log_softmax(logits, -1)
                        tok = int(torch.multinomial(logp.exp(), 1, generator=g))
                        ids.append(tok)
                        lps.append(float(logp[tok]))
                        turns.append(k)
                gen = [t for t, k in zip(ids, turns) if k >= 0]
                reward = sum(t == TARGET for t in gen) / len(gen)
                episodes.append(EpisodeRecord("toy", "train", task.task_id, gi, j, reward, reward > 0.5, reward, 2, 0, 0))
                rows.append((ids, lps, turns))
    ids_B_T = torch.tensor([r[0] for r in rows])
    turn_B_T = torch.tensor([r[2] for r in rows])
    return RolloutBatch(input_ids_B_T=ids_B_T, attention_mask_B_T=torch.ones_like(ids_B_T),
                        loss_mask_B_T=turn_B_T >= 0, old_logprobs_B_T=torch.tensor([r[1] for r in rows]),
                        turn_index_B_T=turn_B_T, episode_index_B=torch.arange(len(rows)), episodes=episodes)


class ToyTeacher:
    def __init__(self, model):
        self.model = model.eval()

    def score(self, batch: RolloutBatch) -> torch.Tensor:
        with torch.no_grad():
            lp = token_logprobs(self.model, batch.input_ids_B_T, batch.attention_mask_B_T)
        return torch.where(batch.loss_mask_B_T.bool(), lp, torch.zeros_like(lp))


def sharp_teacher(seed: int = 99) -> ToyTeacher:
    t = tiny_model(seed)
    with torch.no_grad():
        t.model.norm.weight.mul_(4.0)
    return ToyTeacher(t)


def toy_config(**kw) -> TrainConfig:
    base = {"steps": 4, "tasks_per_step": 2, "samples_per_task": 4, "microbatch_tokens": 64, "lr": 1e-2,
            "checkpoint_every": 2, "eval_every": 2, "anneal": {"anneal_steps": 2}}
    base.update(kw)
    return TrainConfig(**base)


def run_toy(method: str, out_dir, *, cfg: TrainConfig | None = None, seed: int = 0, log=None, resume=True,
            eval_fn=None, teacher=None):
    cfg = cfg or toy_config()
    torch.set_num_threads(1)
    model = tiny_model(seed=123)
    summary = run_training(method=method, model=model, tokenizer=None, train_tasks=toy_tasks(),
                           rollout_fn=lambda m, t, s: toy_rollout(m, t, s, cfg.samples_per_task),
                           teacher=teacher if teacher is not None else sharp_teacher(), cfg=cfg, seed=seed,
                           out_dir=out_dir, log=log, resume=resume, eval_fn=eval_fn, progress=False)
    return model, summary


def _read_metrics(out_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out_dir / "metrics.jsonl").read_text().splitlines()]


# metrics.jsonl as a run killed while appending step 4 leaves it (no newline after the torn line)
TORN_METRICS = ('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.25}\n{"step": 3, "loss": 0.125}\n'
                '{"step": 4, "lo')


def test_resume_drops_a_torn_last_metrics_line(tmp_path):
    from tasks.stages.train import _saved_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text(TORN_METRICS)
    assert _saved_metrics(path, 3) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25},
                                       {"step": 3, "loss": 0.125}]
    _truncate_metrics(path, 2)  # resuming from the checkpoint of step 2
    assert path.read_text() == '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.25}\n'


def test_a_corrupt_metrics_line_before_the_last_names_file_and_line(tmp_path):
    from tasks.stages.train import _saved_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo\n{"step": 3, "loss": 0.125}\n')
    for read in (lambda: _saved_metrics(path), lambda: _truncate_metrics(path, 3)):
        with pytest.raises(ValueError, match=r"metrics\.jsonl line 2 is not valid JSON"):
            read()
    assert path.read_text().startswith('{"step": 1, "loss": 0.5}\n{"step": 2, "lo\n')  # left as it was


def test_methods_run_and_log(tmp_path):
    seen = []
    evals = iter([0.2, 0.5])
    model, summary = run_toy("atod", tmp_path, log=lambda m, s: seen.append((s, m)),
                             eval_fn=lambda m, s: {"success": next(evals)})
    train_logs = [(s, m) for s, m in seen if "reward" in m]
    assert [s for s, _ in train_logs] == [1, 2, 3, 4]
    first = train_logs[0][1]
    for key in ("reward", "success", "kl_teacher", "kappa", "rho", "tdur_weight_mean", "tdur_weight_std",
                "clip_fraction", "entropy", "tokens_per_s", "lr", "step_time_s", "peak_mem_mb"):
        assert math.isfinite(first[key]), key
    assert (first["kappa"], first["rho"]) == (1.0, 1.0)
    assert train_logs[-1][1]["kappa"] == pytest.approx(0.1) and train_logs[-1][1]["rho"] == pytest.approx(2.0)
    assert 0.0 <= first["tdur_weight_mean"] <= 1.0
    assert summary["best_val_success"] == 0.5 and summary["best_step"] == 4
    for sub in ("final", "best", "checkpoint"):
        assert (tmp_path / sub).is_dir()
    assert len([r for r in _read_metrics(tmp_path) if "reward" in r]) == 4
    reloaded = Qwen3ForCausalLM.from_pretrained(tmp_path / "final")
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)


def test_grpo_never_calls_the_teacher(tmp_path):
    class Boom:
        def score(self, batch):
            raise AssertionError("grpo must not score with the teacher")

    _, summary = run_toy("grpo", tmp_path, teacher=Boom())
    assert "kl_teacher" not in summary["final"] and summary["final"]["kappa"] == 0.0


def test_methods_differ_only_by_their_settings(tmp_path):
    """With kappa = 0 forced, opd-style weighting is irrelevant: atod_uniform == atod_token == atod with
    rho only. And same seed -> bitwise equal weights."""
    cfg = toy_config(steps=2, anneal={"anneal_steps": 1, "kappa_init": 0.0, "kappa_min": 0.0})
    a, _ = run_toy("atod", tmp_path / "a", cfg=cfg)
    b, _ = run_toy("atod_uniform", tmp_path / "b", cfg=cfg)
    c, _ = run_toy("atod_token", tmp_path / "c", cfg=cfg)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb) and torch.equal(pa, pc)
    # with the teacher on, the weighting changes the update
    d, _ = run_toy("atod", tmp_path / "d", cfg=toy_config(steps=2))
    e, _ = run_toy("atod_uniform", tmp_path / "e", cfg=toy_config(steps=2))
    assert any(not torch.equal(pd, pe) for pd, pe in zip(d.parameters(), e.parameters()))
    # same seed -> bitwise equal
    f, _ = run_toy("atod", tmp_path / "f", cfg=toy_config(steps=2))
    assert all(torch.equal(pd, pf) for pd, pf in zip(d.parameters(), f.parameters()))


def test_opd_lowers_kl_to_teacher(tmp_path):
    cfg = toy_config(steps=25, tasks_per_step=3, checkpoint_every=100, lr=2e-2)
    _, _ = run_toy("opd", tmp_path, cfg=cfg)
    kl = [r["kl_teacher"] for r in _read_metrics(tmp_path)]
    assert sum(kl[-5:]) / 5 < 0.6 * sum(kl[:5]) / 5, kl


def test_opd_full_lowers_the_exact_kl_to_teacher(tmp_path):
    """The full-distribution ablation: its KL loss moves the student towards the teacher (exact KL logged
    as kl_full), and it has no sampled-token advantage (opd_full's GRPO weight is 0, so A = 0)."""
    cfg = toy_config(steps=25, tasks_per_step=3, checkpoint_every=100, lr=2e-2)
    _, _ = run_toy("opd_full", tmp_path, cfg=cfg)
    rows = [r for r in _read_metrics(tmp_path) if "reward" in r]
    kl = [r["kl_full"] for r in rows]
    assert sum(kl[-5:]) / 5 < 0.6 * sum(kl[:5]) / 5, kl
    assert all(r["adv_mean"] == 0.0 and r["adv_std"] == 0.0 for r in rows)


def test_full_kl_update_is_the_gradient_of_the_exact_kl(tmp_path):
    """One opd_full step with plain SGD moves the weights by -lr * grad of mean_e mean_t KL, computed here
    by hand from the teacher's and student's full next-token distributions."""
    from atod.train.trainer import FullKLTerm, policy_update

    cfg = toy_config(microbatch_tokens=64)  # 8 rows of 9 tokens: two chunks, whose losses must sum exactly
    student, teacher = tiny_model(seed=1), sharp_teacher().model
    batch = toy_rollout(student, toy_tasks(4), seed=3, samples_per_task=2)
    mask = batch.loss_mask_B_T
    by_hand = tiny_model(seed=1)
    logits = by_hand(input_ids=batch.input_ids_B_T).logits[:, :-1]
    with torch.no_grad():
        t_logits = teacher(input_ids=batch.input_ids_B_T).logits[:, :-1]
    log_p, log_q = logits.log_softmax(-1), t_logits.log_softmax(-1)
    kl_B_Tm1 = (log_p.exp() * (log_p - log_q)).sum(-1)
    m = mask[:, 1:].float()
    ((kl_B_Tm1 * m).sum(1) / m.sum(1)).mean().backward()  # one row per episode here

    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    zero_adv = torch.zeros(mask.shape)
    stats = policy_update(student, opt, batch, zero_adv, cfg.model_copy(update={"max_grad_norm": 1e9}), 1,
                          full_kl=FullKLTerm(1.0, mask.float(), teacher))
    assert stats["kl_full"] == pytest.approx(float((kl_B_Tm1.detach() * m).sum() / m.sum()), rel=1e-5)
    with torch.no_grad():
        for p_s, p_h, p_0 in zip(student.parameters(), by_hand.parameters(), tiny_model(seed=1).parameters()):
            assert torch.allclose(p_s, p_0 - 0.1 * p_h.grad, atol=1e-6)


def test_full_kl_methods_refuse_a_teacher_without_logits(tmp_path):
    class ScoresOnly:  # like RemoteTeacher: sampled-token log-probs, no model in this process
        def score(self, batch):
            return torch.zeros(batch.input_ids_B_T.shape)

    with pytest.raises(ValueError, match="full next-token distributions.*ScoresOnly"):
        run_toy("atod_full", tmp_path / "a", teacher=ScoresOnly())
    wide = tiny_model(seed=7)
    wide.resize_token_embeddings(VOCAB + 4)
    with pytest.raises(ValueError, match="16 rows and the teacher's 20"):
        run_toy("opd_full", tmp_path / "b", teacher=ToyTeacher(wide))
    assert not (tmp_path / "b" / "metrics.jsonl").exists()


def test_grpo_raises_reward(tmp_path):
    cfg = toy_config(steps=25, tasks_per_step=3, checkpoint_every=100, lr=2e-2)
    _, _ = run_toy("grpo", tmp_path, cfg=cfg)
    rewards = [r["reward"] for r in _read_metrics(tmp_path)]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.2, rewards


def test_nan_stops_with_clear_message(tmp_path):
    class NanTeacher:
        calls = 0

        def score(self, batch):
            NanTeacher.calls += 1
            lp = torch.full(batch.input_ids_B_T.shape, -1.0)
            if NanTeacher.calls == 3:
                lp[0, 3] = float("nan")
            return torch.where(batch.loss_mask_B_T, lp, torch.zeros_like(lp))

    with pytest.raises(RuntimeError, match=r"non-finite teacher log-probs \(OPD term\) at step 3.*step 2"):
        run_toy("opd", tmp_path, teacher=NanTeacher())
    assert json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["step"] == 2


CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import test_train_trainer as t
def log(metrics, step):
    if step == {kill_at} and "reward" in metrics:
        os.kill(os.getpid(), signal.SIGKILL)
t.run_toy("atod", {out!r}, cfg=t.toy_config(steps=6, checkpoint_every=2), log=log)
"""


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    ref, _ = run_toy("atod", tmp_path / "ref", cfg=toy_config(steps=6, checkpoint_every=2))
    out = tmp_path / "killed"
    code = CHILD.format(tests=str(Path(__file__).parent), kill_at=5, out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 4
    assert not (out / "final").exists()
    resumed, summary = run_toy("atod", out, cfg=toy_config(steps=6, checkpoint_every=2))
    assert summary["resumed_from_step"] == 4
    for pr, pk in zip(ref.parameters(), resumed.parameters()):
        assert torch.equal(pr, pk)
    steps = [r["step"] for r in _read_metrics(out) if "reward" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    ref_metrics = [r["reward"] for r in _read_metrics(tmp_path / "ref")]
    assert [r["reward"] for r in _read_metrics(out)] == ref_metrics


def test_resume_refuses_a_different_run(tmp_path):
    run_toy("atod", tmp_path, cfg=toy_config(steps=2))
    with pytest.raises(ValueError, match="different run"):
        run_toy("opd", tmp_path, cfg=toy_config(steps=2))


def test_resume_ignores_knobs_that_change_only_speed_or_length(tmp_path):
    run_toy("atod", tmp_path, cfg=toy_config(steps=2, checkpoint_every=1, parallel_runs=1, microbatch_tokens=64))
    _, summary = run_toy("atod", tmp_path, cfg=toy_config(steps=3, checkpoint_every=1, parallel_runs=2,
                                                          microbatch_tokens=100_000))
    assert summary["resumed_from_step"] == 2


def test_microbatch_size_does_not_change_the_update(tmp_path):
    small, _ = run_toy("atod", tmp_path / "s", cfg=toy_config(steps=2, microbatch_tokens=64))
    large, _ = run_toy("atod", tmp_path / "l", cfg=toy_config(steps=2, microbatch_tokens=100_000))
    for a, b in zip(small.parameters(), large.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_generated_logprobs_match_token_logprobs():
    from atod.agent.models import generated_logprobs

    model = tiny_model(seed=5)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (4, 12), generator=g)
    attn = torch.zeros(4, 12, dtype=torch.long)
    mask = torch.zeros(4, 12, dtype=torch.bool)
    for b, (length, prompt) in enumerate([(12, 8), (9, 5), (6, 2), (10, 3)]):
        attn[b, :length] = 1
        mask[b, prompt:length] = True
    mask[3, 5:7] = False  # a row with two generated spans (a growing conversation)
    ids = torch.where(attn.bool(), ids, torch.zeros_like(ids))
    fast = generated_logprobs(model, ids, attn, mask)
    ref = torch.where(mask, token_logprobs(model, ids, attn), torch.zeros(4, 12))
    assert torch.allclose(fast, ref, atol=1e-5)
    assert (fast[~mask] == 0).all()
    # generated_logits: one (V,) row per generated token, row-major, the distribution that predicts it
    from atod.agent.models import generated_logits

    logits = generated_logits(model, ids, attn, mask)
    assert logits.shape == (int(mask.sum()), VOCAB)
    picked = logits.log_softmax(-1).gather(-1, ids[mask][:, None]).squeeze(-1)
    assert torch.allclose(picked, ref[mask], atol=1e-5)


def test_validation_slice_is_held_out_of_training():
    from atod.train.splits import split_validation

    tasks = list(range(10))
    train_part, valid = split_validation(tasks, 3)
    assert valid == [7, 8, 9] and train_part == list(range(7))
    for bad in (0, 5, 6):
        with pytest.raises(ValueError, match="train.eval_tasks"):
            split_validation(tasks, bad)


def test_minibatch_rows_deal_episodes_round_robin():
    from atod.train.trainer import minibatch_rows

    episode_B = torch.tensor([0, 0, 1, 2, 3, 3, 4])  # episode 0 and 3 span two rows each
    rows = minibatch_rows(episode_B, 5, 2)
    assert [r.tolist() for r in rows] == [[0, 1, 3, 6], [2, 4, 5]]  # episodes {0, 2, 4} and {1, 3}
    with pytest.raises(ValueError, match="6 minibatches"):
        minibatch_rows(episode_B, 5, 6)


def test_updates_per_step_are_steps_on_each_minibatch():
    """k updates per rollout batch = k plain updates, each on a batch of only that minibatch's episodes,
    with the rollout's log-probs as pi_old throughout."""
    from atod.train.trainer import compute_advantages, method_settings, minibatch_updates, policy_update

    torch.set_num_threads(1)
    cfg = toy_config(updates_per_step=2, lr=1e-2)
    batch = toy_rollout(tiny_model(seed=1), toy_tasks(2), seed=3, samples_per_task=4)  # 8 episodes, one row each
    batch.teacher_logprobs_B_T = sharp_teacher().score(batch)
    adv_B_T, _, _ = compute_advantages(batch, method_settings("atod"), 1.0, 1.0, cfg.adv_eps, 1)

    dealt = tiny_model(seed=7)
    opt = torch.optim.AdamW(dealt.parameters(), lr=cfg.lr)
    stats = minibatch_updates(dealt, opt, batch, adv_B_T, cfg, 1)

    by_hand = tiny_model(seed=7)
    opt_h = torch.optim.AdamW(by_hand.parameters(), lr=cfg.lr)
    for i in range(2):
        rows = torch.arange(8)[torch.arange(8) % 2 == i]
        sub = RolloutBatch(input_ids_B_T=batch.input_ids_B_T[rows], attention_mask_B_T=batch.attention_mask_B_T[rows],
                           loss_mask_B_T=batch.loss_mask_B_T[rows], old_logprobs_B_T=batch.old_logprobs_B_T[rows],
                           turn_index_B_T=batch.turn_index_B_T[rows], episode_index_B=torch.arange(len(rows)),
                           episodes=[batch.episodes[r] for r in rows.tolist()])
        policy_update(by_hand, opt_h, sub, adv_B_T[rows], cfg, 1)
    for a, b in zip(dealt.parameters(), by_hand.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # the second minibatch is scored by a policy that has moved: its ratio is no longer 1
    assert stats["approx_kl_old"] != 0.0
    with pytest.raises(ValueError, match="updates_per_step"):
        toy_config(updates_per_step=9)  # 2 tasks x 4 samples = 8 episodes


def test_lr_schedule_hand_values():
    from atod.train.config import TrainConfig
    from atod.train.trainer import make_lr_lambda

    # warmup (s + 1) / (warmup + 1) for s < 2, then cosine from 1 to the 0.1 floor over the 8 steps left:
    # 0.1 + 0.9 * (1 + cos(pi * (s - 2) / 8)) / 2
    f = make_lr_lambda(TrainConfig(steps=10, warmup_steps=2, lr_schedule="cosine", anneal={"anneal_steps": 5}))
    assert [f(s) for s in (0, 1, 2, 6, 10)] == pytest.approx([1 / 3, 2 / 3, 1.0, 0.55, 0.1])
    f = make_lr_lambda(TrainConfig(steps=10, warmup_steps=2, lr_schedule="constant", anneal={"anneal_steps": 5}))
    assert [f(s) for s in (0, 1, 2, 5, 10)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0])


def test_rollout_seed_hand_value():
    from atod.train.trainer import rollout_seed

    assert rollout_seed(1, 1) == 1_007_939  # (1 * 1_000_003 + 1 * 7_919 + 17) % (2**31 - 1) = 1_007_939
    assert rollout_seed(0, 0) == 17  # (0 + 0 + 17) % (2**31 - 1)
    assert rollout_seed(2148, 0) == 522_814  # 2148 * 1_000_003 + 17 = 2_148_006_461, minus 2**31 - 1 (wraps once)
    assert rollout_seed(1, 2) != rollout_seed(2, 1)


def test_row_chunks_hand_example():
    from atod.train.trainer import row_chunks

    # shortest first: rows 3 (2), 1 (3), 0 (5), 2 (9); [3, 1] pads to 2 x 3 = 6 <= 10, + row 0 -> 3 x 5 = 15 > 10;
    # [0] + row 2 -> 2 x 9 = 18 > 10, so row 2 is alone
    chunks = row_chunks(torch.tensor([5, 3, 9, 2]), 10)
    assert [c.tolist() for c in chunks] == [[3, 1], [0], [2]]
    # equal lengths keep their order (stable sort): 2 x 4 = 8 <= 10, 3 x 4 = 12 > 10
    assert [c.tolist() for c in row_chunks(torch.tensor([4, 4, 4]), 10)] == [[0, 1], [2]]
    # a row longer than the budget is a chunk of its own (not dropped, not merged): [1] then [0]
    assert [c.tolist() for c in row_chunks(torch.tensor([12, 1]), 10)] == [[1], [0]]
    assert [c.tolist() for c in row_chunks(torch.tensor([12]), 10)] == [[0]]


def test_atod_no_anneal_coefficients_are_fixed():
    from atod.train.trainer import coefficients, method_settings

    no_anneal, atod = method_settings("atod_no_anneal"), method_settings("atod")
    for anneal in ({"anneal_steps": 2}, {"anneal_steps": 80, "kappa_init": 0.5, "kappa_min": 0.0, "rho_max": 3.0},
                   {"anneal_steps": 1, "kind": "step"}):
        cfg = toy_config(anneal=anneal)
        for s in (0, 40, 500):
            assert coefficients(no_anneal, cfg, s) == (1.0, 1.0), (anneal, s)
    # the annealed twin does move: linear, T = 2, kappa 1 -> 0.1, rho 1 -> 2, so (0.1, 2.0) from step 2 on
    assert coefficients(atod, toy_config(), 40) == pytest.approx((0.1, 2.0))


def test_a_teacher_method_without_teacher_is_refused(tmp_path):
    cfg = toy_config(steps=1)

    def run(method, out, cfg=cfg):
        return run_training(method=method, model=tiny_model(seed=123), tokenizer=None, train_tasks=toy_tasks(),
                            rollout_fn=lambda m, t, s: toy_rollout(m, t, s, cfg.samples_per_task), teacher=None,
                            cfg=cfg, seed=0, out_dir=out, progress=False)

    with pytest.raises(ValueError, match=r"method 'opd' uses the teacher \(kappa > 0\) but no teacher was given"):
        run("opd", tmp_path / "opd")
    assert not (tmp_path / "opd" / "metrics.jsonl").exists()
    # atod with kappa 0 at every step never needs the teacher: teacher=None is fine
    zero = toy_config(steps=1, anneal={"anneal_steps": 1, "kappa_init": 0.0, "kappa_min": 0.0})
    summary = run("atod", tmp_path / "atod", cfg=zero)
    assert summary["final"]["kappa"] == 0.0 and "kl_teacher" not in summary["final"]


def test_eval_fn_without_success_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"eval_fn must return a dict with a 'success' key, got \['accuracy'\]"):
        run_toy("grpo", tmp_path, cfg=toy_config(steps=2), eval_fn=lambda m, s: {"accuracy": 1.0})


def test_task_sampler_refuses_another_task_count():
    from atod.train.trainer import TaskSampler

    sampler = TaskSampler(toy_tasks(6), tasks_per_step=2, seed=0)
    with pytest.raises(ValueError, match="checkpoint was made with 5 training tasks, now there are 6"):
        sampler.load_state_dict({"epoch": 0, "cursor": 2, "num_tasks": 5})
    assert (sampler.epoch, sampler.cursor) == (0, 0)  # left as it was
    for epoch, cursor in ((0, 7), (0, -1), (-1, 0)):
        with pytest.raises(ValueError, match=rf"epoch {epoch}, cursor {cursor} \(need epoch >= 0 and 0 <= cursor <= 6\)"):
            sampler.load_state_dict({"epoch": epoch, "cursor": cursor, "num_tasks": 6})
    sampler.load_state_dict({"epoch": 1, "cursor": 6, "num_tasks": 6})  # an epoch just used up: the next call moves on
    assert len(sampler.next_tasks()) == 2 and (sampler.epoch, sampler.cursor) == (2, 2)
    with pytest.raises(ValueError, match="no training tasks to sample from"):
        TaskSampler([], tasks_per_step=2, seed=0)


def test_best_checkpoint_is_the_best_validation_not_the_last(tmp_path):
    vals, at_step_2 = iter([0.5, 0.2]), {}

    def eval_fn(model, step):
        if step == 2:
            at_step_2["lm_head"] = model.lm_head.weight.detach().clone()
        return {"success": next(vals)}

    model, summary = run_toy("grpo", tmp_path, cfg=toy_config(steps=4, eval_every=2), eval_fn=eval_fn)
    # evals at steps 2 (0.5) and 4 (0.2): the first is the best and is not replaced
    assert summary["best_step"] == 2 and summary["best_val_success"] == 0.5
    assert summary["best_dir"] == str(tmp_path / "best") and (tmp_path / "best").is_dir()
    best = Qwen3ForCausalLM.from_pretrained(tmp_path / "best")
    assert torch.equal(best.lm_head.weight, at_step_2["lm_head"])
    assert not torch.equal(best.lm_head.weight, model.lm_head.weight)  # steps 3 and 4 moved the weights
    val_rows = [r for r in _read_metrics(tmp_path) if "val_success" in r]
    assert val_rows == [{"step": 2, "val_success": 0.5}, {"step": 4, "val_success": 0.2}]


@pytest.mark.parametrize(("method", "expected"), [
    ("grpo", [(0.0, 1.0)] * 4),
    ("opd", [(1.0, 0.0)] * 4),
    ("atod_no_anneal", [(1.0, 1.0)] * 4),
    # linear over T = 2: f = 0, 0.5, 1, 1 -> kappa = 1 - 0.9 f, rho = 1 + f
    ("atod", [(1.0, 1.0), (0.55, 1.5), (0.1, 2.0), (0.1, 2.0)]),
])
def test_toy_run_metrics_are_exact(tmp_path, method, expected):
    cfg = toy_config(steps=4, lr=1e-2, checkpoint_every=100)
    run_toy(method, tmp_path, cfg=cfg)
    rows = [r for r in _read_metrics(tmp_path) if "reward" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["lr"] for r in rows] == [1e-2] * 4  # constant schedule, no warmup: factor 1.0
    assert [r["kappa"] for r in rows] == pytest.approx([k for k, _ in expected])
    assert [r["rho"] for r in rows] == pytest.approx([r for _, r in expected])
    # 2 tasks x 4 samples x 2 turns of 3 tokens = 48 generated tokens; every toy episode has 2 turns, 0 errors
    assert all(r["generated_tokens"] == 48.0 and r["turns"] == 2.0 and r["format_error_rate"] == 0.0 for r in rows)
    assert ("kl_teacher" in rows[0]) == (method != "grpo")


def test_toy_run_logs_the_warmup_lr(tmp_path):
    run_toy("grpo", tmp_path, cfg=toy_config(steps=3, lr=1e-2, warmup_steps=2, checkpoint_every=100))
    lrs = [r["lr"] for r in _read_metrics(tmp_path) if "reward" in r]
    assert lrs == pytest.approx([1e-2 / 3, 2e-2 / 3, 1e-2])  # lr x (s + 1) / (2 + 1) for s < 2, then lr


def _hand_batch() -> RolloutBatch:
    """tests/test_tdur.py's batch (episode 0: two rows, one per turn; episode 1: one row holding two
    turns), both episodes of one GRPO group, with rewards 10 and 0 and the teacher's log-probs filled."""
    lp_s = torch.tensor([[0, -1, -3, 0, 0], [0, -0.5, 0, 0, 0], [0, -2, 0, -1, -1]], dtype=torch.float32)
    lp_t = torch.tensor([[0, -2, -1, 0, 0], [0, -0.5, 0, 0, 0], [0, -1, 0, -1, -3]], dtype=torch.float32)
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 1, 0, 0, 0], [0, 1, 0, 1, 1]], dtype=torch.bool)
    turn = torch.tensor([[-1, 0, 0, -1, -1], [-1, 1, -1, -1, -1], [-1, 0, -1, 1, 1]])
    episodes = [EpisodeRecord("alfworld", "train", "t", group=0, sample=k, reward=r, won=r > 0, score=float(r > 0),
                              num_turns=2, invalid_steps=0, format_errors=0) for k, r in enumerate((10.0, 0.0))]
    return RolloutBatch(input_ids_B_T=torch.ones(3, 5, dtype=torch.long), attention_mask_B_T=torch.ones(3, 5),
                        loss_mask_B_T=mask, old_logprobs_B_T=lp_s, turn_index_B_T=turn,
                        episode_index_B=torch.tensor([0, 0, 1]), episodes=episodes, teacher_logprobs_B_T=lp_t)


@pytest.mark.parametrize(("method", "kappa", "rho", "expected"), [
    # lp_T - lp_S on the generated tokens: [-1, 2 | 0 | 1, 0, -2]; GRPO: rewards 10, 0 -> mean 5, std
    # (n - 1) 50 ** .5 -> +-0.70711 for episode 0 (rows 0, 1) and 1 (row 2); T-DUR weights as in test_tdur.py
    # turn level [1, 1 | 0 | 1, .5, .5]; token level [.6, 1 | 0 | 1, 0, 1]
    ("atod", 0.5, 2.0, [[-0.5 + 1.41421, 1 + 1.41421], [1.41421], [0.5 - 1.41421, -1.41421, -0.5 - 1.41421]]),
    ("atod_token", 0.5, 2.0, [[-0.3 + 1.41421, 1 + 1.41421], [1.41421], [0.5 - 1.41421, -1.41421, -1 - 1.41421]]),
    ("atod_uniform", 0.5, 2.0, [[-0.5 + 1.41421, 1 + 1.41421], [1.41421], [0.5 - 1.41421, -1.41421, -1 - 1.41421]]),
    ("grpo", 0.0, 1.0, [[0.70711, 0.70711], [0.70711], [-0.70711, -0.70711, -0.70711]]),
    ("opd", 1.0, 0.0, [[-1, 2], [0], [1, 0, -2]]),
    ("opd_full", 1.0, 1.0, [[0.70711, 0.70711], [0.70711], [-0.70711, -0.70711, -0.70711]]),  # OPD term: a loss
])
def test_compute_advantages_by_hand(method, kappa, rho, expected):
    """Each method's per-token advantage on a batch of several rows and episodes: the right weighting, and
    every row gets its own episode's GRPO advantage; zero off the generated tokens."""
    from atod.train.trainer import compute_advantages, method_settings

    batch = _hand_batch()
    adv_B_T, stats, w_B_T = compute_advantages(batch, method_settings(method), kappa, rho, 1e-6, 1)
    mask = batch.loss_mask_B_T
    got = [adv_B_T[b][mask[b]].tolist() for b in range(3)]
    for row, want in zip(got, expected, strict=True):
        assert row == pytest.approx(want, abs=1e-4)
    assert torch.all(adv_B_T[~mask] == 0)
    assert (w_B_T is None) == (kappa == 0)
    if method == "atod":
        assert stats["tdur_weight_mean"] == pytest.approx(4 / 6)  # [1, 1, 0, 1, .5, .5]
        assert stats["kl_teacher"] == pytest.approx(0.0)  # lp_S - lp_T: [1, -2, 0, -1, 0, 2]
        assert stats["grpo_adv_abs_mean"] == pytest.approx(0.70711, abs=1e-4)


def test_schedule_notes_name_an_annealing_the_run_never_finishes():
    from atod.train.trainer import schedule_notes

    anneal = {"kind": "linear", "anneal_steps": 80, "kappa_init": 1.0, "kappa_min": 0.1, "rho_init": 1.0, "rho_max": 2.0}
    cfg = TrainConfig(steps=50, anneal=anneal)
    # the last step is s = 49: p = 49 / 80, kappa = 1 - 0.9 p = 0.44875, rho = 1 + p = 1.6125
    (note,) = schedule_notes(["grpo", "atod", "atod_token"], cfg)
    assert note.startswith("train.anneal.anneal_steps (80) is not under train.steps (50): atod, atod_token end at "
                           "kappa 0.449, rho 1.61 instead of 0.1, 2")
    assert schedule_notes(["grpo", "opd", "atod_no_anneal"], cfg) == []  # nothing anneals
    assert schedule_notes(["atod"], TrainConfig(steps=50, anneal={**anneal, "kind": "constant"})) == []  # meant
    assert schedule_notes(["atod"], TrainConfig(steps=81, anneal=anneal)) == []  # s = 80 reaches the floor
    (warm,) = schedule_notes(["grpo"], TrainConfig(steps=5, warmup_steps=5, lr=1e-3))
    assert warm == "train.warmup_steps (5) is not under train.steps (5): the learning rate never reaches train.lr (0.001)"
