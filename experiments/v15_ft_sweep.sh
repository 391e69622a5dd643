#!/bin/bash
# issue 15, vision: the fine-tuning recipe sweep at 1% of the labels (seed 1), pretrained (runs/v15-img-A, update
# 1500) and from scratch with the same settings; chosen on the validation split (no test split is read here).
# Usage: [CORE=0] [ARMS="pretrained scratch"] experiments/v15_ft_sweep.sh [VARIANT ...]   (default: all);
# reruns reuse finished runs. Each run is one process on one core (taskset -c $CORE, one thread).
cd "$(dirname "$0")/.."
declare -A V=(
  [lr1e-3]="optim.lr=1e-3"
  [lr2e-3]="optim.lr=2e-3"
  [lr1e-3-crop08-ld075]="optim.lr=1e-3,data.augment.crop_scale=(0.8, 1.0),head.layer_decay=0.75"
  # second round, after the first three: scratch's best lr was the largest tried (lr4e-3: scratch only); the
  # milder crop and layer decay helped both arms, and both still rise at update 300
  [lr4e-3]="optim.lr=4e-3"
  [lr1e-3-crop08-ld075-u600]="optim.lr=1e-3,data.augment.crop_scale=(0.8, 1.0),head.layer_decay=0.75,train.max_update=600"
  [lr2e-3-crop08-ld075]="optim.lr=2e-3,data.augment.crop_scale=(0.8, 1.0),head.layer_decay=0.75"
)
for v in "${@:-lr1e-3 lr2e-3 lr1e-3-crop08-ld075}"; do
  for name in $v; do
    taskset -c "${CORE:-0}" env OMP_NUM_THREADS=1 .venv/bin/python experiments/compare.py --task image-classification \
      --data data/images --pretrained runs/v15-img-A/checkpoint_1500.pt --preset image-tiny-v2 \
      --budget "1pct-$name=data.label_fraction=0.01,${V[$name]}" --seeds 1 \
      --set train.threads=1 --set data.num_workers=0 --set data.test_subset=no-test-split --set eval_interval=100 \
      --arms ${ARMS:-pretrained scratch} --out runs/v15-ft-sweep
  done
done
