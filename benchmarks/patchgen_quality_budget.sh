#!/bin/bash
# PatchGenCN's quality against its training budget: each bundled photo of the presets at 250 and
# 1,000 steps per scale, chelsea also at 4,000 (the paper's budget), each the preset's settings
# (`benchmarks.patchgen_levers --arms as_shipped`: SIFID, high-frequency energy ratio, diversity,
# nearest patch beside patch shuffling and quilting, super-resolution, harmonization, training
# time) with its samples as PNG. One run at a time under the machine's heavy-job lock.
#
#   bash benchmarks/patchgen_quality_budget.sh OUT_DIR [PHOTOS] [BUDGETS]
#
# Expected training times on a 2-core CPU with nothing else running (the 96 px photos, 4 scales;
# ~2.5 s for one step at each of the four scales, plus ~1 min of tracing and ~1 min of
# evaluation): 250 steps ~12 min, 1,000 ~45 min, 4,000 ~3 h per photo. The defaults below run
# the whole table: about 5.5 h.
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR [PHOTOS] [BUDGETS]}
PHOTOS=${2:-"chelsea coffee rocket"}
BUDGETS=${3:-"250 1000 4000"}
LOCK=${LOCK:-/tmp/heavy.lock}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
run() {  # photo steps
  flock "$LOCK" "$PY" -m benchmarks.patchgen_levers --image "$1" --preset "$1-patchgen" \
    --steps-per-scale "$2" --arms as_shipped --seeds 0 --out "$OUT/$1_p$2.json" \
    --pictures "$OUT/$1_p$2" > "$OUT/$1_p$2.log" 2>&1
}
for steps in $BUDGETS; do
  for photo in $PHOTOS; do
    if [ "$steps" -ge 4000 ] && [ "$photo" != chelsea ]; then continue; fi  # the paper's budget: one photo
    run "$photo" "$steps"
  done
done
