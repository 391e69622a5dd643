#!/bin/bash
# issue 15, text: fine-tuning text-tiny-v2 (pretrained on the 22 M-token corpus: runs/v15-txt-A) and the same
# encoder from scratch on Rotten Tomatoes, both with the corpus's 8k BPE tokenizer.
#
#   [CORE=0] [ARMS="pretrained scratch"] [CKPT=models/text-tiny-v2] [OUT=runs/v15-txt-ft] \
#       experiments/v15_text.sh sweep BUDGET VARIANT [VARIANT ...]      # seed 1, dev split only
#   [CORE=0] experiments/v15_text.sh final BUDGET ARM VARIANT [SEED ...] # seeds (default 1 2 3), then test once
#
# BUDGET: 1k (data.max_train_examples=1000, the subsets of the TF-IDF baseline) or all. VARIANT: a name of V below.
# Training reads data/rt-polarity-dev (train.tsv + dev.tsv, no test.tsv), so no run of `sweep` or `final` sees
# the test split; `final` then evaluates each run's best-dev checkpoint on data/rt-polarity's test split, once.
# Reruns reuse finished runs and test results. One process at a time on core $CORE, one thread.
# CKPT: the shipped encoder (the student of runs/v15-txt-A/checkpoint_2200.pt, the default until session 18);
# TOK: the tokenizer both arms use (the corpus's: models/text-tiny-v2 holds a copy of data/text-large's).
set -e
cd "$(dirname "$0")/.."
mkdir -p data/rt-polarity-dev
for f in train.tsv dev.tsv info.json; do ln -sfn ../rt-polarity/$f data/rt-polarity-dev/$f; done
declare -A B=([1k]="data.max_train_examples=1000" [all]="data.max_train_examples=0")
declare -A V=(
  [lr1e-4]="optim.lr=1e-4"            # the `tiny` recipe: AdamW, 10 epochs, batch 32, 6 % warm-up, linear decay
  [lr3e-4]="optim.lr=3e-4"
  [lr1e-3]="optim.lr=1e-3"
  [lr3e-3]="optim.lr=3e-3"            # second round: the pretrained arm's best of the first three was the largest
  [lr3e-4-e20]="optim.lr=3e-4,max_epochs=20"
  [lr1e-4-e20]="optim.lr=1e-4,max_epochs=20"
  [lr3e-4-ld075]="optim.lr=3e-4,head.layer_decay=0.75"
  [lr1e-4-e3]="optim.lr=1e-4,max_epochs=3"
  [lr3e-4-e3]="optim.lr=3e-4,max_epochs=3"
  [lr1e-3-e3]="optim.lr=1e-3,max_epochs=3"   # all labels: each arm's 1k lr, 3 epochs (954 updates; CPU budget)
  # session 18: the head on the mean of the tokens' final states instead of <s> (head.pool=mean)
  [lr1e-4-mean]="optim.lr=1e-4,head.pool=mean"
  [lr3e-4-mean]="optim.lr=3e-4,head.pool=mean"
  [lr1e-3-mean]="optim.lr=1e-3,head.pool=mean"
  [lr3e-3-mean]="optim.lr=3e-3,head.pool=mean"
  [lr3e-4-e3-mean]="optim.lr=3e-4,max_epochs=3,head.pool=mean"
  [lr1e-3-e3-mean]="optim.lr=1e-3,max_epochs=3,head.pool=mean"
  [lr1e-3-ld075-mean]="optim.lr=1e-3,head.layer_decay=0.75,head.pool=mean"   # lower blocks move less
  [lr1e-3-ld05-mean]="optim.lr=1e-3,head.layer_decay=0.5,head.pool=mean"
)
CKPT=${CKPT:-models/text-tiny-v2}
TOK=${TOK:-models/text-tiny-v2}
OUT=${OUT:-runs/v15-txt-ft}
compare() {  # BUDGET VARIANT SEED ARMS...
  local budget=$1 name=$2 seed=$3; shift 3
  [ -n "${V[$name]}" ] || { echo "unknown variant $name" >&2; exit 2; }
  taskset -c "${CORE:-0}" env OMP_NUM_THREADS=1 .venv/bin/python experiments/compare.py --task text-classification \
    --data data/rt-polarity-dev --pretrained "$CKPT" --preset text-tiny-v2 \
    --budget "$budget-$name=${B[$budget]},${V[$name]}" --seeds "$seed" --arms "$@" \
    --set train.threads=1 --set data.num_workers=0 --set data.tokenizer="$TOK" --out "$OUT"
}
mode=$1; budget=$2; shift 2
case $mode in
  sweep)
    for name in "$@"; do compare "$budget" "$name" 1 ${ARMS:-pretrained scratch}; done ;;
  final)
    arm=$1; name=$2; shift 2
    for s in ${@:-1 2 3}; do
      compare "$budget" "$name" "$s" "$arm"
      run=$OUT/$budget-$name-$arm-s$s
      [ -f "$run/test.json" ] || taskset -c "${CORE:-0}" env OMP_NUM_THREADS=1 .venv/bin/data2vec evaluate \
        text-classification "$run/checkpoint_best.pt" --data data/rt-polarity --subset test --out "$run/test.json"
    done ;;
  *) echo "usage: $0 sweep|final BUDGET ..." >&2; exit 2 ;;
esac
