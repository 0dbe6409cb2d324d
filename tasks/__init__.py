"""Pipeline stages: one plain function per stage (`tasks.stages`, one module per stage), MLflow tracking
(`tasks.tracking`) and Prefect task wrappers of the same functions (`tasks.prefect_tasks`).

DVC (`dvc.yaml` -> `atod stage NAME`) and Prefect (`flows/`) both end up in `tasks.stages.run_stage`, so
every stage has exactly one implementation."""
