#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install atod with its pinned
# dependencies. Idempotent: a second call with an unchanged pyproject.toml returns in about a second.
# Uses uv when it can be had (10-20 s for the whole set), and plain pip otherwise (about 2 minutes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ATOD_VENV:-$ROOT/.venv}"
EXTRAS="${1:-dev}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup: no python3 found; install Python 3.11 or 3.12" >&2; exit 1; }

STAMP="$VENV/.atod-installed"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-$EXTRAS"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/atod" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
# A local wheel folder (this workplace keeps the CPU build of torch there) is used when present.
FIND_LINKS=()
[ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)

install_with_uv() {
  "$VENV/bin/python" -m pip install -q uv >/dev/null 2>&1 || return 1
  "$VENV/bin/python" -m uv pip install --python "$VENV/bin/python" "${FIND_LINKS[@]}" \
    -e "$ROOT[$EXTRAS]"
}
install_with_pip() {
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install "${FIND_LINKS[@]}" -e "$ROOT[$EXTRAS]"
}
echo "setup: installing atod[$EXTRAS] and its pinned dependencies (first time only)" >&2
if ! install_with_uv; then
  echo "setup: uv unavailable or failed, falling back to pip" >&2
  install_with_pip
fi
echo "$WANT" > "$STAMP"
echo "setup: done ($VENV)" >&2
