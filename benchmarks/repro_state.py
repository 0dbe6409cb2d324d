"""Carry a long reproduction's work from one machine to the next when the machine does not last.

The three-benchmark reproduction (`bash scripts/run.sh repro`) needs about a day of 2-core CPU time, more
than a working session lasts, and a session's machine may come back with nothing but what was committed.
Its training runs and evaluations already resume from `.atod/resume/` (tasks/stages/train.py: finished
runs are reused, unfinished ones continue from their last checkpoint) as long as that directory is there.
This keeps a copy of it under DVC, in the embedded remote (`dvc-store/`, committed with the code):

    python benchmarks/repro_state.py save --clone /work/repro [--pgid PGID]
    git add data/repro_state.dvc dvc-store && git commit -m "repro state"
    ...  (a new machine with this commit)
    python benchmarks/repro_state.py restore --clone /work/repro
    cd /work/repro && bash scripts/run.sh repro

Run it from this checkout (its DVC project holds the copy); `--clone` is the checkout the reproduction
runs in, pinned to one commit because a run's identity includes the code (its digest).

`save` copies the clone's `.atod/resume/train/` and `.atod/resume/evaluate/` into `data/repro_state/`:
every run's inputs.json, metrics.jsonl, summary.json (finished runs), final/ and best/, and of an
unfinished run its last complete checkpoint (`checkpoint`, else `checkpoint.old`: the trainer's atomic
swap leaves one of them complete at any moment; temporaries, whose names start with a dot, are skipped).
`--pgid` pauses that process group (the running reproduction) during the copy so that no file changes
under it. It records the clone's commit in `data/repro_state/COMMIT`, then `dvc add data/repro_state` and
`dvc push --remote embedded` it. A run's files that did not change since the last save are stored once.

`restore` pulls that copy, clones this repository at the recorded commit into `--clone` if it does not
exist (and refuses a clone at another commit), and copies the runs into the clone's `.atod/resume/`. A
run the clone already has with as many or more steps in its metrics.jsonl is left as it is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

STATE = Path("data/repro_state")
PARTS = ("train", "evaluate")  # the subdirectories of .atod/resume/ that the reproduction needs
COMPLETE_MARKER = "COMPLETE"  # atod.train.checkpoint.COMPLETE_MARKER (not imported: no torch needed here)
RESUME = Path(".atod/resume")


def run_dirs(train_root: Path) -> list[Path]:
    """The run directories under a `.atod/resume/train/` tree (<digest>/<method>/<bench>/seed<k>): those
    holding an inputs.json."""
    return sorted(p.parent for p in train_root.glob("*/*/*/seed*/inputs.json"))


def _steps(run: Path) -> int:
    """How many lines a run's metrics.jsonl has (0 without one): how far it got."""
    path = run / "metrics.jsonl"
    return sum(1 for _ in path.open()) if path.exists() else 0


def _complete_checkpoint(run: Path) -> Path | None:
    for name in ("checkpoint", "checkpoint.old"):
        if (run / name / COMPLETE_MARKER).exists():
            return run / name
    return None


def copy_run(src: Path, dst: Path) -> None:
    """Copy one run directory: its files and final/, best/ as they are, its last complete checkpoint as
    `checkpoint`; nothing whose name starts with a dot. Replaces `dst`."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    skip = {"checkpoint", "checkpoint.old"}
    for item in sorted(src.iterdir()):
        if item.name.startswith(".") or item.name in skip:
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, ignore=shutil.ignore_patterns(".*"))
        else:
            shutil.copy2(item, dst / item.name)
    ckpt = _complete_checkpoint(src)
    if ckpt is not None and not (src / "summary.json").exists():
        shutil.copytree(ckpt, dst / "checkpoint", ignore=shutil.ignore_patterns(".*"))


def copy_state(resume: Path, state: Path) -> int:
    """`.atod/resume/{train,evaluate}` -> `state/{train,evaluate}` (replacing what `state` had). Returns
    the number of runs copied."""
    for part in PARTS:
        shutil.rmtree(state / part, ignore_errors=True)
    runs = run_dirs(resume / "train")
    for run in runs:
        copy_run(run, state / "train" / run.relative_to(resume / "train"))
    if (resume / "evaluate").is_dir():
        shutil.copytree(resume / "evaluate", state / "evaluate", ignore=shutil.ignore_patterns(".*"))
    return len(runs)


def restore_state(state: Path, resume: Path) -> tuple[int, int]:
    """`state/{train,evaluate}` -> `.atod/resume/`, leaving a run the clone already has with as many or more
    metrics lines as it is, and evaluation results it already has. Returns (runs copied, runs kept)."""
    copied = kept = 0
    for run in run_dirs(state / "train"):
        dst = resume / "train" / run.relative_to(state / "train")
        if dst.exists() and _steps(dst) >= _steps(run):
            kept += 1
            continue
        copy_run(run, dst)
        copied += 1
    if (state / "evaluate").is_dir():
        for item in sorted((state / "evaluate").rglob("*")):
            target = resume / "evaluate" / item.relative_to(state / "evaluate")
            if item.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(item, target)
    return copied, kept


def _git_head(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def _dvc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], check=True)


def save(clone: Path, pgid: int | None) -> None:
    resume = clone / RESUME
    if not (resume / "train").is_dir():
        sys.exit(f"repro_state save: {resume / 'train'} does not exist: is {clone} the reproduction's checkout?")
    commit = _git_head(clone)
    STATE.mkdir(parents=True, exist_ok=True)
    if pgid is not None:
        os.killpg(pgid, signal.SIGSTOP)
    try:
        n = copy_state(resume, STATE)
    finally:
        if pgid is not None:
            os.killpg(pgid, signal.SIGCONT)
    (STATE / "COMMIT").write_text(commit + "\n")
    _dvc("add", "--quiet", str(STATE))
    _dvc("push", "--quiet", "--remote", "embedded", f"{STATE}.dvc")
    print(f"saved {n} runs of {clone} (commit {commit[:10]}) into {STATE}; now commit them:\n"
          f"    git add {STATE}.dvc dvc-store && git commit -m 'reproduction state'")


def restore(clone: Path) -> None:
    if not Path(f"{STATE}.dvc").exists():
        sys.exit(f"repro_state restore: no {STATE}.dvc in {Path.cwd()}: nothing was saved")
    _dvc("pull", "--quiet", "--remote", "embedded", f"{STATE}.dvc")
    commit = (STATE / "COMMIT").read_text().strip()
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", str(Path.cwd()), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    head = _git_head(clone)
    if head != commit:
        sys.exit(f"repro_state restore: {clone} is at {head[:10]}, the saved runs were made at {commit[:10]} "
                 f"(a run's identity includes the code): `git -C {clone} checkout {commit[:10]}` or another --clone")
    copied, kept = restore_state(STATE, clone / RESUME)
    print(f"restored {copied} runs into {clone / RESUME} (kept {kept} the clone had as far or further); "
          f"continue with: cd {clone} && bash scripts/run.sh repro")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("--clone", type=Path, required=True, help="the reproduction's checkout")
    parser.add_argument("--pgid", type=int, help="save: pause this process group during the copy")
    args = parser.parse_args(argv)
    if not Path("dvc.yaml").exists():
        sys.exit("repro_state: run it from the repository root (the DVC project that keeps the copy)")
    clone = args.clone.resolve()
    if clone == Path.cwd().resolve():
        sys.exit("repro_state: --clone must be another checkout than this one (the copy lives here)")
    save(clone, args.pgid) if args.action == "save" else restore(clone)


if __name__ == "__main__":
    main()
