#!/bin/bash
# issue 15, vision, session 17: pretraining recipes other than the shipped one (runs/v15-img-A: mask 0.6,
# 4 clones, 1,500 updates), one core each, fp32 on this AVX2 instance, seed 1. Checkpoints every 500 updates
# are kept so that the linear probe (experiments/probe_readouts.py, validation only) gives quality per minute.
# Usage: [CORE=0] experiments/v17_vision_recipe.sh VARIANT      (resumes an interrupted run)
#   m8c8   mask_prob 0.8 (data2vec 2.0's image ratio), 8 clones, 1,500 updates
#   u3000  the shipped recipe, 3,000 updates (1.7 epochs)
cd "$(dirname "$0")/.."
v=$1
case $v in
  m8c8)  extra=(--set masking.mask_prob=0.8 --set masking.clone_batch=8 --set train.max_update=1500) ;;
  u3000) extra=(--set train.max_update=3000) ;;
  *) echo "unknown variant $v" >&2; exit 2 ;;
esac
out=runs/v17-img-$v
resume=()
[ -f "$out/checkpoint_last.pt" ] && resume=(--resume)
exec taskset -c "${CORE:-0}" env OMP_NUM_THREADS=1 .venv/bin/data2vec pretrain --preset image-tiny-v2 \
  --data data/images --out "$out" "${extra[@]}" --set train.save_interval_updates=500 \
  --set train.keep_interval_checkpoints=true --set train.log_interval=50 --set train.threads=1 \
  --set data.num_workers=0 --set train.seed=1 "${resume[@]}"
