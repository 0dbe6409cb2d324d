"""Atomic checkpoint directories: a failure or a kill at any point leaves the last complete one usable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from atod.train.checkpoint import COMPLETE_MARKER, atomic_write_dir, find_checkpoint, remove_stale_temporaries


def _write(text: str):
    def write(tmp: Path) -> None:
        (tmp / "trainer_state.json").write_text(text)

    return write


def test_atomic_write_replaces_and_survives_failures(tmp_path):
    target = tmp_path / "checkpoint"
    atomic_write_dir(target, _write('{"step": 1}'))
    assert find_checkpoint(target) == target and (target / COMPLETE_MARKER).is_file()

    def broken(tmp: Path) -> None:
        (tmp / "trainer_state.json").write_text('{"step": 2}')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_dir(target, broken)
    assert (target / "trainer_state.json").read_text() == '{"step": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # the temporary was removed
    atomic_write_dir(target, _write('{"step": 3}'))
    assert (target / "trainer_state.json").read_text() == '{"step": 3}'
    assert not target.with_name("checkpoint.old").exists()


def test_interrupted_swap_falls_back_to_old(tmp_path):
    target = tmp_path / "checkpoint"
    atomic_write_dir(target, _write('{"step": 1}'))
    # a kill between the two renames: only checkpoint.old (complete) and a half-written temporary exist
    os.replace(target, tmp_path / "checkpoint.old")
    (tmp_path / ".checkpoint.tmp-x").mkdir()
    assert find_checkpoint(target) == tmp_path / "checkpoint.old"
    remove_stale_temporaries(target)
    atomic_write_dir(target, _write('{"step": 2}'))
    assert find_checkpoint(target) == target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    # an incomplete directory (no marker) never counts
    (target / COMPLETE_MARKER).unlink()
    assert find_checkpoint(target) is None


CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import atod.train.checkpoint as ck
import test_train_trainer as t
calls = []
real = ck.capture_rng_state
def dying_capture():
    calls.append(1)
    if len(calls) == 2:  # in the middle of writing the second checkpoint (step 4)
        os.kill(os.getpid(), signal.SIGKILL)
    return real()
ck.capture_rng_state = dying_capture
t.run_toy("atod", {out!r}, cfg=t.toy_config(steps=5, checkpoint_every=2))
"""


def test_kill_while_writing_a_checkpoint(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    import test_train_trainer as toy

    ref, _ = toy.run_toy("atod", tmp_path / "ref", cfg=toy.toy_config(steps=5, checkpoint_every=2))
    out = tmp_path / "killed"
    code = CHILD.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert any(p.name.startswith(".checkpoint.tmp-") for p in out.iterdir())  # the half-written one
    resumed, summary = toy.run_toy("atod", out, cfg=toy.toy_config(steps=5, checkpoint_every=2))
    assert summary["resumed_from_step"] == 2
    assert not any(p.name.startswith(".checkpoint.tmp-") for p in out.iterdir())
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), resumed.parameters()))
