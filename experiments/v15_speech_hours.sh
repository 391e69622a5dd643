#!/bin/bash
# issue 15, speech: does more unlabelled audio help? The log-mel data2vec 2.0 recipe of v15_speech_logmel.sh,
# pretrained 6,000 updates (as runs/v15-aud-M6k, which saw data/speech-4h's 3.1 h train split ~10 times) on the
# train split of a 20 h corpus made with the same seed (same voices and sentence pools per split: a superset of
# data/speech-4h, so none of its valid/test voices or sentences), then fine-tuned on data/speech-4h's 1 h of
# labels exactly as the clipped 3-seed results (lr 2e-3, clip_norm 5, 1,500 updates). Resumable: rerun it.
#
#   [CORE=1] experiments/v15_speech_hours.sh            # prepare, check, pretrain, fine-tune 3 seeds (valid only)
#   [CORE=1] experiments/v15_speech_hours.sh test       # then the test split, once per run (last checkpoint)
set -e
cd "$(dirname "$0")/.."
export CORE=${CORE:-1}
C=data/speech-20h
export PRE_DATA=$C PRE_OUT=runs/v15-aud-M20h PRE_UPDATES=6000 CKPT=runs/v15-aud-M20h/checkpoint_6000.pt
export LR=2e-3 TAG=-clip5-M20h EXTRA="optim.clip_norm=5.0"
if [ "$1" = test ]; then exec experiments/v15_speech_logmel.sh test-last pretrained 1 2 3; fi
taskset -c "$CORE" env OMP_NUM_THREADS=1 .venv/bin/data2vec prepare speech --out $C --hours 20 --seed 0 --workers 1 \
  >> runs/prep-speech-20h.log 2>&1
# the larger corpus's train split must share no sentence with data/speech-4h's valid and test splits
.venv/bin/python - <<'PY'
train = set(open("data/speech-20h/train.wrd").read().splitlines())
held = set(open("data/speech-4h/valid.wrd").read().splitlines()) | set(open("data/speech-4h/test.wrd").read().splitlines())
assert not train & held, f"{len(train & held)} held-out sentences in the 20 h train split"
print(f"20 h train split: {len(train)} sentences, none of data/speech-4h's {len(held)} valid/test sentences")
PY
experiments/v15_speech_logmel.sh pretrain
experiments/v15_speech_logmel.sh pretrained 1 2 3
