"""Bad data never kills a run: the unreadable-sample error, deterministic substitution, and the skip log.

Before training, each reader checks what it can cheaply and drops what it cannot use, naming it in its
report (audio headers: ``data2vec.modalities.audio.dataset.validate_manifest``; image headers:
``data2vec.modalities.image.dataset.validate_images``; the text corpus arrays: ``data2vec.data.text.TextBlockDataset``).
What only shows when a sample is decoded (a truncated image, NaN audio, a file changed since the check) is
caught in the loader worker:

    dataset[i] -> load(i) raises UnreadableSample -> ``substitute`` loads entry i + 1 (i + 2, ...) in slot i,
    the sample lists the failed files in sample["skipped"] -> ``CollateWithSkips`` gathers them into
    batch["skipped"] -> the training loop hands every batch to ``SkipLog`` (main process, all ranks)
    -> ``RUN/skipped.json`` (with each checkpoint and at the end) and a printed summary at the end.

A substitute keeps its own file (and label) but takes the slot's index as the key of its random crop,
flip and masks, so a batch keeps its size and its cost, nothing depends on which process read it, and a
resumed run reads exactly what an uninterrupted one reads. The log counts each file once per epoch, so
batches read again after a resume are not counted twice.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Callable

from data2vec.errors import Data2VecError

SKIPPED_JSON = "skipped.json"
MAX_CONSECUTIVE_UNREADABLE = 32  # entries tried in a row before giving up (a lost mount, not bad files)
_PRINT_LIMIT = 20  # files named per section in the printed summary (skipped.json has all)


class UnreadableSample(Data2VecError):
    """One entry of a data set cannot be used: ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot use {path}: {reason}")


def substitute(load: Callable[[int, int], dict], index: int, size: int) -> dict:
    """``load(index, index)``, or when that entry is unreadable ``load(j, index)`` for the next readable j.

    ``load(entry, slot)`` reads ``entry`` and draws its randomness from ``slot``. Entries are tried in
    order ``index, index + 1, ...`` (mod ``size``); the failed ones are listed in the returned sample's
    ``"skipped"`` as ``[path, reason]`` pairs.

    Raises:
        Data2VecError: ``MAX_CONSECUTIVE_UNREADABLE`` entries in a row failed (the data went away).
    """
    skipped: list[list[str]] = []
    for k in range(min(size, MAX_CONSECUTIVE_UNREADABLE)):
        try:
            sample = load((index + k) % size, index)
        except UnreadableSample as e:
            skipped.append([e.path, e.reason])
            continue
        sample["skipped"] = skipped
        return sample
    names = "; ".join(f"{p} ({r})" for p, r in skipped[:3])
    raise Data2VecError(f"{len(skipped)} entries in a row from entry {index} on are unreadable (e.g. {names}): "
                        "is the data directory still there? Check it and rerun with --resume")


class CollateWithSkips:
    """Wraps a collator: the batch also holds ``"skipped"``, the ``[path, reason]`` pairs of its samples."""

    def __init__(self, collate: Callable[[list[dict]], dict]):
        self.collate = collate

    def __call__(self, samples: list[dict]) -> dict:
        batch = self.collate(samples)
        batch["skipped"] = [list(x) for s in samples for x in s.get("skipped", ())]
        return batch


class SkipLog:
    """Every file a run skipped: before training (``report.skipped()``) and while training (from batches).

    ``take`` every batch, ``save`` with every checkpoint and ``finish`` at the end, on every rank (with
    several ranks both gather the lists to rank 0). Resuming reloads ``RUN/skipped.json``.
    """

    def __init__(self, run_dir: str | Path, report, dist_info, *, resume: bool):
        self.path = Path(run_dir) / SKIPPED_JSON
        self.dist = dist_info
        skipped = getattr(report, "skipped", None)
        self.before: list[list[str]] = [list(x) for x in skipped()] if skipped else []
        self.during: dict[str, dict] = {}  # file -> {"reason": str, "epochs": set of int}
        if resume and dist_info.is_main and self.path.is_file():
            for f in json.loads(self.path.read_text()).get("during_training", {}).get("files", []):
                self.during[f["file"]] = {"reason": f["reason"], "epochs": set(f["epochs"])}

    def take(self, batch: dict, epoch: int) -> None:
        """Remove ``batch["skipped"]`` and record its files as skipped in ``epoch``."""
        for path, reason in batch.pop("skipped", ()):
            entry = self.during.setdefault(path, {"reason": reason, "epochs": set()})
            entry["reason"] = reason
            entry["epochs"].add(int(epoch))

    def _gathered(self) -> dict[str, dict]:
        if self.dist.world_size == 1:
            return self.during
        import torch.distributed as dist

        parts = [None] * self.dist.world_size
        dist.all_gather_object(parts, self.during)
        merged: dict[str, dict] = {}
        for part in parts:
            for path, e in part.items():
                m = merged.setdefault(path, {"reason": e["reason"], "epochs": set()})
                m["epochs"] |= e["epochs"]
        return merged

    def as_dict(self, during: dict[str, dict] | None = None) -> dict:
        during = self.during if during is None else during
        files = [{"file": p, "reason": e["reason"], "count": len(e["epochs"]), "epochs": sorted(e["epochs"])}
                 for p, e in sorted(during.items())]
        return {"total_files": len({p for p, _ in self.before} | set(during)),
                "before_training": {"count": len(self.before),
                                    "files": [{"file": p, "reason": r} for p, r in self.before]},
                "during_training": {"count": len(files), "times": sum(f["count"] for f in files), "files": files}}

    def save(self) -> dict:
        """Write ``skipped.json`` (rank 0; a collective call with several ranks); returns its content."""
        state = self.as_dict(self._gathered())
        if self.dist.is_main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(state, indent=2) + "\n")
            os.replace(tmp, self.path)
        return state

    def finish(self) -> int:
        """Save, print the summary (rank 0) and return the number of distinct files skipped."""
        state = self.save()
        if self.dist.is_main:
            print(summary_text(state, self.path), flush=True)
        return state["total_files"]


def summary_text(state: dict, path: Path) -> str:
    """The printed form of a ``skipped.json`` dict: counts per reason and the first files by name."""
    if not state["total_files"]:
        return f"skipped data: none ({path})"
    lines = ["", f"== skipped data: {state['total_files']} file(s); all of them in {path} =="]
    for title, section in (("before training", state["before_training"]),
                           ("during training", state["during_training"])):
        files = section["files"]
        if not files:
            continue
        reasons = Counter(_reason_kind(f["reason"]) for f in files)
        times = f", {section['times']} time(s)" if "times" in section else ""
        lines.append(f"{title}: {len(files)} file(s){times} ("
                     + ", ".join(f"{n} {k}" for k, n in reasons.most_common()) + ")")
        for f in files[:_PRINT_LIMIT]:
            count = f" [{f['count']}x]" if f.get("count", 1) > 1 else ""
            lines.append(f"  {f['file']}: {f['reason']}{count}")
        if len(files) > _PRINT_LIMIT:
            lines.append(f"  ... and {len(files) - _PRINT_LIMIT} more")
    return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """The short kind before the first ':' or '(' of a reason ('unreadable: ...' -> 'unreadable')."""
    return reason.split(":", 1)[0].split(" (", 1)[0].strip()
