"""benchmarks/training_kl.py: early against late KL to the teacher, per training run."""

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "training_kl.py"


def _write_run(root: Path, method: str, kls: list[float], full: bool) -> None:
    path = root / method / "alfworld" / "seed0" / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    rows = []
    for step, kl in enumerate(kls, start=1):
        row = {"step": step, "reward": 0.0, "kl_teacher": kl, "grad_norm": 1.0}
        if full:
            row["kl_full"] = kl / 2
        rows.append(row)
    rows.append({"step": len(kls), "val_success": 0.25})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_early_late_and_cli(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    from training_kl import early_late

    assert early_late([4.0, 2.0, 9.0, 1.0, 3.0], 2) == (3.0, 2.0)
    assert all(math.isnan(v) for v in early_late([], 5))
    _write_run(tmp_path, "opd", [0.4, 0.4, 0.3, 0.2, 0.2], full=False)
    _write_run(tmp_path, "opd_full", [0.8, 0.8, 0.8, 0.4, 0.4], full=True)
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--window", "2"], capture_output=True,
                         text=True, check=True).stdout
    opd = next(line for line in out.splitlines() if line.startswith("opd/"))
    full = next(line for line in out.splitlines() if line.startswith("opd_full/"))
    assert "0.400 / 0.200 (-50%)" in opd and "5:0.25" in opd
    assert "0.800 / 0.400 (-50%)" in full and "0.400 / 0.200 (-50%)" in full
