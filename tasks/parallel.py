"""Independent stage jobs (training runs, model evaluations) in worker processes.

Workers are spawned, not forked (the stage process holds torch threads and an MLflow client), and each
sets its torch CPU threads: `models.torch_threads` if given, else the machine's cores shared out among
the workers, so two workers do not each spin up every core. Results do not depend on which worker ran
a job or in which order; for a fixed thread count they equal those of running the jobs one by one.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def worker_threads(torch_threads: int, workers: int) -> int:
    """torch threads per job: `torch_threads` if set (> 0); with several workers, the cores shared out;
    one worker keeps torch's default (0 = do not touch)."""
    if torch_threads > 0:
        return torch_threads
    if workers > 1:
        return max(1, (os.cpu_count() or 1) // workers)
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
