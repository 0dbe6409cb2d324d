"""benchmarks/repro_state.py: a reproduction's runs saved under DVC and restored into a fresh clone."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, load_script

SCRIPT = ROOT / "benchmarks" / "repro_state.py"
DIGEST = "0123abcd"


def _run(resume: Path, method: str, seed: int, steps: int, done: bool) -> Path:
    """A run directory as the train stage leaves it: finished (final/, best/, summary.json) or not (best/,
    a complete checkpoint of the last multiple of 10, a stale checkpoint.old and a temporary from a write
    in progress, a metrics temporary)."""
    run = resume / "train" / DIGEST / method / "alfworld" / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "inputs.json").write_text(json.dumps({"digest": DIGEST, "method": method, "seed": seed}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": i + 1}) + "\n" for i in range(steps)))
    _model_dir(run / "best")
    if done:
        _model_dir(run / "final")
        (run / "summary.json").write_text("{}")
    else:
        _model_dir(run / ".checkpoint.tmp-x", complete=False)
        _model_dir(run / "checkpoint.old", complete=False)
        _model_dir(run / "checkpoint", step=steps // 10 * 10)
        (run / "metrics.jsonl.tmp").write_text("")
    return run


def _model_dir(path: Path, complete: bool = True, step: int = 0) -> None:
    path.mkdir()
    (path / "model.safetensors").write_bytes(os.urandom(64))
    (path / "trainer_state.json").write_text(json.dumps({"step": step}))
    if complete:
        (path / "COMPLETE").write_text("ok")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run_files(root: Path, method: str) -> dict[str, bytes]:
    return _files(root / "train" / DIGEST / method / "alfworld" / "seed0")


def test_merge_copies_what_resuming_needs_and_never_goes_back(tmp_path):
    mod = load_script("repro_state")
    resume = tmp_path / "clone" / ".atod" / "resume"
    done, running = _run(resume, "grpo", 0, 99, True), _run(resume, "opd", 0, 37, False)
    (resume / "evaluate").mkdir()
    (resume / "evaluate" / "abc.json").write_text("{}")
    state = tmp_path / "state"
    assert mod.merge_runs(resume, state) == (2, 0)

    assert _run_files(state, "grpo") == _files(done)
    opd = _run_files(state, "opd")
    # the complete checkpoint only: not the stale .old, not the temporaries
    assert sorted(opd) == ["best/COMPLETE", "best/model.safetensors", "best/trainer_state.json",
                           "checkpoint/COMPLETE", "checkpoint/model.safetensors", "checkpoint/trainer_state.json",
                           "inputs.json", "metrics.jsonl"]
    assert opd["checkpoint/model.safetensors"] == (running / "checkpoint" / "model.safetensors").read_bytes()
    assert (state / "evaluate" / "abc.json").exists()

    fresh = tmp_path / "fresh" / ".atod" / "resume"
    assert mod.merge_runs(state, fresh) == (2, 0)
    assert _files(fresh) == _files(state)

    # a run the destination has further (a later checkpoint) is kept; one it has less far is replaced
    shutil.rmtree(fresh / "train" / DIGEST / "opd")
    _run(fresh, "opd", 0, 41, False)
    (fresh / "train" / DIGEST / "grpo" / "alfworld" / "seed0" / "summary.json").unlink()
    assert mod.merge_runs(state, fresh) == (1, 1)
    assert mod.progress(fresh / "train" / DIGEST / "opd" / "alfworld" / "seed0") == (False, 40, 41)
    assert mod.progress(fresh / "train" / DIGEST / "grpo" / "alfworld" / "seed0") == (True, 0, 99)


def test_progress_ranks_a_finished_run_and_a_later_checkpoint_first(tmp_path):
    """As many metrics lines do not make two copies equal: a finished run beats one killed after its last
    step's lines but before its checkpoint, and a later checkpoint beats more lines."""
    mod = load_script("repro_state")
    finished = _run(tmp_path / "a", "grpo", 0, 99, True)
    killed = _run(tmp_path / "b", "grpo", 0, 99, False)
    shutil.rmtree(killed / "checkpoint")
    _model_dir(killed / "checkpoint", step=80)
    assert mod.progress(finished) > mod.progress(killed)
    ahead = _run(tmp_path / "c", "grpo", 0, 95, False)  # checkpoint 90, 95 lines
    behind = _run(tmp_path / "d", "grpo", 0, 89, False)
    (behind / "metrics.jsonl").write_text("{}\n" * 97)  # checkpoint 80, more lines
    assert mod.progress(ahead) > mod.progress(behind)


def test_an_interrupted_swap_and_a_best_newer_than_the_checkpoint(tmp_path):
    mod = load_script("repro_state")
    run = _run(tmp_path / "r", "opd", 0, 30, False)
    # killed between the two renames of a checkpoint swap: only checkpoint.old is complete
    shutil.rmtree(run / "checkpoint.old")
    (run / "checkpoint").rename(run / "checkpoint.old")
    mod.copy_run(run, tmp_path / "copy")
    assert (tmp_path / "copy" / "checkpoint" / "COMPLETE").exists() and not (tmp_path / "copy" / "checkpoint.old").exists()
    assert mod.progress(tmp_path / "copy")[1] == 30
    # best/ written for step 40, its checkpoint not yet: not a consistent moment of the run
    os.utime(run / "checkpoint.old" / "COMPLETE", (1, 1))
    assert not mod.consistent(run)
    settled = []

    def settle():  # what the paused job would do next: write the checkpoint
        settled.append(1)
        os.utime(run / "checkpoint.old" / "COMPLETE")

    mod.copy_consistent(run, tmp_path / "copy2", settle)
    assert settled and mod.consistent(run) and (tmp_path / "copy2" / "checkpoint" / "COMPLETE").exists()


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def _script(action: str, clone: Path, project: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    return subprocess.run([sys.executable, str(SCRIPT), action, "--clone", str(clone)], cwd=project, env=env,
                          capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_save_then_restore_into_a_new_clone_through_dvc(tmp_path):
    """The command line end to end: save from a clone through a DVC remote, lose the copy and the DVC
    cache, restore into a clone made at the recorded commit."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "dvc.yaml").write_text("stages: {}\n")
    _git("init", "-q", cwd=project)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "embedded", "../store"], cwd=project, check=True)
    _git("add", "-A", cwd=project)
    _git("commit", "-q", "-m", "init", cwd=project)
    clone = tmp_path / "clone"
    _git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    _run(clone / ".atod" / "resume", "atod", 1, 12, False)
    before = _files(clone / ".atod" / "resume" / "train")

    save = _script("save", clone, project)
    assert save.returncode == 0, save.stderr
    assert (project / "data" / "repro_state.dvc").exists() and any((tmp_path / "store").rglob("*"))
    _git("add", "-A", cwd=project)
    _git("commit", "-q", "-m", "state", cwd=project)

    shutil.rmtree(project / "data" / "repro_state")
    shutil.rmtree(project / ".dvc" / "cache", ignore_errors=True)
    new = tmp_path / "new_clone"
    restore = _script("restore", new, project)
    assert restore.returncode == 0, restore.stderr
    expected = {k: v for k, v in before.items() if "checkpoint.old" not in k and ".tmp" not in k}
    assert _files(new / ".atod" / "resume" / "train") == expected

    # a clone at another commit is refused, naming the commit to check out
    _git("commit", "-q", "--allow-empty", "-m", "later", cwd=new)
    again = _script("restore", new, project)
    assert again.returncode != 0 and "the saved runs were made at" in again.stderr
    # and so is a save from it: runs of two commits do not mix
    refused = _script("save", new, project)
    assert refused.returncode != 0 and "runs of two commits do not mix" in refused.stderr
