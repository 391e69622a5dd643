#!/bin/bash
# The pretrained-vs-scratch fine-tuning grids behind docs/results.md ("Fine-tuning: pretrained vs from
# scratch"), as two lanes of single-thread runs on the 2 cores. Every grid is experiments/compare.py, which
# reuses finished runs, so this script can be stopped and rerun; at the end each grid is summarised once more
# over all its budgets and seeds (nothing is retrained then). These are the lanes session 6 ran for
# docs/results.md (its speech part was rebalanced by hand mid-run into the split below, same arguments).
#
# Needs the tiny v1 pretraining runs on the presets' full schedules, e.g. `data2vec pretrain --preset
# image-tiny-v1 --data data/images --out runs/demo-image-tiny-v1` (likewise audio on data/speech, text on
# data/text; docs/results.md says which runs were used), or IMG= / TXT= / AUD= pointing at others; and the
# data: data/images, data/rt-polarity + data/text (tokenizer), data/speech-2h (`data2vec prepare speech
# --out data/speech-2h --hours 2`, a superset of make demo's 0.5 h corpus).
set -e
cd "$(dirname "$0")/.."
PY=.venv/bin/python
IMG=${IMG:-runs/demo-image-tiny-v1/checkpoint_last.pt}
TXT=${TXT:-runs/demo-text-tiny-v1/checkpoint_last.pt}
AUD=${AUD:-runs/demo-audio-tiny-v1/checkpoint_last.pt}

image() {  # budgets... -- seeds...
  $PY experiments/compare.py --task image-classification --data data/images --pretrained $IMG --preset image-tiny-v1 \
    "$@" --set train.threads=1 --set "data.augment.crop_scale=(0.8, 1.0)" --set head.layer_decay=0.75 \
    --set eval_interval=150 --out runs/exp-fmnist
}
text() {
  $PY experiments/compare.py --task text-classification --data data/rt-polarity --pretrained $TXT --preset text-tiny-v1 \
    "$@" --set train.threads=1 --set data.num_workers=0 --set data.tokenizer=data/text --out runs/exp-rt
}
speech() {
  $PY experiments/compare.py --task asr --data data/speech-2h --pretrained $AUD --preset audio-tiny-v1 \
    "$@" --set train.threads=1 --set data.num_workers=0 --out runs/exp-asr-2h
}
I1="--budget 1%=data.label_fraction=0.01"
I10="--budget 10%=data.label_fraction=0.1"
T1K="--budget 1k=data.max_train_examples=1000"
TALL="--budget all=max_epochs=3"
S10="--budget 10min=data.label_hours=0.17"
S60="--budget 1h=data.label_hours=1.0"

wait_for() {  # a pretraining run still in progress (e.g. started just before this script)
  until grep -qs '"done"' "$(dirname "$1")/summary.json"; do sleep 30; done
}

if [ "$1" != "--summarise" ]; then
  (wait_for $IMG; image $I10 --seeds 1 2; wait_for $AUD; speech $S10 --seeds 1
   speech $S60 --seeds 1 --arms pretrained) > runs/grid-lane-a.log 2>&1 &
  A=$!
  (wait_for $TXT; text $TALL --seeds 1 2; wait_for $AUD; speech $S10 $S60 --seeds 2
   speech $S60 --seeds 1 --arms scratch) > runs/grid-lane-b.log 2>&1 &
  B=$!
  wait $A
  wait $B
fi
image $I10 --seeds 1 2
text $TALL --seeds 1 2
speech $S10 $S60 --seeds 1 2
# Fashion-MNIST 1% and Rotten Tomatoes 1k (docs/results.md, earlier commits) are the same calls with $I1 / $T1K.
