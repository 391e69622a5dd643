#!/bin/bash
# issue 15, speech: why CTC fine-tuning with 1 h of labels stays on the all-blank plateau (runs/v15-asr: valid
# loss flat at ~180 per utterance for 3,000 updates, both arms). Short runs of the `tiny` recipe, one change
# each, validation only (no test split read). The encoder: the pretrained runs/v15-aud-A/checkpoint_1500.pt
# (CKPT=...), or with PRESET=audio-tiny-v2 a random one (extra --set options change its front end).
#
#   [CORE=0] [UPDATES=600] [CKPT=...|PRESET=...] experiments/v15_speech_diag.sh NAME [--set KEY=VALUE ...]
#   e.g. experiments/v15_speech_diag.sh lr5e-4 --set optim.lr=5e-4
set -e
cd "$(dirname "$0")/.."
name=$1; shift
out=runs/v15-asr-diag/$name
resume=(); [ -f "$out/checkpoint_last.pt" ] && resume=(--resume)
if [ -n "$PRESET" ]; then src=(--preset "$PRESET"); else src=(--init "${CKPT:-runs/v15-aud-A/checkpoint_1500.pt}"); fi
mkdir -p runs/v15-asr-diag
taskset -c "${CORE:-0}" env OMP_NUM_THREADS=1 .venv/bin/data2vec finetune asr "${src[@]}" --data data/speech-4h \
  --out "$out" --set data.label_hours=1.0 --set train.max_update="${UPDATES:-600}" --set data.max_tokens=512000 \
  --set eval_interval=200 --set train.save_interval_updates=200 --set train.threads=1 --set data.num_workers=0 \
  --set data.test_subset=no-test-split --set train.seed=1 "$@" "${resume[@]}" >> "$out.log" 2>&1
