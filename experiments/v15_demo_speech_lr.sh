#!/bin/bash
# issue 15 item 6: the learning rate of `make demo`'s speech fine-tunes (10 min of labels from data/speech-1h,
# 200 CTC updates, the `tiny` recipe otherwise), chosen per arm on the validation split: one validation pass at
# update 200, the test split not read. Both arms, the same lrs and seeds (the demo's seeds 1-3).
#   [CORE=0] [OUT=runs/demo-speech-lr] [UPDATES=200] [ARMS="pretrained scratch"] \
#     experiments/v15_demo_speech_lr.sh LR [LR ...]   (reruns skip finished runs)
#   experiments/v15_demo_speech_lr.sh table    # valid CER per arm, lr and seed, mean ± sd
set -e
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/demo-speech-lr}
mkdir -p "$OUT"
if [ "$1" = table ]; then
  exec .venv/bin/python - "$OUT" <<'PY'
import json, re, statistics, sys
from pathlib import Path
rows = {}
for m in sorted(Path(sys.argv[1]).glob("*/metrics.json")):
    arm, lr, seed = re.fullmatch(r"(\w+)-lr(.+)-s(\d+)", m.parent.name).groups()
    v = json.loads(m.read_text())
    cer = v["best_valid"]["cer"]
    rows.setdefault((arm, lr), {})[seed] = cer
for (arm, lr), d in sorted(rows.items()):
    xs = [d[s] for s in sorted(d)]
    sd = f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else ""
    print(f"{arm:10s} lr {lr}: valid CER {statistics.mean(xs):.3f}{sd} ({' / '.join(f'{x:.3f}' for x in xs)})")
PY
fi
for lr in "$@"; do
  for seed in 1 2 3; do
    for arm in ${ARMS:-pretrained scratch}; do
      run=$OUT/$arm-lr$lr-s$seed
      [ -f "$run/metrics.json" ] && continue
      if [ "$arm" = pretrained ]; then src=(--init models/audio-tiny-mel-v2); else src=(--preset audio-tiny-mel-v2); fi
      taskset -c "${CORE:-0}" .venv/bin/data2vec finetune asr "${src[@]}" --data data/speech-1h --out "$run" \
        --set data.label_hours=0.17 --set train.max_update="${UPDATES:-200}" --set optim.lr="$lr" \
        --set eval_interval="${UPDATES:-200}" \
        --set data.test_subset=no-test-split --set train.threads=1 --set data.num_workers=0 \
        --set train.seed="$seed" > "$run.log" 2>&1
    done
  done
done
