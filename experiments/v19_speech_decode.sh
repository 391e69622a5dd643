#!/bin/bash
# issue 15, speech: the word 3-gram LM and the 10 real recordings beside the greedy test CER of a CTC run of
# experiments/v15_speech_logmel.sh (its best-valid checkpoint).
#
#   data2vec prepare lm --text data/speech-4h/train.wrd --out data/speech-4h/lm.arpa   # no valid/test sentence in it
#   data2vec prepare real-speech --out data/real-speech          # pocketsphinx-testdata: 10 LibriVox utterances
#   [CORE=1] experiments/v19_speech_decode.sh tune RUN            # LM weight x word score on the valid split only
#   [CORE=1] experiments/v19_speech_decode.sh decode W S RUN ...  # then, once: test and real, greedy and beam + LM
#   [CORE=1] experiments/v19_speech_decode.sh real W S RUN ...    # the real recordings only (runs whose test stays unread)
#   experiments/v19_speech_decode.sh table RUN ...                # the numbers, as JSON lines
# Beam 50 throughout (the size used since session 13). The greedy test result is test_best.json, the file
# `v15_speech_logmel.sh test` writes: whichever runs first, the test split is decoded greedily once.
set -e
cd "$(dirname "$0")/.."
EV=(taskset -c "${CORE:-1}" env OMP_NUM_THREADS=1 .venv/bin/data2vec evaluate asr)
LM=(--decoder beam --beam 50 --lm data/speech-4h/lm.arpa)
case $1 in
tune)
  run=$2; mkdir -p "$run/lm"
  for w in 0.5 1 2; do for s in 0 1 2; do
    f=$run/lm/valid-w$w-s$s.json
    [ -f "$f" ] || "${EV[@]}" "$run/checkpoint_best.pt" --data data/speech-4h --subset valid "${LM[@]}" \
      --lm-weight "$w" --word-score "$s" --out "$f" > /dev/null
  done; done ;;
decode|real)
  what=$1; w=$2; s=$3; shift 3
  for run in "$@"; do
    mkdir -p "$run/lm"
    ck=$run/checkpoint_best.pt
    [ "$what" = real ] || [ -f "$run/test_best.json" ] || "${EV[@]}" "$ck" --data data/speech-4h --subset test --out "$run/test_best.json" > /dev/null
    [ "$what" = real ] || [ -f "$run/lm/test-w$w-s$s.json" ] || "${EV[@]}" "$ck" --data data/speech-4h --subset test "${LM[@]}" \
      --lm-weight "$w" --word-score "$s" --out "$run/lm/test-w$w-s$s.json" > /dev/null
    [ -f "$run/lm/real-greedy.json" ] || "${EV[@]}" "$ck" --data data/real-speech --subset test \
      --out "$run/lm/real-greedy.json" > /dev/null
    [ -f "$run/lm/real-w$w-s$s.json" ] || "${EV[@]}" "$ck" --data data/real-speech --subset test "${LM[@]}" \
      --lm-weight "$w" --word-score "$s" --out "$run/lm/real-w$w-s$s.json" > /dev/null
  done ;;
table)
  shift
  for run in "$@"; do
    for f in "$run/test_best.json" "$run"/lm/*.json; do
      [ -f "$f" ] || continue
      .venv/bin/python -c "import json, sys; d = json.load(open(sys.argv[1]))
print(json.dumps({'file': sys.argv[1], 'cer': round(d['cer'], 4), 'wer': round(d['wer'], 4)}))" "$f"
    done
  done ;;
*) echo "usage: $0 tune RUN | decode W S RUN ... | real W S RUN ... | table RUN ..." >&2; exit 2 ;;
esac
