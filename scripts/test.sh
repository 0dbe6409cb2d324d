#!/usr/bin/env bash
# The test job: set up the environment if needed, then run the test suite (slow tests excluded, the 15
# slowest tests listed at the end: where CI's time goes; `bash scripts/test.sh -m slow` runs only the
# slow ones, any other pytest arguments pass through).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_env.sh dev
VENV="${ATOD_VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"
eval "$(python -m atod.project_env --exports)"
if [ $# -eq 0 ]; then
  set -- -m "not slow" --durations=15
fi
exec python -m pytest -q "$@"
