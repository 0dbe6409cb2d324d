"""Independent stage jobs (training runs, model evaluations) in worker processes.

Workers are spawned, not forked (the stage process holds torch threads and an MLflow client), and each
sets its torch CPU threads: `models.torch_threads` if given (more threads than cores in all is an
error), else the machine's cores shared out among the workers, so two workers do not each spin up every
core. Results do not depend on which worker ran a job or in which order; for a fixed thread count they
equal those of running the jobs one by one.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def worker_threads(torch_threads: int, workers: int) -> int:
    """torch threads per job: `torch_threads` if set (> 0); with several workers, the cores shared out;
    one worker keeps torch's default (0 = do not touch). Raises ValueError when `torch_threads` x
    `workers` asks for more threads than the machine has cores: oversubscribed torch (OpenMP) threads
    wait on each other, and an ALFWorld training step took 3 times as long (128 s against 42 s, two runs
    of 2 threads against two of 1 on 2 cores, 2026-12-03)."""
    cores = os.cpu_count() or 1
    if torch_threads > 0:
        if torch_threads * workers > cores:
            raise ValueError(
                f"models.torch_threads is {torch_threads} and {workers} jobs run at once: {torch_threads * workers} "
                f"torch threads on {cores} CPU cores. Oversubscribed threads slow every job several times over; "
                "set models.torch_threads: 0 (the cores shared out among the jobs) or run fewer jobs at once "
                "(train.parallel_runs, evaluate.parallel_jobs)")
        return torch_threads
    if workers > 1:
        return max(1, cores // workers)
    return 0


def _call(fn: Callable[..., Any], threads: int, args: tuple) -> Any:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    return fn(*args)


def run_jobs(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int, threads: int) -> Iterator[tuple[int, Any]]:
    """Yield (index into `jobs`, fn(*jobs[index])) as jobs finish: in this process, in order, when
    `workers` == 1 or there is at most one job; otherwise in a pool of min(`workers`, jobs) spawned
    processes (fn must be importable by name). A job's exception is raised here, and the jobs not yet
    started are cancelled. `threads` is given by the caller (not derived from the pool's size), so a job
    computes with the same thread count however many jobs are left."""
    workers = min(workers, len(jobs))
    if workers <= 1:
        for i, args in enumerate(jobs):
            yield i, _call(fn, threads, args)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(_call, fn, threads, args): i for i, args in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
