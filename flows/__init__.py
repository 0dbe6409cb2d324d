"""Prefect flows over the DVC pipeline: `pipeline.pipeline_flow`, `ablation.ablation_flow`, and
`serve.up` (local Prefect server + MLflow UI + the two scheduled deployments)."""
