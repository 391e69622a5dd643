#!/bin/bash
# Timed pretraining runs for experiments/v1_vs_v2.py (same arguments as its pretrain()), then the step benchmark.
# Nothing else runs on the machine meanwhile.
set -e
cd "$(dirname "$0")/.."
D=.venv/bin/data2vec
run() {  # preset data out updates save_every
  local sets="--set train.max_update=$4 --set train.save_interval_updates=$5 --set train.keep_interval_checkpoints=true --set train.log_interval=$5 --set train.seed=1"
  if [ -f "$3/summary.json" ] && grep -q '"done"' "$3/summary.json"; then echo "reuse $3"; return; fi
  local resume=""; [ -f "$3/checkpoint_last.pt" ] && resume="--resume"
  $D pretrain --preset $1 --data $2 --out $3 $sets $resume
}
run audio-tiny-v1 data/speech runs/exp-v1v2-audio/v1 300 50
run audio-tiny-v2 data/speech runs/exp-v1v2-audio/v2 300 50
run text-tiny-v1 data/text runs/exp-v1v2-text/v1 500 100
run text-tiny-v2 data/text runs/exp-v1v2-text/v2 1000 100
.venv/bin/python benchmarks/pretrain_step.py --presets audio-tiny-v1 audio-tiny-v2 text-tiny-v1 text-tiny-v2 image-tiny-v1 image-tiny-v2 --impls data2vec > runs/bench-v2.jsonl 2> runs/bench-v2.err
echo ALLDONE
