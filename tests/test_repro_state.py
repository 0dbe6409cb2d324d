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
    """A run directory as the train stage leaves it: finished (final/, best/, summary.json) or not (a
    complete checkpoint, a stale checkpoint.old and a temporary from a write in progress)."""
    run = resume / "train" / DIGEST / method / "alfworld" / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "inputs.json").write_text(json.dumps({"digest": DIGEST, "method": method, "seed": seed}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": i + 1}) + "\n" for i in range(steps)))
    (run / "final").mkdir()
    (run / "final" / "model.safetensors").write_bytes(os.urandom(64))
    if done:
        (run / "best").mkdir()
        (run / "best" / "model.safetensors").write_bytes(os.urandom(64))
        (run / "summary.json").write_text("{}")
    else:
        for name, complete in (("checkpoint", True), ("checkpoint.old", False), (".tmp_ckpt", False)):
            (run / name).mkdir()
            (run / name / "optimizer.pt").write_bytes(os.urandom(64))
            if complete:
                (run / name / "COMPLETE").write_text("")
    return run


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_copy_and_restore_keep_what_resuming_needs(tmp_path):
    mod = load_script("repro_state")
    resume = tmp_path / "clone" / ".atod" / "resume"
    done, running = _run(resume, "grpo", 0, 90, True), _run(resume, "opd", 0, 37, False)
    (resume / "evaluate").mkdir()
    (resume / "evaluate" / "abc.json").write_text("{}")
    state = tmp_path / "state"
    assert mod.copy_state(resume, state) == 2

    copied = _files(state / "train" / DIGEST)
    assert _files(done) == {k.removeprefix("grpo/alfworld/seed0/"): v for k, v in copied.items()
                            if k.startswith("grpo/")}
    opd = {k.removeprefix("opd/alfworld/seed0/"): v for k, v in copied.items() if k.startswith("opd/")}
    # the complete checkpoint only: not the stale .old, not the temporary
    assert sorted(opd) == ["checkpoint/COMPLETE", "checkpoint/optimizer.pt", "final/model.safetensors",
                           "inputs.json", "metrics.jsonl"]
    assert opd["checkpoint/optimizer.pt"] == (running / "checkpoint" / "optimizer.pt").read_bytes()
    assert (state / "evaluate" / "abc.json").exists()

    fresh = tmp_path / "fresh" / ".atod" / "resume"
    assert mod.restore_state(state, fresh) == (2, 0)
    assert _files(fresh / "train") == _files(state / "train")
    assert (fresh / "evaluate" / "abc.json").exists()

    # a run the clone has further than the copy is kept; one it has less far is replaced
    (fresh / "train" / DIGEST / "opd" / "alfworld" / "seed0" / "metrics.jsonl").write_text('{"step": 1}\n' * 40)
    (fresh / "train" / DIGEST / "grpo" / "alfworld" / "seed0" / "metrics.jsonl").write_text('{"step": 1}\n')
    assert mod.restore_state(state, fresh) == (1, 1)
    assert _steps(fresh, "opd") == 40 and _steps(fresh, "grpo") == 90


def _steps(resume: Path, method: str) -> int:
    return len((resume / "train" / DIGEST / method / "alfworld" / "seed0" / "metrics.jsonl").read_text().splitlines())


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
