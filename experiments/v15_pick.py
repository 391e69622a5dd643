"""Print the fine-tuning variant of experiments/v15_ft_sweep.sh with the best validation top-1 for one arm
(seed 1), and its overrides: ``python experiments/v15_pick.py ARM`` -> ``VARIANT<TAB>OVERRIDES``."""

import json
import re
import sys
from pathlib import Path

arm = sys.argv[1]
sweep = Path(__file__).with_name("v15_ft_sweep.sh").read_text()
variants = dict(re.findall(r'^\s+\[([\w.-]+)\]="([^"]*)"', sweep, flags=re.M))
scores = {}
for name in variants:
    m = Path(f"runs/v15-ft-sweep/1pct-{name}-{arm}-s1/metrics.json")
    if m.is_file():
        scores[name] = json.loads(m.read_text())["best_valid"]["top1"]
best = max(scores, key=scores.get)
print(json.dumps(scores), file=sys.stderr)
print(f"{best}\t{variants[best]}")
