#!/usr/bin/env bash
# The main job: set up the environment if needed, then run the whole pipeline with DVC.
#   bash scripts/run.sh            # the profile named in params.yaml (default: the embedded demo)
#   bash scripts/run.sh smoke      # another profile, as a DVC experiment (dvc exp run -S profile=smoke)
#   bash scripts/run.sh repro [BENCH ...]
#                                  # the reproduction: every method x 3 seeds, 90 steps annealed over 48, on
#                                  # BENCH (alfworld webshop searchqa; default all three), as the DVC experiment
#                                  # `repro-<benches>` on top of the default (hours on 2 cores: see the README;
#                                  # run it again after an interruption: finished runs and evaluations are reused,
#                                  # also across experiments, so one benchmark at a time adds up to all three)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_env.sh dev
VENV="${ATOD_VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"
eval "$(python -m atod.project_env --exports)"
python -m atod.cli config validate
restore_shipped() {
  # The default profile's slow, method-independent outputs (task sets, tokenizer, the SFT teacher and
  # student: about 7 h on 2 cores) ship in dvc-store/, a DVC remote committed with the code. Restore
  # them first; DVC then skips those stages while their code and params are unchanged (and reruns them
  # otherwise). `dvc repro --force` reruns every stage; with `rm -rf .atod/resume` first (finished
  # warm-ups, runs and evaluations the stages would reuse) it reproduces everything from scratch.
  if [ -d dvc-store ]; then
    dvc pull --remote embedded --allow-missing prepare sft_teacher sft_student \
      || echo "note: could not restore the shipped outputs from dvc-store; DVC will recompute them" >&2
  fi
}
if [ "${1:-}" = "repro" ]; then
  # Only train.* differs from the default, so prepare, sft_* and cache_teacher are not rerun.
  shift
  benches=("$@")
  read -r -a known <<< "$(python -c 'from atod.envs import BENCHMARKS; print(*BENCHMARKS)')"
  [ ${#benches[@]} -gt 0 ] || benches=("${known[@]}")
  for b in "${benches[@]}"; do
    [[ " ${known[*]} " == *" $b "* ]] \
      || { echo "run.sh repro: unknown benchmark '$b' (expected one of: ${known[*]})" >&2; exit 2; }
  done
  restore_shipped
  list="$(IFS=,; echo "${benches[*]}")"
  exec dvc exp run -n "${ATOD_REPRO_NAME:-repro-$(IFS=-; echo "${benches[*]}")}" \
    -S 'train.methods=[grpo,opd,atod,atod_no_anneal,atod_uniform,atod_token,seqkd]' \
    -S "train.benchmarks=[$list]" -S 'train.seeds=[0,1,2]' -S train.steps=90 -S train.anneal.anneal_steps=48
elif [ $# -ge 1 ]; then
  exec dvc exp run -S "profile=$1"
else
  restore_shipped
  exec dvc repro
fi
