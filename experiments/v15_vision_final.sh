#!/bin/bash
# issue 15, vision, the final fine-tuning runs: the recipe chosen by experiments/v15_ft_sweep.sh (on validation,
# seed 1), seeds 1-3, pretrained vs scratch at 1% of the labels; then the test split, read once per run
# (checkpoint_best.pt: the best validation top-1). Usage: experiments/v15_vision_final.sh VARIANT "OVERRIDES"
# e.g. experiments/v15_vision_final.sh lr1e-3 "optim.lr=1e-3". Reruns reuse finished runs and test files.
cd "$(dirname "$0")/.."
name=$1; sets=$2
for seed in 1 2 3; do
  taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python experiments/compare.py --task image-classification \
    --data data/images --pretrained runs/v15-img-A/checkpoint_1500.pt --preset image-tiny-v2 \
    --budget "1pct-$name=data.label_fraction=0.01,$sets" --seeds $seed \
    --set train.threads=1 --set data.num_workers=0 --set data.test_subset=no-test-split --set eval_interval=100 \
    --out runs/v15-ft-sweep
done
for run in runs/v15-ft-sweep/1pct-$name-{pretrained,scratch}-s{1,2,3}; do
  [ -f $run/test.json ] || taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/data2vec evaluate image-classification \
    $run/checkpoint_best.pt --data data/images --subset test --out $run/test.json
done
