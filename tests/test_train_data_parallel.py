"""Data-parallel training (atod.train.distributed): a run trained by 2 processes under torchrun (CPU,
gloo) makes the same updates as one process training on the union of the two processes' rollouts,
including steps where the processes have different numbers of forward/backward chunks; it logs the
metrics of all episodes, and resumes from its checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_train_trainer as t
import torch
from transformers import Qwen3ForCausalLM

from atod.train.trainer import rollout_seed, run_training
from atod.types import RolloutBatch

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
M = 2**31 - 1
CFG = {"steps": 4, "tasks_per_step": 2, "samples_per_task": 8, "checkpoint_every": 2, "eval_every": 100,
       "lr": 1e-2}


def ragged(batch: RolloutBatch) -> RolloutBatch:
    """Drop the second turn of the episodes of tasks with an odd token (right padding): their rows are 5
    tokens long instead of 9, so a process holding such a task needs fewer chunks of 64 tokens (8 rows of
    5 fit in one, 8 rows of 9 need two)."""
    short_B = batch.input_ids_B_T[:, 1] % 2 == 1
    keep_B_T = ~(short_B[:, None] & (torch.arange(batch.input_ids_B_T.shape[1]) >= 5)[None, :])
    batch.attention_mask_B_T = batch.attention_mask_B_T * keep_B_T
    batch.loss_mask_B_T = batch.loss_mask_B_T & keep_B_T
    batch.turn_index_B_T = torch.where(keep_B_T, batch.turn_index_B_T, torch.full_like(batch.turn_index_B_T, -1))
    batch.old_logprobs_B_T = batch.old_logprobs_B_T * keep_B_T
    return batch


def unlearnable(batch: RolloutBatch) -> RolloutBatch:
    """`ragged`, and no generated token of the tasks whose token is a multiple of 3 (6 and 9) is learned
    from (loss mask off): a process holding only such a task has nothing in its last chunk."""
    batch = ragged(batch)
    batch.loss_mask_B_T = batch.loss_mask_B_T & (batch.input_ids_B_T[:, 1] % 3 != 0)[:, None]
    return batch


TRANSFORMS = {"ragged": ragged, "unlearnable": unlearnable}


def concat(batches: list[RolloutBatch]) -> RolloutBatch:
    """The batches as one: episodes (and their GRPO groups) numbered on after each other."""
    episodes, ep_index, group_off, ep_off = [], [], 0, 0
    for b in batches:
        episodes += [dataclasses.replace(e, group=e.group + group_off) for e in b.episodes]
        ep_index.append(b.episode_index_B + ep_off)
        group_off += len({e.group for e in b.episodes})
        ep_off += len(b.episodes)
    cat = lambda name: torch.cat([getattr(b, name) for b in batches])  # toy rows all have one length
    return RolloutBatch(input_ids_B_T=cat("input_ids_B_T"), attention_mask_B_T=cat("attention_mask_B_T"),
                        loss_mask_B_T=cat("loss_mask_B_T"), old_logprobs_B_T=cat("old_logprobs_B_T"),
                        turn_index_B_T=cat("turn_index_B_T"), episode_index_B=torch.cat(ep_index),
                        episodes=episodes)


def union_rollout(model, tasks, seed0: int, transform=ragged, world: int = 2) -> RolloutBatch:
    """What the `world` processes roll out at a step, as one batch: process r plays tasks[r::world] with
    seed rollout_seed(seed, step, r) = rollout_seed(seed, step) + r * 104729 (mod 2^31 - 1)."""
    return concat([transform(t.toy_rollout(model, tasks[r::world], (seed0 + r * 104_729) % M, CFG["samples_per_task"]))
                   for r in range(world)])


CHILD = """
import json, os, sys
sys.path.insert(0, {tests!r})
import torch
import test_train_trainer as t
import test_train_data_parallel as d
import atod.train.trainer as trainer
from atod.train.distributed import DataParallel

torch.set_num_threads(1)
dp = DataParallel.from_env("cpu")
chunks, row_chunks, zero_loss = [], trainer.row_chunks, trainer._zero_loss
def counting(*a, **k):
    out = row_chunks(*a, **k)
    chunks.append(len(out))
    return out
def counting_zero(*a, **k):
    chunks.append("zero")
    return zero_loss(*a, **k)
trainer.row_chunks, trainer._zero_loss = counting, counting_zero
cfg = t.toy_config(**{cfg!r})
model = t.tiny_model(seed=123)
trainer.run_training(method={method!r}, model=model, tokenizer=None, train_tasks=t.toy_tasks(),
                     rollout_fn=lambda m, ts, s: d.TRANSFORMS[{transform!r}](t.toy_rollout(m, ts, s, cfg.samples_per_task)),
                     teacher=t.sharp_teacher(), cfg=cfg, seed=0, out_dir={out!r}, progress=False, data_parallel=dp)
with open(os.path.join({out!r}, f"chunks{{dp.rank}}.json"), "w") as f:
    json.dump(chunks, f)
"""


def torchrun(out: Path, method: str, cfg: dict, nproc: int = 2, transform: str = "ragged") -> None:
    code = CHILD.format(tests=str(TESTS), cfg=cfg, method=method, out=str(out), transform=transform)
    script = out.parent / f"{out.name}_child.py"
    script.write_text(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={nproc}", str(script)], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def reference(out: Path, method: str, cfg: dict, transform: str = "ragged") -> Qwen3ForCausalLM:
    """One process trained on the union of what the two processes roll out at each step."""
    torch.set_num_threads(1)
    model = t.tiny_model(seed=123)
    run_training(method=method, model=model, tokenizer=None, train_tasks=t.toy_tasks(),
                 rollout_fn=lambda m, ts, s: union_rollout(m, ts, s, TRANSFORMS[transform]), teacher=t.sharp_teacher(),
                 cfg=t.toy_config(**cfg), seed=0, out_dir=out, progress=False)
    return model


def rows(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


def test_rank_seeds_follow_the_single_process_seed():
    assert rollout_seed(3, 5, 0) == rollout_seed(3, 5)
    assert rollout_seed(3, 5, 1) == (rollout_seed(3, 5) + 104_729) % M


@pytest.fixture(scope="module")
def atod_run(tmp_path_factory) -> Path:
    """A 4-step atod run trained by 2 processes."""
    out = tmp_path_factory.mktemp("atod") / "ddp"
    torchrun(out, "atod", CFG)
    return out


# grpo with 2 PPO minibatches per step: each process deals its 8 episodes e -> e mod 2, as one process
# deals the 16 of the union (the second process's episodes are the union's 8..15); opd where a process
# may hold a task it learns nothing from (its synchronising pass is a zero loss)
@pytest.mark.parametrize(("method", "extra", "transform"), [("atod", {}, "ragged"),
                                                            ("grpo", {"updates_per_step": 2}, "ragged"),
                                                            ("opd", {}, "unlearnable")])
def test_two_processes_update_as_one_process_on_the_union(tmp_path, atod_run, method, extra, transform):
    out = atod_run if method == "atod" else tmp_path / "ddp"
    if method != "atod":
        torchrun(out, method, {**CFG, **extra}, transform=transform)
    ref = reference(tmp_path / "ref", method, {**CFG, **extra}, transform)
    chunks = [json.loads((out / f"chunks{r}.json").read_text()) for r in range(2)]
    if method == "atod":  # (grpo's 4-row minibatches always fit one chunk)
        assert chunks[0] != chunks[1], "no step had processes with different chunk counts: the test lost its point"
    if method == "opd":
        assert "zero" in chunks[0] + chunks[1], "no process had an empty last chunk: the test lost its point"
    ddp = Qwen3ForCausalLM.from_pretrained(out / "final")
    for (name, a), b in zip(ref.named_parameters(), ddp.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name  # float rounding: measured up to 4e-6
    got, want = rows(out), rows(tmp_path / "ref")
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    for g, w in zip(got, want, strict=True):  # episode metrics over both processes' 16 episodes
        for key in ("reward", "success", "score", "turns", "generated_tokens", "kappa", "rho", "lr"):
            assert g[key] == pytest.approx(w[key]), key


def test_resumed_data_parallel_run_matches_an_uninterrupted_one(tmp_path, atod_run):
    """Steps 1-2, then the same run extended to 4 (constant LR: the schedule does not depend on `steps`)
    resumes from the step-2 checkpoint and ends with the weights of a 4-step run."""
    torchrun(tmp_path / "resumed", "atod", {**CFG, "steps": 2})
    torchrun(tmp_path / "resumed", "atod", CFG)
    a = Qwen3ForCausalLM.from_pretrained(atod_run / "final")
    b = Qwen3ForCausalLM.from_pretrained(tmp_path / "resumed" / "final")
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert [r["step"] for r in rows(tmp_path / "resumed")] == [1, 2, 3, 4]
    timing = ("time_rollout_s", "time_teacher_s", "time_update_s", "step_time_s", "tokens_per_s", "peak_mem_mb")
    strip = lambda recs: [{k: v for k, v in r.items() if k not in timing} for r in recs]
    assert strip(rows(tmp_path / "resumed")) == strip(rows(atod_run))  # the same metrics too


def test_tasks_per_step_must_split_evenly(tmp_path):
    from atod.train.distributed import DataParallel

    dp = DataParallel(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"tasks_per_step \(3\) must be a multiple of the 2 data-parallel"):
        run_training(method="grpo", model=t.tiny_model(1), tokenizer=None, train_tasks=t.toy_tasks(),
                     rollout_fn=t.toy_rollout, teacher=None, cfg=t.toy_config(tasks_per_step=3), seed=0,
                     out_dir=tmp_path, progress=False, data_parallel=dp)


def test_a_run_refuses_another_process_count_than_its_config(tmp_path):
    """`train.processes_per_run` is part of a run's inputs (seeds and task shares depend on it): a run
    started in one process with 2 configured (or under a launcher with another count) stops at once."""
    from atod.config import Params
    from atod.train.trainer import train

    p = Params(train={"processes_per_run": 2, "tasks_per_step": 2})
    with pytest.raises(ValueError, match=r"train.processes_per_run is 2 but this run has 1 process\(es\): launch it "
                                         r"with `torchrun --nproc-per-node 2`"):
        train("grpo", None, student_dir=tmp_path, teacher_dir=None, params=p, seed=0, out_dir=tmp_path)
