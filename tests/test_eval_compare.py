"""Comparison tables, deltas, comparison.json and the report, from hand-made evaluation records."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from atod.eval.compare import (
    AVERAGE,
    TEACHER,
    ClaimCheck,
    Delta,
    EvalRecord,
    build_comparison,
    load_records,
    save_records,
    training_tables,
    write_report,
)
from atod.eval.config import CompareConfig
from atod.eval.plots import RunCurves, moving_mean, plot_learning_curves, read_metrics, series

CFG = CompareConfig(bootstrap_samples=200, confidence=0.95, checkpoint="final", seed=0)
SPLITS = {"alfworld": ("valid_seen", "valid_unseen"), "webshop": ("test",)}


def record(method, benchmark, split, wins, n=10, seed=0, checkpoint="final"):
    """n episodes on tasks split/0..n-1, the first `wins` won."""
    won = np.zeros(n)
    won[:wins] = 1
    return EvalRecord(method=method, benchmark=benchmark, split=split, seed=seed, checkpoint=checkpoint, won_E=won,
                      task_ids=[f"{split}/{i}" for i in range(n)], score_E=won * 0.5 + 0.25,
                      turns_E=np.arange(n) + 1.0, invalid_E=np.ones(n))


# wins out of 10 per (method, benchmark, split)
WINS = {
    "teacher": {"valid_seen": 6, "valid_unseen": 4, "test": 5},
    "atod": {"valid_seen": 8, "valid_unseen": 6, "test": 7},
    "opd": {"valid_seen": 7, "valid_unseen": 5, "test": 6},
    "grpo": {"valid_seen": 2, "valid_unseen": 1, "test": 3},
}


def make_records(seeds=(0,)):
    return [record(m, b, s, WINS[m][s], seed=seed) for m in WINS for b, splits in SPLITS.items()
            for s in splits for seed in (seeds if m != "teacher" else (0,))]


def test_comparison_json_structure_and_values():
    comp = build_comparison(make_records(), CFG)
    out = comp.to_json()
    assert list(out) == ["alfworld", "webshop", AVERAGE]
    for cells in out.values():
        assert list(cells) == ["grpo", "opd", "atod", TEACHER]  # paper order, teacher last
        for cell in cells.values():
            assert set(cell) == {"success", "ci"}
            low, high = cell["ci"]
            assert 0.0 <= low <= cell["success"] <= high <= 1.0
    # alfworld pools both splits: (8 + 6) / 20; webshop 7 / 10; average = mean of the two.
    assert out["alfworld"]["atod"]["success"] == pytest.approx(0.7)
    assert out["webshop"]["atod"]["success"] == pytest.approx(0.7)
    assert out["alfworld"]["teacher"]["success"] == pytest.approx(0.5)
    assert out[AVERAGE]["teacher"]["success"] == pytest.approx((0.5 + 0.5) / 2)
    assert out[AVERAGE]["grpo"]["success"] == pytest.approx((3 / 20 + 3 / 10) / 2)
    # Stratified average of independent benchmarks: width ~ sqrt(sum of squared widths) / 2.
    widths = [np.diff(out[b]["opd"]["ci"])[0] for b in SPLITS]
    avg_w = np.diff(out[AVERAGE]["opd"]["ci"])[0]
    assert avg_w < max(widths)
    assert avg_w == pytest.approx(np.sqrt(np.sum(np.square(widths))) / 2, rel=0.3)
    # JSON-serialisable as is, and deterministic.
    assert json.loads(json.dumps(out)) == build_comparison(make_records(), CFG).to_json()


def test_per_split_table_and_secondary_metrics():
    comp = build_comparison(make_records(), CFG)
    assert comp.splits == {"alfworld": ["valid_seen", "valid_unseen"], "webshop": ["test"]}
    assert comp.split_success["alfworld"]["valid_unseen"]["atod"].mean == pytest.approx(0.6)
    assert comp.secondary["turns"]["webshop"]["atod"].mean == pytest.approx(5.5)
    assert comp.secondary["invalid_rate"]["webshop"]["atod"].mean == pytest.approx(10 / 55)
    assert comp.secondary["score"]["webshop"]["atod"].mean == pytest.approx(0.25 + 0.5 * 0.7)


def test_deltas_paired_over_tasks_and_unpaired_for_summaries():
    comp = build_comparison(make_records(seeds=(0, 1)), CFG)
    deltas = {(d.method, d.baseline, d.benchmark): d for d in comp.deltas}
    assert {(m, b) for m, b, _ in deltas} == {("grpo", "teacher"), ("opd", "teacher"), ("atod", "teacher"),
                                               ("atod", "opd"), ("atod", "grpo")}
    d = deltas[("atod", "teacher", "alfworld")]
    assert d.paired and d.n_units == 20
    assert d.delta == pytest.approx(0.7 - 0.5)
    assert d.ci[0] <= d.delta <= d.ci[1]
    avg = deltas[("atod", "grpo", AVERAGE)]
    assert avg.delta == pytest.approx((0.7 - 0.15 + 0.7 - 0.3) / 2)
    assert avg.ci[0] > 0  # ATOD wins clearly over GRPO in this data

    summaries = [EvalRecord.from_summary(method=m, benchmark="webshop", split="test", seed=0, checkpoint="final",
                                         success=s, n_episodes=40) for m, s in (("atod", 0.6), ("teacher", 0.5))]
    comp = build_comparison(summaries, CFG)
    (d,) = [d for d in comp.deltas if d.benchmark == "webshop"]
    assert not d.paired and d.delta == pytest.approx(0.1)
    assert comp.secondary["turns"]["webshop"] == {}  # unknown for summary-only records


def test_claim_verdicts_by_hand():
    def claim(low, high, paper=(3.0, 4.0)):
        return ClaimCheck("c", AVERAGE, paper, Delta(AVERAGE, "atod", "opd", (low + high) / 2, (low, high), True, 10))

    assert claim(0.01, 0.05).direction.startswith("reproduced") and claim(0.01, 0.05).size_in_ci == "yes"
    assert claim(0.05, 0.09).size_in_ci == "no"  # [5, 9] points misses the paper's 3-4
    assert claim(0.035, 0.09).size_in_ci == "yes"  # overlaps it
    assert claim(-0.05, -0.01).direction.startswith("contradicted") and claim(-0.05, -0.01).size_in_ci == "no"
    assert claim(-0.02, 0.06).direction.startswith("not shown") and claim(-0.02, 0.06).size_in_ci == "yes"
    assert claim(0.0, 0.06).direction.startswith("not shown")  # a CI touching 0 does not exclude it
    few = ClaimCheck("c", AVERAGE, (3.0, 4.0), Delta(AVERAGE, "atod", "opd", -0.03, (-0.05, -0.01), True, 10), 2)
    assert few.direction == "2 seeds only: ATOD behind, CI excludes 0 (it resamples episodes, not runs)"
    one_wide = ClaimCheck("c", AVERAGE, (3.0, 4.0), Delta(AVERAGE, "atod", "opd", 0.02, (-0.02, 0.06), True, 10), 1)
    assert one_wide.direction.startswith("not shown")
    missing = ClaimCheck("c", AVERAGE, (2.0, 2.0), None)
    assert missing.direction == "not run" and missing.size_in_ci == "-"


def test_claims_and_ablation_deltas_in_the_comparison():
    seeds = (0, 1, 2)
    recs = make_records(seeds) + [record("atod_no_anneal", b, s, 10, seed=seed) for b, splits in SPLITS.items()
                                  for s in splits for seed in seeds]
    comp = build_comparison(recs, CFG)
    deltas = {(d.method, d.baseline, d.benchmark): d for d in comp.deltas}
    assert deltas[("atod", "atod_no_anneal", "alfworld")].delta == pytest.approx(0.7 - 1.0)
    claims = {(c.claim.split()[0], c.scope): c for c in comp.claims}
    by_baseline = {c.delta.baseline if c.delta else None: c for c in comp.claims}
    assert len(comp.claims) == 6 and ("ATOD", "average (alfworld, webshop)") in claims
    assert by_baseline["grpo"].direction.startswith("reproduced")  # 47.5 points ahead
    assert by_baseline["grpo"].size_in_ci == "no"  # far more than the paper's 24
    assert by_baseline["atod_no_anneal"].direction.startswith("contradicted") and by_baseline["atod_no_anneal"].scope == "alfworld"
    assert by_baseline[None].direction == "not run"  # uniform and token-level were not run (both None)
    assert sum(c.delta is None for c in comp.claims) == 2
    assert by_baseline["teacher"].seeds == 3  # the teacher is one model; ATOD's seeds count
    md = json.loads(json.dumps(comp.to_full_json()))
    assert [c["direction"] for c in md["claims"]] == [c.direction for c in comp.claims]
    assert [c["seeds"] for c in md["claims"]] == [3] * 6

    # the same effects from one training run per method: reported as one seed's result, not a verdict
    one = {c.delta.baseline: c for c in build_comparison(make_records(), CFG).claims if c.delta}
    assert one["grpo"].direction == "1 seed only: ATOD ahead, CI excludes 0 (it resamples episodes, not runs)"
    assert one["grpo"].seeds == 1


def test_training_tables_by_hand(tmp_path):
    def metrics(path, success, val, step_time):
        rows = [{"step": i + 1, "success": v, "step_time_s": t, "time_rollout_s": t / 2}
                for i, (v, t) in enumerate(zip(success, step_time, strict=True))]
        rows += [{"step": step, "val_success": v} for step, v in val]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return path

    runs = [RunCurves("atod", "alfworld", 0, metrics(tmp_path / "a0.jsonl", [0, 1, 0.5, 0.5], [(2, 0.25), (4, 0.75)],
                                                     [1, 2, 3, 4])),
            RunCurves("atod", "alfworld", 1, metrics(tmp_path / "a1.jsonl", [0, 0, 1, 1], [(2, 0.25), (4, 0.25)],
                                                     [1, 1, 1, 1])),
            RunCurves("opd", "alfworld", 0, metrics(tmp_path / "o0.jsonl", [1, 1, 1, 1], [], [6, 6, 6, 6]))]
    (phase, timing) = training_tables(runs)
    assert phase[3] == [["alfworld", "opd", "1", "100.0", "100.0", "-", "-"],
                        # train: steps 1-2 of both seeds (0, 1, 0, 0) = 25%, steps 3-4 (0.5, 0.5, 1, 1) = 75%
                        ["alfworld", "atod", "2", "25.0", "75.0", "25.0", "50.0"]]
    # step: median of (1, 2, 3, 4, 1, 1, 1, 1) = 1; rollout half of it; run: (10 s + 4 s) / 2 = 7 s = 0.1 min
    assert timing[3] == [["alfworld", "opd", "1", "4", "6.0", "3.0", "-", "-", "0.4"],
                         ["alfworld", "atod", "2", "4", "1.0", "0.5", "-", "-", "0.1"]]
    assert training_tables([]) == []


def test_moving_mean_by_hand():
    assert list(moving_mean(np.array([1.0, 2, 3, 4, 5, 6]), 3)) == [1.0, 1.5, 2.0, 3.0, 4.0, 5.0]
    assert list(moving_mean(np.array([0.0, 1.0]), 5)) == [0.0, 0.5]
    assert moving_mean(np.array([]), 5).size == 0


def test_checkpoint_choice_and_notes():
    recs = make_records()
    recs += [record("atod", b, s, 10, checkpoint="best") for b, splits in SPLITS.items() for s in splits]
    final = build_comparison(recs, CFG)
    best = build_comparison(recs, CFG.model_copy(update={"checkpoint": "best"}))
    assert final.to_json()["webshop"]["atod"]["success"] == pytest.approx(0.7)
    assert best.to_json()["webshop"]["atod"]["success"] == pytest.approx(1.0)
    assert final.other_checkpoint == "best" and final.other_success["webshop"]["atod"].mean == pytest.approx(1.0)
    assert best.checkpoint_used["atod"] == "best" and best.checkpoint_used["teacher"] == "final"
    assert any("teacher has no 'best' checkpoint" in n for n in best.notes)
    # The same episodes get the same interval wherever they appear.
    assert final.other_success["alfworld"]["teacher"] == final.success["alfworld"]["teacher"]
    assert final.split_success["webshop"]["test"]["opd"] == final.success["webshop"]["opd"]


def test_method_missing_a_benchmark_gets_no_average():
    recs = [r for r in make_records() if not (r.method == "grpo" and r.benchmark == "webshop")]
    comp = build_comparison(recs, CFG)
    assert "grpo" in comp.to_json()["alfworld"] and "grpo" not in comp.to_json()[AVERAGE]
    assert any("grpo has no final results on webshop" in n for n in comp.notes)


def test_bad_records_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        build_comparison(make_records() + [make_records()[0]], CFG)
    with pytest.raises(ValueError, match="no evaluation records"):
        build_comparison([], CFG)
    with pytest.raises(ValueError, match="checkpoint"):
        record("atod", "webshop", "test", 1, checkpoint="last")
    with pytest.raises(ValueError, match="fraction"):
        EvalRecord.from_summary(method="a", benchmark="webshop", split="test", seed=0, checkpoint="final",
                                success=41.0, n_episodes=10)


def test_records_round_trip_and_from_result(tmp_path):
    recs = make_records()
    path = save_records(recs, tmp_path / "records.jsonl")
    back = load_records(path)
    assert [r.key for r in back] == [r.key for r in recs]
    assert np.array_equal(back[3].won_E, recs[3].won_E) and back[3].task_ids == recs[3].task_ids

    result = {"benchmark": "webshop", "split": "test", "episodes": [
        {"task_id": "7", "split": "test", "sample": 0, "won": True, "score": 1.0, "num_turns": 3,
         "invalid_steps": 1, "format_errors": 0},
        {"task_id": "8", "split": "test", "sample": 0, "won": False, "score": 0.4, "num_turns": 5,
         "invalid_steps": 0, "format_errors": 0}]}
    r = EvalRecord.from_result(result, method="opd", seed=2, checkpoint="best")
    assert r.key == ("opd", "webshop", "test", 2, "best")
    assert r.task_ids == ["test/7", "test/8"] and list(r.score_E) == [1.0, 0.4]
    (tmp_path / "bad.jsonl").write_text('{"method": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_records(tmp_path / "bad.jsonl")


def write_metrics(path, method, steps=6, broken_tail=True):
    """A metrics.jsonl as the trainer writes it: one row per step, a validation row every 2 steps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for s in range(steps):
        row = {"step": s, "reward": 1.0, "success": s / steps, "turns": 10.0 - s, "kappa": 1.0 - 0.1 * s,
               "rho": 1.0 + 0.1 * s}
        if method != "grpo":
            row["kl_teacher"] = 1.0 / (s + 1)
        if method.startswith("atod"):
            row["tdur_weight_mean"] = 0.55
        lines.append(json.dumps(row))
        if s % 2 == 0:
            lines.append(json.dumps({"step": s, "val_success": s / steps / 2}))
    path.write_text("\n".join(lines) + ("\n{\"step\": 99, \"succ" if broken_tail else "\n"))
    return path


def test_plots_render_from_metrics_jsonl(tmp_path):
    runs = [RunCurves(m, b, seed, write_metrics(tmp_path / f"{m}-{b}-{seed}" / "metrics.jsonl", m))
            for m in ("grpo", "opd", "atod") for b in ("alfworld", "webshop") for seed in (0, 1)]
    rows = read_metrics(runs[0].metrics_path)
    assert len(rows) == 6 + 3  # the half-written last line is skipped
    steps, values = series(rows, ("kl_teacher", "kl"))
    assert steps.size == 0  # grpo logs no KL
    steps, values = series(rows, "val_success")
    assert list(steps) == [0.0, 2.0, 4.0]
    steps, values = series([{"step": 0, "kl": 0.3}, {"step": 1, "kl_teacher": 0.2, "kl": 9.0}], ("kl_teacher", "kl"))
    assert list(values) == [0.3, 0.2]  # the trainer's name first, aliases after
    plots = plot_learning_curves(runs, tmp_path / "plots")
    assert set(plots) == {"curves_success", "curves_schedule", "curves_tdur", "curves_kl", "curves_turns"}
    for p in plots.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    only_grpo = [r for r in runs if r.method == "grpo"]
    assert {"curves_tdur", "curves_kl"}.isdisjoint(plot_learning_curves(only_grpo, tmp_path / "plots2"))


def test_write_report_files_and_self_contained_html(tmp_path):
    recs = make_records()
    recs += [record("atod", b, s, 9, checkpoint="best") for b, splits in SPLITS.items() for s in splits]
    comp = build_comparison(recs, CFG)
    runs = [RunCurves(m, "alfworld", 0, write_metrics(tmp_path / "runs" / m / "metrics.jsonl", m))
            for m in ("grpo", "opd", "atod")]
    paths = write_report(comp, tmp_path / "report", tmp_path / "metrics" / "comparison.json", runs)
    for key in ("report_md", "report_html", "comparison_json", "comparison_full", "plot_success_bars",
                "plot_curves_kl"):
        assert paths[key].is_file(), key
    assert json.loads(paths["comparison_json"].read_text()) == comp.to_json()
    full = json.loads(paths["comparison_full"].read_text())
    assert full["checkpoint"] == "final" and full["deltas"]

    md = paths["report_md"].read_text()
    assert "Reported checkpoint: **final**" in md and "pool all evaluation splits" in md
    assert "| atod - opd | average |" in md and "best checkpoint" in md
    assert "## The paper's claims" in md and "| ATOD beats GRPO by about 24 points | average (alfworld, webshop) |" in md
    assert "## Success by half of training (%)" in md and "## Time per training step (s)" in md

    page = paths["report_html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, flags=re.IGNORECASE)
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") == 1 + 5  # the bar chart and the five curve figures


def test_deltas_fall_back_to_unpaired_when_task_sets_differ():
    # atod: tasks test/0..9, the first 7 won (0.7). teacher: 8 tasks test/5..12 (5 shared), the first 4 won (0.5).
    # Both sides have task ids but set(a) != set(b), so the delta is unpaired over episodes:
    # delta = 0.7 - 0.5 = 0.2, n_units = min(10, 8) = 8 episodes. (Paired over the 5 shared tasks would give
    # atod [1, 1, 0, 0, 0] - teacher [1, 1, 1, 1, 0] -> -0.4 on 5 units.)
    atod = record("atod", "webshop", "test", 7, n=10)
    won = np.zeros(8)
    won[:4] = 1
    teacher = EvalRecord(method=TEACHER, benchmark="webshop", split="test", seed=0, checkpoint="final", won_E=won,
                         task_ids=[f"test/{i}" for i in range(5, 13)])
    comp = build_comparison([atod, teacher], CFG)
    deltas = {d.benchmark: d for d in comp.deltas if (d.method, d.baseline) == ("atod", TEACHER)}
    assert set(deltas) == {"webshop", AVERAGE}
    for d in deltas.values():  # one benchmark: the average repeats it
        assert d.paired is False
        assert d.n_units == 8
        assert d.delta == pytest.approx(0.2)
        assert d.ci[0] <= d.delta <= d.ci[1]


def test_eval_record_validation():
    def make(**kw):
        args = {"method": "atod", "benchmark": "webshop", "split": "test", "seed": 0, "checkpoint": "final",
                "won_E": np.array([1.0, 0.0, 1.0])}
        return EvalRecord(**{**args, **kw})

    make()  # 3 episodes with no optional arrays is valid
    with pytest.raises(ValueError, match="has no episodes"):
        make(won_E=np.array([]))
    # score_E must have shape (n,) = (3,): 2 entries, and a (3, 1) column, are both refused
    with pytest.raises(ValueError, match=r"score_E has shape \(2,\), expected \(3,\)"):
        make(score_E=np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"score_E has shape \(3, 1\), expected \(3,\)"):
        make(score_E=np.ones((3, 1)))
    with pytest.raises(ValueError, match="2 task ids for 3 episodes"):
        make(task_ids=["test/0", "test/1"])


def test_eval_record_refuses_a_two_dimensional_won():
    with pytest.raises(ValueError, match="one-dimensional"):
        EvalRecord("atod", "webshop", "test", 0, "final", np.zeros((2, 3)), task_ids=[f"test/{i}" for i in range(6)])
