"""Pipeline stages: one plain function per stage (`tasks.stages`), MLflow tracking (`tasks.tracking`,
switched off with ATOD_TRACKING=off), the Prefect tasks the flows run (`tasks.prefect_tasks`: DVC
commands and the per-benchmark evaluation), worker processes for parallel jobs (`tasks.parallel`).

DVC (`dvc.yaml` -> `atod stage NAME`) and Prefect (`flows/`, which runs the stages through DVC) both end
up in `tasks.stages.run_stage`, so every stage has exactly one implementation; `flows.evaluate` calls the
evaluate stage's own functions (`evaluate_benchmark`, `write_evaluation`) per benchmark."""
