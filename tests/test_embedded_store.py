"""The default profile's shipped outputs: every output that dvc.lock records for the stages restored by
`scripts/run.sh` (prepare, sft_teacher, sft_student) must be in the committed DVC remote `dvc-store/`, or
a fresh clone would silently retrain the teacher (about 40 minutes on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "dvc-store"
SHIPPED = ("prepare", "sft_teacher", "sft_student")


def _object(md5: str) -> Path:
    return STORE / "files" / "md5" / md5[:2] / md5[2:]


def test_run_script_pulls_the_stages_checked_here():
    run = (ROOT / "scripts" / "run.sh").read_text()
    assert "dvc pull --remote embedded --allow-missing " + " ".join(SHIPPED) in run
    assert 'url = ../dvc-store' in (ROOT / ".dvc" / "config").read_text()


def test_run_script_refuses_an_unknown_benchmark_before_running_anything():
    proc = subprocess.run(["bash", "scripts/run.sh", "repro", "alfworld", "webshopp"], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unknown benchmark 'webshopp' (expected one of: alfworld webshop searchqa)" in proc.stderr


def test_shipped_outputs_are_in_the_store():
    lock = (yaml.safe_load((ROOT / "dvc.lock").read_text()) or {}).get("stages") or {}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    unrecorded = [s for s in SHIPPED if s not in lock]
    assert not unrecorded, (f"dvc.lock has no entry for {', '.join(unrecorded)} (stages it records: "
                            f"{', '.join(lock) or 'none'}); run `dvc repro` (or `dvc commit`) for them first")
    missing = []
    for stage in SHIPPED:
        # metrics (cache: false) live in git, not in the store
        cached = {str(o) for o in stages[stage].get("outs", [])}
        for out in lock[stage].get("outs") or []:
            if out.get("path") not in cached:
                continue
            if "md5" not in out:
                missing.append(f"{stage}: {out['path']} (no md5 in dvc.lock)")
                continue
            obj = _object(out["md5"])
            if not obj.is_file():
                missing.append(f"{stage}: {out['path']} ({out['md5']})")
                continue
            if out["md5"].endswith(".dir"):
                for entry in json.loads(obj.read_text()):
                    if not _object(entry["md5"]).is_file():
                        missing.append(f"{stage}: {out['path']}/{entry['relpath']}")
    assert not missing, ("outputs recorded in dvc.lock are missing from dvc-store/; run `dvc push --remote "
                         f"embedded {' '.join(SHIPPED)}` and commit dvc-store/: " + ", ".join(missing))


def test_shipped_outputs_are_up_to_date_with_code_and_params():
    """A change to a shipped stage's code or params that dvc.lock does not record makes `dvc repro`
    redo them (about 1.5 h on 2 cores) instead of restoring them; 4c98de0 did this with a CUDA-only edit
    of atod/agent/models.py. Data deps (absent in a clone that has pulled nothing) are not checked."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", *SHIPPED], check=False,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    stale = []
    for stage, changes in (json.loads(proc.stdout or "{}")).items():
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict):  # e.g. "changed command"
                stale.append(f"{stage}: {change}")
                continue
            for path, state in (change.get("changed deps") or {}).items():
                # data/ deps are other stages' outputs: absent in a fresh clone, and a workspace's own
                # business otherwise; code files and params (state: a dict of keys) are what count here
                if not path.startswith("data/"):
                    stale.append(f"{stage}: {path} {state}")
    assert not stale, (
        "dvc.lock no longer matches the code or params of the shipped stages: " + "; ".join(stale) + ". "
        "If the change cannot alter their outputs, pull them (`dvc pull --remote embedded "
        f"{' '.join(SHIPPED)}`), check, and record it with `dvc commit -f {' '.join(SHIPPED)}`; otherwise "
        f"rerun them (`dvc repro {' '.join(SHIPPED)}`), `dvc push --remote embedded` and commit dvc-store/.")
