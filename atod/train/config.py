"""params.yaml `sft_warmup`, `cache_teacher` and `train` sections."""

from typing import Literal

from pydantic import Field, model_validator

from atod.configbase import Section, repeated

Method = Literal["grpo", "opd", "atod", "atod_no_anneal", "atod_uniform", "atod_token", "seqkd",
                 "opd_full", "atod_full"]  # the last two: an extra ablation, not the paper's (trainer.METHODS)
Benchmark = Literal["alfworld", "webshop", "searchqa"]


class SFTSteps(Section):
    """How supervised fine-tuning trains on given (prompt, response) examples, loss on the responses: the
    optimisation alone. `cache_teacher.seqkd` is one (its examples are the teacher's cached turns)."""

    steps: int = Field(1000, ge=0, description="optimizer steps (0 = keep the initial model)")
    sequences_per_step: int = Field(8, ge=1, description="(prompt, action) sequences per optimizer step")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(20, ge=0)
    prompt_loss_weight: float = Field(
        0.0, ge=0.0, description="weight of a language-model loss on the prompt tokens (observations) added to "
        "the response loss; 0 = response tokens only")
    balance: Literal["turns", "benchmarks"] = Field(
        "turns", description="what an epoch weighs equally: 'turns' = every demonstration step once (long "
        "episodes dominate: ALFWorld and WebShop give 3-4x Search-QA's steps); 'benchmarks' = each "
        "benchmark's steps repeated to about as many as the largest benchmark's")


class SFTRun(SFTSteps):
    """A warm-up (`sft_warmup.teacher`, `sft_warmup.student`): SFTSteps on expert demonstrations, with a
    check on held-out train tasks and checkpoints."""

    episodes_per_benchmark: int = Field(200, ge=1, description="expert demonstration episodes per benchmark")
    expert_noise: float = Field(0.0, ge=0.0, le=1.0, description="probability of a random action per step")
    relabel_terms: bool = Field(
        False, description="expert demonstrations only: each episode renames the benchmark's copy terms "
        "(Search-QA names, WebShop ids) one-to-one and renumbers Search-QA's years in order, so facts "
        "cannot be memorised across episodes, only read (atod.train.relabel)")
    eval_every: int = Field(0, ge=0, description="every N steps, success on train tasks no demonstration "
                            "used (a learning curve that never touches evaluation splits); 0 = never")
    eval_tasks: int = Field(32, ge=1, description="tasks per benchmark for that check (at eval temperature)")
    checkpoint_every: int = Field(1000, ge=0, description="warm-up stages: a checkpoint every N steps, from "
                                  "which an interrupted warm-up continues (atod.train.sft.train_sft); 0 = none")


class SFTWarmupConfig(Section):
    seed: int = 0
    teacher: SFTRun = SFTRun(episodes_per_benchmark=300, expert_noise=0.1, steps=3000)
    student: SFTRun = SFTRun(episodes_per_benchmark=30, expert_noise=0.3, steps=150)


class CacheTeacherConfig(Section):
    seed: int = 0
    tasks_per_benchmark: int = Field(64, ge=1, description="training tasks the teacher plays")
    samples_per_task: int = Field(1, ge=1)
    temperature: float = Field(1.0, gt=0)
    seqkd: SFTSteps = Field(SFTSteps(steps=300, lr=5e-4), description="the seqkd baseline: SFT of the SFT "
                            "student on the cached teacher turns")
    seqkd_successful_only: bool = Field(True, description="SeqKD on the teacher's won episodes only (all episodes "
                                        "if it won none); False: every cached episode")


class AnnealConfig(Section):
    """kappa (OPD weight) and rho (GRPO weight) schedule; see ATOD_METHOD.md."""

    kind: Literal["linear", "cosine", "exponential", "step", "constant"] = "linear"
    anneal_steps: int = Field(80, ge=1, description="T: steps over which kappa/rho move (paper: 80 of 150)")
    kappa_init: float = Field(1.0, ge=0)
    kappa_min: float = Field(0.1, ge=0)
    rho_init: float = Field(1.0, ge=0)
    rho_max: float = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.kappa_min > self.kappa_init:
            raise ValueError(f"kappa_min ({self.kappa_min}) must be <= kappa_init ({self.kappa_init})")
        return self


class TrainConfig(Section):
    methods: list[Method] = Field(default_factory=lambda: ["grpo", "opd", "atod"], min_length=1)
    benchmarks: list[Benchmark] = Field(default_factory=lambda: ["alfworld", "webshop", "searchqa"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    steps: int = Field(150, ge=1, description="rollout batches per run (each gives `updates_per_step` optimizer steps; kappa/rho and the LR schedule advance once per batch)")
    tasks_per_step: int = Field(8, ge=1, description="distinct training tasks per step")
    samples_per_task: int = Field(8, ge=1, description="G: rollouts per task (the GRPO group)")
    updates_per_step: int = Field(1, ge=1, description="optimizer updates per rollout batch (PPO minibatches): the "
                                  "batch's episodes are dealt into this many minibatches (episode e goes to minibatch "
                                  "e mod n), one clipped-surrogate AdamW step each; 1 = one update on the whole batch")
    microbatch_tokens: int = Field(8192, ge=64, description="padded tokens (rows x length) per forward/backward "
                                   "chunk; the loss is exact whatever the chunking")
    lr: float = Field(1e-4, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="after warmup: constant, or cosine to 10%")
    warmup_steps: int = Field(0, ge=0, description="linear LR warmup steps")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    clip_eps: float = Field(0.2, gt=0, le=1.0)
    adv_eps: float = Field(1e-6, gt=0, description="eps in the GRPO advantage denominator")
    anneal: AnnealConfig = AnnealConfig()
    parallel_runs: int = Field(1, ge=1, description="training runs (method x benchmark x seed) at once, each in "
                               "its own process; on CPU each gets cores / parallel_runs torch threads unless "
                               "models.torch_threads is set")
    processes_per_run: int = Field(1, ge=1, description="data-parallel processes of one training run (one per "
                                   "GPU; DDP, launched by the train stage with torchrun): each rolls out "
                                   "tasks_per_step / N of a step's tasks with its own sampling seed and the "
                                   "gradients are averaged; 1 = the run in one process")
    checkpoint_every: int = Field(10, ge=1)
    eval_every: int = Field(10, ge=1, description="validation every N steps (best-checkpoint selection)")
    eval_tasks: int = Field(32, ge=1, description="validation tasks per benchmark during training: the last N "
                            "tasks of the train split, never trained on (evaluation splits are never used)")

    @model_validator(mode="after")
    def _no_repeats(self):
        for key in ("methods", "benchmarks", "seeds"):
            twice = repeated(getattr(self, key))
            if twice:
                raise ValueError(f"{key} lists {', '.join(twice)} more than once (each run would be trained "
                                 "twice, at once in the same work directory)")
        return self

    @model_validator(mode="after")
    def _groups_have_two_episodes(self):
        if self.samples_per_task >= 2:
            return self
        from atod.train.trainer import METHODS  # imports torch: only for this rare setting

        def rl_weight(m):
            s = METHODS[m]
            return max(self.anneal.rho_init, self.anneal.rho_max) if s.annealed else s.rho

        with_rl = [m for m in self.methods if m in METHODS and rl_weight(m) > 0]
        if with_rl:
            raise ValueError(f"samples_per_task is {self.samples_per_task}: a GRPO group of one episode has "
                             f"advantage 0, so {', '.join(with_rl)} would train without their RL term; use "
                             "samples_per_task >= 2")
        return self

    @model_validator(mode="after")
    def _minibatches_have_episodes(self):
        if self.tasks_per_step % self.processes_per_run:
            raise ValueError(f"tasks_per_step ({self.tasks_per_step}) must be a multiple of processes_per_run "
                             f"({self.processes_per_run}): each process rolls out an equal share of a step's tasks")
        episodes = self.tasks_per_step // self.processes_per_run * self.samples_per_task
        if self.updates_per_step > episodes:
            share = " per process" if self.processes_per_run > 1 else ""
            raise ValueError(f"updates_per_step ({self.updates_per_step}) is more than the episodes of a rollout "
                             f"batch{share} (tasks_per_step / processes_per_run x samples_per_task = {episodes}): "
                             "a minibatch would be empty")
        return self
