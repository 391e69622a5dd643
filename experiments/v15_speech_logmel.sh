#!/bin/bash
# issue 15, speech: data2vec 2.0 with a log-mel front end (extractor_mode=log_mel: 80 mel bands every 10 ms,
# one conv to 64 channels at 50 Hz, then audio-tiny-v2's transformer). Why: with the learned waveform CNN the
# CTC fine-tuning never left the blank plateau with 1 h of labels (pretrained or not, frozen or trainable, masks
# or none, lr 5e-4 or 2e-3: experiments/v15_speech_diag.sh), while the same transformer on log-mel features from
# scratch did within 200 updates. So the pretrained encoder is compared with the log-mel from-scratch baseline
# on equal terms: the same front end, model, fine-tuning recipe (`tiny`, conv after the filterbank trained) and
# budget; each arm's lr is chosen on the validation split.
#
#   [PRE_UPDATES=3000] [PRE_OUT=runs/v15-aud-M] [PRE_DATA=data/speech-4h] experiments/v15_speech_logmel.sh pretrain
#     (resumable; PRE_DATA: the unlabelled corpus, e.g. a larger one with the same seed: the same voices and
#     sentence pools per split, so its train split never holds a valid/test voice or sentence of data/speech-4h)
#   [CORE=1] [UPDATES=1500] [LR=2e-3] [CKPT=runs/v15-aud-M/checkpoint_3000.pt] [HOURS=1.0] \
#     experiments/v15_speech_logmel.sh ARM SEED ...         # ARM: pretrained | scratch; validation only
#   ... experiments/v15_speech_logmel.sh test ARM SEED ...  # then the test split, once, best-valid checkpoint
#   TAG=-freeze500 EXTRA="head.freeze_finetune_updates=500" ...   # other recipe changes: run name suffix + --set
set -e
cd "$(dirname "$0")/.."
FRONT=(--set encoder.extractor_mode=log_mel --set 'encoder.conv_feature_layers="[(80, 400, 160), (64, 3, 2)]"')
PY=(taskset -c "${CORE:-1}" env OMP_NUM_THREADS=1 .venv/bin/data2vec)
U=${UPDATES:-1500}
LR=${LR:-2e-3}
H=${HOURS:-1.0}
name() { echo "runs/v15-asr-M/${H}h-u$U-lr$LR$TAG-$1-s$2"; }
extra=(); for kv in $EXTRA; do extra+=(--set "$kv"); done
case $1 in
pretrain)
  out=${PRE_OUT:-runs/v15-aud-M}
  resume=(); [ -f "$out/checkpoint_last.pt" ] && resume=(--resume)
  "${PY[@]}" pretrain --preset audio-tiny-v2 --data "${PRE_DATA:-data/speech-4h}" --out "$out" "${FRONT[@]}" \
    --set train.max_update="${PRE_UPDATES:-3000}" --set train.save_interval_updates=500 \
    --set train.keep_interval_checkpoints=true --set train.log_interval=50 --set train.threads=1 \
    --set data.num_workers=0 --set train.seed=1 "${resume[@]}" >> "$out.log" 2>&1 ;;
test|test-last)  # the test split, once per run: the best-valid checkpoint (test) or the last one (test-last)
  which=best; [ "$1" = test-last ] && which=last
  arm=$2; shift 2
  for seed in "$@"; do
    run=$(name "$arm" "$seed")
    [ -f "$run/test_$which.json" ] || "${PY[@]}" evaluate asr "$run/checkpoint_$which.pt" --data data/speech-4h \
      --subset test --out "$run/test_$which.json"
  done ;;
*)
  arm=$1; shift
  if [ "$arm" = pretrained ]; then src=(--init "${CKPT:-runs/v15-aud-M/checkpoint_3000.pt}")
  else src=(--preset audio-tiny-v2 "${FRONT[@]}"); fi
  for seed in "$@"; do
    run=$(name "$arm" "$seed")
    [ -f "$run/metrics.json" ] && continue
    resume=(); [ -f "$run/checkpoint_last.pt" ] && resume=(--resume)
    mkdir -p runs/v15-asr-M
    "${PY[@]}" finetune asr "${src[@]}" --data data/speech-4h --out "$run" --set encoder.local_grad_mult=1.0 \
      --set data.label_hours="$H" --set optim.lr="$LR" --set train.max_update="$U" --set data.max_tokens=512000 \
      --set eval_interval=250 --set train.save_interval_updates=250 --set train.threads=1 \
      --set data.num_workers=0 --set data.test_subset=no-test-split --set train.seed="$seed" "${extra[@]}" \
      "${resume[@]}" >> "$run.log" 2>&1
  done ;;
esac
