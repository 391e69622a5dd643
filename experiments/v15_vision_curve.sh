#!/bin/bash
# issue 15, vision: quality against pretraining minutes. The recipe chosen for the pretrained arm
# (lr1e-3-crop08-ld075-u600, experiments/v15_ft_sweep.sh) applied to earlier checkpoints of runs/v15-img-A,
# seed 1, validation top-1 only (no test split is read).
# Usage: [CORE=0] experiments/v15_vision_curve.sh UPDATE [UPDATE ...]   (e.g. 500 1000; reruns reuse finished runs)
cd "$(dirname "$0")/.."
for u in "$@"; do
  taskset -c "${CORE:-0}" env OMP_NUM_THREADS=1 .venv/bin/python experiments/compare.py --task image-classification \
    --data data/images --pretrained runs/v15-img-A/checkpoint_$u.pt --preset image-tiny-v2 \
    --budget "1pct-ckpt$u-lr1e-3-crop08-ld075-u600=data.label_fraction=0.01,optim.lr=1e-3,data.augment.crop_scale=(0.8, 1.0),head.layer_decay=0.75,train.max_update=600" \
    --seeds 1 --arms pretrained --set train.threads=1 --set data.num_workers=0 --set data.test_subset=no-test-split \
    --set eval_interval=100 --out runs/v15-ft-sweep
done
