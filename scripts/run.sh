#!/usr/bin/env bash
# The main job: set up the environment if needed, then run the whole pipeline with DVC.
#   bash scripts/run.sh            # the profile named in params.yaml (default: the embedded demo)
#   bash scripts/run.sh smoke      # another profile, as a DVC experiment (dvc exp run -S profile=smoke)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_env.sh dev
VENV="${ATOD_VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"
eval "$(python -m atod.project_env --exports)"
python -m atod.cli config validate
if [ $# -ge 1 ]; then
  exec dvc exp run -S "profile=$1"
else
  exec dvc repro
fi
