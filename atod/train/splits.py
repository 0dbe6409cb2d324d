"""The train split's validation slice: the tasks `train` validates on, which no stage trains on."""

from __future__ import annotations

from atod.envs.base import Task


def split_validation(train_tasks: list[Task], n: int) -> tuple[list[Task], list[Task]]:
    """(tasks to train on, validation tasks): the last `n` tasks of the train split are held out for
    validation during training (best-checkpoint selection), so that neither training nor checkpoint
    selection ever sees an evaluation split. The SFT warm-ups and the teacher cache leave them out too.
    Refuses to hold out half the split or more."""
    if not 0 < n < len(train_tasks) / 2:
        raise ValueError(f"train.eval_tasks={n} validation tasks held out of a train split of {len(train_tasks)} "
                         "tasks: it must be at least 1 and under half the split (lower train.eval_tasks or "
                         "generate more train tasks)")
    return list(train_tasks[:-n]), list(train_tasks[-n:])
