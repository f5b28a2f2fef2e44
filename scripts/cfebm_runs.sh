#!/usr/bin/env bash
# The CF-EBM runs of docs (the side-by-side with the authors' ProEBM code, the measured differences,
# five seeds at the 15-minute budget), in order of value, each through flock /tmp/heavy.lock.
# Needs: .venv (make env), .venv-latest with torch + torchvision + lmdb (see benchmarks/
# reference_cfebm_torch.py), dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist),
# and a checkout of YangNaruto/ProEBM (REF=path). Expected wall times on the shared 2-core CPU
# (one run at a time): 300 updates ~6-9 min per run, evaluation ~1-2 min per run; sbs ~2 h,
# ablations ~75 min, seeds ~100 min.
#   scripts/cfebm_runs.sh sbs|ablations|seeds
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${REF:?set REF to the path of a checkout of YangNaruto/ProEBM}
WORK=${WORK:-/tmp/cfebm-runs}
B=".venv/bin/python -m benchmarks.reference_cfebm --reference-checkout $REF --workdir $WORK/sbs --stable-images 2000"
case "${1:-}" in
  sbs)  # authors' code vs ours: equal updates and equal minutes, three seeds (~2 h)
    mkdir -p "$WORK"
    flock /tmp/heavy.lock $B --seeds 0,1,2 --budgets updates:300,minutes:6 --docs docs > $WORK/sbs.json ;;
  ablations)  # one difference at a time on ours, equal updates, seeds 0-2 (~25 min per line)
    mkdir -p "$WORK"
    flock /tmp/heavy.lock $B --seeds 0,1,2 --budgets updates:300 --sides ours --label plain --set model.residual=plain > $WORK/plain.json
    flock /tmp/heavy.lock $B --seeds 0,1,2 --budgets updates:300 --sides ours --label theirsampler \
      --set sampler.step_size=1.4142 --set sampler.noise_scale=0.00707 --set sampler.noise_schedule=constant \
      --set sampler.upsample_noise=0 > $WORK/theirsampler.json
    flock /tmp/heavy.lock $B --seeds 0,1,2 --budgets updates:300 --sides ours --label lr15 --set train.learning_rate=0.0015 > $WORK/lr15.json ;;
  seeds)  # five seeds of fashion-mnist-cfebm at the 15-minute budget of the family comparison (~100 min)
    mkdir -p "$WORK"
    flock /tmp/heavy.lock .venv/bin/python -m benchmarks.compare_families --phase all --families cfebm \
      --seeds 0,1,2,3,4 --minutes 15 --workdir $WORK/cmp --docs $WORK/docs > $WORK/seeds.json ;;
  *) echo "usage: $0 sbs|ablations|seeds" >&2; exit 2 ;;
esac
