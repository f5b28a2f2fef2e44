#!/usr/bin/env bash
# Create or refresh a pinned virtual environment.
#   scripts/setup_env.sh primary   -> .venv        (Python 3.10, TFX 1.16, TF 2.16; the README's)
#   scripts/setup_env.sh latest    -> .venv-latest (Python 3.11, TF 2.21, no TFX; the core)
# Uses an installed Python of the right version (PYTHON=/path overrides); uv downloads a managed
# Python only where the network allows it. Re-running is cheap: it only syncs the pins.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-primary}
case "$kind" in
  primary) want=3.10; venv=.venv; lock=requirements/primary-py310.txt ;;
  latest)  want=3.11; venv=.venv-latest; lock=requirements/latest-py311.txt ;;
  *) echo "usage: $0 primary|latest" >&2; exit 2 ;;
esac
stamp="$venv/.multigrid-ebm-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt "$lock" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "[setup] installing uv (fast resolver/installer) with pip" >&2
  python3 -m pip install -q --user uv 2>/dev/null || python3 -m pip install -q uv
  export PATH="$HOME/.local/bin:$PATH"
fi

find_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for c in "python$want" "$HOME/.pyenv/versions/$want"*/bin/python "/usr/bin/python$want" "/usr/local/bin/python$want"; do
    for p in $c; do
      if [ -x "$(command -v "$p" 2>/dev/null)" ] && "$p" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$want'.split('.')))" 2>/dev/null; then
        echo "$p"; return
      fi
    done
  done
  echo "$want"  # let uv find or (network permitting) download one
}
py=$(find_python)
echo "[setup] $kind environment in $venv with Python $want ($py)" >&2
start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  uv venv -q --python "$py" "$venv"
fi
VIRTUAL_ENV="$venv" uv pip install -q -r "$lock"
VIRTUAL_ENV="$venv" uv pip install -q --no-deps -e .
touch "$stamp"
echo "[setup] $kind environment ready in $(( $(date +%s) - start )) s ($(du -sh "$venv" | cut -f1))" >&2
