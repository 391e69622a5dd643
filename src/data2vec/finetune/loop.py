"""Fine-tuning on labelled data with the same training loop as pretraining (``Trainer``).

    data2vec finetune image-classification --init runs/demo-image-tiny-v1/checkpoint_last.pt \\
        --data data/images --out runs/ft-image [--set data.label_fraction=0.01]
    data2vec finetune image-classification --preset image-tiny-v1 --data data/images --out runs/ft-scratch
    data2vec finetune asr --init runs/demo-audio-tiny-v1/checkpoint_last.pt --data data/speech --out runs/ft-asr
    data2vec finetune text-classification --init runs/demo-text-tiny-v1/checkpoint_last.pt \\
        --data data/rt-polarity --out runs/ft-text

``--init`` takes any format ``data2vec convert`` reads (its encoder config comes along); without it
the encoder of ``--preset`` starts from random weights (the from-scratch baseline). Encoders of data2vec 1.0
and 2.0 both fine-tune (a task config's ``encoder`` is either version's config class; the heads read the
v2 output layout: extra tokens first, ``num_extra`` of them). Validation every
``eval_interval`` updates and at the end; the best validation score (the task's ``metric``) is kept as
``checkpoint_best.pt`` and evaluated on the test split into ``metrics.json``; with ``validate = false`` there
is no validation and the test split scores the final model (a fixed budget, as ``make demo`` runs it). The
update loop, checkpoints (every rank's RNG), resume, signals, DDP, logs and plots are pretraining's:
``Trainer.fit`` with this run's ``RunHooks`` (validation and the best checkpoint; ``data2vec.train.task``).
SIGTERM/SIGINT save and raise ``TrainingInterrupted`` as in pretraining.

A *fine-tuning task* is a ``FinetuneTask`` (below); ``TASKS`` names the module that holds each (its ``TASK``). The
built-in ones live with their modality: ``data2vec.modalities.image.finetune`` (image classification),
``.audio.finetune`` (speech recognition), ``.text.finetune`` (text classification); this package keeps what
every task shares.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from data2vec.config import from_dict, merge, modality_name, to_dict
from data2vec.errors import Data2VecError
from data2vec.keys import load_into
from data2vec.modalities import get_modality
from data2vec.modalities.base_v2 import is_v2
from data2vec.pretrained import load_pretrained
from data2vec.train.checkpoint import (
    RunLock,
    load_checkpoint,
    require_entries,
    save_checkpoint,
)
from data2vec.train.config import check_model_size
from data2vec.train.distributed import cleanup, init_distributed
from data2vec.train.loop import Trainer, seed_everything
from data2vec.train.optim import layer_decay_groups
from data2vec.train.run_log import RunLog
from data2vec.train.task import RunHooks, TrainingTask

TASKS = {"image-classification": "data2vec.modalities.image.finetune", "asr": "data2vec.modalities.audio.finetune",
         "text-classification": "data2vec.modalities.text.finetune"}


@dataclass(kw_only=True)
class FinetuneBase:
    """Fields every fine-tuning config has (besides encoder/head/data/optim/train of its task)."""

    init: str = ""  # pretrained weights ("" = random initialisation)
    eval_interval: int = 100  # updates between validations (and at the end)
    validate: bool = True  # false: no validation split read, no best checkpoint; the test split scores the final model

    def __post_init__(self):
        if self.eval_interval < 0:  # 0 is a task's "derive it" marker (text: once per epoch); runs check >= 1
            raise Data2VecError(f"eval_interval must be >= 1, got {self.eval_interval}")

        if dataclasses.is_dataclass(getattr(self, "encoder", None)):
            check_model_size(self.encoder)


class FinetuneModel(torch.nn.Module):
    """Defaults of the training-task interface (``data2vec.train.loop.Trainer``) for a task head on an
    encoder: the whole model is trained, one unit per example (``batch["labels"]``), nothing to do after an
    update. Subclasses add ``step_loss`` (and ``optim_param_groups`` where they group parameters)."""

    @property
    def trainable(self) -> torch.nn.Module:
        return self

    @staticmethod
    def num_units(batch: dict) -> int:
        return int(batch["labels"].numel())

    def after_update(self, step: int) -> dict:
        return {}

    def compile_targets(self) -> list[torch.nn.Module]:
        return [self.encoder.context_encoder]


def layer_decay_param_groups(model: torch.nn.Module, weight_decay: float, no_decay_1d: bool, layer_decay: float, *,
                             head_keys: tuple[str, ...] = (), no_wd_keys: tuple[str, ...] = ()) -> list[dict]:
    """AdamW groups with layer-wise lr decay for a task model with an ``encoder`` of either version.

    v1: ``data2vec.train.optim.layer_decay_groups`` (BEiT layer ids). v2: as fairseq fine-tunes
    ``data2vec_multi`` (``mae_image_classification.py``, ``wav2vec2_asr.py``): the blocks in order, the
    modality's prenet blocks then the shared ones (n in all), block i gets ``lr_scale = layer_decay ** (n - i)``
    and every other parameter (local encoder, CLS token, prenet LayerNorm, the head) 1. No weight decay on
    1-D parameters, biases, ALiBi scales and names containing one of ``no_wd_keys``.
    """
    if not is_v2(model.encoder):  # the two recipes number the layers differently (BEiT ids vs fairseq's blocks)
        return layer_decay_groups(model, weight_decay, no_decay_1d, layer_decay, head_keys=head_keys,
                                  no_wd_keys=no_wd_keys)
    ce = model.encoder.context_encoder
    prefixes = ([f"encoder.context_encoder.prenet.{i}." for i in range(len(ce.prenet))]
                + [f"encoder.context_encoder.blocks.{i}." for i in range(len(ce.blocks))])
    n = len(prefixes)
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        block = next((i for i, pre in enumerate(prefixes) if name.startswith(pre)), None)
        scale = 1.0 if block is None else layer_decay ** (n - block)
        no_wd = no_decay_1d and (p.ndim <= 1 or name.endswith(".bias") or "alibi_scale" in name
                                 or any(k in name for k in no_wd_keys))
        g = groups.setdefault((scale, no_wd), {"params": [], "weight_decay": 0.0 if no_wd else weight_decay,
                                               "lr_scale": scale})
        g["params"].append(p)
    return list(groups.values())


class FinetuneTask(Protocol):
    """What ``finetune`` needs to know about a task (a module-level ``TASK`` object)."""

    name: str
    modality: str  # the ModalitySpec whose encoder it fine-tunes
    config_cls: type  # a FinetuneBase dataclass with task, init, encoder, head, data, optim, train, eval_interval
    metric: str  # the validation metric that picks checkpoint_best.pt
    higher_is_better: bool

    def default_config(self, src, init: str):
        """The recipe for an encoder whose pretraining config is ``src``."""

    def build_data(self, cfg, dist, seed: int):
        """An object with ``train``, ``make_loader(epoch, start_batch)``, ``sets`` (name -> dataset; "valid" and
        "test" when present), ``eval_loader(name)`` and ``describe()``."""

    def complete_config(self, cfg, data):
        """``cfg`` with its data-dependent fields filled in (number of classes, vocabulary)."""

    def build_model(self, cfg, encoder, data) -> TrainingTask:
        """The task model on ``encoder``: a ``TrainingTask`` for the shared ``Trainer``."""

    def evaluate(self, model, loader, device, cfg) -> dict:
        """Metrics on ``loader``, ``metric`` among them."""


def get_task(name: str) -> FinetuneTask:
    if name not in TASKS:
        raise Data2VecError(f"unknown fine-tuning task {name!r}; available: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name]).TASK


def finetune_config_from_dict(d: dict):
    if "task" not in d:
        raise Data2VecError(f"a fine-tuning config needs `task` (one of {', '.join(TASKS)})")
    return from_dict(get_task(d["task"]).config_cls, d)


def default_config(task: str, src, init: str = "", recipe: str | None = None):
    """The task's recipe for an encoder whose pretraining config is ``src`` (from a preset or checkpoint);
    ``recipe`` picks one of the task's named recipes (``TASK.recipes``) where it has several."""
    t = get_task(task)
    if modality_name(src.modality) != modality_name(t.modality):
        raise Data2VecError(f"{task} needs a {t.modality} model, got a {src.modality} one")
    if recipe:
        if recipe not in getattr(t, "recipes", ()):
            raise Data2VecError(f"{task} has no recipe {recipe!r}; available: "
                                f"{', '.join(getattr(t, 'recipes', ())) or 'none'}")
        return t.default_config(src, init, recipe)
    return t.default_config(src, init)


def load_encoder_weights(encoder: torch.nn.Module, init: str) -> None:
    """Load the student encoder of any checkpoint format ``data2vec convert`` reads into ``encoder``."""
    load_into(encoder, load_pretrained(init)[1].student.encoder.state_dict())


def finetune(cfg, out_dir: str | Path, *, resume: bool = False) -> dict:
    run_dir = Path(out_dir)
    last_path = run_dir / "checkpoint_last.pt"
    check_model_size(cfg.encoder)  # before anything is allocated
    dist_info = init_distributed(cfg.train.device)
    lock = RunLock(run_dir)  # one run per directory (rank 0 holds it for the job, as in pretraining)
    try:
        if dist_info.is_main:
            lock.acquire()
        if last_path.exists() and not resume:
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it, "
                                  "or choose another --out")
        return _finetune(cfg, run_dir, resume and last_path.exists(), dist_info)
    finally:
        lock.release()
        cleanup()


def _finetune(cfg, run_dir: Path, resume: bool, dist_info) -> dict:
    task = get_task(cfg.task)
    last_path, best_path = run_dir / "checkpoint_last.pt", run_dir / "checkpoint_best.pt"
    main = dist_info.is_main
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    data = task.build_data(cfg, dist_info, cfg.train.seed)
    cfg = task.complete_config(cfg, data)
    if cfg.train.max_update < 1:
        raise Data2VecError(f"train.max_update must be >= 1 (the number of updates to train), "
                            f"got {cfg.train.max_update}")
    if cfg.eval_interval < 1:
        raise Data2VecError(f"eval_interval must be >= 1 (updates between validations), got {cfg.eval_interval}")
    encoder = get_modality(task.modality).build_encoder(cfg.encoder)
    if cfg.init and not resume:
        load_encoder_weights(encoder, cfg.init)
    model = task.build_model(cfg, encoder, data).to(dist_info.device)
    trainer = Trainer(cfg, model, dist_info)
    metric = selection_metric(task, cfg)
    best = Best(metric, task.higher_is_better)
    if resume:
        ck = load_checkpoint(last_path)
        require_entries(last_path, ck, ("best",))
        trainer.load(ck, last_path)  # model, optimizer, position, every rank's RNG
        best.value = ck["best"]
        del ck
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{cfg.task}: {data.describe()}; {n / 1e6:.2f} M trainable parameters; "
              f"{'from ' + cfg.init if cfg.init else 'random initialisation'}", flush=True)
    log = RunLog(run_dir, cfg.train.max_update, trainer.step, enabled=main)

    def validate(step: int, last: bool) -> None:
        if "valid" not in data.sets or not (step % cfg.eval_interval == 0 or last):
            return
        v = task.evaluate(model, data.eval_loader("valid"), dist_info.device, cfg)
        if main:
            log.log(step, {f"valid_{k}": x for k, x in v.items() if isinstance(x, (int, float))})
        if best.update(v, step) and main:
            save_checkpoint(best_path, {"config": to_dict(cfg), "model": model.state_dict(), "best": best.value})

    hooks = RunHooks(checkpoint_extra=lambda: {"best": best.value})
    if cfg.validate:
        hooks.validate = validate
    trainer.fit(data, last_path, log, hooks)
    summary = {"status": "done", "steps": trainer.step, "metric": metric, "best_valid": best.value}
    if "test" in data.sets and (best_path.exists() or not cfg.validate):
        if cfg.validate:
            ck = load_checkpoint(best_path)
            require_entries(best_path, ck, ("model",))
            model.load_state_dict(ck["model"])
        summary["test_checkpoint"] = "best" if cfg.validate else "last"
        summary["test"] = task.evaluate(model, data.eval_loader("test"), dist_info.device, cfg)
    if main:
        (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.finish({k: v for k, v in summary.items() if not isinstance(v, dict)} | {
        f"best_valid_{metric}": best.value.get(metric), f"test_{metric}": summary.get("test", {}).get(metric)})
    return summary


def selection_metric(task: FinetuneTask, cfg) -> str:
    """The validation metric that picks checkpoint_best.pt: the config's ``best_metric`` where the task offers a
    choice (ASR: ``wer`` or ``cer``, lower is better for both), else the task's ``metric``."""
    return getattr(cfg, "best_metric", "") or task.metric


class Best:
    """The best validation record so far (``value``: the numeric metrics and the update they came from)."""

    def __init__(self, metric: str, higher_is_better: bool):
        self.metric, self.higher_is_better = metric, higher_is_better
        self.value: dict = {metric: None, "step": 0}

    def update(self, metrics: dict, step: int) -> bool:
        """Keep ``metrics`` if they beat the best so far; True if they did."""
        new, old = metrics[self.metric], self.value.get(self.metric)  # .get: a run resumed with another metric
        if old is not None and not (new > old if self.higher_is_better else new < old):
            return False
        self.value = {k: x for k, x in metrics.items() if isinstance(x, (int, float))} | {"step": step}
        return True


def eval_splits(cfg, data_cfg) -> list[tuple[str, str]]:
    """(name, subset) of the held-out splits a task's data builder reads: "valid" only when the run validates."""
    return [("valid", data_cfg.valid_subset)] * bool(cfg.validate) + [("test", data_cfg.test_subset)]


def with_num_classes(cfg, n: int):
    """``cfg`` with ``head.num_classes`` set to ``n`` when it is 0 (= from the data)."""
    return merge(cfg, {"head": {"num_classes": n}}) if cfg.head.num_classes == 0 else cfg


def label_subset(labels, fraction: float, seed: int) -> list[int]:
    """Indices of ``fraction`` of each class (at least one per class), chosen with a seeded permutation.

    Same ``seed`` and labels -> same subset, and a smaller fraction's subset is contained in a larger one's.
    """
    import numpy as np

    labels = np.asarray(labels)
    if fraction >= 1.0:
        return list(range(len(labels)))
    if fraction <= 0:
        raise Data2VecError(f"data.label_fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng([seed, 11])
    keep: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep += rng.permutation(idx)[: max(1, int(round(len(idx) * fraction)))].tolist()
    return sorted(keep)
