"""SFT: expert demonstrations, response-only labels, and a short run that teaches the answer format."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ARCH, tiny_searchqa
from pydantic import ValidationError

from atod.agent.config import AgentConfig, ModelSpec, TinyArch
from atod.agent.models import build_tiny_model
from atod.agent.rollout import collect_rollouts
from atod.config import PrepareConfig
from atod.envs import build_benchmark
from atod.train.config import SFTRun
from atod.train.sft import SFTExample, collate, expert_demonstrations, sft_loss, tokenize_examples, train_sft

AGENT = AgentConfig(max_new_tokens=16)
TINY = ModelSpec(arch=TinyArch(**TINY_ARCH))


@pytest.fixture(scope="module")
def searchqa():
    return tiny_searchqa()


@pytest.fixture(scope="module")
def webshop():
    bench = build_benchmark("webshop", PrepareConfig(webshop={"num_products": 30, "train_tasks": 10, "test_tasks": 4}))
    return bench


def test_expert_demonstrations(searchqa, webshop):
    bench, _ = searchqa
    a, stats = expert_demonstrations(bench, n_episodes=4, noise=0.0, seed=0, agent_cfg=AGENT)
    b, _ = expert_demonstrations(bench, n_episodes=4, noise=0.0, seed=0, agent_cfg=AGENT)
    assert a == b and stats["expert_success"] == 1.0 and stats["steps"] == len(a)
    assert all(e.response.startswith(("<search>", "<answer>")) for e in a)
    assert any(e.response.startswith("<answer>") for e in a)
    w, _ = expert_demonstrations(webshop, n_episodes=3, noise=0.0, seed=0, agent_cfg=AGENT)
    assert all(e.response.startswith("<action>") and e.response.endswith("</action>") for e in w)
    assert w[0].prompt.startswith("You are an expert agent shopping online")


def test_labels_cover_the_response_only(searchqa):
    _, tok = searchqa
    ex = [SFTExample("what is x?", "<answer>blue</answer>"), SFTExample("a longer question here?", "<search>q</search>")]
    items = tokenize_examples(tok, ex, max_prompt_tokens=512, max_response_tokens=16)
    ids, attn, labels = collate(items, tok.pad_token_id)
    T = ids.shape[1]
    for b, (seq, p) in enumerate(items):  # left padding: the response ends every row
        start = T - len(seq)
        assert (labels[b, :start + p] == -100).all() and ids[b, start:].tolist() == seq
        # the byte-level pre-tokenizer adds a prefix space after a tag token: compare without spaces
        assert tok.decode(labels[b, start + p:]).replace(" ", "") == ex[b].response.replace(" ", "")
        assert attn[b].sum() == len(seq) and attn[b, start:].all()


def test_loss_on_kept_logits_equals_full_loss(searchqa):
    _, tok = searchqa
    model = build_tiny_model(TINY, tok, seed=0)
    ex = [SFTExample("what is x?", "<answer>blue</answer>"), SFTExample("a longer question here?", "<search>q</search>")]
    ids, attn, labels = collate(tokenize_examples(tok, ex, max_prompt_tokens=512, max_response_tokens=16),
                                tok.pad_token_id)
    loss, n = sft_loss(model, ids, attn, labels)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits
    full = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
    assert n == int((labels != -100).sum()) and loss.item() == pytest.approx(full.item(), rel=1e-5)


class _FixedLogits(torch.nn.Module):
    """A stand-in model whose logits are a fixed (B, T, V) table, cut to the last `logits_to_keep`."""

    def __init__(self, logits_B_T_V):
        super().__init__()
        self.logits_B_T_V = logits_B_T_V

    def forward(self, input_ids, attention_mask, position_ids, use_cache, logits_to_keep=0):
        from types import SimpleNamespace
        return SimpleNamespace(logits=self.logits_B_T_V[:, -logits_to_keep:])


def test_prompt_loss_weight_adds_the_prompt_tokens_cross_entropy():
    # V = 2. Row 0: [pad, p=1, p=0, r=1]; row 1: [p=0, p=1, r=0, r=1]. Logits are 0 (p = 1/2) except
    # those that predict the prompt tokens: row 0 position 1 gives token 0 p = 3/4 (logit ln 3), row 1
    # position 0 gives token 1 p = 1/4 (logit -ln 3 on token 1). Row 0 position 0 (pad) predicts nothing.
    import math
    ids = torch.tensor([[9, 1, 0, 1], [0, 1, 0, 1]])
    attn = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    labels = torch.tensor([[-100, -100, -100, 1], [-100, -100, 0, 1]])
    logits = torch.zeros(2, 4, 2)
    logits[0, 1, 0] = math.log(3)
    logits[1, 0, 1] = -math.log(3)
    logits[0, 0, 0] = 50.0  # the pad position's prediction must not count
    model = _FixedLogits(logits)
    response_ce = math.log(2)  # 3 response tokens, each p = 1/2
    prompt_ce = (-math.log(3 / 4) - math.log(1 / 4)) / 2  # row 0: p -> 0 at 3/4; row 1: p -> 1 at 1/4
    loss0, n = sft_loss(model, ids, attn, labels)
    loss1, _ = sft_loss(model, ids, attn, labels, prompt_weight=0.5)
    assert n == 3
    assert loss0.item() == pytest.approx(response_ce, rel=1e-6)
    assert loss1.item() == pytest.approx(response_ce + 0.5 * prompt_ce, rel=1e-6)


def test_sft_teaches_the_format(searchqa):
    bench, tok = searchqa
    torch.set_num_threads(1)
    model = build_tiny_model(TINY, tok, seed=0)
    tasks = bench.tasks("train")[:4]

    def format_rate(m) -> float:
        batch = collect_rollouts(m, tok, bench, tasks, samples_per_task=4, temperature=1.0, agent_cfg=AGENT, seed=0,
                                 split="train", device="cpu", max_turns=1)
        return 1.0 - sum(e.format_errors for e in batch.episodes) / len(batch.episodes)

    before = format_rate(model)
    demos, _ = expert_demonstrations(bench, n_episodes=20, noise=0.0, seed=0, agent_cfg=AGENT)
    losses = []
    train_sft(model, tok, demos, SFTRun(steps=120, sequences_per_step=8, lr=1e-2, warmup_steps=5), seed=0,
              agent_cfg=AGENT, log=lambda m, s: losses.append(m["loss"]), log_every=20, progress=False)
    after = format_rate(model)
    assert losses[-1] < 0.5 * losses[0], losses
    assert after >= 0.75 and after > before, (before, after)


def test_length_grouped_batches_cover_an_epoch_once():
    import random

    from atod.train.sft import length_grouped_batches

    lengths = [random.Random(i).randint(10, 500) for i in range(100)]
    batches = length_grouped_batches(lengths, 8, random.Random(0), group_batches=4)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(100))  # every example exactly once
    assert all(len(b) <= 8 for b in batches) and sum(len(b) == 8 for b in batches) >= 12
    # batches hold similar lengths: the mean in-batch spread is far below the spread of random batches
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 150, spread
    assert batches == length_grouped_batches(lengths, 8, random.Random(0), group_batches=4)  # seeded


def test_sft_check_runs_on_train_tasks_no_demo_used(searchqa):
    from atod.train.sft import sft_on_benchmarks

    bench, tok = searchqa
    model = build_tiny_model(TINY, tok, seed=0)
    logged: list[tuple[int, dict]] = []
    run = SFTRun(episodes_per_benchmark=12, steps=4, sequences_per_step=4, warmup_steps=0, eval_every=2, eval_tasks=5)
    _, stats = sft_on_benchmarks(model, tok, [bench], run, 0, agent_cfg=AGENT,
                                 log=lambda m, s: logged.append((s, m)), progress=False)
    checks = [(s, m) for s, m in logged if "check/searchqa/success" in m]
    assert [s for s, _ in checks] == [2, 4]
    assert stats["searchqa_check_tasks"] == 5  # 20 train tasks, 12 used by demonstrations
    assert all(0.0 <= m["check/searchqa/success"] <= 1.0 for _, m in checks)


def test_warm_up_never_sees_the_validation_slice(searchqa, monkeypatch):
    """Demonstrations and the check leave out the last `holdout` train tasks (what `train` validates on)."""
    from atod.train.sft import sft_on_benchmarks
    from atod.train.splits import split_validation

    bench, tok = searchqa
    _, valid = split_validation(bench.tasks("train"), 4)
    seen: list[str] = []
    run = SFTRun(episodes_per_benchmark=40, steps=1, sequences_per_step=4, warmup_steps=0, eval_every=1, eval_tasks=5)
    import atod.train.sft as sft_mod
    real = sft_mod.expert_demonstrations

    def spy(*args, **kwargs):
        demos, st = real(*args, **kwargs)
        seen.extend(d.task_id for d in demos)
        return demos, st

    monkeypatch.setattr(sft_mod, "expert_demonstrations", spy)
    _, stats = sft_on_benchmarks(build_tiny_model(TINY, tok, seed=0), tok, [bench], run, 0, agent_cfg=AGENT,
                                 holdout=4, progress=False)
    assert len(set(seen)) == 16  # 40 episodes cycle through the 20 - 4 tasks left
    assert not set(seen) & {t.task_id for t in valid}
    assert stats["searchqa_check_tasks"] == 0  # every task outside the validation slice was demonstrated


def test_epoch_pool_weighs_turns_or_benchmarks():
    from atod.train.sft import epoch_pool

    names = ["a", "a", "b", "a", "a"]
    assert epoch_pool(names, "turns") == [0, 1, 2, 3, 4]
    assert epoch_pool(names, "benchmarks") == [0, 1, 2, 2, 2, 2, 3, 4]  # a: 4 -> x1, b: 1 -> x4
    # ALFWorld / WebShop / Search-QA demonstration steps of the whole-terms pilot teacher: 9125 / 7938 / 2626
    # -> repeats 1 / round(1.15) = 1 / round(3.47) = 3
    pool = epoch_pool(["alf"] * 9125 + ["web"] * 7938 + ["sqa"] * 2626, "benchmarks")
    assert len(pool) == 9125 + 7938 + 3 * 2626 and pool.count(9125 + 7938) == 3
    assert epoch_pool([], "benchmarks") == []
    with pytest.raises(ValueError, match="balance"):
        epoch_pool(names, "tokens")
    with pytest.raises(ValidationError, match="balance"):
        SFTRun(balance="tokens")


def test_train_sft_epochs_follow_the_balance(searchqa):
    """3 Search-QA examples and 1 'other': an epoch is 4 sequences by turns, 3 + 3 by benchmarks, so with 2
    sequences a step the second epoch starts at step 3 by turns and at step 4 by benchmarks."""
    _, tok = searchqa
    ex = [SFTExample(f"question {i}?", "<answer>blue</answer>", "searchqa") for i in range(3)]
    ex.append(SFTExample("other?", "<search>q</search>", "other"))
    epochs = {}
    for balance in ("turns", "benchmarks"):
        logged = []
        train_sft(build_tiny_model(TINY, tok, seed=0), tok, ex,
                  SFTRun(steps=4, sequences_per_step=2, warmup_steps=0, balance=balance), seed=0, agent_cfg=AGENT,
                  log=lambda m, s, logged=logged: logged.append(m["epoch"]), log_every=1, progress=False)
        epochs[balance] = logged
    assert epochs == {"turns": [0.0, 0.0, 1.0, 1.0], "benchmarks": [0.0, 0.0, 0.0, 1.0]}


class _Interrupt(Exception):
    pass


def test_interrupted_sft_continues_from_its_checkpoint_bitwise(searchqa, tmp_path):
    """10 steps of 2 sequences (an epoch ends on the way), checkpoints every 3 steps, losses logged every 2
    and a check every 5. Killed while logging step 6, the run continues from the checkpoint of step 3 (which
    holds a half-filled loss average and a check after it): its log (replayed, then new) and its final
    weights are those of a run never interrupted, and that run wrote no checkpoint at all."""
    bench, tok = searchqa
    examples, _ = expert_demonstrations(bench, n_episodes=5, noise=0.2, seed=0, agent_cfg=AGENT)
    assert len(examples) < 20  # fewer than 10 steps x 2 sequences: the data order wraps into a new epoch
    run = SFTRun(steps=10, sequences_per_step=2, warmup_steps=2, eval_every=5, checkpoint_every=3)

    def check(m):  # depends on the weights, so a resumed model that differs would show here
        return {"check/searchqa/success": float(sum(p.detach().double().sum() for p in m.parameters()))}

    def train(log, checkpoint_dir=None):
        model = build_tiny_model(TINY, tok, seed=0)
        train_sft(model, tok, examples, run, seed=3, agent_cfg=AGENT, log=log, log_every=2, progress=False,
                  check=check, checkpoint_dir=checkpoint_dir)
        return model

    def steady(logged):
        return [(s, {k: v for k, v in m.items() if k != "tokens_per_s"}) for s, m in logged]

    ref_log: list = []
    ref = train(lambda m, s: ref_log.append((s, m)))

    def killed(m, s):
        if s == 6:
            raise _Interrupt
    with pytest.raises(_Interrupt):
        train(killed, tmp_path / "ckpt")
    from atod.train.checkpoint import find_checkpoint, load_trainer_state
    assert load_trainer_state(find_checkpoint(tmp_path / "ckpt"))["step"] == 3

    resumed_log: list = []
    resumed = train(lambda m, s: resumed_log.append((s, m)), tmp_path / "ckpt")
    assert steady(resumed_log) == steady(ref_log)
    assert [s for s, m in ref_log if "check/searchqa/success" in m] == [5, 10]
    for (name, a), (_, b) in zip(ref.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert load_trainer_state(find_checkpoint(tmp_path / "ckpt"))["step"] == 9  # the last one before the end


def test_sft_checkpoint_of_another_run_is_an_error(searchqa, tmp_path):
    bench, tok = searchqa
    examples, _ = expert_demonstrations(bench, n_episodes=2, noise=0.0, seed=0, agent_cfg=AGENT)
    run = SFTRun(steps=3, sequences_per_step=2, warmup_steps=0, checkpoint_every=1)
    train_sft(build_tiny_model(TINY, tok, seed=0), tok, examples, run, seed=0, agent_cfg=AGENT, progress=False,
              checkpoint_dir=tmp_path / "ckpt")
    other = run.model_copy(update={"lr": 5e-4})
    with pytest.raises(ValueError, match=r"different run \(differs in: run\)"):
        train_sft(build_tiny_model(TINY, tok, seed=0), tok, examples, other, seed=0, agent_cfg=AGENT, progress=False,
                  checkpoint_dir=tmp_path / "ckpt")
    # checkpoint_every is not part of what the run computes: another value continues the same run
    train_sft(build_tiny_model(TINY, tok, seed=0), tok, examples, run.model_copy(update={"checkpoint_every": 2}),
              seed=0, agent_cfg=AGENT, progress=False, checkpoint_dir=tmp_path / "ckpt")
