#!/bin/bash
# issue 15, vision, the final fine-tuning runs at 1% of the labels: each arm with its own recipe, the one
# experiments/v15_ft_sweep.sh found best on the validation split (seed 1), for seeds 1-3; then the test split,
# read once per run (checkpoint_best.pt: the best validation top-1).
# Usage: [CORE=0] experiments/v15_vision_final.sh ARM VARIANT "OVERRIDES" [SEED ...]   (ARM: pretrained|scratch)
# e.g. experiments/v15_vision_final.sh pretrained lr1e-3 "optim.lr=1e-3" 2 3. Reruns reuse finished runs and tests.
# CKPT=... fine-tunes another pretraining checkpoint (default: models/image-tiny-v2, the student of
# runs/v17-img-m8c8/checkpoint_1500.pt since session 18, of runs/v15-img-A/checkpoint_1500.pt before: the runs
# named without "m8c8" used that one); give VARIANT a name that says which. VALID_ONLY=1 stops before the test
# split (for choosing between checkpoints or heads).
cd "$(dirname "$0")/.."
arm=$1; name=$2; sets=$3; shift 3
set -- ${@:-1 2 3}  # the seeds
for s in "$@"; do
  taskset -c "${CORE:-0}" env OMP_NUM_THREADS=1 .venv/bin/python experiments/compare.py --task image-classification \
    --data data/images --pretrained ${CKPT:-models/image-tiny-v2} --preset image-tiny-v2 \
    --budget "1pct-$name=data.label_fraction=0.01,$sets" --seeds $s --arms $arm \
    --set train.threads=1 --set data.num_workers=0 --set data.test_subset=no-test-split --set eval_interval=100 \
    --out runs/v15-ft-sweep
done
[ -n "$VALID_ONLY" ] && exit 0
for s in "$@"; do
  run=runs/v15-ft-sweep/1pct-$name-$arm-s$s
  [ -f $run/test.json ] || taskset -c "${CORE:-0}" env OMP_NUM_THREADS=1 .venv/bin/data2vec evaluate \
    image-classification $run/checkpoint_best.pt --data data/images --subset test --out $run/test.json
done
