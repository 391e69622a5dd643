#!/bin/bash
# issue 15, speech: CTC fine-tuning of audio-tiny-v2 (pretrained on the 3.1 h of training speech of
# data/speech-4h: runs/v15-aud-A) and of the same encoder from scratch, with 1 hour of labels and a schedule
# long enough to leave CTC's all-blank plateau: the `tiny` recipe (lr 2e-3 tri-stage, masks 0.3/0.1) with UPDATES
# updates of at most 32 s of audio (half the recipe's batch: twice the updates per minute).
#
#   data2vec prepare speech --out data/speech-4h --hours 4
#   [CORE=1] [UPDATES=3000] [CKPT=runs/v15-aud-A/checkpoint_3000.pt] experiments/v15_speech.sh ARM [SEED ...]
#
# Training and validation only (data.test_subset is a name that does not exist, so no run reads the test
# split); then the best-valid-WER checkpoint and the last one are evaluated on the test split, once each.
# Reruns resume unfinished runs and reuse finished ones.
set -e
cd "$(dirname "$0")/.."
arm=$1; shift
U=${UPDATES:-3000}
CKPT=${CKPT:-runs/v15-aud-A/checkpoint_3000.pt}
for seed in "${@:-1}"; do
  taskset -c "${CORE:-1}" env OMP_NUM_THREADS=1 .venv/bin/python experiments/compare.py --task asr \
    --data data/speech-4h --pretrained "$CKPT" --preset audio-tiny-v2 \
    --budget "1h-u$U=data.label_hours=1.0,train.max_update=$U,data.max_tokens=512000,eval_interval=250,train.save_interval_updates=250" \
    --seeds "$seed" --arms "$arm" --set train.threads=1 --set data.num_workers=0 \
    --set data.test_subset=no-test-split --out runs/v15-asr
  run=runs/v15-asr/1h-u$U-$arm-s$seed
  for ck in best last; do
    [ -f "$run/test_$ck.json" ] || taskset -c "${CORE:-1}" env OMP_NUM_THREADS=1 .venv/bin/data2vec evaluate asr \
      "$run/checkpoint_$ck.pt" --data data/speech-4h --subset test --out "$run/test_$ck.json"
  done
done
