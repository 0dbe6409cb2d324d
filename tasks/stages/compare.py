"""Stage `compare`: the teacher-vs-student report (tables with CIs, deltas, plots).

    reports/ (report.md, report.html, plots/), metrics/comparison.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.stages.common import (
    EVAL_DATA_DIR,
    METRICS_DIR,
    REPORTS_DIR,
    StageRun,
    fresh_dir,
    run_dir,
    trained_runs,
)


def compare(params, root: Path, run: StageRun) -> dict[str, Any]:
    """The teacher-vs-student report (tables with CIs, deltas, plots) and metrics/comparison.json."""
    from atod.eval.compare import build_comparison, load_records, write_report
    from atod.eval.plots import RunCurves

    records = load_records(root / EVAL_DATA_DIR / "records.jsonl")
    comparison = build_comparison(records, params.compare)
    curves = [RunCurves(method=m, benchmark=b, seed=s, metrics_path=run_dir(root, m, b, s) / "metrics.jsonl")
              for m, b, s in trained_runs(params) if (run_dir(root, m, b, s) / "metrics.jsonl").is_file()]
    fresh_dir(root / REPORTS_DIR)
    paths = write_report(comparison, root / REPORTS_DIR, root / METRICS_DIR / "comparison.json", runs=curves)
    table = json.loads((root / METRICS_DIR / "comparison.json").read_text())
    flat = {}
    for bench, methods in table.items():
        for method, cell in methods.items():
            if isinstance(cell, dict) and isinstance(cell.get("success"), (int, float)):
                flat[f"{bench}/{method}/success"] = cell["success"]
    run.log_metrics(flat)
    run.log_artifact(root / REPORTS_DIR, "report")
    run.log_artifact(root / METRICS_DIR / "comparison.json", "report")
    return {"files": {k: str(Path(p).relative_to(root)) for k, p in paths.items()}}
