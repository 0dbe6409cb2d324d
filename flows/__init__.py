"""Prefect flows over the DVC pipeline: `pipeline.pipeline_flow` (every stage through `dvc repro
--single-item`), `ablation.ablation_flow` (one `dvc exp run` per setting), `evaluate.evaluate_flow` (the
evaluate stage with its benchmarks evaluated concurrently, then `dvc commit`), and `serve.up` (local
Prefect server + MLflow UI + the two scheduled deployments). `overhead` is a script, not a flow: the
pipeline's wall time against its stages' compute."""
