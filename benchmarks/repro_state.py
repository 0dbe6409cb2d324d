"""Carry a long reproduction's work from one machine to the next when the machine does not last.

The three-benchmark reproduction (`bash scripts/run.sh repro`) needs about a day of 2-core CPU time, more
than a working session lasts, and a session's machine may come back with nothing but what was committed.
Its training runs and evaluations already resume from `.atod/resume/` (tasks/stages/train.py: finished
runs are reused, unfinished ones continue from their last checkpoint) as long as that directory is there.
This keeps a copy of it under DVC, in the embedded remote (`dvc-store/`, committed with the code):

    python benchmarks/repro_state.py save --clone /work/repro --pgid PGID
    git add data/repro_state.dvc data/.gitignore dvc-store && git commit -m "repro state"
    ...  (a new machine with this commit)
    python benchmarks/repro_state.py restore --clone /work/repro
    cd /work/repro && bash scripts/run.sh repro BENCH

Run it from this checkout (its DVC project holds the copy); `--clone` is the checkout the reproduction
runs in, pinned to one commit because a run's identity includes the code (its digest).

`save` merges the clone's `.atod/resume/train/` and `.atod/resume/evaluate/` into `data/repro_state/`:
of every run its inputs.json, metrics.jsonl, summary.json (once finished), final/ and best/, and of an
unfinished run its last complete checkpoint (each model directory as the trainer's atomic swap left it
complete: `X`, else `X.old`; temporaries are skipped). A run the copy already holds as far or further
is kept, so a save from a clone that has less never loses saved work; runs of another commit are
refused. `--pgid` (the process group of the running reproduction, e.g. from `ps -eo pid,pgid,cmd`)
pauses it while the runs are copied, so that nothing changes under the copy; without it a run is
copied again until a copy saw no change. It records the clone's commit in `data/repro_state/COMMIT`, then
`dvc add data/repro_state` and `dvc push --remote embedded` it. A file that did not change since the
last save is stored once; an unfinished run's checkpoint (about 11.5 MB in the default profile: the
model and AdamW's two moments) is stored anew by every save, and what is committed stays in the git
history: save once, at the end of a machine's time.

`restore` pulls that copy, clones this repository at the recorded commit into `--clone` if it does not
exist (and refuses a clone at another commit), and merges the runs into the clone's `.atod/resume/` by the
same rule: a run the clone already has as far or further is left as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # atod, also without the editable install

from atod.train.complete import COMPLETE_MARKER, complete_dir

STATE = Path("data/repro_state")
RESUME = Path(".atod/resume")
TRIES = 20  # attempts at a consistent copy of one run (see copy_consistent)


def run_dirs(train_root: Path) -> list[Path]:
    """The run directories under a `.atod/resume/train/` tree (<digest>/<method>/<bench>/seed<k>): those
    holding an inputs.json."""
    return sorted(p.parent for p in train_root.glob("*/*/*/seed*/inputs.json"))


def run_checkpoint(run: Path) -> Path | None:
    """The run's last complete checkpoint (as atod.train.checkpoint.find_checkpoint finds it)."""
    return complete_dir(run / "checkpoint", "trainer_state.json")


def progress(run: Path) -> tuple[bool, int, int]:
    """How far a run got, comparable between two copies of it: (finished, step of its complete checkpoint,
    lines of its metrics.jsonl). metrics.jsonl runs ahead of the checkpoint between two checkpoints, so
    the checkpoint's step decides before the line count."""
    ckpt = run_checkpoint(run)
    step = json.loads((ckpt / "trainer_state.json").read_text())["step"] if ckpt is not None else 0
    metrics = run / "metrics.jsonl"
    lines = sum(1 for _ in metrics.open()) if metrics.exists() else 0
    return (run / "summary.json").exists(), step, lines


def consistent(run: Path) -> bool:
    """Whether the run's files belong to one moment of it: a finished run always; an unfinished one unless
    its best/ is newer than its checkpoint (the trainer writes best/ at step N just before the checkpoint
    of step N: a copy between the two would pair a best model of step N with the state of step N - 10)."""
    if (run / "summary.json").exists():
        return True
    best, ckpt = complete_dir(run / "best"), run_checkpoint(run)
    if best is None:
        return True
    return ckpt is not None and (best / COMPLETE_MARKER).stat().st_mtime <= (ckpt / COMPLETE_MARKER).stat().st_mtime


def _signature(run: Path) -> tuple:
    """What changes when the trainer writes anything that a copy takes: the run's files and the marker of
    each model directory (a swap replaces the directory, so the marker's inode changes)."""
    sig = []
    for item in sorted(run.iterdir()):
        for path in (item / COMPLETE_MARKER, item) if item.is_dir() else (item,):
            if path.exists():
                st = path.stat()
                sig.append((str(path.relative_to(run)), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(sig)


def copy_run(src: Path, dst: Path) -> None:
    """Copy one run directory: its files, its complete final/ and best/, and, if it is unfinished, its last
    complete checkpoint, each under its plain name; nothing whose name starts with a dot (the swaps'
    temporaries) or ends in .tmp (those of metrics and JSON writes). Replaces `dst`."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for item in sorted(src.iterdir()):
        if item.name.startswith(".") or item.name.endswith(".tmp") or item.is_dir():
            continue
        shutil.copy2(item, dst / item.name)
    models = {name: complete_dir(src / name) for name in ("final", "best")}
    if not (src / "summary.json").exists():  # a finished run resumes from nothing: its checkpoint is not needed
        models["checkpoint"] = run_checkpoint(src)
    for name, found in models.items():
        if found is not None:
            shutil.copytree(found, dst / name, ignore=shutil.ignore_patterns(".*"))


def copy_consistent(src: Path, dst: Path, settle=None) -> None:
    """copy_run, once the run is `consistent` and did not change while it was copied; between attempts
    `settle()` (lets a paused job go on a moment) or a short wait."""
    for _ in range(TRIES):
        before = _signature(src)
        if consistent(src):
            copy_run(src, dst)
            if _signature(src) == before:
                return
        settle() if settle is not None else time.sleep(2)
    raise RuntimeError(f"{src} kept changing over {TRIES} attempts to copy it; pass --pgid of the job writing it")


def merge_runs(src: Path, dst: Path, settle=None, live: bool = True) -> tuple[int, int]:
    """Copy the runs and evaluations of one `.atod/resume/` tree (`src`) into another (`dst`): a run is
    copied unless `dst` has it as far or further (`progress`), an evaluation result unless `dst` has it.
    Neither direction ever replaces a run with a less advanced copy. `live=False` (the saved copy, which
    nothing writes, and whose file times are those of `dvc pull`) copies without `copy_consistent`'s
    checks. Returns (runs copied, runs kept)."""
    copied = kept = 0
    for run in run_dirs(src / "train"):
        target = dst / "train" / run.relative_to(src / "train")
        if target.exists() and progress(target) >= progress(run):
            kept += 1
            continue
        copy_consistent(run, target, settle) if live else copy_run(run, target)
        copied += 1
    if (src / "evaluate").is_dir():
        for item in sorted((src / "evaluate").rglob("*")):
            target = dst / "evaluate" / item.relative_to(src / "evaluate")
            if item.is_file() and not item.name.startswith(".") and not target.exists():
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
    recorded = (STATE / "COMMIT").read_text().strip() if (STATE / "COMMIT").exists() else None
    if recorded is not None and recorded != commit:
        sys.exit(f"repro_state save: {clone} is at {commit[:10]}, the saved runs were made at {recorded[:10]}; "
                 f"runs of two commits do not mix (a run's identity includes the code). To start over at "
                 f"{commit[:10]}, remove the old state first: `git rm data/repro_state.dvc && rm -rf {STATE}`")
    if pgid is not None and pgid == os.getpgrp():
        sys.exit(f"repro_state save: --pgid {pgid} is this command's own process group")
    STATE.mkdir(parents=True, exist_ok=True)
    settle = None
    if pgid is not None:
        def settle():  # let the paused job finish what it is writing
            os.killpg(pgid, signal.SIGCONT)
            time.sleep(5)
            os.killpg(pgid, signal.SIGSTOP)

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"repro_state save: terminated; process group {pgid} resumed"))
        os.killpg(pgid, signal.SIGSTOP)
    try:
        copied, kept = merge_runs(resume, STATE, settle)
    finally:
        if pgid is not None:
            os.killpg(pgid, signal.SIGCONT)
    (STATE / "COMMIT").write_text(commit + "\n")
    _dvc("add", "--quiet", str(STATE))
    _dvc("push", "--quiet", "--remote", "embedded", f"{STATE}.dvc")
    print(f"saved {copied} runs of {clone} (commit {commit[:10]}) into {STATE} (kept {kept} saved as far or "
          f"further); now commit them:\n    git add {STATE}.dvc data/.gitignore dvc-store && git commit -m "
          f"'reproduction state'")


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
    copied, kept = merge_runs(STATE, clone / RESUME, live=False)
    print(f"restored {copied} runs into {clone / RESUME} (kept {kept} the clone had as far or further); "
          f"continue with: cd {clone} && bash scripts/run.sh repro BENCH (the benchmark under way)")


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
