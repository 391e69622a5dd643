#!/bin/bash
# issue 15, vision, session 17: the linear probe (10% of the labels, all 49 patch tokens of the last block, the
# readout chosen in session 14) on checkpoints of experiments/v17_vision_recipe.sh's runs, seed 1, validation only.
# Usage: [CORE=0] experiments/v17_vision_probe.sh VARIANT UPDATE [UPDATE ...]   (reruns skip finished probes)
#        [CORE=0] experiments/v17_vision_probe.sh --test CKPT NAME SEED [SEED ...]  (once, for the chosen checkpoint)
cd "$(dirname "$0")/.."
mkdir -p runs/v17-probe
probe() { taskset -c "${CORE:-0}" env OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_readouts.py --data data/images \
  --readouts last1/flat "$@"; }
if [ "$1" = --test ]; then
  ckpt=$2; name=$3; shift 3
  for s in "$@"; do
    out=runs/v17-probe/test-$name-s$s.json
    [ -f $out ] || probe --ckpt $ckpt --seeds $s --test --out $out > ${out%.json}.log 2>&1
  done
  exit 0
fi
v=$1; shift
for u in "$@"; do
  out=runs/v17-probe/$v-$u.json
  [ -f $out ] || probe --ckpt runs/v17-img-$v/checkpoint_$u.pt --seeds 1 --out $out > ${out%.json}.log 2>&1
done
