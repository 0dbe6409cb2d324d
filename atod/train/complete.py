"""When a directory written by an atomic swap counts: the rule shared by the trainer's checkpoints
(atod.train.checkpoint) and the tools that copy a run (benchmarks/repro_state.py), kept free of torch.

`atomic_write_dir` fills a temporary sibling, writes its COMPLETE marker last and swaps it in with two
renames (`X` -> `X.old`, temporary -> `X`): a kill at any moment leaves `X` or `X.old` complete."""

from __future__ import annotations

from pathlib import Path

COMPLETE_MARKER = "COMPLETE"


def complete_dir(target: Path, *needs: str) -> Path | None:
    """`target` if its COMPLETE marker (and each file named in `needs`) is there, else its `.old` twin if
    that is complete (a swap interrupted between its two renames), else None."""
    target = Path(target)
    for candidate in (target, target.with_name(target.name + ".old")):
        if all((candidate / name).is_file() for name in (COMPLETE_MARKER, *needs)):
            return candidate
    return None
