"""Atomic training checkpoints and resume.

A checkpoint is a directory:

    model/             save_pretrained (safetensors) + the tokenizer, loadable on its own
    optimizer.pt       optimizer state_dict
    scheduler.pt       LR scheduler state_dict
    rng.pt             python `random`, numpy and torch (CPU, CUDA) RNG states
    trainer_state.json step, data order, best validation result, run identity

It is written into a temporary sibling directory first and then swapped in with renames:
`checkpoint` -> `checkpoint.old`, `tmp` -> `checkpoint`, then `checkpoint.old` is removed. Every
rename is atomic, so a kill at any moment leaves either `checkpoint` or `checkpoint.old` complete;
`find_checkpoint` prefers the first and falls back to the second. A directory only counts when its
`COMPLETE` marker exists (written last, after every file in it is fsynced, before the swap).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atod.agent.models import quiet_hf_progress
from atod.train.complete import COMPLETE_MARKER, complete_dir


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG state this process uses (python, numpy, torch CPU, torch CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_path(path: Path) -> None:
    """Flush a file's contents or a directory's entries to disk (best effort: a file system that cannot
    fsync a directory is skipped)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_contents(root: Path) -> None:
    """fsync every regular file under `root`, then its subdirectories (deepest first; not `root` itself).
    Renaming a directory does not flush what is in it: without this a power loss after the swap can
    leave a checkpoint with its marker but empty or partial files."""
    paths = sorted(Path(root).rglob("*"))
    for path in paths:
        if path.is_file() and not path.is_symlink():
            _fsync_path(path)
    for path in sorted((p for p in paths if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts)):
        _fsync_path(path)


def atomic_write_dir(target: Path, write_fn) -> None:
    """Create directory `target` atomically: `write_fn(tmp_dir)` fills a temporary sibling, which then
    replaces `target` (the previous version is kept as `target.old` until the swap is done)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with quiet_hf_progress():
            write_fn(tmp)
        _fsync_contents(tmp)  # on disk before the marker says they are complete
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        _fsync_path(tmp / COMPLETE_MARKER)
        _fsync_path(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(target.name + ".old")
    if old.exists():  # an earlier swap was interrupted: keep whichever of the two is complete
        if (target / COMPLETE_MARKER).exists():
            shutil.rmtree(old)
        else:
            shutil.rmtree(target, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_path(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(target: Path) -> Path | None:
    """The last complete checkpoint directory at `target` (or its `.old` twin), None if there is none."""
    return complete_dir(target, "trainer_state.json")


def save_checkpoint(
    target: Path,
    *,
    model,
    tokenizer,
    optimizer: torch.optim.Optimizer,
    scheduler,
    trainer_state: dict[str, Any],
) -> None:
    """Write a complete checkpoint atomically to `target` (see the module docstring)."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp / "model")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "model")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(capture_rng_state(), tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2, sort_keys=True))

    atomic_write_dir(target, write)


def load_trainer_state(checkpoint_dir: Path) -> dict[str, Any]:
    return json.loads((Path(checkpoint_dir) / "trainer_state.json").read_text())


def load_checkpoint_into(checkpoint_dir: Path, *, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore model weights, optimizer, scheduler and RNG states in place; returns the trainer state."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    checkpoint_dir = Path(checkpoint_dir)
    weights = sorted((checkpoint_dir / "model").glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"checkpoint {checkpoint_dir} has no model weights (*.safetensors)")
    state: dict[str, torch.Tensor] = {}
    for w in weights:
        try:
            state.update(load_file(str(w), device=str(next(model.parameters()).device)))
        except SafetensorError as e:
            raise ValueError(f"checkpoint weights {w} could not be read (truncated or corrupt file?): "
                             f"{e}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    # tied weights (lm_head = embeddings) are stored once; anything else missing is an error
    missing = [m for m in missing if not (getattr(model.config, "tie_word_embeddings", False) and "lm_head" in m)]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {checkpoint_dir} does not match the model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    optimizer.load_state_dict(torch.load(checkpoint_dir / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(checkpoint_dir / "scheduler.pt", weights_only=False))
    restore_rng_state(torch.load(checkpoint_dir / "rng.pt", weights_only=False))
    return load_trainer_state(checkpoint_dir)


def resume_checkpoint(found: Path, identity: dict[str, Any], *, model, optimizer, scheduler,
                      advice: str) -> dict[str, Any]:
    """Restore the checkpoint `found` in place (`load_checkpoint_into`) once its trainer state's
    "identity" equals `identity` (what a run must match to be continued); a checkpoint of another run is
    a ValueError naming the keys that differ, then `advice`. Returns the trainer state."""
    saved = load_trainer_state(found)["identity"]
    if saved != identity:
        diff = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
        raise ValueError(f"{found} was written by a different run (differs in: {', '.join(diff)}); {advice}")
    return load_checkpoint_into(found, model=model, optimizer=optimizer, scheduler=scheduler)


def remove_stale_temporaries(target: Path) -> None:
    """Delete temporary directories left by a checkpoint write that was killed half-way."""
    target = Path(target)
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
